"""The production answer across a node's GPUs: how many data-parallel workers, and the cycle at
that count, measured by a short distributed probe on Ray Train (never assumed linear).

A cluster whose nodes have G >= 2 GPUs trains production on G workers of one node, one GPU each,
each batch within the per-GPU atom budget the probe found on one GPU. The distributed probe runs
exactly that for a few steps: G workers placed together on one node, each training its batch of
each step of the plan every rank makes alike (``model._balance``), under
``DistributedDataParallel``; the steps after the first two are timed (synchronised on a GPU),
and the median is the step at G workers. On a cluster with one GPU a node, or none, the answer is
one worker, and says why.

Each GPU holds what the one-GPU probe measured, and what ``DistributedDataParallel`` adds: its
gradient buckets (a second copy of the gradients, which the all-reduce runs on) and the
all-reduce's buffers. The distributed probe measures that on every worker before it times
anything, with the probe's own instrument, on the worker's first batch: a step without DDP, then
two under it (the second rebuilds the buckets in the order the gradients came), the difference
of their peaks, and on the CPU the bytes DDP holds between steps (the heap's growth as it is
built, at least the buckets' bytes DDP reports; on a GPU the peak counts them). The most of
any worker is added to the one-GPU probe's footprint at the budget; where that passes the
limit, the budget is lowered by as many atoms as the probe's memory line says the excess takes
(``GpuMemory.under_ddp``), and the steps are timed at the lowered budget, which the profile then
trains with.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from model import Batching, Ranks, TrainConfig, Trainer, load_dataset
from stagetune_api import ProbeResult, Stage, Workers
from tuner._experiment import quiet_profiler
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
    probe = next((c.probe for c in fit.candidates if c.knobs == choice.knobs and c.probe), None)
    batch = choice.batch_size or 1
    memory = GpuMemory.of(probe, atoms, batch) if probe is not None else None
    try:
        workers = production_workers(config, on_cuda, cycle_batches, folder.experiments, memory)
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


@dataclass(frozen=True)
class GpuMemory:
    """What the one-GPU probe says of a worker's batch: the footprint of a step at the budget
    (``units``: atoms, or complexes where there is no atom budget), what each unit of it takes
    (on the probe's memory line, as a footprint), and the limit."""

    units: int
    atoms: bool  # whether ``units`` counts atoms (else complexes)
    peak_bytes: int
    bytes_per_unit: float
    limit_bytes: int
    heap_overhead: float

    @classmethod
    def of(cls, probe: ProbeResult, atoms: int | None, batch: int) -> GpuMemory | None:
        """At an atom budget of ``atoms`` (else ``batch`` complexes) of ``probe``'s model; None
        where the probe has no memory line (a result saved before it had one)."""
        over = probe.heap_overhead
        if atoms is not None:
            budget, at_budget = probe.max_atoms_per_batch, probe.atom_peak_bytes
            if budget is None or at_budget is None or probe.bytes_per_atom is None:
                return None
            per = over * probe.bytes_per_atom
            peak = at_budget - round(per * (budget - atoms))
            return cls(atoms, True, peak, per, probe.limit_bytes, over)
        if probe.peak_bytes is None or probe.bytes_per_sample is None:
            return None
        per = over * probe.bytes_per_sample
        peak = probe.peak_bytes - round(per * (probe.max_batch_size - batch))
        return cls(batch, False, peak, per, probe.limit_bytes, over)

    def under_ddp(self, ddp_bytes: int) -> tuple[int, int]:
        """The budget whose footprint, with the ``ddp_bytes`` DDP adds to a step, stays within
        the limit (this budget where it already does), and that footprint. What DDP adds grows
        the heap as a step's growth does (``heap_overhead``)."""
        peak = self.peak_bytes + round(self.heap_overhead * ddp_bytes)
        if peak <= self.limit_bytes:
            return self.units, peak
        fewer = math.ceil((peak - self.limit_bytes) / self.bytes_per_unit)
        return self.units - fewer, peak - math.ceil(fewer * self.bytes_per_unit)


def production_workers(
    config: TrainConfig,
    on_cuda: bool,
    cycle_batches: int,
    scratch: Path,
    memory: GpuMemory | None = None,
) -> Workers:
    """The workers that train ``config`` (the production profile, its per-GPU atom budget in
    ``train.max_atoms_per_batch``): one per GPU of a node, with their step measured there, or
    one when no node has two. ``on_cuda``: whether the answer was measured on a GPU (else the
    GPUs are declared, not visible, and the probe's workers train on CPUs with gloo).
    ``scratch``: a folder rank 0 writes its times to (the job's, shared by the nodes).
    ``memory``: the one-GPU probe's figures at the budget, which the memory DDP adds is checked
    against (the budget lowered where it would pass the limit)."""
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
    figures = _probe(config, gpus, on_cuda, scratch, memory)
    step = statistics.median(figures["seconds"])
    units = figures["units"]
    on_atoms = memory.atoms if memory else atoms is not None
    lowered = ""
    if memory is not None and units is not None and units < memory.units:
        what = "atoms" if memory.atoms else "complexes"
        lowered = f" (lowered from {memory.units:,} to {units:,} {what} for what DDP adds)"
    return Workers(
        count=gpus,
        reason=f"a node has {gpus} GPUs: {gpus} workers, one GPU each, each batch within the "
        f"per-GPU budget with what DDP adds{lowered}",
        gpus_per_node=gpus,
        atoms_per_worker=units if on_atoms and units is not None else atoms,
        batch_per_worker=units if not on_atoms else None,
        ddp_bytes=figures["ddp_bytes"],
        peak_bytes=figures["peak_bytes"],
        limit_bytes=memory.limit_bytes if memory else None,
        step_seconds=step,
        cycle_minutes=cycle_batches * step / 60.0,
        throughput=statistics.mean(figures["complexes"]) / step,
        atom_imbalance=statistics.mean(figures["imbalance"]),
        timed_steps=len(figures["seconds"]),
        device="cuda" if on_cuda else "cpu",
    )


def _probe(
    config: TrainConfig, workers: int, on_cuda: bool, scratch: Path, memory: GpuMemory | None
) -> dict[str, Any]:
    """``workers`` Ray Train workers of one node (``STRICT_PACK``) train ``config`` for a few
    steps; rank 0's figures (``_worker``)."""
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "workers-probe.json"
    out.unlink(missing_ok=True)
    log.info("production: timing %d workers, one GPU each, with Ray Train", workers)
    loop = {
        "config": config.to_dict(),
        "cuda": on_cuda,
        "out": str(out),
        "memory": asdict(memory) if memory else None,
    }
    trainer = ray.train.torch.TorchTrainer(
        _worker,
        train_loop_config=loop,
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
    """One worker of the probe: what DDP adds to its step (``Trainer.distribute_measured``),
    the budget lowered where that passes the limit, then ``WARMUP_STEPS`` and ``TIMED_STEPS``
    steps of its batches at the budget; rank 0 writes the figures."""
    quiet_profiler()  # the CPU's peak is read from the profiler's allocation events
    config = TrainConfig.model_validate(loop_config["config"])
    device = ray.train.torch.get_device() if loop_config["cuda"] else torch.device("cpu")
    ranks = Ranks.current()
    complexes = list(load_dataset(config).train)
    batching = Batching(config.train, ranks)
    trainer = Trainer(config, device, batching.steps_per_epoch(complexes))
    ddp_bytes = trainer.distribute_measured(next(iter(batching.train_loader(complexes))))
    units, peak = None, None
    if loop_config["memory"] is not None:
        memory = GpuMemory(**loop_config["memory"])
        units, peak = memory.under_ddp(ddp_bytes)
        if units < 1:
            raise ValueError(f"DDP adds {ddp_bytes:,} bytes a step: no batch fits the limit")
        train = {"max_atoms_per_batch" if memory.atoms else "batch_size": units}
        config = TrainConfig.model_validate(merge_tree(config.to_dict(), {"train": train}))
        batching = Batching(config.train, ranks)
        batching.check(complexes)
    figures = _timed_steps(trainer, batching, complexes, device)
    if ranks.rank == 0:
        memory_figures = {"ddp_bytes": ddp_bytes, "units": units, "peak_bytes": peak}
        Path(loop_config["out"]).write_text(json.dumps({**figures, **memory_figures}))
    ray.train.report({"timed_steps": len(figures["seconds"])})


def _timed_steps(
    trainer: Trainer, batching: Batching, complexes: list[Any], device: torch.device
) -> dict[str, list[Any]]:
    """``WARMUP_STEPS`` then ``TIMED_STEPS`` steps of this worker's batches (as many epochs as
    that takes): the timed steps' seconds, complexes (all ranks'), atom imbalance and fullest
    batch (in what the budget counts)."""
    figures: dict[str, list[Any]] = {"seconds": [], "complexes": [], "imbalance": [], "fullest": []}
    taken = 0
    while len(figures["seconds"]) < TIMED_STEPS:
        for step, batch in enumerate(batching.train_loader(complexes)):
            if len(figures["seconds"]) == TIMED_STEPS:
                break
            _synchronize(device)
            t0 = time.perf_counter()
            trainer.train_step(batch)
            _synchronize(device)
            taken += 1
            if taken > WARMUP_STEPS:
                figures["seconds"].append(time.perf_counter() - t0)
                figures["complexes"].append(batching.complexes[step])
                figures["imbalance"].append(batching.imbalance[step])
                figures["fullest"].append(batching.fullest[step])
    return figures


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
