"""``result.json`` (``JobResult``) and the trial records behind it (``TrialRecord``: the rows of
``trials.csv``). ``result_schema`` is the JSON Schema published as ``docs/result.schema.json``.

Fields added since the first result files have defaults, so every result.json a job ever wrote
still reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stagetune_api._enums import Search, Stage, TrialStatus
from stagetune_api._figures import variables_of
from stagetune_api._probe import NOISY_SPREAD
from stagetune_api._reports import FitReport, TrainedReport


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrialRecord(_Record):
    """One trial of one search: what it tried (``variables``: its model, optimizer and the
    settings its figures depend on, flat) and what it measured, as the trial reported it (a
    fit trial's ``FitReport``, a training trial's ``TrainedReport``). ``trials.csv`` has a row
    per variable of ``all_variables``."""

    stage: Stage
    search: Search
    trial_id: str
    status: TrialStatus
    variables: dict[str, Any] = Field(
        description="model.*, optimizer.*, data.*, pruned.*, ... (a record of an earlier "
        "version has its figures here too: probe.*, result.*)"
    )
    node_id: str | None = None
    retries: int = Field(default=0, description="restarts after a failure")
    seconds: float = Field(default=0.0, description="how long it ran")
    started: float = Field(default=0.0, description="epoch seconds; 0 for a pruned trial")
    fit: FitReport | None = Field(default=None, description="a fit trial's report, if any")
    trained: TrainedReport | None = Field(
        default=None, description="a training trial's figures, if any"
    )

    def all_variables(self) -> dict[str, Any]:
        """Every variable of the trial: what it tried, then its figures by name (probe.*,
        result.*, train.epochs_run)."""
        figures = {}
        for report in (self.fit, self.trained):
            if report is not None:
                figures.update(variables_of(report))
        return {**self.variables, **figures}


class ProbeFigures(_Record):
    """What the probe measured for the chosen model, on the device named beside it."""

    max_batch_size: int = Field(description="the largest batch that fit (B_max)")
    peak_bytes: int | None = Field(
        description="the footprint predicted at B_max, which the limit applies to: the live "
        "peak with what a step adds times heap_overhead"
    )
    live_peak_bytes: int | None = Field(
        default=None, description="the live peak of a step at B_max, as measured"
    )
    heap_overhead: float | None = Field(
        default=None,
        description="bytes the allocator takes per live byte a step adds (CPU: glibc's heap, "
        "measured by bench/heap.py; 1 on a GPU)",
    )
    limit_bytes: int = Field(description="memory_fraction x device memory (or the CPU budget)")
    step_seconds: float | None = Field(
        description="step time at the chosen batch: measured (median) when it is B_max, else "
        "from the probe's step-time model"
    )
    cycle_minutes: float | None = Field(description="cycle_batches x step time")
    throughput: float | None = Field(description="samples per second at the chosen batch")
    capacity: int = Field(description="trainable parameters")
    probe_steps: int = Field(description="real training steps the probe spent")
    sample_atoms: int = Field(description="atoms of each complex of the probe batch")


Verdict = Literal["learned", "no_better_than_mean", "indistinguishable"]


class ValidationFigures(_Record):
    """The best trial of the tune search: its last validation figures, and what they show on
    as many validation complexes (fields absent from results before they were kept)."""

    val_loss: float
    val_rmse: float | None
    val_pearson: float | None
    epochs: int
    trials: int = Field(description="trials of the tune search")
    stopped_early: int = Field(description="trials ASHA stopped early")
    val_loss_se: float | None = Field(
        default=None, description="the standard error of val_loss over the validation complexes"
    )
    baseline_loss: float | None = Field(
        default=None, description="the validation loss of predicting the training labels' mean"
    )
    val_complexes: int | None = Field(default=None, description="the validation complexes")
    tied: int | None = Field(
        default=None,
        description="other trials whose validation loss is within the 95 % interval of the "
        "difference from the best's: the validation set cannot tell them apart",
    )
    verdict: Verdict | None = Field(
        default=None,
        description="learned (beats the mean-label baseline and every other trial), "
        "no_better_than_mean (its gain over the baseline is within two standard errors: no "
        "winner), indistinguishable (it beats the baseline, but not the tied trials: no winner)",
    )
    verdict_words: str | None = Field(default=None, description="the verdict, for people")


class MeasuredOn(_Record):
    device: str | None = Field(description="cpu or cuda:N, as the trial saw it")
    device_model: str | None = Field(description="the GPU's (or CPU's) model name")
    node_id: str | None = Field(description="the Ray node the probe ran on")


class StageBudget(_Record):
    """What the stage's policy judged the candidates by."""

    policy: str = Field(description="the stage's policy, by name (configs/stages.yaml)")
    minutes_allowed: float | None = Field(
        description="the longest cycle a candidate may take (target + window); none: no limit"
    )
    cycle_batches: int = Field(description="optimizer steps per cycle")
    min_batch_size: int
    max_batch_size: int


class Batching(_Record):
    """How the stage's profile batches its data: packed up to an atom budget (what the profile
    trains with), with its figures on the job's own data; and the fixed count, the conservative
    answer for a fixed batch size."""

    max_atoms_per_batch: int | None = Field(
        description="the atom budget (train.max_atoms_per_batch): the most atoms a batch holds"
    )
    batch_size: int = Field(description="the fixed batch: complexes of max_atoms atoms each")
    complexes_per_batch: float | None = Field(
        description="complexes a batch holds on the job's data at the budget (mean)"
    )
    step_seconds_on_data: float | None = Field(description="a step on the job's data")
    cycle_minutes_on_data: float | None = Field(
        description="cycle_batches steps on the job's data: the cycle the stage promises"
    )
    throughput_on_data: float | None = Field(description="complexes per second on the data")
    step_spread_on_data: float | None = Field(
        default=None,
        description="interquartile range / median of the timed steps on the data, per atom; "
        f"over {NOISY_SPREAD} the step on the data is uncertain (other work slowed some of "
        "them, or the data's batches differ that much)",
    )
    cycle_minutes_worst_case: float | None = Field(
        description="the same cycle at the fixed batch of worst-case complexes"
    )
    peak_bytes_on_data: int | None = Field(
        default=None,
        description="the footprint predicted on the job's data at the budget (its fullest batch "
        "of an epoch); the limit applies to the worst case, probe.peak_bytes (absent from "
        "results before it was measured)",
    )

    def step_words(self) -> str:
        """What a training step of the profile holds, as people read it: its atom budget and
        the complexes that makes on the job's data, or its fixed count."""
        if self.max_atoms_per_batch is None:
            return f"batches of {self.batch_size} complexes"
        text = f"batches of at most {self.max_atoms_per_batch:,} atoms"
        if self.complexes_per_batch is not None:
            text += f", about {self.complexes_per_batch:.0f} complexes a step on the job's data"
        return f"{text} ({self.batch_size} of the largest complexes it may hold)"


class Workers(_Record):
    """Production across a node's GPUs: how many data-parallel workers train the profile, and
    their step at that count, measured by a short distributed probe (never assumed linear)."""

    count: int = Field(description="data-parallel workers, one GPU each (train.workers)")
    reason: str = Field(description="why this count")
    gpus_per_node: int = Field(description="the most GPUs one node of the cluster has")
    atoms_per_worker: int | None = Field(
        default=None, description="the per-GPU atom budget each worker's batch stays within"
    )
    step_seconds: float | None = Field(
        default=None,
        description="a step of all the workers (each its batch, then the gradients' all-reduce), "
        "median of the timed steps; null where none was measured (one worker)",
    )
    cycle_minutes: float | None = Field(
        default=None, description="cycle_batches steps at that step: the cycle at this count"
    )
    throughput: float | None = Field(
        default=None, description="complexes a second, every worker's together"
    )
    atom_imbalance: float | None = Field(
        default=None,
        description="the mean over the timed steps of (most - fewest) / mean atoms of the "
        "workers' batches",
    )
    timed_steps: int = Field(default=0, description="the steps step_seconds is the median of")
    device: str | None = Field(
        default=None,
        description="what the probe's workers trained on: cuda, or cpu where the GPUs a node "
        "declares are not visible (a test cluster)",
    )
    batch_per_worker: int | None = Field(
        default=None,
        description="the complexes each worker's batch holds, where there is no atom budget",
    )
    ddp_bytes: int | None = Field(
        default=None,
        description="what DistributedDataParallel adds to a worker's step (its gradient buckets "
        "and all-reduce buffers), measured by the distributed probe on each worker: the most",
    )
    peak_bytes: int | None = Field(
        default=None,
        description="the footprint predicted for a worker's step at its budget: the one-GPU "
        "probe's, plus ddp_bytes (the budget is lowered until it is within limit_bytes)",
    )
    limit_bytes: int | None = Field(default=None, description="each GPU's limit, as the probe's")

    def words(self) -> str:
        """The workers in a line, as the command line and the job's log say them."""
        if self.step_seconds is None or self.cycle_minutes is None:
            return f"{self.count} worker ({self.reason})"
        return (
            f"{self.count} workers, one GPU each: a step of all of them {self.step_seconds:.3f} "
            f"s, {self.cycle_minutes:.1f} min per cycle, {self.throughput or 0:.1f} complexes/s "
            f"(measured at {self.count} workers on {self.device}; a step's batches "
            f"{self.atom_imbalance or 0:.1%} apart in atoms){self._memory_words()}"
        )

    def _memory_words(self) -> str:
        if self.ddp_bytes is None or self.peak_bytes is None or self.limit_bytes is None:
            return ""
        mib = 2**20
        return (
            f"; per GPU {self.peak_bytes / mib:,.0f} MiB of {self.limit_bytes / mib:,.0f} MiB, "
            f"with the {self.ddp_bytes / mib:,.1f} MiB DDP adds to a step"
        )


class StageResult(_Record):
    feasible: bool
    reason: str = Field(description="why this configuration, or why none")
    model: dict[str, Any] = Field(description="every knob of the model (ModelSpec)")
    batch_size: int | None
    optimizer: dict[str, Any] = Field(description="the optimizer section (configs/optimizer/)")
    scheduler: dict[str, Any] = Field(description="the scheduler section (configs/scheduler/)")
    probe: ProbeFigures | None
    validation: ValidationFigures | None
    device: MeasuredOn | None
    config_hash: str | None = Field(description="SHA-256 of the profile's whole configuration")
    profile: str | None = Field(description="profiles/<stage>.yaml, relative to the job folder")
    probed: int = Field(description="configurations probed by the fit search")
    pruned: int = Field(description="configurations answered without a probe")
    budget: StageBudget | None = Field(
        default=None, description="the stage's rules (absent from results before they were kept)"
    )
    batching: Batching | None = Field(
        default=None,
        description="atom budget and the figures on the job's data (absent from "
        "results before atom budgets)",
    )
    summary: str | None = Field(
        default=None,
        description="the answer in one line: the model, what a training step holds on the job's "
        "data, the optimizer and scheduler (as the command line prints it and the profile's "
        "meta says; absent from results before it was kept)",
    )
    workers: Workers | None = Field(
        default=None,
        description="production: the data-parallel workers the profile trains on and their "
        "measured cycle (absent for other stages and from results before it was kept)",
    )


class Provenance(_Record):
    versions: dict[str, str]
    seed: int
    spec: dict[str, Any] = Field(description="the job spec, as validated")
    started: str
    finished: str
    elapsed_seconds: float
    device_hours: float = Field(description="trial time x devices held, over every trial")
    reproducibility: list[str] = Field(
        default_factory=list,
        description="what of this result the same options, seed and hardware need not repeat, "
        "and why (empty: a rerun gives the same answers; absent from results before it was kept)",
    )


class JobResult(_Record):
    """``result.json``: the best configuration per stage, the hardware, and provenance."""

    job_id: str
    stages: dict[Stage, StageResult]
    hardware: dict[str, Any] = Field(description="the Ray cluster's nodes and the devices used")
    provenance: Provenance


def result_schema() -> dict[str, Any]:
    schema = JobResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://stagetune.dev/schemas/result.json"
    return schema
