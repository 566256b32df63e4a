"""``stagetune train --workers N``: the same training run (``model.run_training``, one loop) on N
data-parallel workers of Ray Train's ``TorchTrainer``, one device each (a GPU each where the
cluster has them; else N CPU processes with gloo, which is how it is tested).

Each worker loads the data, plans the epoch's steps alike (``model._balance``: every rank the same
number of steps, a step's batches near-equal in atoms) and trains its own batch of each step
under ``DistributedDataParallel``. Rank 0 writes the run's folder (``config.json``,
``metrics.json``, ``model.pt``) and its audit entry, and its report is the run's, read back from
the folder: on several nodes, ``train.output_dir`` must be storage they share (docs/cluster.md),
as a job's folders are. A worker that fails fails the run with its error, named by its rank
where Ray Train names it (a worker whose process died during a call to it, Ray Train reports
without its rank).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch

from model import ConfigError, StagetuneError, TrainConfig, run_training
from stagetune_api import RunFiles, TrainRunReport
from tuner._cluster import connected

log = logging.getLogger(__name__)


class WorkerFailed(StagetuneError):
    """A worker of a data-parallel run failed: its rank and its error."""


def train_on_workers(
    config: TrainConfig, address: str | None = None, verbose: bool = False
) -> TrainRunReport:
    """Train ``config`` on ``config.train.workers`` workers of the Ray cluster at ``address``
    (a local one of its own when None); rank 0's report."""
    workers = config.train.workers
    if config.train.device.startswith("cuda:"):
        raise ConfigError(
            f"train.device={config.train.device} names one GPU; with train.workers={workers} "
            "each worker trains on the GPU Ray gives it: use train.device=cuda or auto"
        )
    output = Path(config.train.output_dir).expanduser().resolve()  # the workers' cwd differ
    config = config.model_copy(
        update={"train": config.train.model_copy(update={"output_dir": str(output)})}
    )
    with connected(address, verbose):
        gpus = sum(n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive"))
        use_gpu = config.train.device != "cpu" and gpus >= workers
        if config.train.device.startswith("cuda") and not use_gpu:
            raise ConfigError(
                f"train.workers={workers} on train.device={config.train.device}: the cluster "
                f"has {gpus:g} GPUs; use train.device=cpu or auto, or fewer workers"
            )
        log.info(
            "training on %d workers (%s) with Ray Train",
            workers,
            "a GPU each" if use_gpu else "CPU",
        )
        trainer = ray.train.torch.TorchTrainer(
            _worker,
            train_loop_config={"config": config.to_dict()},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=ray.train.RunConfig(
                name=f"train-{config.digest()[:12]}", storage_path=str(output / "ray-train")
            ),
        )
        try:
            trainer.fit()
        except ray.train.WorkerGroupError as exc:
            rank, error = min(exc.worker_failures.items())
            raise WorkerFailed(f"worker {rank} of {workers} failed: {_last_line(error)}") from exc
        except ray.train.TrainingFailedError as exc:  # a worker's process died mid-call
            raise WorkerFailed(f"a worker of {workers} failed: {_last_line(exc)}") from exc
    metrics = RunFiles(output).run_dir(config.digest()) / RunFiles.METRICS
    return TrainRunReport.model_validate_json(metrics.read_text())


def _worker(loop_config: dict[str, Any]) -> None:
    """One worker's run (its device: ``auto`` finds the GPU Ray Train gave it, the only one it
    sees). Rank 0 writes the run's files, its report among them; every worker reports to Ray
    Train once at the end (a barrier: none leaves before the others are done)."""
    report = run_training(TrainConfig.model_validate(loop_config["config"]))
    ray.train.report({"epochs": len(report.epochs)})


def _last_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
