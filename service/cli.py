"""The ``stagetune`` command line: its parser, here; what each command does, in
``service.commands``.

Errors the user can fix (a bad key, file or value) end with ``stagetune: error: ...`` and exit
status 2; ``--json`` output goes to stdout and logs go to stderr, so the two never mix. The
flags of ``stagetune optimize`` are made from the fields of ``stagetune_api.JobSpec``, so a job
option has the same name, type and description on the command line, in a ``--spec`` file and in
the REST API.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, get_args

from service import commands, console
from stagetune_api import SWEEP_FIELDS, JobSpec


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands.get(getattr(args, "command", None) or "", parser)
        command.error(_unrecognized(unknown, command))
    _setup_logging(args.verbose, args.quiet)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("stagetune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if commands.fixable(exc):
            print(f"stagetune: error: {exc}", file=sys.stderr)
            return 2
        raise


class _Parser(argparse.ArgumentParser):
    """An error in one line, with where the usage is, rather than the usage block before it."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def _unrecognized(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    """What ``parser`` cannot take, each flag with the nearest it knows."""
    known = list(parser._option_string_actions)  # every flag of the command, with its aliases
    words = []
    for arg in unknown:
        flag = arg.partition("=")[0]
        near = difflib.get_close_matches(flag, known, n=1) if flag.startswith("-") else []
        words.append(f"{arg} (did you mean {near[0]}?)" if near else arg)
    return f"unrecognized arguments: {' '.join(words)}"


def _parser() -> _Parser:
    parser = _Parser(
        prog="stagetune",
        description="Stage-aware configurations for ViSNet binding-affinity models.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="more output: debug logs with their sources, Ray Tune's own tables, the trials' "
        "worker output and torch's profiler lines (otherwise in the job's log or left out)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_train, _probe, _optimize, _serve, _schema, _hardware, _data):
        add(sub)
    parser.commands = dict(sub.choices)
    return parser


def _train(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train the affinity model (-m: a sweep of every combination, on Ray Tune)",
        description="Train with configs/ composed with a profile and KEY=VALUE overrides, e.g. "
        "optimizer=sgd optimizer.lr=0.01 scheduler=onecycle model.hidden_channels=64. With -m, "
        "KEY=A,B,C lists values and every combination trains as one trial of a Ray Tune grid "
        "search (commas inside [], {} or quotes do not separate values), e.g. -m "
        "optimizer=adamw,sgd optimizer.lr=1e-4,1e-3.",
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="sweep: train every combination of the KEY=A,B,C lists as Ray Tune trials; a "
        "summary by validation loss at the end, every run in OUTPUT/sweeps/ID/sweep.csv",
    )
    train.add_argument("--data", help="synthetic, or a PDBbind-style root (data.source)")
    train.add_argument(
        "--profile", type=Path, help="a YAML or JSON profile (e.g. a run's config.json)"
    )
    train.add_argument("--epochs", type=_positive, help="number of epochs (train.epochs)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    train.add_argument("--output", help="folder for run folders and audit.md (train.output_dir)")
    train.add_argument(
        "--workers",
        type=_positive,
        help="data-parallel workers on Ray Train, one GPU each, else CPU processes (train.workers)",
    )

    train.add_argument("--config-dir", type=Path, help="the configs/ folder to compose from")
    train.add_argument("--json", action="store_true", help="print the report as JSON")
    train.add_argument(
        "--report", type=Path, help="also write the report as JSON to this file (whole, or not)"
    )
    train.add_argument(
        "--measure-memory",
        action="store_true",
        help="on a CPU, measure each step's peak memory (slower; a GPU always measures it)",
    )
    _sweep_flags(train)
    train.set_defaults(handler=commands.train)


def _sweep_flags(train: argparse.ArgumentParser) -> None:
    """The flags of a sweep (-m): its cluster, each trial's resources as ``optimize`` has them,
    and ASHA."""
    train.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="with -m or --workers: a Ray cluster to join (default: RAY_ADDRESS, else a new "
        "local instance)",
    )
    for name in SWEEP_FIELDS:
        _job_flag(train, name)
    train.add_argument(
        "--asha",
        action="store_true",
        help="with -m: stop runs early on validation loss (ASHA; --grace-period, "
        "--reduction-factor)",
    )


def _probe(sub: Any) -> None:
    probe = sub.add_parser(
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
    probe.add_argument(
        "--data", help="a PDBbind-style root (or synthetic): time real batches of it at the budget"
    )
    probe.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: a GPU)")
    probe.add_argument("--memory-budget", help="CPU budget, e.g. 4GiB (default: half of free)")
    probe.add_argument("--batch-size", type=_positive, help="measure this one batch size only")
    probe.add_argument("--stages", type=Path, help="stages file (configs/stages.yaml)")
    probe.add_argument("--log-file", type=Path, default=Path("runs/probe.log"))
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.set_defaults(handler=commands.probe)


def _optimize(sub: Any) -> None:
    optimize = sub.add_parser(
        "optimize",
        help="the best configuration per stage, searched with Ray Tune",
        description="For each stage: a fit search (HyperOpt over the architecture space, one "
        "probe per trial, dominated configurations pruned), the stage's policy, then a tune "
        "search (HyperOpt over training hyperparameters, ASHA early stopping). Options not "
        "given come from a --spec file, then the preset (configs/presets/).",
    )
    optimize.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="training config overrides"
    )
    optimize.add_argument(
        "--spec", type=Path, help="a JSON file of job options (the service writes one)"
    )
    for name in commands.job_flags():
        _job_flag(optimize, name)
    optimize.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="a Ray cluster to join (default: RAY_ADDRESS, else a new local instance)",
    )
    optimize.add_argument(
        "--ray-session",
        metavar="NAME",
        help="run only in this Ray session (the service passes its head's): a cluster at "
        "--address that is another session fails the job before anything runs",
    )
    optimize.add_argument("--output", type=Path, help="also copy the job's files here")
    optimize.add_argument("--no-tune", action="store_true", help="the hardware-only answer")
    optimize.add_argument(
        "--tune-table",
        action="store_true",
        help="also print Ray Tune's trial table every few seconds (in a submitted job's log)",
    )
    optimize.add_argument("--json", action="store_true", help="print result.json")
    optimize.set_defaults(handler=commands.optimize)


def _job_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """``--name`` for the ``JobSpec`` field ``name``: its type and its description."""
    info = JobSpec.model_fields[name]
    kinds = {a for a in get_args(info.annotation) or (info.annotation,) if a is not type(None)}
    positive = any(getattr(m, "gt", None) == 0 for m in info.metadata)
    kind: Callable[[str], Any]
    if name == "stages":
        kind = _stage_list
    elif int in kinds:
        kind = _positive if positive else int
    elif float in kinds:
        kind = float
    else:
        kind = str
    hint = " (comma-separated, e.g. prototyping,validation)" if name == "stages" else ""
    parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{info.description}{hint}")


def _serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="the REST service (POST /optimize)",
        description="Settings come from STAGETUNE_* variables (service/settings.py).",
    )
    serve.add_argument("--host", help="default 127.0.0.1 (STAGETUNE_HOST)")
    serve.add_argument("--port", type=int, help="default 8000 (STAGETUNE_PORT)")
    serve.set_defaults(handler=commands.serve)


def _schema(sub: Any) -> None:
    schema = sub.add_parser("schema", help="the JSON Schema of result.json")
    schema.set_defaults(handler=commands.schema)


def _hardware(sub: Any) -> None:
    hardware = sub.add_parser("hardware", help="the devices a probe can run on")
    hardware.add_argument("--memory-budget", help="CPU budget, e.g. 4GiB (default: half of free)")
    hardware.add_argument("--json", action="store_true", help="print JSON")
    hardware.set_defaults(handler=commands.hardware)


def _data(sub: Any) -> None:
    data = sub.add_parser("data", help="inspect data").add_subparsers(
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
    inspect.set_defaults(handler=commands.inspect)


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


class _ConsoleFormat(logging.Formatter):
    """One short line a message on the terminal: its time and words; a warning or an error says
    so. (Log files, and ``-v``, keep the full format with the logger's name.)"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp, _, message = text.partition(" ")
            text = f"{stamp} {record.levelname.lower()}: {message}"
        return text


def _setup_logging(verbose: bool, quiet: bool) -> None:
    root = logging.getLogger()
    while console.handlers:  # main() called again in one process: replace, do not pile up
        handler = console.handlers.pop()
        root.removeHandler(handler)
        handler.close()
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(console.LOG_FORMAT if verbose else _ConsoleFormat())
    console.handlers.append(terminal)
    root.addHandler(terminal)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if not verbose:
        # torch's profiler (kineto, which measures a step's memory on a CPU) prints two lines a
        # profiled step at its highest level (USDT, 5); above it, none. Read when torch starts
        # it, here and in the Ray workers this process starts (they inherit the environment).
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")


if __name__ == "__main__":
    raise SystemExit(main())
