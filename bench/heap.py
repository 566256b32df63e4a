"""How much more memory the C heap takes from the kernel than a training step's live tensors.

A CPU training step's live bytes are what torch's profiler counts (``Trainer.step_peak``), but
glibc's heap, with freed memory kept for reuse (``keep_freed_memory``), grows past them: freed
blocks are split and pinned by the small objects each step leaves behind, so a step's large
tensors no longer fit in the holes and the heap grows, a little more over every cycle. The probe
predicts a CPU run's footprint as the bytes it holds plus ``CPU_HEAP_OVERHEAD`` times a step's
live growth; this benchmark measures that factor.

For each case, in fresh processes:

- live: one profiled step (after one unprofiled step), its peak less the bytes held before it;
- heap: ``--steps`` unprofiled training steps, the growth of glibc's heap (``mallinfo2``: the
  main arena and mmap'ed blocks) over the bytes held before the first, after each of a few steps;
  the kernel's peak resident set over the same steps beside it.

    python bench/heap.py [--steps 450]
"""

from __future__ import annotations

import argparse
import json

from _measure import in_subprocess, mib

CASES = [  # channels, layers, radial functions, atoms per complex, batch
    (16, 2, 8, 80, 40),
    (32, 2, 16, 200, 8),
    (64, 4, 32, 120, 6),
]
CHECKPOINTS = (1, 3, 10, 50, 150, 450)


def _overrides(case: tuple[int, ...]) -> list[str]:
    channels, layers, rbf, atoms, _ = case
    return [
        f"model.hidden_channels={channels}",
        f"model.num_layers={layers}",
        f"model.num_rbf={rbf}",
        "model.num_heads=2",
        f"data.max_atoms={atoms}",
        "optimizer.log_config=false",
    ]


def _trainer(case: tuple[int, ...]):
    import torch

    from model import Trainer, load_train_config
    from tuner import ProbeSample

    *_, atoms, batch_size = case
    config = load_train_config(_overrides(case))
    sample = ProbeSample.synthetic(atoms, config.model.cutoff, config.model.max_num_neighbors)
    return Trainer(config, torch.device("cpu"), 450), sample.batch(batch_size)


def live(case: tuple[int, ...]) -> dict[str, int]:
    from model import held_bytes

    trainer, batch = _trainer(case)
    trainer.train_step(batch)
    held = held_bytes(trainer.model, {trainer.optimizer}, batch)
    return {"transient_bytes": trainer.step_peak(batch) - held}


def heap(case: tuple[int, ...], steps: int) -> dict[str, object]:
    import gc

    from _measure import peak_since_reset, reset_peak

    from model import heap_bytes

    trainer, batch = _trainer(case)
    gc.collect()
    start = heap_bytes()
    base = reset_peak()
    growth = {}
    for step in range(1, steps + 1):
        trainer.train_step(batch)
        if step in CHECKPOINTS or step == steps:
            growth[step] = {"heap": heap_bytes() - start, "rss": peak_since_reset() - base}
    return {"growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, index = args.case.split(":")
        case = CASES[int(index)]
        out = live(case) if kind == "live" else heap(case, args.steps)
        print(json.dumps(out))
        return
    shown = [s for s in CHECKPOINTS if s <= args.steps]
    cols = " | ".join(f"after {s}" for s in shown)
    print(
        f"| model | atoms | batch | live growth MiB | heap / live growth: {cols} "
        "| kernel peak RSS / live growth, last |"
    )
    print("|---|---:|---:|---:|" + "---:|" * len(shown) + "---:|")
    for i, (channels, layers, _, atoms, batch_size) in enumerate(CASES):
        transient = in_subprocess(__file__, "--case", f"live:{i}")["transient_bytes"]
        result = in_subprocess(__file__, "--case", f"heap:{i}", "--steps", str(args.steps))
        growth = {int(k): v for k, v in result["growth"].items()}
        ratios = " | ".join(f"{growth[s]['heap'] / transient:.2f}" for s in shown)
        last = growth[max(growth)]["rss"] / transient
        name = f"{channels} ch x {layers} layers"
        print(f"| {name} | {atoms} | {batch_size} | {mib(transient)} | {ratios} | {last:.2f} |")


if __name__ == "__main__":
    main()
