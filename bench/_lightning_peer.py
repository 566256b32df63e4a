"""PyTorch Lightning's batch-size finder on the project's model: what a user would otherwise run.

A thin ``LightningModule`` around ``AffinityViSNet`` (the project's model, loss and optimizer,
Lightning's automatic optimization and mixed precision), trained on the same worst-case batches
as the probe, and ``Tuner.scale_batch_size(mode="binsearch")`` with Lightning's defaults
(``init_val=2``, ``steps_per_trial=3``, ``max_trials=25``, and since 2.6 a 5 % ``margin``).

The memory limit is the probe's. On a GPU it is the caching allocator's own cap
(``torch.cuda.set_per_process_memory_fraction``, set by the caller), so the finder meets real CUDA
out-of-memory errors. A CPU raises none under a declared budget, so there the module measures each
step's peak the way the probe does on a CPU (the bytes the training holds plus the allocator's
largest growth during the step) and raises the CPU allocator's out-of-memory error when it is
over the limit: the error Lightning's ``is_oom_error`` recognises.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from model import TrainConfig, build_model, build_optimizer, held_bytes, peak_growth


def lightning() -> Any:
    """``lightning.pytorch``, or the older ``pytorch_lightning``; ImportError when neither."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl
    return pl


class _Repeated(torch.utils.data.Dataset):
    """One complex, ``length`` times: every batch is the probe's worst case."""

    def __init__(self, data: Data, length: int) -> None:
        self.data, self.length = data, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Data:
        return self.data


def find_batch(
    config: TrainConfig,
    sample: Data,
    device: torch.device,
    limit_bytes: int,
    precision: str,
    steps_per_trial: int = 3,
) -> dict[str, Any]:
    """Run Lightning's binsearch finder (``steps_per_trial`` training steps a trial: 3 is
    Lightning's default); return its batch, training steps and wall time. ``limit_bytes`` is
    the limit on a step's live peak, as the probe judges it."""
    pl = lightning()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(config.train.seed)
            self.net = build_model(config.model)
            self.batch_size = 2
            self.steps = 0
            self._profiler: profile | None = None
            self._held = 0

        def train_dataloader(self) -> DataLoader:
            return DataLoader(_Repeated(sample, 16384), batch_size=self.batch_size)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return build_optimizer(config.optimizer, self.net, self.device)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.steps += 1
            pred = self.net(batch.z, batch.pos, batch.batch)
            return torch.nn.functional.mse_loss(pred.float(), batch.y.view(-1))

        # On a CPU: measure the step (forward, backward, optimizer step) and enforce the limit.
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            if self._profiler is not None:  # a step that raised before its end
                self._profiler.__exit__(None, None, None)
                self._profiler = None
            if self.device.type == "cpu":
                optimizer = self.optimizers().optimizer  # type: ignore[union-attr]
                self._held = held_bytes(self, [optimizer], batch)
                self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                self._profiler.__enter__()

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self._profiler is None:
                return
            prof, self._profiler = self._profiler, None
            prof.__exit__(None, None, None)
            peak = self._held + peak_growth(prof)
            if peak > limit_bytes:
                raise RuntimeError(
                    f"DefaultCPUAllocator: can't allocate memory: the step's peak of {peak} "
                    f"bytes is over the declared budget's limit of {limit_bytes} bytes"
                )

    module = Module()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    devices = [device.index or 0] if device.type == "cuda" else 1
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        t0 = time.perf_counter()
        batch = pl.tuner.Tuner(trainer).scale_batch_size(
            module, mode="binsearch", steps_per_trial=steps_per_trial
        )
        seconds = time.perf_counter() - t0
    steps = module.steps
    del trainer, module
    return {"batch_size": batch, "steps": steps, "seconds": round(seconds, 2)}


def precision_of(trainer_precision: str) -> str:
    """Lightning's name for the project's resolved precision."""
    return {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[trainer_precision]
