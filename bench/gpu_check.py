"""The probe's promises measured on a real accelerator, side by side with Lightning's finder.

    python bench/gpu_check.py --out DIR [--device cuda:0|cpu] [--memory-budget SIZE] [--quick]
                              [--parts probe,lightning,...]

Ray-free (it imports neither Ray, HyperOpt, gemmi nor RDKit), so it runs on a bare GPU machine
with torch, torch_geometric, PyYAML, numpy and pydantic. Writes ``DIR/gpu_check.json`` (keys
``meta`` and one per part, each with its figures, or ``skipped``, ``timed_out`` or ``error``
and why) and ``DIR/gpu_check.md``; the JSON is rewritten after every part, so a run stopped from
outside keeps what it had measured. Each part has its own time limit (``LIMITS``), so one slow
part cannot eat the others. The parts:

- ``probe``: a prototyping, validation and production size on worst-case complexes: the probe's
  batch, steps and wall time; 20 steady steps of a fresh trainer at that batch, measured by an
  instrument the probe does not use (``Instrument``: NVML on a GPU, the allocator's reserved and
  allocated peaks beside it; the kernel's peak resident set of a fresh process on a CPU),
  against the predicted footprint; one step at 5 % more must not fit;
- ``lightning``: Lightning's ``BatchSizeFinder`` (binsearch, its defaults) on the same models,
  batches and limit (``bench/_lightning_peer.py``), and whether its batch survives a worst-case
  step under the limit;
- ``cycle``: ``cycle_batches`` training steps of the prototyping size at the probe's batch
  (fewer when they would outlast the part's limit; it says so): predicted against measured time,
  footprint, out-of-memory errors;
- ``oom``: 20 out-of-memory errors in a row, then memory against its baseline and a fitting step;
- ``precision``: fp32 against bf16 on the prototyping size: batch and throughput;
- ``atoms``: an epoch of real-size complexes packed up to the probe's atom budget: every
  batch's peak against the limit;
- ``workers``: data-parallel training at that budget on the GPUs the device has (one: it says
  so and measures one worker; a CPU: 1 and 2 gloo processes), complexes a second, what DDP adds
  to a rank's step, and from two workers the fastest rank's wait for the slowest under the
  balanced plan and packing rank by rank (``bench/_gpu_workers.py``);
- ``repeat``: the probe's step on data of mixed sizes, five times in a row, against the mean
  step of a real run of a whole cycle at its atom budget (``bench/_gpu_repeat.py``).

``--parts`` runs some of them (a comma-separated list; all by default), so that a part can be
run again, or on its own, within one call of the device tool.

The limit is the probe's: ``memory_fraction`` (0.9) of the budget. On a GPU the budget defaults
to 24 GiB, which keeps batches, and so the whole check, to a few minutes on a large card; the
caching allocator is capped at the limit (``torch.cuda.set_per_process_memory_fraction``), so
every tool meets real CUDA out-of-memory errors there. On a CPU the budget is declared and the
out-of-memory errors of the ``oom`` part are real allocator errors, but forced (an allocation no
allocator grants), since a CPU raises none under a declared budget.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import math
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a bare checkout on the GPU machine: nothing is installed there
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

from model import (  # noqa: E402
    TrainConfig,
    Trainer,
    live_bytes,
    load_train_config,
    resolve_precision,
)
from tuner import (  # noqa: E402
    Device,
    Probe,
    ProbeResult,
    ProbeSample,
    device_for,
    discover,
    format_size,
    is_out_of_memory,
    load_stages,
    parse_size,
)

# (stage, hidden_channels, num_layers, num_rbf): one size inside each stage's space of
# configs/stages.yaml; --quick uses tiny stand-ins that a 2-core CPU probes in seconds.
SIZES = [("prototyping", 64, 3, 16), ("validation", 128, 6, 32), ("production", 256, 8, 32)]
QUICK_SIZES = [("prototyping", 16, 2, 8), ("validation", 32, 2, 8), ("production", 32, 3, 8)]
LIMITS = {
    "probe": 100,
    "lightning": 160,
    "cycle": 60,
    "oom": 30,
    "precision": 50,
    "atoms": 50,
    "workers": 40,
    "repeat": 120,
}
MAX_BATCH = 4096  # the search is not capped by a stage's max_batch_size here
OOM_ERRORS = 20
STEADY_STEPS = 20  # steps the independent instrument measures after a warm-up step


class PartTimeout(Exception):
    """A part ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``PartTimeout`` in the main thread after ``seconds`` (between Python bytecodes: a
    CUDA kernel in flight finishes first)."""

    def stop(signum: int, frame: object) -> None:
        raise PartTimeout(f"stopped at its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass
class Setup:
    device: Device  # memory_bytes is the budget
    limit_bytes: int
    memory_fraction: float
    atoms: int
    sizes: list[tuple[str, int, int, int]]
    cycle_batches: int
    sample: ProbeSample
    argv: list[str]  # the options that build the same set-up in another process
    results: dict[str, ProbeResult] = dataclasses.field(default_factory=dict)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device.name)

    def config(self, stage: str, *extra: str) -> TrainConfig:
        _, hidden, layers, rbf = next(s for s in self.sizes if s[0] == stage)
        return load_train_config(
            [
                f"model.hidden_channels={hidden}",
                f"model.num_layers={layers}",
                f"model.num_rbf={rbf}",
                f"model.num_heads={8 if hidden >= 64 else 2}",
                f"train.device={self.device.name}",
                "optimizer.log_config=false",
                *extra,
            ]
        )

    def model_name(self, stage: str) -> str:
        _, hidden, layers, rbf = next(s for s in self.sizes if s[0] == stage)
        return f"{hidden} ch x {layers} layers, {rbf} rbf"

    def probe(self, config: TrainConfig) -> Probe:
        return Probe(config, self.device, self.sample, self.memory_fraction, self.cycle_batches)

    def result(self, stage: str) -> ProbeResult:
        """The probe part's answer for ``stage``, probed again if that part did not get to it."""
        if stage not in self.results:
            with self.probe(self.config(stage)) as probe:
                self.results[stage] = probe.find_max_batch(MAX_BATCH)
        return self.results[stage]


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class Instrument:
    """Memory measured the way the probe does not: the footprint is the bytes held before
    ``start`` plus what the device gave the steps after it. On a GPU, by NVML's used memory
    (what ``nvidia-smi`` shows) against its reading at ``start``, once the caching allocator gave
    back what it was not using (the CUDA context is left out; the allocator keeps what it
    reserved, so the reading after the steps is its peak); the allocator's own
    ``max_memory_reserved`` and ``max_memory_allocated`` beside it. On a CPU, by the kernel's
    peak resident set (``VmHWM``, reset once freed heap pages are given back). Use ``start()``
    then ``read(held)``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base: int | None = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            release(self.device)
            self._base = nvml_used_bytes(self.device)
        else:
            from _measure import reset_peak

            self._base = reset_peak()

    def read(self, held: int = 0) -> dict[str, Any]:
        if self.device.type != "cuda":
            from _measure import peak_since_reset

            assert self._base is not None
            growth = peak_since_reset() - self._base
            return {"instrument": "kernel peak RSS", "footprint_bytes": held + growth}
        torch.cuda.synchronize(self.device)
        used = nvml_used_bytes(self.device)
        return {
            "instrument": "NVML" if used is not None else None,
            "footprint_bytes": (
                None if used is None or self._base is None else held + used - self._base
            ),
            "allocated_bytes": int(torch.cuda.max_memory_allocated(self.device)),
            "reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
        }


def nvml_used_bytes(device: torch.device) -> int | None:
    """NVML's used memory of the GPU that ``device`` is (found by its UUID, so that
    ``CUDA_VISIBLE_DEVICES`` cannot mislead it); None without pynvml or a match. Device-wide, not
    per process: in a container NVML sees other process ids than the process's own, and on the
    lent machine nothing else uses the GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        name = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(name)
        except pynvml.NVMLError:
            return None
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    finally:
        pynvml.nvmlShutdown()


def apart(setup: Setup, what: str, **job: Any) -> dict[str, Any]:
    """``MEASURES[what](setup, **job)``, on a CPU in a fresh process. The kernel's peak resident
    set of a process counts every page its heap has held, and the heap keeps what earlier parts
    freed, split by what they left behind: in the check's own process the same steps counted up
    to 18 % more from run to run, and went over the limit where a fresh training process stays
    under it. A GPU's caching allocator gives its blocks back (``release``), so there the steps
    run here."""
    if setup.torch_device.type == "cuda":
        return MEASURES[what](setup, **job)
    order = json.dumps({"what": what, **job})
    child = [sys.executable, str(Path(__file__).resolve()), *setup.argv, "--measure", order]
    done = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RuntimeError(f"the fresh process measuring {what} failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady_steps(setup: Setup, stage: str, batch_size: int) -> dict[str, Any]:
    """The independent instrument over ``STEADY_STEPS`` steps at ``batch_size`` of a fresh
    trainer, after one warm-up step (which creates the optimizer state)."""
    dev = setup.torch_device
    trainer = Trainer(setup.config(stage), dev, setup.cycle_batches)
    batch = setup.sample.batch(batch_size).to(dev)
    instrument = Instrument(dev)
    oom = False
    try:
        trainer.train_step(batch)
        trainer.flush()
        held = trainer.held_bytes()
        instrument.start()
        for _ in range(STEADY_STEPS):
            trainer.train_step(batch)
            trainer.flush()
        figures = instrument.read(held)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        oom, figures = True, {}
    del trainer, batch
    release(dev)
    return {**figures, "steps": STEADY_STEPS, "oom": oom}


def within(measured: dict[str, Any], limit: int) -> bool | None:
    """Whether the instrument's footprint is under the limit (None when it read nothing)."""
    footprint = measured.get("footprint_bytes")
    return None if footprint is None else footprint <= limit


def part_probe(setup: Setup, out: dict[str, Any]) -> None:
    out["models"] = rows = []
    for stage, *_ in setup.sizes:
        row: dict[str, Any] = {"stage": stage, "model": setup.model_name(stage)}
        rows.append(row)
        config = setup.config(stage)
        t0 = time.perf_counter()
        with setup.probe(config) as probe:
            result = probe.find_max_batch(MAX_BATCH)
        setup.results[stage] = result
        row.update(
            fits=result.fits,
            batch_size=result.max_batch_size,
            probe_steps=result.probe_steps,
            probe_seconds=round(time.perf_counter() - t0, 2),
            capacity=result.capacity,
            predicted_peak_bytes=result.peak_bytes,
            step_seconds=result.step_seconds,
            cycle_minutes=result.cycle_minutes,
            throughput=result.throughput,
        )
        if not result.fits:
            continue
        row["live_peak_bytes"] = result.live_peak_bytes
        measured = apart(setup, "steps", stage=stage, batch_size=result.max_batch_size)
        row["measured"] = measured
        footprint = measured.get("footprint_bytes")
        row["within_limit"] = within(measured, setup.limit_bytes)
        if footprint and result.peak_bytes:
            row["peak_error"] = result.peak_bytes / footprint - 1
        above = max(result.max_batch_size + 1, math.ceil(result.max_batch_size * 1.05))
        with setup.probe(config) as probe:
            m = probe.measure(above, timed_steps=0)
        row["above"] = {
            "batch_size": above,
            "fits": m.fits,
            "oom": m.oom,
            "peak_bytes": m.peak_bytes,
        }


def part_lightning(setup: Setup, out: dict[str, Any]) -> None:
    try:
        import _lightning_peer as peer

        pl = peer.lightning()
    except ImportError as exc:
        out["skipped"] = f"Lightning is not installed here ({exc})"
        return
    out["version"] = pl.__version__
    out["models"] = rows = []
    dev = setup.torch_device
    for stage, *_ in setup.sizes:
        config = setup.config(stage)
        ours = setup.result(stage)
        row: dict[str, Any] = {
            "stage": stage,
            "model": setup.model_name(stage),
            "probe": {"batch_size": ours.max_batch_size, "steps": ours.probe_steps},
        }
        rows.append(row)
        precision = peer.precision_of(resolve_precision(config, dev))
        with setup.probe(config) as probe:
            live_limit = probe.live_limit_bytes  # the limit on a step's live peak, as ours
        for key, per_trial in (("lightning", 3), ("lightning_one_step", 1)):
            found = peer.find_batch(
                config, setup.sample.data, dev, live_limit, precision, steps_per_trial=per_trial
            )
            release(dev)
            if per_trial == 1:  # the rule ours follows: the answer's 2 timed steps counted
                found["steps"] += 2
            row[key] = found
            with setup.probe(config) as probe:
                m = probe.measure(found["batch_size"], timed_steps=0)
            found["survives"] = m.fits
            found["worst_case"] = {"fits": m.fits, "oom": m.oom, "peak_bytes": m.peak_bytes}


def part_cycle(setup: Setup, out: dict[str, Any], limit_seconds: float) -> None:
    result = setup.result("prototyping")
    if not result.fits or result.step_seconds is None:
        out["skipped"] = "the prototyping size does not fit at batch 1"
        return
    steps = setup.cycle_batches
    budget = 0.6 * limit_seconds  # room for the trainer, the warm-up and what the probe missed
    if result.step_seconds * steps > budget:
        steps = max(5, math.floor(budget / result.step_seconds))
    out.update(
        model=setup.model_name("prototyping"),
        batch_size=result.max_batch_size,
        cycle_batches=setup.cycle_batches,
        steps=steps,
        predicted_step_seconds=result.step_seconds,
        predicted_seconds=result.step_seconds * steps,
    )
    ran = apart(setup, "cycle", batch_size=result.max_batch_size, steps=steps)
    done, seconds, measured = ran["steps_done"], ran["seconds"], ran["measured"]
    out.update(
        steps_done=done,
        oom_errors=ran["oom_errors"],
        measured_seconds=round(seconds, 3),
        measured_step_seconds=seconds / max(done, 1),
        time_error=(result.step_seconds * done) / seconds - 1 if done else None,
        predicted_cycle_minutes=result.cycle_minutes,
        measured_cycle_minutes=setup.cycle_batches * seconds / max(done, 1) / 60,
        measured=measured,
        predicted_peak_bytes=result.peak_bytes,
        limit_bytes=setup.limit_bytes,
        within_limit=within(measured, setup.limit_bytes),
    )


def cycle_steps(setup: Setup, batch_size: int, steps: int) -> dict[str, Any]:
    """``steps`` training steps of the prototyping size at ``batch_size`` after a warm-up step
    (the optimizer state, as the probe's primed steps have), by wall clock and the independent
    instrument; they stop at the first out-of-memory error."""
    dev = setup.torch_device
    trainer = Trainer(setup.config("prototyping"), dev, steps)
    batch = setup.sample.batch(batch_size).to(dev)
    trainer.train_step(batch)
    trainer.flush()
    held = trainer.held_bytes()
    instrument = Instrument(dev)
    instrument.start()
    ooms, done = 0, 0
    t0 = time.perf_counter()
    for _ in range(steps):
        try:
            trainer.train_step(batch)
            trainer.flush()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            ooms += 1
            break
        done += 1
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    measured = instrument.read(held)
    del trainer, batch
    release(dev)
    return {"steps_done": done, "oom_errors": ooms, "seconds": seconds, "measured": measured}


def part_oom(setup: Setup, out: dict[str, Any]) -> None:
    result = setup.result("prototyping")
    fitting = max(1, result.max_batch_size)
    dev = setup.torch_device
    with setup.probe(setup.config("prototyping")) as probe:
        first = probe.measure(fitting, timed_steps=0)
        baseline = live_bytes(dev)
        if dev.type == "cuda":
            failing = 4 * fitting + 8  # far past the allocator's cap at the limit
            out["cause"] = f"a worst-case batch of {failing} over the allocator's cap"
            hook = None
        else:
            failing = fitting
            out["cause"] = "forced: an allocation the CPU allocator refuses, in the forward pass"

            def refuse(module: torch.nn.Module, args: object) -> None:
                torch.empty(1 << 62, dtype=torch.uint8)

            hook = probe.trainer.model.register_forward_pre_hook(refuse)
        errors = [probe.measure(failing, timed_steps=0) for _ in range(OOM_ERRORS)]
        if hook is not None:
            hook.remove()
        after = live_bytes(dev)
        final = probe.measure(fitting, timed_steps=1)
    out.update(
        fitting_batch=fitting,
        first_step_fits=first.fits,
        failing_batch=failing,
        attempts=OOM_ERRORS,
        oom_errors=sum(m.oom for m in errors),
        baseline_bytes=baseline,
        after_bytes=after,
        leaked_bytes=None if baseline is None or after is None else after - baseline,
        fitting_step_after={"fits": final.fits, "step_seconds": final.median_seconds},
    )


def part_precision(setup: Setup, out: dict[str, Any]) -> None:
    out["model"] = setup.model_name("prototyping")
    for precision in ("fp32", "bf16"):
        with setup.probe(setup.config("prototyping", f"train.precision={precision}")) as probe:
            r = probe.find_max_batch(MAX_BATCH)
        out[precision] = {
            "batch_size": r.max_batch_size,
            "throughput": r.throughput,
            "step_seconds": r.step_seconds,
            "peak_bytes": r.peak_bytes,
        }
    fp32, bf16 = out["fp32"], out["bf16"]
    if fp32["throughput"] and bf16["throughput"]:
        out["bf16_speedup"] = bf16["throughput"] / fp32["throughput"]
        out["bf16_batch_ratio"] = bf16["batch_size"] / fp32["batch_size"]


def mixed_complexes(atoms: list[int]) -> list:
    """Synthetic worst-case complexes of these sizes, the same in every process."""
    from model import synthetic_complex

    return [synthetic_complex(1, i, n, True) for i, n in enumerate(atoms)]


def epoch(setup: Setup, atoms: list[int], packs: list[list[int]]) -> dict[str, Any]:
    """The independent instrument over an epoch of ``packs`` of ``mixed_complexes(atoms)``
    trained as a run trains them (a fresh trainer, unprofiled steps)."""
    complexes = mixed_complexes(atoms)
    dev = setup.torch_device
    trainer = Trainer(setup.config("prototyping"), dev, len(packs))
    batches = [Batch.from_data_list([complexes[i] for i in pack]).to(dev) for pack in packs]
    trainer.train_step(batches[0])  # the optimizer state
    instrument = Instrument(dev)
    instrument.start()
    for batch in batches:
        trainer.train_step(batch)
    measured = instrument.read(trainer.held_bytes())
    del trainer, batches
    release(dev)
    return measured


def part_atoms(setup: Setup, out: dict[str, Any]) -> None:
    """An epoch of batches of synthetic complexes of mixed sizes (half the probe's atoms to all
    of them) packed up to the probe's atom budget (the prototyping size): every batch's peak
    against the limit."""
    import random

    from torch_geometric.loader import DynamicBatchSampler

    result = setup.result("prototyping")
    budget = result.max_atoms_per_batch
    if budget is None:
        out["skipped"] = "the probe found no atom budget (the prototyping size does not fit)"
        return
    draw = random.Random(1)
    count = 12 * budget // setup.atoms + 8
    atoms = [draw.randint(setup.atoms // 2, setup.atoms) for _ in range(count)]
    complexes = mixed_complexes(atoms)
    packs = [p for p in DynamicBatchSampler(complexes, max_num=budget, mode="node")]
    out.update(
        model=setup.model_name("prototyping"),
        max_atoms_per_batch=budget,
        fixed_batch=result.max_batch_size,
        limit_bytes=setup.limit_bytes,
        batches=len(packs),
        complexes=len(complexes),
    )
    out["measured"] = apart(setup, "epoch", atoms=atoms, packs=packs)
    peaks: list[int] = []
    out["peaks_bytes"] = peaks  # each batch's predicted footprint (its live peak, scaled)
    with setup.probe(setup.config("prototyping")) as probe:
        for pack in packs:
            m = probe.measure_batch(Batch.from_data_list([complexes[i] for i in pack]), 0)
            peaks.append(probe.footprint(m.peak_bytes) if m.peak_bytes is not None else -1)
            out["oom_errors"] = out.get("oom_errors", 0) + int(m.oom)
    shares = [p / setup.limit_bytes for p in peaks if p > 0]
    out.update(
        over_limit=sum(p > setup.limit_bytes for p in peaks) + out.get("oom_errors", 0),
        largest_share=max(shares) if shares else None,
        mean_share=sum(shares) / len(shares) if shares else None,
        complexes_per_batch=len(complexes) / len(packs),
        largest_batch=max(len(p) for p in packs),
    )


def part_workers(setup: Setup, out: dict[str, Any]) -> None:
    """Data-parallel training of the prototyping size at its atom budget on mixed sizes
    (``bench/_gpu_workers.py``), for each worker count the machine offers."""
    import random

    from _gpu_workers import launch, summary, worker_counts

    budget = setup.result("prototyping").max_atoms_per_batch
    if budget is None:
        out["skipped"] = "the probe found no atom budget (the prototyping size does not fit)"
        return
    counts, note = worker_counts(setup.torch_device)
    draw = random.Random(2)  # about 6 batches a rank an epoch at the most workers
    count = 6 * max(counts) * budget // (3 * setup.atoms // 4) + 8
    atoms = [draw.randint(setup.atoms // 2, setup.atoms) for _ in range(count)]
    timed = 6 if "--quick" in setup.argv else 20
    runs: list[dict[str, Any]] = []
    out.update(
        model=setup.model_name("prototyping"),
        max_atoms_per_batch=budget,
        complexes=count,
        note=note,
        runs=runs,  # filled as each count is measured: a part stopped keeps the first
    )
    for world in counts:
        job = {"atoms": atoms, "budget": budget, "timed": timed}
        runs.append(summary(world, launch(setup.argv, world, job)))


def rank_measure(setup: Setup, **job: Any) -> dict[str, Any]:
    """One rank of ``part_workers`` (``bench/_gpu_workers.py``, ``rank_figures``)."""
    from _gpu_workers import rank_figures

    complexes = mixed_complexes(job.pop("atoms"))
    return rank_figures(setup.config("prototyping"), complexes, **job)


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "steps": steady_steps,
    "cycle": cycle_steps,
    "epoch": epoch,
    "rank": rank_measure,
}


def part_repeat(setup: Setup, out: dict[str, Any]) -> None:
    """Five probes in a row against a real run (``bench/_gpu_repeat.py``)."""
    from _gpu_repeat import part_repeat as repeat

    repeat(setup, out, mixed_complexes)


PARTS: list[tuple[str, Callable[..., None]]] = [
    ("probe", part_probe),
    ("lightning", part_lightning),
    ("cycle", part_cycle),
    ("oom", part_oom),
    ("precision", part_precision),
    ("atoms", part_atoms),
    ("workers", part_workers),
    ("repeat", part_repeat),
]


def run_part(name: str, part: Callable[..., None], setup: Setup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    limit = LIMITS[name]
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            if name == "cycle":
                part(setup, out, limit)
            else:
                part(setup, out)
    except PartTimeout as exc:
        out["timed_out"] = str(exc)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=-6)
    finally:
        release(setup.torch_device)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def build_setup(args: argparse.Namespace) -> Setup:
    name = args.device
    if name == "auto":
        name = "cuda:0" if torch.cuda.is_available() else "cpu"
    cuda = name.startswith("cuda")
    budget_text = args.memory_budget or ("24GiB" if cuda else "512MiB")
    stages = load_stages()
    device = device_for(discover(None if cuda else budget_text), name)
    budget = parse_size(budget_text)
    if cuda:
        total = device.memory_bytes
        if budget > total:
            raise SystemExit(
                f"gpu_check: --memory-budget {budget_text} is more than {device.name}'s "
                f"{format_size(total)}"
            )
        device = dataclasses.replace(device, memory_bytes=budget)
    limit = int(budget * stages.memory_fraction)
    if cuda:
        torch.cuda.set_per_process_memory_fraction(limit / total, torch.device(name))
    atoms = 80 if args.quick else 600
    sample = ProbeSample.synthetic(atoms)
    return Setup(
        device=device,
        limit_bytes=limit,
        memory_fraction=stages.memory_fraction,
        atoms=atoms,
        sizes=QUICK_SIZES if args.quick else SIZES,
        cycle_batches=20 if args.quick else stages.cycle_batches,
        sample=sample,
        argv=[
            "--device",
            name,
            "--memory-budget",
            budget_text,
            *(["--quick"] if args.quick else []),
        ],
    )


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("torch_geometric", "lightning", "pytorch_lightning"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the two reports (required)")
    parser.add_argument("--device", default="auto", help="cuda:N or cpu (default: cuda:0 if any)")
    parser.add_argument("--memory-budget", help="the budget (default: 24GiB on a GPU, 512MiB CPU)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a 20-step cycle")
    parser.add_argument("--parts", help="the parts to run, comma-separated (default: all)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one of MEASURES, in this process
    args = parser.parse_args(argv)
    names = [name for name, _ in PARTS]
    chosen = args.parts.split(",") if args.parts else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--parts: no part named {', '.join(unknown)}; the parts: {', '.join(names)}")
    if args.measure:
        order = json.loads(args.measure)
        print(json.dumps(MEASURES[order.pop("what")](build_setup(args), **order)))
        return 0
    if args.out is None:
        parser.error("the following arguments are required: --out")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    setup = build_setup(args)
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python bench/gpu_check.py", *(argv or sys.argv[1:])]),
            "device": setup.device.name,
            "device_model": setup.device.model,
            "budget_bytes": setup.device.memory_bytes,
            "limit_bytes": setup.limit_bytes,
            "sample": setup.sample.source,
            "quick": args.quick,
            "versions": versions(),
            "limits_seconds": LIMITS,
        }
    }
    for name, part in PARTS:
        if name not in chosen:
            continue
        print(f"gpu_check: {name} ...", flush=True)
        report[name] = run_part(name, part, setup)
        report["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
        state = next((k for k in ("skipped", "timed_out", "error") if k in report[name]), "done")
        print(f"gpu_check: {name}: {state} in {report[name]['seconds']} s", flush=True)
    from _gpu_report import markdown

    (args.out / "gpu_check.md").write_text(markdown(report))
    print((args.out / "gpu_check.md").read_text())
    return 1 if any("error" in report[name] for name in chosen) else 0


if __name__ == "__main__":
    sys.exit(main())
