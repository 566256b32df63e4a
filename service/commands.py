"""What each ``stagetune`` command does, given its parsed arguments (``service.cli`` parses them).

Heavy imports (torch, Ray) happen inside the commands that need them, so ``stagetune --help`` and
``stagetune serve`` start quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from service.answers import answer_words, say_probe, say_trained
from service.console import log_to_file, print_json
from service.drivers import record_driver
from service.preflight import BadRequest, check_job, check_run
from stagetune_api import SWEEP_FIELDS, JobFiles, JobSpec, RunFiles, limit_words, override_problem

log = logging.getLogger("stagetune")

#: Fields of a job spec with no flag of their own: the positional KEY=VALUE overrides, the
#: per-stage spaces (a preset's or a --spec file's), and tune (the --no-tune switch).
NO_FLAG = ("overrides", "space", "tune")


def fixable(exc: Exception) -> bool:
    """Whether ``exc`` is an error the user can fix (a bad key, file or value): it is said in
    one line, without a traceback."""
    if isinstance(exc, BadRequest):
        return True
    from model import StagetuneError

    return isinstance(exc, StagetuneError)


def job_flags() -> list[str]:
    """The fields of ``JobSpec`` that ``stagetune optimize`` takes as ``--flags``."""
    return [name for name in JobSpec.model_fields if name not in NO_FLAG]


def probe(args: argparse.Namespace) -> int:
    from model import load_train_config
    from tuner import Probe, ProbeSample, device_for, discover, format_size, load_stages

    log_to_file(args.log_file)
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
                print_json(m.to_json())
            else:
                state = "fits" if m.fits else "out of memory" if m.oom else "over the limit"
                peak = "-" if m.peak_bytes is None else format_size(probe.footprint(m.peak_bytes))
                print(
                    f"batch {m.batch_size}: {state}, footprint {peak} of "
                    f"{limit_words(probe.limit_bytes, stages.memory_fraction)}, "
                    f"step {m.median_seconds} s"
                )
            return 0
        result = probe.find_max_batch(stages.max_batch_size)
        if args.data is not None and result.max_atoms_per_batch is not None:
            result = _on_data(probe, result, args.data, max_atoms, args.overrides)
    if args.json:
        print_json(result.to_json())
    elif result.fits:
        say_probe(result, stages.cycle_batches, stages.memory_fraction)
    else:
        print(f"does not fit at batch 1 on {result.device} ({format_size(result.limit_bytes)})")
    return 0


def _on_data(probe: Any, result: Any, root: str, max_atoms: int, overrides: list[str]) -> Any:
    """The probe's answer with its figures on the training complexes of ``root``."""
    from model import load_dataset, load_train_config
    from tuner import on_data

    config = load_train_config(
        [*overrides, "optimizer.log_config=false"],
        settings={"data.source": root, "data.max_atoms": max_atoms},
    )
    complexes = load_dataset(config).train
    figures = on_data(probe, complexes, result, seed=config.train.seed)
    return dataclasses.replace(result, data=figures, probe_steps=probe.steps)


#: ``stagetune optimize``'s exit status when the job finished but a stage has no answer
INFEASIBLE = 3


def optimize(args: argparse.Namespace) -> int:
    """Run a job and print each stage's answer; exit status 0 when every stage has one,
    ``INFEASIBLE`` (3) when one has none (the job's files say why), 130 after Ctrl-C."""
    given = {name: getattr(args, name) for name in job_flags()}
    given["overrides"] = args.overrides or None
    given["tune"] = False if args.no_tune else None
    check_job(given, args.spec)  # before torch and Ray start: a bad preset or folder, at once
    from tuner import build_job_spec
    from tuner import optimize as run_job

    spec = build_job_spec(given, spec_file=args.spec)
    record_driver(spec.job_dir)
    try:
        # Ray Tune prints its own tables to stdout: keep stdout for the answer (or the JSON)
        with contextlib.redirect_stdout(sys.stderr):
            result = run_job(
                spec,
                address=args.address,
                output=args.output,
                verbose=args.verbose,
                session=args.ray_session,
                tune_table=args.tune_table,
            )
    except KeyboardInterrupt:
        _say_resume(spec)
        return 130
    status = 0 if all(a.feasible for a in result.stages.values()) else INFEASIBLE
    if args.json:
        print_json(result.model_dump(mode="json"))
        return status
    for stage, answer in result.stages.items():
        print(f"{stage.value}: {answer_words(answer)}")
        if answer.validation is not None and answer.validation.verdict_words:
            print(f"  tune search: {answer.validation.verdict_words}")
        if answer.workers is not None:
            print(f"  workers: {answer.workers.words()}")
    print(f"job folder: {spec.job_dir} (profiles/, result.json, trials.csv, audit.md)")
    for note in result.provenance.reproducibility:
        print(f"not repeatable: {note}")
    return status


def _say_resume(spec: JobSpec) -> None:
    """How to go on after Ctrl-C: what is finished is kept, and the same job id resumes it."""
    if not JobFiles(spec.job_dir).job_json.is_file():
        print("stagetune: interrupted before the job started; nothing was kept", file=sys.stderr)
        return
    print(
        f"stagetune: interrupted; job {spec.job_id} keeps what it finished in {spec.job_dir}. "
        f"To resume it, run the same command with --job-id {spec.job_id}",
        file=sys.stderr,
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app
    from service.settings import Settings

    settings = Settings()
    # a thread validating a large request holds the GIL for up to this long before the event
    # loop may take it: 1 ms rather than 5 keeps every other request answered promptly
    sys.setswitchinterval(0.001)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        access_log=settings.access_log,
    )
    return 0


def schema(args: argparse.Namespace) -> int:
    from tuner import result_schema

    print_json(result_schema())
    return 0


def hardware(args: argparse.Namespace) -> int:
    from tuner import discover, format_size

    hardware = discover(args.memory_budget)
    if args.json:
        print_json(hardware.to_json())
        return 0
    for d in hardware.devices:
        extra = f", compute {d.compute_capability}, driver {d.driver}" if d.kind == "cuda" else ""
        label = "budget" if d.kind == "cpu" else "memory"
        print(f"{d.name}: {d.model}, {label} {format_size(d.memory_bytes)}, bf16 {d.bf16}{extra}")
    return 0


def train(args: argparse.Namespace) -> int:
    check_run(args.profile, args.data)  # before torch starts: a missing file or folder, at once
    from model import ConfigError, load_train_config, run_training

    _check_override_values(args.overrides or [], sweep=args.multirun)
    if args.multirun:
        return _sweep(args)
    given = [f"--{n.replace('_', '-')}" for n in SWEEP_FIELDS if getattr(args, n) is not None]
    if given or args.asha:
        raise ConfigError(f"{', '.join(given or ['--asha'])}: only a sweep takes it; add -m")
    try:
        config = load_train_config(
            args.overrides,
            profile=args.profile,
            config_dir=args.config_dir,
            settings=_train_settings(args),
        )
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_sweep_hint(args.overrides)}", exc.problems) from None
    log_to_file(RunFiles(config.train.output_dir).log)
    if args.report is not None:
        record_driver(Path(args.report).parent)
    from tqdm.contrib.logging import logging_redirect_tqdm

    if config.train.workers > 1:  # data-parallel on Ray Train: the workers' logs are Ray's
        if args.measure_memory:
            raise ConfigError("--measure-memory: a run of one worker only; drop --workers")
        from tuner import train_on_workers

        report = train_on_workers(config, address=args.address, verbose=args.verbose)
    else:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            report = run_training(
                config, measure_memory=args.measure_memory, progress=sys.stderr.isatty()
            )
    if args.report is not None:  # whole, or not at all: the service reads it as the job's result
        from tuner import write_json

        write_json(args.report, report.to_json())
    if args.json:
        print_json(report.to_json())
    elif args.report is None:
        say_trained(report)
    return 0


def _train_settings(args: argparse.Namespace) -> dict[str, Any]:
    flags = {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.output_dir": args.output,
        "train.workers": args.workers,
    }
    return {key: value for key, value in flags.items() if value is not None}


def _sweep_hint(overrides: list[str]) -> str:
    """A hint when an override lists values (KEY=A,B) and -m is missing."""
    from model import split_sweep

    listed = [text for text in overrides if "=" in text and len(split_sweep(text)[1]) > 1]
    return f"\n(to sweep {', '.join(listed)}, add -m)" if listed else ""


def _check_override_values(overrides: list[str], sweep: bool) -> None:
    """Refuse an override whose value no training may take, as a job's overrides are refused
    (``stagetune_api.override_problem``: anchors and aliases, deep nesting, numbers that are
    not finite or beyond the accepted range); in a sweep, each listed value on its own."""
    from model import ConfigError, split_sweep

    problems = []
    for text in overrides:
        values = split_sweep(text)[1] if sweep and "=" in text else [text.partition("=")[2]]
        key = text.partition("=")[0]
        problems += [why for value in values if (why := override_problem(f"{key}={value}"))]
    if problems:
        raise ConfigError("\n".join(problems))


def _sweep(args: argparse.Namespace) -> int:
    """``stagetune train -m``: every combination of the listed values, as Ray Tune trials."""
    from model import ConfigError
    from tuner import SweepOptions, plan_sweep, run_sweep, summary_table

    if args.report is not None:
        raise ConfigError(
            "--report is for one run: a sweep writes sweep.csv (and each run its metrics.json)"
        )
    plan = plan_sweep(args.overrides, args.profile, args.config_dir, _train_settings(args))
    options = SweepOptions.of(
        {name: getattr(args, name) for name in SWEEP_FIELDS},
        asha=args.asha,
        measure_memory=args.measure_memory,
    )
    log.info("sweep of %d runs over %s", len(plan.runs), ", ".join(plan.keys) or "no list")
    # Ray Tune prints its own tables to stdout: keep stdout for the summary (or the JSON)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_sweep(plan, options, address=args.address, verbose=args.verbose)
    if args.json:
        print_json(
            {
                "sweep_id": result.sweep_id,
                "sweep_csv": str(result.sweep_csv),
                "runs": result.ranked(),
            }
        )
        return 0
    print(summary_table(result))
    print(f"sweep.csv: {result.sweep_csv}")
    return 0


def inspect(args: argparse.Namespace) -> int:
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
        print_json(rows)
        return 0
    print(f"{'id':<12}{'protein':>8}{'ligand':>8}{'label':>8}{'edges':>8}{'cropped':>14}  skipped")
    for r in rows:
        cells = [_cell(r[k]) for k in ("protein_atoms", "ligand_atoms", "label", "edges")]
        cropped = f"from {r['cropped_from']:,}" if r["cropped_from"] else ""
        line = f"{r['id']:<12}" + "".join(f"{c:>8}" for c in cells) + f"{cropped:>14}"
        print(f"{line}  {r['skipped'] or ''}")
    usable = sum(r["skipped"] is None for r in rows)
    crops = sum(bool(r["cropped_from"]) for r in rows)
    print(f"{usable} usable, {len(rows) - usable} skipped")
    if crops:
        print(
            f"{crops} cropped to --max-atoms {args.max_atoms}: the pocket atoms farthest from "
            "the ligand left out (stagetune optimize raises max_atoms to the largest complex)"
        )
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
