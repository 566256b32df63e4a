"""A training step of the default model on the worst-case probe sample, on this machine's CPU.

Default configs/train.yaml model (6 layers, 128 channels), AdamW, fp32; every complex has 600
atoms unless overridden. Each batch size runs in its own process: one warm-up step, then timed
steps.

    python bench/train_step.py [--batches 1,4,16] [--repeats 3] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import in_subprocess, mib, timed


def one_case(
    batch_size: int, repeats: int, overrides: list[str], glibc_default: bool
) -> dict[str, object]:
    import torch
    from torch_geometric.data import Batch

    import model._train
    from model import Trainer, load_train_config, synthetic_complexes

    if glibc_default:  # measure what the trainer's malloc setting saves
        model._train.keep_freed_memory = lambda: False

    config = load_train_config(["optimizer.log_config=false", *overrides])
    batch = Batch.from_data_list(
        synthetic_complexes(batch_size, config.data.max_atoms, seed=0, worst_case=True)
    )
    trainer = Trainer(config, torch.device("cpu"), steps_per_epoch=100)
    stats = timed(lambda: trainer.train_step(batch), repeats)
    return {
        "batch_size": batch_size,
        "atoms": batch.num_nodes,
        "parameters": trainer.parameters,
        "threads": torch.get_num_threads(),
        **stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", type=int)
    parser.add_argument(
        "--glibc-default", action="store_true", help="leave glibc's mmap threshold alone"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.repeats, args.overrides, args.glibc_default)))
        return
    print("| batch | atoms | step (median) | min-max | samples/s | peak MiB | MiB per sample |")
    last: dict[str, object] = {}
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for b in [int(x) for x in args.batches.split(",")]:
        flags = ["--glibc-default"] if args.glibc_default else []
        r = in_subprocess(
            __file__, "--case", str(b), "--repeats", str(args.repeats), *flags, *args.overrides
        )
        if "error" in r:
            print(f"| {b} | | {r['error']} | | | | |", flush=True)
            continue
        last = r
        print(
            f"| {b} | {r['atoms']} | {r['median_s']:.2f} s | {r['min_s']:.2f}-{r['max_s']:.2f} s | "
            f"{b / r['median_s']:.2f} | {mib(r['peak_bytes'])} | {mib(r['peak_bytes'] / b)} |",
            flush=True,
        )
    if last:
        print(f"\n{last['parameters']:,} parameters, {last['threads']} torch threads")


if __name__ == "__main__":
    main()
