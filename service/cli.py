"""The ``stagetune`` command line.

Errors the user can fix (a bad key, file or value) end with ``stagetune: error: ...`` and exit
status 2; ``--json`` output goes to stdout and logs go to stderr, so the two never mix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
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
    train.add_argument("--epochs", type=int, help="number of epochs (train.epochs)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    train.add_argument("--output", help="folder for run folders and audit.md (train.output_dir)")
    train.add_argument("--config-dir", type=Path, help="the configs/ folder to compose from")
    train.add_argument("--json", action="store_true", help="print the report as JSON")
    train.set_defaults(handler=_train)

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
    inspect.add_argument("--max-atoms", type=int, default=600, help="crop size (default 600)")
    inspect.add_argument("--cutoff", type=float, default=5.0, help="radius in A (default 5.0)")
    inspect.add_argument("--max-neighbors", type=int, default=32, help="neighbour cap (32)")
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


def _setup_logging(verbose: bool, quiet: bool) -> None:
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_LOG_FORMAT)
    root = logging.getLogger()
    root.addHandler(console)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _train(args: argparse.Namespace) -> int:
    from model import load_train_config, run_training

    flags = {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.output_dir": args.output,
    }
    overrides = list(args.overrides)
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    config = load_train_config(overrides, profile=args.profile, config_dir=args.config_dir)
    log_file = Path(config.train.output_dir) / "train.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(_LOG_FORMAT)
    logging.getLogger().addHandler(file_handler)
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
