"""The columns people see of a search's trials: the figures its records mark ``Shown``, each
with the variable it shows, its heading and how its value is written. The results page's trial
tables (``GET /choices`` gives it these) and ``audit.md``'s take their measured columns from
here, so the two name and write a figure alike, and only as the records name it."""

from __future__ import annotations

from stagetune_api._enums import Search
from stagetune_api._figures import TrialColumn, columns_of
from stagetune_api._reports import FitReport, TrainedReport

#: Each search's measured columns, in the order shown.
TRIAL_COLUMNS: dict[Search, tuple[TrialColumn, ...]] = {
    Search.FIT: tuple(columns_of(FitReport)),
    Search.TUNE: tuple(columns_of(TrainedReport)),
}
