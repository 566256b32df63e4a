"""The ``stagetune`` command line.

Errors the user can fix (a bad key, file or value) end with ``stagetune: error: ...`` and exit
status 2; ``--json`` output goes to stdout and logs go to stderr, so the two never mix.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("stagetune")
_LOG_FORMAT = logging.Formatter(
    "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("stagetune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from model import StagetuneError

        if isinstance(exc, StagetuneError):
            print(f"stagetune: error: {exc}", file=sys.stderr)
            return 2
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stagetune",
        description="Stage-aware configurations for ViSNet binding-affinity models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train the affinity model",
        description="Train with configs/ composed with a profile and KEY=VALUE overrides, e.g. "
        "optimizer=sgd optimizer.lr=0.01 scheduler=onecycle model.hidden_channels=64.",
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument("--data", help="synthetic, or a PDBbind-style root (data.source)")
    train.add_argument(
        "--profile", type=Path, help="a YAML or JSON profile (e.g. a run's config.json)"
    )
    train.add_argument("--epochs", type=_positive, help="number of epochs (train.epochs)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    train.add_argument("--output", help="folder for run folders and audit.md (train.output_dir)")
    train.add_argument("--config-dir", type=Path, help="the configs/ folder to compose from")
    train.add_argument("--json", action="store_true", help="print the report as JSON")
    train.set_defaults(handler=_train)

    probe = commands.add_parser(
        "probe",
        help="measure peak memory and step time; find the largest batch that fits",
        description="Real training steps on the worst-case sample. Without --batch-size, finds "
        "the largest batch under memory_fraction (configs/stages.yaml) of the device's memory.",
    )
    probe.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. model.num_layers=4")
    probe.add_argument(
        "--max-atoms", type=_positive, help="atoms per probe complex (data.max_atoms)"
    )
    probe.add_argument("--sample", type=Path, help="a real complex ROOT/ID instead of synthetic")
    probe.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: a GPU)")
    probe.add_argument("--memory-budget", help="CPU budget, e.g. 4GiB (default: half of free)")
    probe.add_argument("--batch-size", type=_positive, help="measure this one batch size only")
    probe.add_argument("--stages", type=Path, help="stages file (configs/stages.yaml)")
    probe.add_argument("--log-file", type=Path, default=Path("runs/probe.log"))
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.set_defaults(handler=_probe)

    optimize = commands.add_parser(
        "optimize",
        help="the best configuration per stage, searched with Ray Tune",
        description="For each stage: a fit search (HyperOpt over the architecture space, one "
        "probe per trial, dominated configurations pruned), the stage's policy, then a tune "
        "search (HyperOpt over training hyperparameters, ASHA early stopping). Options not "
        "given come from the preset (configs/presets/).",
    )
    optimize.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="training config overrides"
    )
    optimize.add_argument(
        "--spec", type=Path, help="a JSON file of these options (the service writes one)"
    )
    optimize.add_argument("--preset", help="quick or default (configs/presets/<name>.yaml)")
    optimize.add_argument("--stages", type=_stage_list, help="e.g. prototyping,validation")
    optimize.add_argument("--data", help="synthetic, or a PDBbind-style root every node can read")
    optimize.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="a Ray cluster to join (default: RAY_ADDRESS, else a new local instance)",
    )
    optimize.add_argument("--storage", help="folder of job folders, shared by all nodes")
    optimize.add_argument("--job-id", help="names the job folder; run again to resume")
    optimize.add_argument("--output", type=Path, help="also copy the job's files here")
    optimize.add_argument("--fit-trials", type=_positive, help="probes per stage")
    optimize.add_argument("--tune-trials", type=_positive, help="training trials per stage")
    optimize.add_argument("--max-concurrent", type=_positive, help="trials at once")
    optimize.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default 1)")
    optimize.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    optimize.add_argument("--accelerator-type", help="only nodes with this GPU type, e.g. A100")
    optimize.add_argument("--max-epochs", type=_positive, help="ASHA budget per trial (epochs)")
    optimize.add_argument("--grace-period", type=_positive, help="epochs before ASHA may stop")
    optimize.add_argument("--reduction-factor", type=float, help="ASHA's reduction factor")
    optimize.add_argument("--no-tune", action="store_true", help="the hardware-only answer")
    optimize.add_argument("--max-atoms", type=_positive, help="atoms per probe complex")
    optimize.add_argument("--sample", help="a real complex ROOT/ID to probe with")
    optimize.add_argument("--memory-budget", help="CPU budget per trial, e.g. 4GiB")
    optimize.add_argument("--seed", type=int, help="searchers' seed (default 0)")
    optimize.add_argument("--json", action="store_true", help="print result.json")
    optimize.set_defaults(handler=_optimize)

    serve = commands.add_parser(
        "serve",
        help="the REST service (POST /optimize)",
        description="Settings come from STAGETUNE_* variables (service/settings.py).",
    )
    serve.add_argument("--host", help="default 127.0.0.1 (STAGETUNE_HOST)")
    serve.add_argument("--port", type=int, help="default 8000 (STAGETUNE_PORT)")
    serve.set_defaults(handler=_serve)

    schema = commands.add_parser("schema", help="the JSON Schema of result.json")
    schema.set_defaults(handler=_schema)

    hardware = commands.add_parser("hardware", help="the devices a probe can run on")
    hardware.add_argument("--memory-budget", help="CPU budget, e.g. 4GiB (default: half of free)")
    hardware.add_argument("--json", action="store_true", help="print JSON")
    hardware.set_defaults(handler=_hardware)

    data = commands.add_parser("data", help="inspect data").add_subparsers(
        dest="data_command", required=True, metavar="SUBCOMMAND"
    )
    inspect = data.add_parser(
        "inspect",
        help="what the model sees of each complex of a PDBbind-style root",
        description="One line (or JSON object) per complex: atoms after the policy and the crop, "
        "its label, the edges of its radius graph, and why it is skipped if it is.",
    )
    inspect.add_argument("root", type=Path)
    inspect.add_argument("--max-atoms", type=_positive, default=600, help="crop size (default 600)")
    inspect.add_argument("--cutoff", type=float, default=5.0, help="radius in A (default 5.0)")
    inspect.add_argument("--max-neighbors", type=_positive, default=32, help="neighbour cap (32)")
    inspect.add_argument("--pocket-radius", type=float, default=8.0, help="pocket cut in A (8.0)")
    inspect.add_argument("--labels", type=Path, help="INDEX_*data.* file or id,pk CSV")
    inspect.add_argument(
        "--cache-dir", type=Path, help="processed-complex cache (~/.cache/stagetune/complexes)"
    )
    inspect.add_argument("--no-cache", action="store_true", help="read every file afresh")
    inspect.add_argument("--strict", action="store_true", help="stop at the first bad complex")
    inspect.add_argument("--json", action="store_true", help="print a JSON list")
    inspect.set_defaults(handler=_inspect)
    return parser


_handlers: list[logging.Handler] = []


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _stage_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one stage")
    return names


def _setup_logging(verbose: bool, quiet: bool) -> None:
    root = logging.getLogger()
    while _handlers:  # main() called again in one process: replace, do not pile up
        handler = _handlers.pop()
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_LOG_FORMAT)
    _handlers.append(console)
    root.addHandler(console)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _log_to_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(_LOG_FORMAT)
    _handlers.append(handler)
    logging.getLogger().addHandler(handler)


def _probe(args: argparse.Namespace) -> int:
    from model import load_train_config
    from tuner import Probe, ProbeSample, device_for, discover, format_size, load_stages

    _log_to_file(args.log_file)
    overrides = [*args.overrides, "optimizer.log_config=false"]
    if args.device != "auto":
        overrides.append(f"train.device={args.device}")
    config = load_train_config(overrides)
    stages = load_stages(args.stages)
    device = device_for(discover(args.memory_budget), args.device)
    max_atoms = args.max_atoms or config.data.max_atoms
    sample = (
        ProbeSample.from_folder(args.sample, max_atoms)
        if args.sample
        else ProbeSample.synthetic(max_atoms, config.model.cutoff, config.model.max_num_neighbors)
    )
    log.info("probing on %s (%s) with %s", device.name, device.model, sample.source)
    with Probe(config, device, sample, stages.memory_fraction, stages.cycle_batches) as probe:
        if args.batch_size is not None:
            m = probe.measure(args.batch_size)
            if args.json:
                _print_json(m.to_json())
            else:
                state = "fits" if m.fits else "out of memory" if m.oom else "over the limit"
                peak = format_size(m.peak_bytes) if m.peak_bytes is not None else "-"
                print(f"batch {m.batch_size}: {state}, peak {peak}, step {m.median_seconds} s")
            return 0
        result = probe.find_max_batch(stages.max_batch_size)
    if args.json:
        _print_json(result.to_json())
    elif result.fits:
        print(
            f"largest batch {result.max_batch_size} on {result.device}: peak "
            f"{format_size(result.peak_bytes or 0)} of {format_size(result.limit_bytes)}, "
            f"{result.step_seconds:.3f} s/step, {result.cycle_minutes:.1f} min per "
            f"{stages.cycle_batches}-step cycle, {result.throughput:.1f} samples/s "
            f"({result.probe_steps} probe steps, {result.capacity:,} parameters)"
        )
    else:
        print(f"does not fit at batch 1 on {result.device} ({format_size(result.limit_bytes)})")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from model import ConfigError
    from tuner import build_job_spec, optimize

    given = {
        "preset": args.preset, "stages": args.stages, "data": args.data,
        "overrides": args.overrides or None, "storage": args.storage, "job_id": args.job_id,
        "fit_trials": args.fit_trials, "tune_trials": args.tune_trials,
        "max_concurrent": args.max_concurrent, "gpus_per_trial": args.gpus_per_trial,
        "cpus_per_trial": args.cpus_per_trial, "accelerator_type": args.accelerator_type,
        "max_epochs": args.max_epochs, "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor, "tune": False if args.no_tune else None,
        "max_atoms": args.max_atoms, "sample": args.sample,
        "memory_budget": args.memory_budget, "seed": args.seed,
    }  # fmt: skip
    if args.spec is not None:
        try:
            stored = json.loads(args.spec.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--spec {args.spec}: {exc}") from None
        given = {**stored, **{k: v for k, v in given.items() if v is not None}}
    spec = build_job_spec(given)
    log.info("job %s: %s", spec.job_id, spec.job_dir)
    # Ray Tune prints its own tables to stdout: keep stdout for the answer (or the JSON)
    with contextlib.redirect_stdout(sys.stderr):
        result = optimize(spec, address=args.address, output=args.output)
    if args.json:
        _print_json(result.model_dump(mode="json"))
        return 0
    for stage, answer in result.stages.items():
        if not answer.feasible:
            print(f"{stage.value}: {answer.reason}")
            continue
        probe = answer.probe
        knobs = {k: answer.model[k] for k in ("hidden_channels", "num_layers", "num_rbf")}
        print(
            f"{stage.value}: {knobs} at batch {answer.batch_size}, "
            f"{answer.optimizer.get('name')} lr {answer.optimizer.get('lr'):.2e}, "
            f"{answer.scheduler.get('name')}"
            + (f"; {probe.throughput:.1f} samples/s, {probe.cycle_minutes:.1f} min per cycle"
               if probe and probe.throughput and probe.cycle_minutes else "")
        )  # fmt: skip
    print(f"job folder: {spec.job_dir} (profiles/, result.json, trials.csv, audit.md)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app
    from service.settings import Settings

    settings = Settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="info",
        access_log=settings.access_log,
    )  # fmt: skip
    return 0


def _schema(args: argparse.Namespace) -> int:
    from tuner import result_schema

    _print_json(result_schema())
    return 0


def _hardware(args: argparse.Namespace) -> int:
    from tuner import discover, format_size

    hardware = discover(args.memory_budget)
    if args.json:
        _print_json(hardware.to_json())
        return 0
    for d in hardware.devices:
        extra = f", compute {d.compute_capability}, driver {d.driver}" if d.kind == "cuda" else ""
        label = "budget" if d.kind == "cpu" else "memory"
        print(f"{d.name}: {d.model}, {label} {format_size(d.memory_bytes)}, bf16 {d.bf16}{extra}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from model import load_train_config, run_training

    flags = {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.output_dir": args.output,
    }
    config = load_train_config(
        args.overrides,
        profile=args.profile,
        config_dir=args.config_dir,
        settings={key: value for key, value in flags.items() if value is not None},
    )
    _log_to_file(Path(config.train.output_dir) / "train.log")
    report = run_training(config)
    if args.json:
        _print_json(report.to_json())
    else:
        last = report.epochs[-1]
        print(
            f"trained {report.parameters:,} parameters for {last.epoch} epochs on {report.device} "
            f"({report.precision}) in {report.seconds:.1f}s: val_rmse {last.val_rmse:.3f}, "
            f"val_pearson {last.val_pearson:.3f}\nrun folder: {report.run_dir}"
        )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from model import AtomPolicy, default_cache_dir, inspect_root

    policy = AtomPolicy(max_atoms=args.max_atoms, pocket_radius=args.pocket_radius)
    summaries = inspect_root(
        args.root,
        policy,
        cutoff=args.cutoff,
        max_num_neighbors=args.max_neighbors,
        labels_path=args.labels,
        cache_dir=None if args.no_cache else args.cache_dir or default_cache_dir(),
        strict=args.strict,
    )
    rows = [dataclasses.asdict(s) for s in summaries]
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'id':<12}{'protein':>8}{'ligand':>8}{'label':>8}{'edges':>8}  skipped")
    for r in rows:
        cells = [_cell(r[k]) for k in ("protein_atoms", "ligand_atoms", "label", "edges")]
        print(f"{r['id']:<12}" + "".join(f"{c:>8}" for c in cells) + f"  {r['skipped'] or ''}")
    usable = sum(r["skipped"] is None for r in rows)
    print(f"{usable} usable, {len(rows) - usable} skipped")
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    raise SystemExit(main())
