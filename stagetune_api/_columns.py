"""The columns people see of a search's trials: which variable of a ``TrialRecord`` each shows,
its heading, and how its value is written (``kind``). The results page's trial tables (``GET
/choices`` gives it these) and ``audit.md``'s take their measured columns from here, so the two
name and write a figure alike."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stagetune_api._enums import Search

Kind = Literal["count", "bytes", "figure", "loss", "yes/no"]


class TrialColumn(BaseModel):
    model_config = ConfigDict(frozen=True)

    variable: str = Field(description="the TrialRecord variable it shows, e.g. probe.capacity")
    heading: str = Field(description="its heading, with the unit")
    kind: Kind = Field(
        description="how a value is written: count (a whole number, grouped), bytes (KiB, MiB, "
        "GiB), figure (three significant digits), loss (four decimals), yes/no"
    )


def _columns(*rows: tuple[str, str, Kind]) -> tuple[TrialColumn, ...]:
    return tuple(TrialColumn(variable=v, heading=h, kind=k) for v, h, k in rows)


#: Each search's measured columns, in the order shown.
TRIAL_COLUMNS: dict[Search, tuple[TrialColumn, ...]] = {
    Search.FIT: _columns(
        ("probe.capacity", "parameters", "count"),
        ("probe.max_batch_size", "largest batch", "count"),
        ("probe.max_atoms_per_batch", "atom budget (atoms)", "count"),
        ("probe.peak_bytes", "peak memory", "bytes"),
        ("probe.cycle_minutes", "cycle, worst case (min)", "figure"),
        ("probe.data.cycle_minutes", "cycle on the data (min)", "figure"),
        ("probe.throughput", "complexes/s, worst case", "figure"),
        ("probe.data.throughput", "complexes/s on the data", "figure"),
        ("probe.feasible", "feasible", "yes/no"),
    ),
    Search.TUNE: _columns(
        ("train.epochs_run", "epochs run", "count"),
        ("result.val_loss", "validation loss (MSE)", "loss"),
        ("result.val_rmse", "validation RMSE", "figure"),
        ("result.val_pearson", "Pearson r", "figure"),
    ),
}
