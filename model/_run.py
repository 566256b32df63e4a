"""A whole training run: data, epochs, evaluation, the audit entry and the exported
configuration, around ``Trainer``'s steps. ``stagetune train`` runs it, and so does every
training trial; progress reaches the caller through the ``on_epoch`` callback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from model._audit import append_audit_entry, export_config
from model._balance import Ranks
from model._batching import Batching
from model._config import LoopSpec, TrainConfig
from model._dataset import Dataset, load_dataset
from model._train import Trainer, resolve_device
from stagetune_api import EpochFigures, RunFiles, SkippedComplex, TrainRunReport

log = logging.getLogger(__name__)


def run_training(
    config: TrainConfig,
    on_epoch: Callable[[EpochFigures], None] | None = None,
    dataset: Dataset | None = None,
    measure_memory: bool = False,
    progress: bool = False,
) -> TrainRunReport:
    """Train for ``config.train.epochs`` epochs; write the audit entry and the run's files.

    The run's folder, ``<output_dir>/<config hash[:12]>/``, receives ``config.json`` (or where
    ``optimizer.export_json`` says; ``stagetune train --profile`` replays it), ``metrics.json``
    and ``model.pt``. ``<output_dir>/audit.md`` receives one entry per run, failed runs included.

    Each epoch reports its training steps, their median time, the complexes per step and the
    peak memory of its steps: on a GPU always; on the CPU with ``measure_memory`` (each step is
    then profiled, which slows it). ``progress`` shows a progress bar on stderr (tqdm: steps,
    epoch, loss, time left). The run's folder is made once the training has finished, so a run
    that fails or is interrupted leaves none.
    """
    started = time.time()
    digest = config.digest()
    files = RunFiles(config.train.output_dir)
    run_dir = files.run_dir(digest)
    device = resolve_device(config.train.device)
    ranks = Ranks.current()
    if ranks.rank > 0:  # one of several data-parallel processes: rank 0 keeps the run's files
        data = dataset or load_dataset(config)
        return _train(config, device, data, on_epoch, None, measure_memory, ranks=ranks)
    if config.optimizer.log_config:  # a debug line: ``stagetune -v`` shows it; config.json has it
        log.debug("configuration %s:\n%s", digest[:12], json.dumps(config.to_dict(), indent=2))
    report: TrainRunReport | None = None
    error: BaseException | None = None
    try:
        files.path.mkdir(parents=True, exist_ok=True)
        data = dataset or load_dataset(config)
        report = _train(config, device, data, on_epoch, run_dir, measure_memory, progress, ranks)
        report.seconds = time.time() - started
        export_config(config, run_dir)
        (run_dir / RunFiles.METRICS).write_text(json.dumps(report.to_json(), indent=2) + "\n")
        return report
    except BaseException as exc:
        error = exc
        raise
    finally:
        append_audit_entry(files.audit_md, config, run_dir, report, error)


def _train(
    config: TrainConfig,
    device: torch.device,
    data: Dataset,
    on_epoch: Callable[[EpochFigures], None] | None,
    run_dir: Path | None,
    measure_memory: bool = False,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> TrainRunReport:
    """The run's epochs; its weights into ``run_dir`` (None: a rank that keeps no files)."""
    loop, ranks = config.train, ranks or Ranks()
    batching = Batching(loop, ranks)
    batching.check([*data.train, *data.val])
    val_loader = batching.eval_loader(data.val)
    mean, std = _label_stats(data.train)
    trainer = Trainer(config, device, batching.steps_per_epoch(data.train), mean, std)
    if ranks.world > 1:
        trainer.distribute()
    _say_training(trainer, data, loop, ranks)
    history: list[EpochFigures] = []
    run = _RunSteps()
    bar = _bar(loop.epochs * batching.steps_per_epoch(data.train), progress)
    for epoch in range(1, loop.epochs + 1):
        bar.set_description(f"epoch {epoch}/{loop.epochs}")
        metrics = _epoch(
            trainer,
            epoch=epoch,
            epochs=loop.epochs,
            train_loader=batching.train_loader(data.train),
            val_loader=val_loader,
            measure_memory=measure_memory,
            bar=bar,
            run=run,
        )
        if ranks.world > 1:
            metrics.atom_imbalance = _mean(batching.imbalance)
            run.imbalance += batching.imbalance
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    bar.close()
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)  # made once the run has something to keep
        torch.save(trainer.model.state_dict(), run_dir / RunFiles.WEIGHTS)
    report = _report(config, trainer, data, history, run, run_dir)
    if ranks.world > 1:
        report.workers = ranks.world
        report.atom_imbalance = _mean(run.imbalance)
    return report


def _say_training(trainer: Trainer, data: Dataset, loop: LoopSpec, ranks: Ranks) -> None:
    log.info(
        "training %d parameters on %s (%s): %d training, %d validation complexes, %s%s",
        trainer.parameters,
        trainer.device,
        trainer.precision,
        len(data.train),
        len(data.val),
        f"batches of at most {loop.max_atoms_per_batch} atoms"
        if loop.max_atoms_per_batch
        else f"batches of {loop.batch_size}",
        f", rank {ranks.rank} of {ranks.world}" if ranks.world > 1 else "",
    )


def _mean(values: Sequence[float]) -> float | None:
    return statistics.mean(values) if values else None


def _report(
    config: TrainConfig,
    trainer: Trainer,
    data: Dataset,
    history: list[EpochFigures],
    run: _RunSteps,
    run_dir: Path | None,
) -> TrainRunReport:
    """What the run did: its epochs, and its steps' time and peak over the whole run."""
    return TrainRunReport(
        epochs=history,
        config_hash=config.digest(),
        device=str(trainer.device),
        precision=trainer.precision,
        parameters=trainer.parameters,
        train_complexes=len(data.train),
        val_complexes=len(data.val),
        seconds=0.0,
        run_dir=str(run_dir) if run_dir is not None else None,
        skipped=[SkippedComplex.model_validate(dataclasses.asdict(s)) for s in data.skipped],
        step_seconds=statistics.median(run.seconds) if run.seconds else None,
        timed_steps=len(run.seconds),
        peak_bytes=max((e.peak_bytes for e in history if e.peak_bytes is not None), default=None),
    )


def _epoch(
    trainer: Trainer,
    *,
    epoch: int,
    epochs: int,
    train_loader: DataLoader,
    val_loader: DataLoader,
    measure_memory: bool,
    bar: tqdm,
    run: _RunSteps,
) -> EpochFigures:
    """Epoch ``epoch`` of ``epochs``: its training steps over ``train_loader``, then
    evaluation on ``val_loader``; logged. ``run``: the run's steps so far. Of several ranks,
    the training loss is over every rank's complexes (``_every_rank``)."""
    t0 = time.perf_counter()
    steps = _train_epoch(trainer, train_loader, measure_memory, bar, run)
    trainer.end_epoch()
    scores = trainer.evaluate(val_loader)
    val_loss, val_rmse, val_pearson = scores.loss, scores.rmse, scores.pearson
    loss, complexes = _every_rank(steps, trainer.device)
    metrics = EpochFigures(
        epoch=epoch,
        train_loss=loss / max(1, complexes),
        val_loss=val_loss,
        val_rmse=val_rmse,
        val_pearson=val_pearson,
        val_loss_se=scores.loss_se,
        val_baseline_loss=scores.baseline_loss,
        val_gain_se=scores.gain_se,
        val_complexes=scores.complexes,
        seconds=time.perf_counter() - t0,
        lr=trainer.lr,
        **steps.figures(),
    )
    log.info(
        "epoch %d/%d: train_loss %.4f val_loss %.4f val_rmse %.4f val_pearson %.3f (%.1fs, "
        "%d steps)",
        epoch,
        epochs,
        metrics.train_loss,
        val_loss,
        val_rmse,
        val_pearson,
        metrics.seconds,
        metrics.steps,
    )
    return metrics


def _label_stats(complexes: Sequence[Data]) -> tuple[float, float]:
    y = torch.cat([c.y.view(-1) for c in complexes])
    std = float(y.std()) if y.numel() > 1 else 1.0
    return float(y.mean()), std if std > 1e-6 else 1.0


def _bar(steps: int, shown: bool) -> tqdm:
    """The run's progress bar on stderr: steps, epoch, loss, rate and time left."""
    return tqdm(total=steps, unit="step", disable=not shown, dynamic_ncols=True, leave=False)


def _every_rank(steps: _Steps, device: torch.device) -> tuple[float, int]:
    """An epoch's summed training loss and its complexes, over every rank of the process group
    (summed by an all-reduce); this process's where there is no group."""
    complexes = sum(steps.complexes)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return steps.loss, complexes
    both = torch.tensor([steps.loss, float(complexes)], dtype=torch.float64, device=device)
    dist.all_reduce(both)
    return float(both[0]), int(both[1])


class _RunSteps:
    """A run's training steps so far: how many, and the time of each that was timed."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds: list[float] = []
        self.imbalance: list[float] = []  # of several ranks: each step's atom imbalance


class _Steps:
    """An epoch's training steps: loss, time, complexes and memory."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.seconds: list[float] = []
        self.complexes: list[int] = []
        self.peak: int | None = None

    def figures(self) -> dict[str, Any]:
        counts = self.complexes
        return {
            "steps": len(counts),
            "step_seconds": statistics.median(self.seconds) if self.seconds else None,
            "complexes_per_step": {
                "mean": sum(counts) / len(counts),
                "min": min(counts),
                "max": max(counts),
            }
            if counts
            else None,
            "peak_bytes": self.peak,
        }


def _train_epoch(
    trainer: Trainer,
    loader: DataLoader,
    measure_memory: bool,
    bar: tqdm | None = None,
    run: _RunSteps | None = None,
) -> _Steps:
    """One epoch of training steps, each timed (on a GPU, synchronised). On a CPU with
    ``measure_memory``, every other step of the run is profiled for its peak and the others are
    timed (the profiler slows the steps it measures), counting across epochs, so that a run of
    one-step epochs times every other epoch. ``bar`` advances a step at a time, with the loss;
    ``run`` counts the run's steps and keeps the timed ones."""
    run = run if run is not None else _RunSteps()
    steps, device = _Steps(), trainer.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    total = torch.zeros((), device=device)
    for i, batch in enumerate(loader):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        profiled = measure_memory and not cuda and (run.count + i) % 2 == 0
        if profiled:
            loss, peak = trainer.measured_step(batch, complete=False)
            steps.peak = max(steps.peak or 0, peak)
        else:
            loss = trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize(device)
        if not profiled:
            steps.seconds.append(time.perf_counter() - t0)
        steps.complexes.append(batch.num_graphs)
        total += loss * batch.num_graphs
        if bar is not None and not bar.disable:
            bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            bar.update()
    if cuda:
        steps.peak = int(torch.cuda.max_memory_allocated(device))
    steps.loss = float(total)
    run.count += len(steps.complexes)
    run.seconds += steps.seconds
    return steps
