"""The analyses' shared framework: what a fit returns, how it reports the laws it tests, what an
analysis declares, and the helpers every fit uses. DataFrames in, DataFrames out.

Every fit returns a :class:`FitResult`: a status (``ok``, ``partial``, ``insufficient`` or
``unsupported``), a message saying why when it is not ``ok``, a table of estimates in which every
row carries its own status and message, the per-cell data behind it (what the figures draw), how
many runs it used, the runs it left out with the reason, a sentence on how its intervals are
computed, and the paper's predictions it tests (``laws``: value, CI, prediction, verdict).
Degenerate data never raise and never produce a number that was not estimated: such rows hold
NaN and say why.

A *condition* is one combination of the config columns that vary in the table, other than the
axes a fit sweeps, so a table that varies lr and train_fraction gets one boundary per (group, lr)
rather than a boundary pooled over learning rates. Tables label it in a ``condition`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import config, stats

CONFIG_COLUMNS = config.CONDITION_COLUMNS  # the columns that define an experimental condition
LAW_COLUMNS = ("law", "condition", "value", "lo", "hi", "predicted", "prediction",
               "contains", "verdict", "assumes", "n_runs")
# A verdict is one of three: the CI contains the prediction, it excludes it, or the data cannot
# test it here (and the verdict says why: a width below Theorem 3's, a boundary that moves with
# the step budget, a misfit beyond the model, a sufficient condition, another optimizer...).
CONSISTENT, REJECTED, NOT_A_TEST = "consistent", "rejected", "not a test here"
QUANTILES = ("t_grok_q25", "t_grok_median", "t_grok_q75")  # columns of censored_quantiles


def no_exclusions() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series(dtype="string"), "reason": pd.Series(dtype="string")})


@dataclass(frozen=True)
class FitResult:
    name: str
    status: str  # "ok" | "partial" (some rows not estimable) | "insufficient" | "unsupported"
    message: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    detail: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_runs: int = 0
    excluded: pd.DataFrame = field(default_factory=no_exclusions)
    method: str = ""
    # The predictions this fit tests, one row each (LAW_COLUMNS): measured value and CI, the
    # paper's prediction, whether the CI contains it, the verdict and what it assumes.
    laws: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LAW_COLUMNS))

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "partial")

    def verdict(self, law: str, condition: str = "") -> str:
        """The verdicts of a law this fit tested, e.g. 'consistent: CI contains 1', joined by
        '; '; '' where it did not test it."""
        rows = self.laws[(self.laws["law"] == law) & (self.laws["condition"] == condition)]
        return "; ".join(rows["verdict"])


# ---------------------------------------------------------------------------------------------
# Shared helpers


def split_usable(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs a fit may use, and the others (run_id, reason): diverged or unfinished runs."""
    reason = pd.Series(pd.NA, index=runs.index, dtype="string")
    if "final_test_acc" in runs:
        reason = reason.mask(runs["final_test_acc"].isna(), "unfinished: final_test_acc is NaN")
    if "diverged" in runs:
        diverged = runs["diverged"].fillna(False).astype(bool)
        where = ""
        if "diverged_step" in runs:
            where = " at step " + runs["diverged_step"].astype("string").fillna("?")
        reason = reason.mask(diverged, "diverged" + where)
    left_out = reason.notna()
    return runs[~left_out], exclusions(runs[left_out], reason[left_out])


def exclusions(runs: pd.DataFrame, reason) -> pd.DataFrame:
    ids = runs["run_id"] if "run_id" in runs else pd.Series(runs.index, index=runs.index)
    return pd.DataFrame({"run_id": ids.astype("string").to_numpy(),
                         "reason": pd.Series(reason, index=runs.index).astype("string").to_numpy()})


def varying_config(runs: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """The config columns that take more than one value in ``runs``, minus ``exclude``."""
    return [c for c in CONFIG_COLUMNS
            if c in runs and c not in exclude and runs[c].nunique(dropna=False) > 1]


def format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def condition_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """'lr=0.001, K=512' per row; '' when no column varies."""
    if not columns:
        return pd.Series("", index=frame.index, dtype="string")
    parts = [f"{c}=" + frame[c].map(format_value) for c in columns]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label.astype("string")


def as_float(column: pd.Series) -> np.ndarray:
    """Nullable Int64/boolean columns as float arrays with NaN for <NA>."""
    return pd.to_numeric(column, errors="coerce").astype("Float64").to_numpy(
        dtype=float, na_value=np.nan)


def precheck(name: str, runs: pd.DataFrame, required: tuple[str, ...]) -> FitResult | None:
    if runs is None or runs.empty:
        return FitResult(name, "insufficient", "the runs table is empty")
    missing = [c for c in required if c not in runs]
    if missing:
        return FitResult(name, "unsupported", f"the runs table lacks column(s) {missing}")
    return None


def overall(table: pd.DataFrame, estimated: tuple[str, ...] = ("ok",)) -> tuple[str, str]:
    """The fit's status from its rows' statuses, and a message naming the rows that failed."""
    if table.empty:
        return "insufficient", "no rows to fit"
    good = table["status"].isin(estimated)
    if good.all():
        return "ok", ""
    labels = table.get("label", table.get("condition", pd.Series("", index=table.index)))
    failed = "; ".join(f"{lab or 'all runs'}: {msg}" for lab, msg in
                       zip(labels[~good], table.loc[~good, "message"], strict=True))
    return ("partial" if good.any() else "insufficient"), failed


def with_wilson(cells: pd.DataFrame, level: float) -> pd.DataFrame:
    lo, hi = stats.wilson_interval(cells["n_generalized"], cells["n"], level)
    return cells.assign(fraction=cells["n_generalized"] / cells["n"], fraction_lo=lo,
                        fraction_hi=hi)


def censored_quantiles(t_grok: np.ndarray) -> np.ndarray:
    """The quartiles of grokking steps with NaN (not grokked within the steps trained) counted
    later than any step: a quartile that needs such a run, or lies between one and a grokked
    run, is ``inf``."""
    finite = t_grok[np.isfinite(t_grok)]
    if not len(finite):
        return np.full(3, np.inf)
    later = 2 * finite.max() + 1  # any value above every grokked run orders the same
    quartiles = np.quantile(np.where(np.isfinite(t_grok), t_grok, later), [0.25, 0.5, 0.75])
    return np.where(quartiles > finite.max(), np.inf, quartiles)


def law_row(law: str, condition: str, value: float, lo: float, hi: float, predicted: float,
            prediction: str, n_runs: int, *, assumes: str = "",
            not_a_test: str = "") -> dict[str, object]:
    """One prediction confronted with the data: the measured value, its CI, whether the CI
    contains the prediction, and the verdict: ``consistent``, ``rejected``, or ``not a test
    here`` with its reason (``not_a_test``; also when there is no CI). ``assumes`` names what
    the verdict takes for granted (e.g. "boundaries at 3000 steps"), printed beside it."""
    contains = bool(lo <= predicted <= hi) if np.isfinite([lo, hi]).all() else None
    if not_a_test or contains is None:
        verdict = f"{NOT_A_TEST}: {not_a_test or 'no CI'}"
    else:
        verdict = f"{CONSISTENT if contains else REJECTED}: {ci_text(contains, predicted)}"
    return dict(zip(LAW_COLUMNS, (law, condition, value, lo, hi, predicted, prediction, contains,
                                  verdict, assumes, n_runs), strict=True))


def ci_text(contains: bool, predicted: float) -> str:
    return f"CI {'contains' if contains else 'excludes'} {predicted:g}"


def laws_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(LAW_COLUMNS))


# ---------------------------------------------------------------------------------------------
# What an analysis declares


@dataclass(frozen=True)
class Inputs:
    """What a fit may read: the tables and the fits of the analyses before it."""

    runs: pd.DataFrame
    curves: pd.DataFrame | None
    features: pd.DataFrame | None
    fits: dict[str, FitResult]
    n_boot: int
    level: float
    seed: int


@dataclass(frozen=True)
class Analysis:
    name: str
    title: str
    fit: Callable[[Inputs], FitResult]
    section: Callable[[FitResult, float], list[str]]  # Markdown lines of its report section
    # Each figure from (its fit, every fit, by: the field the caller wants as colours or None).
    figures: dict[str, Callable[[FitResult, dict[str, FitResult], str | None], Figure]]
    varies: tuple[str, ...] = ()  # runs-table columns that must take ≥ 2 values
    tables: tuple[str, ...] = ()  # the other tables it reads: "curves", "features"
    builds_on: str | None = None  # an earlier analysis whose usable result it needs

    def unmet(self, inputs: Inputs) -> str | None:
        """What the data lack for this analysis, or None."""
        runs = inputs.runs
        if runs is None or runs.empty:
            return "the runs table is empty"
        constant = [c for c in self.varies if c not in runs or runs[c].nunique(dropna=False) < 2]
        if constant:
            return "needs " + " and ".join(
                f"{c} to vary, it is {format_value(runs[c].iloc[0])}" if c in runs
                else f"a {c} column" for c in constant)
        missing = [t for t in self.tables if getattr(inputs, t) is None]
        if missing:
            return f"needs the {' and '.join(missing)} table, written with diagnostics = true"
        if self.builds_on and not inputs.fits[self.builds_on].usable:
            before = inputs.fits[self.builds_on]
            return f"needs a {before.name} fit, which is {before.status}: {before.message}"
        return None

