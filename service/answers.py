"""What the command line says of an answer: a probe's, a job's stages' and a training run's,
in the words and units people read (``--json`` prints the records themselves)."""

from __future__ import annotations

from stagetune_api import (
    NOISY_SPREAD,
    ProbeResult,
    StageResult,
    TrainRunReport,
    format_size,
    limit_words,
)


def say_probe(result: ProbeResult, cycle_batches: int, memory_fraction: float = 1.0) -> None:
    """``stagetune probe``'s answer: the largest batch, its memory and time, and on the data."""
    print(
        f"largest batch {result.max_batch_size} on {result.device}: peak "
        f"{format_size(result.peak_bytes or 0)} of "
        f"{limit_words(result.limit_bytes, memory_fraction)}, "
        f"{result.step_seconds:.3f} s/step, {result.cycle_minutes:.1f} min per "
        f"{cycle_batches}-step cycle, {result.throughput:.1f} samples/s "
        f"({result.probe_steps} probe steps, {result.capacity:,} parameters)"
    )
    if result.max_atoms_per_batch is not None:
        print(f"atom budget: at most {result.max_atoms_per_batch} atoms a batch")
    if result.data is not None:
        d = result.data
        print(
            f"on the data ({d.complexes} complexes, {d.atoms_mean:.0f} atoms on average): "
            f"{d.complexes_per_batch:.1f} complexes a batch, {d.step_seconds:.3f} s/step, "
            f"{d.cycle_minutes:.1f} min per cycle, {d.throughput:.1f} complexes/s"
            + ("" if d.peak_bytes is None else f", footprint {format_size(d.peak_bytes)}")
            + (
                f" (timings noisy: the timed steps spread over {100 * d.step_spread:.0f} %)"
                if d.noisy
                else ""
            )
        )


def answer_words(answer: StageResult) -> str:
    """A stage's answer as ``stagetune optimize`` prints it: its summary (what result.json and
    the profile say), then its speed; why there is none; an earlier result's figures."""
    if not answer.feasible:
        return str(answer.reason)
    probe, batches = answer.probe, answer.batching
    if answer.summary is not None:
        said = answer.summary
    else:  # a result written before it kept its summary
        knobs = " ".join(
            f"{k}={answer.model[k]}" for k in ("hidden_channels", "num_layers", "num_rbf")
        )
        said = f"{knobs} at batch {answer.batch_size}, {answer.optimizer.get('name')}"
    if batches is not None and batches.max_atoms_per_batch and batches.cycle_minutes_on_data:
        speed = (
            f"; {batches.throughput_on_data:.1f} complexes/s, "
            f"{batches.cycle_minutes_on_data:.1f} min per cycle on the data"
        )
        spread = batches.step_spread_on_data or 0.0
        if spread > NOISY_SPREAD:
            speed += f" (timings noisy: the timed steps spread over {100 * spread:.0f} %)"
    elif probe and probe.throughput and probe.cycle_minutes:
        speed = f"; {probe.throughput:.1f} samples/s, {probe.cycle_minutes:.1f} min per cycle"
    else:
        speed = ""
    return said + speed


def say_trained(report: TrainRunReport) -> None:
    """``stagetune train``'s last word: the run's figures and its folder."""
    last = report.epochs[-1]
    steps = (
        f"; a step {report.step_seconds:.3f} s (median of {report.timed_steps} timed)"
        if report.step_seconds is not None
        else ""
    )
    peak = f", peak {format_size(report.peak_bytes)}" if report.peak_bytes is not None else ""
    print(
        f"trained {report.parameters:,} parameters for {last.epoch} epochs on {report.device} "
        f"({report.precision}) in {report.seconds:.1f}s: val_rmse {last.val_rmse:.3f}, "
        f"val_pearson {last.val_pearson:.3f}{steps}{peak}\nrun folder: {report.run_dir}"
    )
