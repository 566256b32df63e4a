"""The production answer across a node's GPUs: how many data-parallel workers, and the cycle at
that count, measured by a short distributed probe on Ray Train (never assumed linear).

A cluster whose nodes have G >= 2 GPUs trains production on G workers of one node, one GPU each,
each batch within the per-GPU atom budget the probe found on one GPU. The distributed probe runs
exactly that for a few steps: G workers placed together on one node, each training its batch of
each step of the plan every rank makes alike (``model._balance``), under
``DistributedDataParallel``; the steps after the first two are timed (synchronised on a GPU),
and the median is the step at G workers. On a cluster with one GPU a node, or none, the answer is
one worker, and says why.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from model import Batching, Ranks, TrainConfig, Trainer, load_dataset
from stagetune_api import Stage, Workers
from tuner._fit import FitOutcome, knobs_key
from tuner._folder import JobFolder, write_json
from tuner._stages import merge_tree
from tuner.policies import StageChoice

log = logging.getLogger(__name__)

WARMUP_STEPS = 2  # untimed: the first steps allocate, compile and fill the buckets
TIMED_STEPS = 8


def stage_workers(
    folder: JobFolder,
    stage: Stage,
    choice: StageChoice,
    fit: FitOutcome,
    base: TrainConfig,
    cycle_batches: int,
) -> Workers:
    """The stage's ``Workers``: saved before (a resumed job does not probe again), or probed
    now and saved (not when the probe failed: the job run again tries it again). The probe
    trains the chosen model at its per-GPU atom budget with the job's own optimizer (the
    tuned one may differ; a step's time hardly depends on it)."""
    path = folder.workers(stage)
    if path.is_file():
        log.info("%s-workers: finished before, not run again", stage.value)
        return Workers.model_validate_json(path.read_text())
    atoms = choice.on_data.max_atoms_per_batch if choice.on_data else None
    train = {"batch_size": choice.batch_size, "max_atoms_per_batch": atoms}
    config = TrainConfig.model_validate(
        merge_tree(base.to_dict(), {"model": choice.knobs, "train": train})
    )
    where = fit.measured_on.get(knobs_key(choice.knobs), {})
    on_cuda = str(where.get("device") or "").startswith("cuda")
    try:
        workers = production_workers(config, on_cuda, cycle_batches, folder.experiments)
    except (ray.train.TrainingFailedError, OSError) as exc:
        text = str(exc).strip()
        why = text.splitlines()[-1] if text else type(exc).__name__
        log.warning("%s: the distributed probe failed (%s): one worker", stage.value, why)
        return Workers(
            count=1,
            reason=f"the distributed probe failed ({why}): one process trains it",
            gpus_per_node=gpus_per_node(),
            atoms_per_worker=atoms,
        )
    log.info("%s: %s", stage.value, workers.words())
    write_json(path, workers.model_dump(mode="json"))
    return workers


def gpus_per_node() -> int:
    """The most GPUs one alive node of the cluster has."""
    return max(
        (int(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0
    )


def production_workers(
    config: TrainConfig, on_cuda: bool, cycle_batches: int, scratch: Path
) -> Workers:
    """The workers that train ``config`` (the production profile, its per-GPU atom budget in
    ``train.max_atoms_per_batch``): one per GPU of a node, with their step measured there, or
    one when no node has two. ``on_cuda``: whether the answer was measured on a GPU (else the
    GPUs are declared, not visible, and the probe's workers train on CPUs with gloo).
    ``scratch``: a folder rank 0 writes its times to (the job's, shared by the nodes)."""
    gpus = gpus_per_node()
    atoms = config.train.max_atoms_per_batch
    if gpus < 2:
        why = "no node has a GPU" if gpus == 0 else "each node has one GPU"
        return Workers(
            count=1,
            reason=f"{why}: one process trains it",
            gpus_per_node=gpus,
            atoms_per_worker=atoms,
        )
    figures = _probe(config, gpus, on_cuda, scratch)
    step = statistics.median(figures["seconds"])
    return Workers(
        count=gpus,
        reason=f"a node has {gpus} GPUs: {gpus} workers, one GPU each, each batch within the "
        "per-GPU atom budget",
        gpus_per_node=gpus,
        atoms_per_worker=atoms,
        step_seconds=step,
        cycle_minutes=cycle_batches * step / 60.0,
        throughput=statistics.mean(figures["complexes"]) / step,
        atom_imbalance=statistics.mean(figures["imbalance"]),
        timed_steps=len(figures["seconds"]),
        device="cuda" if on_cuda else "cpu",
    )


def _probe(config: TrainConfig, workers: int, on_cuda: bool, scratch: Path) -> dict[str, Any]:
    """``workers`` Ray Train workers of one node (``STRICT_PACK``) train ``config`` for a few
    steps; rank 0's times, each step's complexes (all ranks') and atom imbalance."""
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "workers-probe.json"
    out.unlink(missing_ok=True)
    log.info("production: timing %d workers, one GPU each, with Ray Train", workers)
    trainer = ray.train.torch.TorchTrainer(
        _worker,
        train_loop_config={"config": config.to_dict(), "cuda": on_cuda, "out": str(out)},
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if on_cuda else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers,
            use_gpu=True,
            resources_per_worker={"GPU": 1},
            placement_strategy="STRICT_PACK",
        ),
        run_config=ray.train.RunConfig(name="workers-probe", storage_path=str(scratch)),
    )
    trainer.fit()
    return dict(json.loads(out.read_text()))


def _worker(loop_config: dict[str, Any]) -> None:
    """One worker of the probe: ``WARMUP_STEPS`` then ``TIMED_STEPS`` steps of its batches (as
    many epochs as that takes); rank 0 writes the times."""
    config = TrainConfig.model_validate(loop_config["config"])
    device = ray.train.torch.get_device() if loop_config["cuda"] else torch.device("cpu")
    ranks = Ranks.current()
    complexes = list(load_dataset(config).train)
    batching = Batching(config.train, ranks)
    trainer = Trainer(config, device, batching.steps_per_epoch(complexes))
    trainer.distribute()
    seconds: list[float] = []
    counts: list[int] = []
    imbalance: list[float] = []
    taken = 0
    while len(seconds) < TIMED_STEPS:
        loader = batching.train_loader(complexes)
        for step, batch in enumerate(loader):
            if len(seconds) == TIMED_STEPS:
                break
            _synchronize(device)
            t0 = time.perf_counter()
            trainer.train_step(batch)
            _synchronize(device)
            taken += 1
            if taken > WARMUP_STEPS:
                seconds.append(time.perf_counter() - t0)
                counts.append(batching.complexes[step])
                imbalance.append(batching.imbalance[step])
    if ranks.rank == 0:
        text = json.dumps({"seconds": seconds, "complexes": counts, "imbalance": imbalance})
        Path(loop_config["out"]).write_text(text)
    ray.train.report({"timed_steps": len(seconds)})


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
