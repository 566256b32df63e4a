"""The one training loop: used by ``stagetune train``, by the probe and by every tuning trial.

``Trainer`` owns one model, its optimizer, schedule and precision, and performs training steps;
``run_training`` adds data, epochs, evaluation, the audit entry and the exported configuration.
Progress reaches the caller through the ``on_epoch`` callback; nothing here knows about Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from model._audit import append_audit_entry, export_config
from model._batching import Batching
from model._config import ModelSpec, TrainConfig
from model._dataset import Dataset, load_dataset
from model._errors import ConfigError
from model._memory import held_bytes, keep_freed_memory, peak_growth
from model._optim import build_optimizer, build_scheduler
from model._report import EpochMetrics, Precision, TrainReport
from model._visnet import AffinityViSNet, count_parameters

log = logging.getLogger(__name__)

_AUTOCAST_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: no CUDA device is visible; use cpu or auto")
    return device


def resolve_precision(config: TrainConfig, device: torch.device) -> Precision:
    """bf16 where supported and preferred, else fp16 with gradient scaling on GPUs, else fp32."""
    requested = config.train.precision
    safe = config.optimizer.precision_safe
    if requested != "auto":
        if requested != "fp32" and not safe:
            raise ConfigError(
                f"train.precision={requested}: optimizer {config.optimizer.name} has "
                "precision_safe: false; use train.precision=fp32 or auto"
            )
        return requested
    if device.type != "cuda" or not safe:
        return "fp32"
    if config.optimizer.bf16_preferred and torch.cuda.get_device_capability(device)[0] >= 8:
        return "bf16"
    return "fp16"


def build_model(spec: ModelSpec, label_mean: float = 0.0, label_std: float = 1.0) -> AffinityViSNet:
    return AffinityViSNet(**spec.model_dump(), label_mean=label_mean, label_std=label_std)


class Trainer:
    """Training steps of one model: forward, backward and, every ``accumulate_steps`` micro-batches,
    clipping and an optimizer step, in the run's precision.

    ``steps_per_epoch`` counts micro-batches; it sizes the learning-rate schedule. The model is
    initialised under ``train.seed`` (this seeds torch's global generator).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        steps_per_epoch: int,
        label_mean: float = 0.0,
        label_std: float = 1.0,
    ) -> None:
        self.config = config
        self.device = device
        self.precision = resolve_precision(config, device)
        if device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(config.train.seed)
        self.model = build_model(config.model, label_mean, label_std).to(device)
        opt = config.optimizer
        self.optimizer = build_optimizer(opt, self.model, device)
        updates_per_epoch = max(1, math.ceil(steps_per_epoch / opt.accumulate_steps))
        per_call = 1 if opt.scheduler_hook == "step" else updates_per_epoch
        total = config.train.epochs * updates_per_epoch // per_call
        self.scheduler = build_scheduler(
            config.scheduler, opt, self.optimizer, total, updates_per_call=per_call
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self._pending = 0  # micro-batches accumulated since the last optimizer step

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPE[self.precision])

    def train_step(self, batch: Batch) -> torch.Tensor:
        """One micro-batch; returns its detached loss (mean squared error in pK units)."""
        self.model.train()
        batch = batch.to(self.device, non_blocking=True)
        anomaly = (
            torch.autograd.detect_anomaly()
            if self.config.optimizer.detect_anomaly
            else contextlib.nullcontext()
        )
        with anomaly:
            with self._autocast():
                pred = self.model(batch.z, batch.pos, batch.batch)
            loss = torch.nn.functional.mse_loss(pred.float(), batch.y.view(-1))
            self.scaler.scale(loss / self.config.optimizer.accumulate_steps).backward()
        self._pending += 1
        if self._pending >= self.config.optimizer.accumulate_steps:
            self._optimizer_step()
        return loss.detach()

    def discard_pending(self) -> None:
        """Drop accumulated gradients without stepping (after a failed step, say)."""
        self.optimizer.zero_grad(set_to_none=True)
        self._pending = 0
        # a step that failed after unscale_ leaves the scaler mid-step: start it afresh
        self.scaler = torch.amp.GradScaler(
            self.device.type, init_scale=self.scaler.get_scale(), enabled=self.scaler.is_enabled()
        )

    def flush(self) -> None:
        """Take the optimizer step for micro-batches still accumulated, if any."""
        if self._pending:
            self._optimizer_step()

    def end_epoch(self) -> None:
        """Apply what is still accumulated and advance an epoch-hooked schedule."""
        self.flush()
        if self.config.optimizer.scheduler_hook == "epoch":
            self.scheduler.step()

    def _optimizer_step(self) -> None:
        clip = self.config.optimizer.clip_grad_norm
        if clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending = 0
        if self.config.optimizer.scheduler_hook == "step":
            self.scheduler.step()

    def measured_step(self, batch: Batch, complete: bool = True) -> tuple[torch.Tensor, int]:
        """One training step and its peak memory: on a GPU ``max_memory_allocated`` over the
        step; on the CPU the tensors the training holds when it starts plus the largest growth
        of allocated bytes during it, as the allocator reports each allocation and free to
        torch's profiler. ``complete``: micro-batches still accumulated are applied with it (a
        probe's step is always a full optimizer step)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            loss = self._step(batch, complete)
            torch.cuda.synchronize(self.device)
            return loss, int(torch.cuda.max_memory_allocated(self.device))
        held = self.held_bytes(batch.to(self.device))
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = self._step(batch, complete)
        return loss, held + peak_growth(prof)

    def held_bytes(self, batch: Batch | None = None) -> int:
        """Bytes the training holds between steps: weights, buffers, optimizer state (Lookahead's
        slow weights included), gradients if any, and ``batch``."""
        optimizers = {self.optimizer, getattr(self.optimizer, "base", self.optimizer)}
        return held_bytes(self.model, optimizers, batch)

    def step_peak(self, batch: Batch) -> int:
        """The peak memory of one full training step (``measured_step``)."""
        return self.measured_step(batch)[1]

    def _step(self, batch: Batch, complete: bool) -> torch.Tensor:
        loss = self.train_step(batch)
        if complete:
            self.flush()
        return loss

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> tuple[float, float, float]:
        """Validation (mse, rmse, pearson) over a loader."""
        self.model.eval()
        preds, targets = [], []
        for batch in loader:
            batch = batch.to(self.device)
            with self._autocast():
                preds.append(self.model(batch.z, batch.pos, batch.batch).float())
            targets.append(batch.y.view(-1))
        pred, target = torch.cat(preds), torch.cat(targets)
        mse = float(torch.mean((pred - target) ** 2))
        return mse, math.sqrt(mse), _pearson(pred, target)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _label_stats(complexes: Sequence[Data]) -> tuple[float, float]:
    y = torch.cat([c.y.view(-1) for c in complexes])
    std = float(y.std()) if y.numel() > 1 else 1.0
    return float(y.mean()), std if std > 1e-6 else 1.0


# --- a whole run ------------------------------------------------------------------------------


def run_training(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    dataset: Dataset | None = None,
    measure_memory: bool = False,
    progress: bool = False,
) -> TrainReport:
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
    out = Path(config.train.output_dir)
    run_dir = out / digest[:12]
    device = resolve_device(config.train.device)
    if config.optimizer.log_config:
        log.info("configuration %s:\n%s", digest[:12], json.dumps(config.to_dict(), indent=2))
    report: TrainReport | None = None
    error: BaseException | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        data = dataset or load_dataset(config)
        report = _train(config, device, data, on_epoch, run_dir, measure_memory, progress)
        report.seconds = time.time() - started
        export_config(config, run_dir)
        (run_dir / "metrics.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        return report
    except BaseException as exc:
        error = exc
        raise
    finally:
        append_audit_entry(out / "audit.md", config, run_dir, report, error)


def _train(
    config: TrainConfig,
    device: torch.device,
    data: Dataset,
    on_epoch: Callable[[EpochMetrics], None] | None,
    run_dir: Path,
    measure_memory: bool = False,
    progress: bool = False,
) -> TrainReport:
    loop = config.train
    batching = Batching(loop)
    batching.check([*data.train, *data.val])
    val_loader = batching.eval_loader(data.val)
    mean, std = _label_stats(data.train)
    trainer = Trainer(config, device, batching.steps_per_epoch(data.train), mean, std)
    log.info(
        "training %d parameters on %s (%s): %d training, %d validation complexes, %s",
        trainer.parameters, device, trainer.precision, len(data.train), len(data.val),
        f"batches of at most {loop.max_atoms_per_batch} atoms" if loop.max_atoms_per_batch
        else f"batches of {loop.batch_size}",
    )  # fmt: skip
    history: list[EpochMetrics] = []
    bar = _bar(loop.epochs * batching.steps_per_epoch(data.train), progress)
    for epoch in range(1, loop.epochs + 1):
        t0 = time.perf_counter()
        bar.set_description(f"epoch {epoch}/{loop.epochs}")
        steps = _train_epoch(trainer, batching.train_loader(data.train), measure_memory, bar)
        trainer.end_epoch()
        val_loss, val_rmse, val_pearson = trainer.evaluate(val_loader)
        metrics = EpochMetrics(
            epoch=epoch, train_loss=steps.loss / len(data.train), val_loss=val_loss,
            val_rmse=val_rmse, val_pearson=val_pearson, seconds=time.perf_counter() - t0,
            lr=trainer.lr, **steps.figures(),
        )  # fmt: skip
        history.append(metrics)
        log.info(
            "epoch %d/%d: train_loss %.4f val_loss %.4f val_rmse %.4f val_pearson %.3f (%.1fs, "
            "%d steps)", epoch, loop.epochs, metrics.train_loss, val_loss, val_rmse,
            val_pearson, metrics.seconds, metrics.steps,
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(metrics)
    bar.close()
    run_dir.mkdir(parents=True, exist_ok=True)  # made once the run has something to keep
    torch.save(trainer.model.state_dict(), run_dir / "model.pt")
    return TrainReport(
        epochs=history,
        config_hash=config.digest(),
        device=str(device),
        precision=trainer.precision,
        parameters=trainer.parameters,
        train_complexes=len(data.train),
        val_complexes=len(data.val),
        seconds=0.0,
        run_dir=str(run_dir),
        skipped=data.skipped,
    )


def _bar(steps: int, shown: bool) -> tqdm:
    """The run's progress bar on stderr: steps, epoch, loss, rate and time left."""
    return tqdm(total=steps, unit="step", disable=not shown, dynamic_ncols=True, leave=False)


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
                "mean": sum(counts) / len(counts), "min": min(counts), "max": max(counts),
            } if counts else None,
            "peak_bytes": self.peak,
        }  # fmt: skip


def _train_epoch(
    trainer: Trainer, loader: DataLoader, measure_memory: bool, bar: tqdm | None = None
) -> _Steps:
    """One epoch of training steps, each timed (on a GPU, synchronised). On a CPU with
    ``measure_memory``, every other step is profiled for its peak and the others are timed (the
    profiler slows the steps it measures). ``bar`` advances a step at a time, with the loss."""
    steps, device = _Steps(), trainer.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    total = torch.zeros((), device=device)
    for i, batch in enumerate(loader):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        profiled = measure_memory and not cuda and i % 2 == 0
        if profiled:
            loss, peak = trainer.measured_step(batch, complete=False)
            steps.peak = max(steps.peak or 0, peak)
        else:
            loss = trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize(device)
        if not profiled or not measure_memory:
            steps.seconds.append(time.perf_counter() - t0)
        steps.complexes.append(batch.num_graphs)
        total += loss * batch.num_graphs
        if bar is not None and not bar.disable:
            bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            bar.update()
    if cuda:
        steps.peak = int(torch.cuda.max_memory_allocated(device))
    steps.loss = float(total)
    return steps
