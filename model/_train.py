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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from model._audit import append_audit_entry
from model._config import DataSpec, ModelSpec, TrainConfig
from model._errors import ConfigError
from model._memory import keep_freed_memory
from model._optim import build_optimizer, build_scheduler
from model._pdbbind import Skipped, default_cache_dir, load_pdbbind
from model._readers import AtomPolicy
from model._synthetic import synthetic_complexes
from model._visnet import AffinityViSNet, count_parameters

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_rmse: float
    val_pearson: float
    seconds: float
    lr: float


@dataclass
class TrainReport:
    """What a run did; ``to_json`` is what ``stagetune train --json`` prints."""

    epochs: list[EpochMetrics]
    config_hash: str
    device: str
    precision: Precision
    parameters: int
    train_complexes: int
    val_complexes: int
    seconds: float
    run_dir: str | None
    skipped: list[Skipped] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """Plain JSON: a metric that is not a number (a constant prediction's Pearson) is null."""
        data: dict[str, object] = _finite(asdict(self))  # type: ignore[assignment]
        return data


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


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


# --- data -------------------------------------------------------------------------------------


@dataclass
class Dataset:
    train: list[Data]
    val: list[Data]
    skipped: list[Skipped]


def load_dataset(config: TrainConfig) -> Dataset:
    """The run's complexes, split into training and validation sets under the data seed."""
    spec = config.data
    skipped: list[Skipped] = []
    if spec.source == "synthetic":
        complexes = synthetic_complexes(spec.num_synthetic, spec.max_atoms, seed=spec.seed)
    else:
        cache = spec.cache_dir or default_cache_dir()
        report = load_pdbbind(spec.source, atom_policy(spec), spec.labels, cache, spec.strict)
        complexes, skipped = report.complexes, report.skipped
    if len(complexes) < 2:
        raise ConfigError(f"data.source={spec.source}: {len(complexes)} usable complex(es); need 2")
    order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(spec.seed))
    num_val = min(len(complexes) - 1, max(1, round(spec.val_fraction * len(complexes))))
    val = [complexes[i] for i in order[:num_val].tolist()]
    train = [complexes[i] for i in order[num_val:].tolist()]
    return Dataset(train=train, val=val, skipped=skipped)


def atom_policy(spec: DataSpec, max_atoms: int | None = None) -> AtomPolicy:
    """The atoms the model sees of each complex, as the data section says (``max_atoms`` given:
    a different crop, e.g. none to count a complex whole)."""
    return AtomPolicy(
        max_atoms=max_atoms or spec.max_atoms,
        pocket_radius=spec.pocket_radius,
        heavy_only=spec.heavy_only,
        drop_waters=spec.drop_waters,
        keep_metals=spec.keep_metals,
        keep_hetero=spec.keep_hetero,
    )


def _label_stats(complexes: Sequence[Data]) -> tuple[float, float]:
    y = torch.cat([c.y.view(-1) for c in complexes])
    std = float(y.std()) if y.numel() > 1 else 1.0
    return float(y.mean()), std if std > 1e-6 else 1.0


# --- a whole run ------------------------------------------------------------------------------


def run_training(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    dataset: Dataset | None = None,
) -> TrainReport:
    """Train for ``config.train.epochs`` epochs; write the audit entry and the run's files.

    The run's folder, ``<output_dir>/<config hash[:12]>/``, receives ``config.json`` (when
    ``optimizer.export_json``; ``stagetune train --profile`` replays it), ``metrics.json`` and
    ``model.pt``. ``<output_dir>/audit.md`` receives one entry per run, failed runs included.
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
        run_dir.mkdir(parents=True, exist_ok=True)
        report = _train(config, device, dataset or load_dataset(config), on_epoch, run_dir)
        report.seconds = time.time() - started
        if config.optimizer.export_json:
            (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
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
) -> TrainReport:
    loop = config.train
    generator = torch.Generator().manual_seed(loop.seed)
    train_loader = DataLoader(
        data.train, batch_size=loop.batch_size, shuffle=True, generator=generator
    )
    val_loader = DataLoader(data.val, batch_size=loop.eval_batch_size or loop.batch_size)
    mean, std = _label_stats(data.train)
    trainer = Trainer(config, device, len(train_loader), mean, std)
    log.info(
        "training %d parameters on %s (%s): %d training, %d validation complexes",
        trainer.parameters, device, trainer.precision, len(data.train), len(data.val),
    )  # fmt: skip
    history: list[EpochMetrics] = []
    for epoch in range(1, loop.epochs + 1):
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for batch in train_loader:
            total += trainer.train_step(batch) * batch.num_graphs
        trainer.end_epoch()
        val_loss, val_rmse, val_pearson = trainer.evaluate(val_loader)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=float(total) / len(data.train),
            val_loss=val_loss,
            val_rmse=val_rmse,
            val_pearson=val_pearson,
            seconds=time.perf_counter() - t0,
            lr=trainer.lr,
        )
        history.append(metrics)
        log.info(
            "epoch %d/%d: train_loss %.4f val_loss %.4f val_rmse %.4f val_pearson %.3f (%.1fs)",
            epoch, loop.epochs, metrics.train_loss, val_loss, val_rmse, val_pearson,
            metrics.seconds,
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(metrics)
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
