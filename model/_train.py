"""The one training step: used by ``stagetune train`` (``model._run``), by the probe and by every
tuning trial. ``Trainer`` owns one model, its optimizer, schedule and precision, and performs
training steps and evaluation; nothing here knows about Ray.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist
from torch.profiler import ProfilerActivity, profile
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from model._config import ModelSpec, TrainConfig
from model._errors import ConfigError
from model._memory import held_bytes, keep_freed_memory, live_bytes, peak_growth
from model._optim import build_optimizer, build_scheduler
from model._visnet import AffinityViSNet, count_parameters

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]

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
        self.label_mean = label_mean  # the training labels' mean: the baseline's prediction
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
        #: what a training step calls: the model, or its data-parallel wrapper (``distribute``)
        self.forward: torch.nn.Module = self.model

    def distribute(self) -> None:
        """Train with the other processes of ``torch.distributed``'s group: each step's
        gradients averaged over the ranks (``DistributedDataParallel``, which also gives every
        rank rank 0's initial weights). Evaluation and the saved weights use the model itself."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def distribute_measured(self, batch: Batch) -> int:
        """``distribute``, and what it adds to a training step on ``batch``: the most of any
        rank, measured with ``step_peak``'s instrument. A full step without it (after one that
        creates the optimizer's state), then the bytes DDP holds between steps (its gradient
        buckets: a GPU's peak counts them; on the CPU the heap's growth as it is built, and at
        least the buckets' bytes as DDP reports them, since other frees can hide that growth),
        then the most of two steps under it (the second rebuilds the buckets in the order the
        gradients came); the difference of the peaks, plus what it holds."""
        self.train_step(batch)
        self.flush()
        alone = self.step_peak(batch)
        cuda = self.device.type == "cuda"
        before = 0 if cuda else live_bytes(self.device) or 0
        self.distribute()
        grown = (live_bytes(self.device) or 0) - before
        held = 0 if cuda else max(grown, _bucket_bytes(self.forward))
        under = max(self.step_peak(batch) for _ in range(2))
        added = torch.tensor([max(0, under - alone) + held], dtype=torch.int64, device=self.device)
        dist.all_reduce(added, op=dist.ReduceOp.MAX)
        return int(added.item())

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
                pred = self.forward(batch.z, batch.pos, batch.batch)
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
    def evaluate(self, loader: DataLoader) -> Scores:
        """Validation over a loader: the model's figures, and what predicting the training
        labels' mean scores on the same complexes. Distributed (``distribute``), each rank's
        loader holds its share of the complexes (``Batching.eval_loader``) and the figures are
        over every rank's, the same on each."""
        self.model.eval()
        preds = [torch.empty(0, device=self.device)]
        targets = [torch.empty(0, device=self.device)]
        for batch in loader:
            batch = batch.to(self.device)
            with self._autocast():
                preds.append(self.model(batch.z, batch.pos, batch.batch).float())
            targets.append(batch.y.view(-1))
        pred, target = torch.cat(preds), torch.cat(targets)
        if self.forward is not self.model:
            pred, target = _gathered(pred), _gathered(target)
        return Scores.of(pred, target, self.label_mean)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])


class Scores(NamedTuple):
    """A model's validation figures, each complex's squared error counted once.

    ``loss_se`` is the standard error of ``loss`` over the complexes (how far another draw of
    as many complexes could move it); ``baseline_loss`` is the loss of predicting the training
    labels' mean, and ``gain_se`` the standard error of the model's gain over it, complex by
    complex (paired: both on the same complexes). Standard errors need two complexes."""

    loss: float
    rmse: float
    pearson: float
    loss_se: float | None
    baseline_loss: float
    gain_se: float | None
    complexes: int

    @classmethod
    def of(cls, pred: torch.Tensor, target: torch.Tensor, label_mean: float) -> Scores:
        errors = (pred - target) ** 2
        baseline = (label_mean - target) ** 2
        n = errors.numel()
        mse = float(errors.mean())

        def se(values: torch.Tensor) -> float | None:
            return float(values.std() / math.sqrt(n)) if n > 1 else None

        return cls(
            loss=mse,
            rmse=math.sqrt(mse),
            pearson=_pearson(pred, target),
            loss_se=se(errors),
            baseline_loss=float(baseline.mean()),
            gain_se=se(baseline - errors),
            complexes=n,
        )


def _bucket_bytes(ddp: torch.nn.Module) -> int:
    """The bytes of a ``DistributedDataParallel``'s gradient buckets, as its logging data
    reports them (a private call of DDP's, read defensively: 0 where it is missing)."""
    report = getattr(ddp, "_get_ddp_logging_data", None)
    sizes = str(report().get("bucket_sizes", "")) if callable(report) else ""
    return sum(int(size) for size in sizes.split(",") if size.strip().isdigit())


def _gathered(values: torch.Tensor) -> torch.Tensor:
    """``values`` of every rank of the process group, rank by rank (on this rank's device)."""
    parts: list[torch.Tensor | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values.cpu())
    return torch.cat([p for p in parts if p is not None]).to(values.device)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a * b).sum() / denom) if denom > 0 else float("nan")
