"""The analyses' fits with confidence intervals, from the runs (and curves, features) tables:
DataFrames in, DataFrames out. Which fits a table supports is decided in :mod:`grokjax.analyses`.

Every fit returns a :class:`FitResult`: a status (``ok``, ``partial``, ``insufficient`` or
``unsupported``), a message saying why when it is not ``ok``, a table of estimates in which every
row carries its own status and message, the per-cell data behind it (what the figures draw), how
many runs it used, the runs it left out with the reason, a sentence on how its intervals are
computed, and the paper's predictions it tests (``laws``: value, CI, prediction, verdict).
Degenerate data never raise and never produce a number that was not estimated: such rows hold
NaN and say why. A run has grokked at the first step with test accuracy ≥ 0.99
(``GROKKED_COLUMN``), the threshold of ``generalized`` too.

A *condition* is one combination of the config columns that vary in the table, other than the
axes a fit sweeps, so a table that varies lr and train_fraction gets one boundary per (group, lr)
rather than a boundary pooled over learning rates. Tables label it in a ``condition`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as distributions

from grokjax import config, stats
from grokjax.results import GENERALIZED_TEST_ACC

REFERENCE_C = 2.7482  # critical_ratio_multiplier in the paper's code: p* = 2.7482 ln M / M
PREDICTED_WD_SLOPE = -1.0  # t_grok ~ 1/η
# Theorem 4: n ≳ d_k² M log M; the paper's code scales its critical ratio by d_k/2 instead.
THEOREM_DK_EXPONENT, CODE_DK_EXPONENT = 2.0, 1.0
# The one grokking threshold: a run's grokking step is the first step with test accuracy at the
# level at which it counts as generalized (results.GENERALIZED_TEST_ACC = 0.99).
GROKKED_COLUMN = f"step_test_acc_{round(GENERALIZED_TEST_ACC * 100):03d}"
GROKKED_TEXT = f"test accuracy ≥ {GENERALIZED_TEST_ACC:g}"
CONFIG_COLUMNS = config.CONDITION_COLUMNS  # the columns that define an experimental condition
# Row statuses of generalization_boundary whose p* (with its standard error) feeds the laws.
BOUNDARY_ESTIMATED = ("ok", "separated")
# The predictions the fits test (the ``law`` of their law rows).
LAW_C = "c in p* = c·ln M / M"
LAW_B = "exponent b in p* ∝ M^-b·ln M"
LAW_WD_SLOPE = "slope b of log t_grok vs log η"
LAW_ETA_ZERO = "fraction of η = 0 runs that grok"
LAW_DK_EXPONENT = "exponent of d_k in c = n*/(M ln M)"
LAW_COLUMNS = ("law", "condition", "value", "lo", "hi", "predicted", "prediction",
               "contains", "verdict", "n_runs")


def _no_exclusions() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series(dtype="string"), "reason": pd.Series(dtype="string")})


@dataclass(frozen=True)
class FitResult:
    name: str
    status: str  # "ok" | "partial" (some rows not estimable) | "insufficient" | "unsupported"
    message: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    detail: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_runs: int = 0
    excluded: pd.DataFrame = field(default_factory=_no_exclusions)
    method: str = ""
    # The predictions this fit tests, one row each (LAW_COLUMNS): measured value and CI, the
    # paper's prediction and whether the CI contains it.
    laws: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LAW_COLUMNS))

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "partial")

    def verdict(self, law: str, condition: str = "") -> str:
        """'CI excludes 2; CI contains 1' for a law this fit tested, '' where it did not."""
        rows = self.laws[(self.laws["law"] == law) & (self.laws["condition"] == condition)
                         & self.laws["contains"].notna()]
        return "; ".join(ci_text(row.contains, row.predicted) for row in rows.itertuples())


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
    return runs[~left_out], _exclusions(runs[left_out], reason[left_out])


def _exclusions(runs: pd.DataFrame, reason) -> pd.DataFrame:
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


def _precheck(name: str, runs: pd.DataFrame, required: tuple[str, ...]) -> FitResult | None:
    if runs is None or runs.empty:
        return FitResult(name, "insufficient", "the runs table is empty")
    missing = [c for c in required if c not in runs]
    if missing:
        return FitResult(name, "unsupported", f"the runs table lacks column(s) {missing}")
    return None


def _overall(table: pd.DataFrame, estimated: tuple[str, ...] = ("ok",)) -> tuple[str, str]:
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


def _with_wilson(cells: pd.DataFrame, level: float) -> pd.DataFrame:
    lo, hi = stats.wilson_interval(cells["n_generalized"], cells["n"], level)
    return cells.assign(fraction=cells["n_generalized"] / cells["n"], fraction_lo=lo,
                        fraction_hi=hi)


def law_row(law: str, condition: str, value: float, lo: float, hi: float, predicted: float,
            prediction: str, n_runs: int) -> dict[str, object]:
    """One tested prediction: the measured value, its CI, and whether the CI contains it."""
    contains = bool(lo <= predicted <= hi) if np.isfinite([lo, hi]).all() else None
    verdict = ("no CI" if contains is None else
               f"{'consistent' if contains else 'rejected'}: {ci_text(contains, predicted)}")
    return dict(zip(LAW_COLUMNS, (law, condition, value, lo, hi, predicted, prediction, contains,
                                  verdict, n_runs), strict=True))


def ci_text(contains: bool, predicted: float) -> str:
    return f"CI {'contains' if contains else 'excludes'} {predicted:g}"


def _laws(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(LAW_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Generalization boundary p*(M)


def _boundary_estimate(p, n, k, rng, n_boot: int, level: float) -> dict[str, object]:
    """p* (50% generalization) of one group from its cells (train fraction p, n runs, k gen.)."""
    order = np.argsort(p)
    p, n, k = p[order], n[order], k[order]
    row: dict[str, object] = {"n_runs": int(n.sum()), "n_p": len(p), "min_seeds": int(n.min()),
                              "p_star": np.nan, "p_star_lo": np.nan, "p_star_hi": np.nan,
                              "log_p_star_se": np.nan, "width": np.nan, "n_boot_used": 0}

    notes = []

    def status(code: str, message: str = "") -> dict[str, object]:
        return row | {"status": code, "message": "; ".join(m for m in (message, *notes) if m)}

    if len(p) < 2:
        return status("single p", f"one train_fraction only ({p[0]:.4g}); a boundary needs ≥ 2")
    thin = n < 2  # a one-run cell cannot be resampled over seeds
    if thin.any():
        if (~thin).sum() < 2:
            return status("too few seeds", f"{int(thin.sum())} of {len(p)} train_fraction cells"
                                           " have fewer than 2 seeds; need ≥ 2 cells with ≥ 2")
        notes.append(f"{int(thin.sum())} cell(s) with a single seed left out")
        p, n, k = p[~thin], n[~thin], k[~thin]
        row |= {"n_runs": int(n.sum()), "n_p": len(p), "min_seeds": int(n.min())}
    if k.sum() == n.sum():
        return status("all generalized",
                      f"every run generalized: p* < {p[0]:.4g}, the smallest p tried")
    if k.sum() == 0:
        return status("none generalized",
                      f"no run generalized: p* > {p[-1]:.4g}, the largest p tried")
    fraction = k / n
    falls = np.flatnonzero(np.diff(fraction) < 0)
    if np.isin(fraction, (0.0, 1.0)).all() and falls.size:
        # All-or-nothing cells out of order: no resampling varies them, so a fit over all of
        # them would claim a zero-width interval. The boundary is the first rise: keep the
        # cells before generalization falls again (e.g. too few steps at a large p).
        cut = falls[0] + 1
        notes.append(f"cells at p ≥ {p[cut]:.4g} left out: generalization falls again there")
        p, n, k, fraction = p[:cut], n[:cut], k[:cut], fraction[:cut]
        row |= {"n_runs": int(n.sum()), "n_p": len(p), "min_seeds": int(n.min())}
        if k.sum() == n.sum():
            return status("not monotone", f"generalization falls at p={p[-1]:.4g} or above "
                                          "with no rise below it: no boundary in this range")
    z = distributions.norm.ppf(0.5 + level / 2)
    if np.isin(fraction, (0.0, 1.0)).all() and (np.diff(fraction) >= 0).all():
        # Complete separation: p* lies somewhere between the two cells; report that bracket.
        first = int(np.argmax(fraction == 1.0))
        below, above = p[first - 1], p[first]
        row |= {"p_star": np.sqrt(below * above), "p_star_lo": below, "p_star_hi": above,
                "log_p_star_se": np.log(above / below) / (2 * z)}
        return status("separated", f"sharp transition between p={below:.4g} (none generalized)"
                                   f" and p={above:.4g} (all): p* is bracketed, not fitted;"
                                   " refine the train_fraction grid")
    log_p = np.log(p)
    centre, scale = log_p.mean(), log_p.std()
    x = (log_p - centre) / scale  # standardised for a well-conditioned Newton iteration
    design = np.stack([np.ones_like(x), x], axis=1)
    beta, converged = stats.firth_logistic(design, n, k[None, :])
    intercept, slope = beta[0]
    if not converged[0]:
        return status("no convergence", "the logistic fit did not converge")
    if slope <= 0:
        return status("not increasing", "the generalized fraction does not rise with p")
    log_p_star = centre - scale * intercept / slope
    if not log_p[0] <= log_p_star <= log_p[-1]:
        return status("outside grid", f"the fitted p* ≈ {np.exp(log_p_star):.3g} lies outside the"
                                      f" sampled range [{p[0]:.4g}, {p[-1]:.4g}]; extend the grid")
    # Resampling runs with replacement within a cell = a binomial draw at the cell's fraction.
    boot_k = rng.binomial(n, fraction, size=(n_boot, len(p)))
    boot_beta, boot_converged = stats.firth_logistic(design, n, boot_k)
    good = boot_converged & (boot_beta[:, 1] > 0)
    replicates = centre - scale * boot_beta[good, 0] / boot_beta[good, 1]
    row |= {"p_star": np.exp(log_p_star), "width": scale / slope, "n_boot_used": int(good.sum())}
    if good.sum() < max(20, n_boot // 2):
        return status("unstable", f"only {int(good.sum())} of {n_boot} bootstrap replicates gave"
                                  " a rising logistic curve; no CI")
    lo, hi = np.quantile(replicates, [0.5 - level / 2, 0.5 + level / 2])
    row |= {"p_star_lo": np.exp(lo), "p_star_hi": np.exp(hi),
            "log_p_star_se": replicates.std(ddof=1)}
    if not good.all():
        notes.append(f"{n_boot - int(good.sum())} bootstrap replicate(s) without a rising curve"
                     " dropped")
    return status("ok")


def generalization_boundary(runs: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0) -> FitResult:
    """Per group (and condition): the train fraction p* at which half the seeds generalize.

    P(generalized) = logistic((log p − log p*)/width) is fitted by Firth-penalised maximum
    likelihood on the binomial counts per train_fraction cell; the CI is the percentile interval
    of p* over ``n_boot`` bootstrap replicates that resample runs within each cell.
    """
    name = "generalization_boundary"
    early = _precheck(name, runs, ("group", "M", "train_fraction", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = varying_config(usable, exclude=("group", "train_fraction"))
    keys = [*conditions, "group"]
    cells = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby([*keys, "train_fraction"], dropna=False, sort=True)
             .agg(M=("M", "first"), n=("generalized", "size"),
                  n_generalized=("generalized", "sum"))
             .reset_index())
    cells = _with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
    rng = np.random.default_rng(seed)
    rows = []
    for key, group_cells in cells.groupby(keys, dropna=False, sort=True):
        estimate = _boundary_estimate(group_cells["train_fraction"].to_numpy(float),
                                      group_cells["n"].to_numpy(), group_cells["n_generalized"]
                                      .to_numpy(), rng, n_boot, level)
        rows.append(dict(zip(keys, key, strict=True)) | {"M": int(group_cells["M"].iloc[0])}
                    | estimate)
    table = pd.DataFrame(rows)
    if table.empty:
        return FitResult(name, "insufficient", "no usable runs", excluded=excluded)
    if "group_name" in usable:
        names = usable.drop_duplicates("group").set_index("group")["group_name"]
        table.insert(len(keys), "group_name", table["group"].map(names))
    table = (table.assign(condition=condition_labels(table, conditions),
                          label=condition_labels(table, [*conditions, "group"]))
             .sort_values([*conditions, "M", "group"], ignore_index=True))
    status, message = _overall(table, BOUNDARY_ESTIMATED)
    used = table.loc[table["status"].isin(BOUNDARY_ESTIMATED), "n_runs"].sum()
    method = (f"logistic fit of P(generalized) vs log train_fraction per group (Firth-penalised"
              f" maximum likelihood); {level:.0%} CI: percentile bootstrap, {n_boot} replicates"
              f" resampling runs within each train_fraction cell; a completely separated group"
              f" reports the bracketing cells as its interval")
    return FitResult(name, status, message, table, cells, int(used), excluded, method)


def _law_estimate(M, log_p_star, se, level: float, reference_c: float) -> dict[str, object]:
    """c, b (g = 1) and the free (a, b, g) of p* = a·M^-b·(ln M)^g from per-group log p*."""
    row: dict[str, object] = dict.fromkeys(
        ("c", "c_lo", "c_hi", "c_chi2_dof", "b_g1", "b_g1_lo", "b_g1_hi", "a_g1", "b_free",
         "b_free_lo", "b_free_hi", "g_free", "g_free_lo", "g_free_hi", "a_free"), np.nan)
    row |= {"c_reference": reference_c, "n_groups": len(M),
            "M_min": int(M.min()) if len(M) else np.nan,
            "M_max": int(M.max()) if len(M) else np.nan}
    if len(M) < 3:
        return row | {"status": "too few groups",
                      "message": f"needs ≥ 3 groups with a finite p*, has {len(M)}"}
    weight = 1 / se**2
    log_M, log_ln_M = np.log(M), np.log(np.log(M))
    ones = np.ones_like(log_M)
    wls = stats.weighted_least_squares
    coef, lo, hi, chi2 = wls(ones[:, None], log_p_star - log_ln_M + log_M, weight, level)
    row |= {"c": np.exp(coef[0]), "c_lo": np.exp(lo[0]), "c_hi": np.exp(hi[0]), "c_chi2_dof": chi2}
    # p* ∝ M^-b, so b is minus the coefficient of log M (and its bounds swap).
    coef, lo, hi, _ = wls(np.stack([ones, log_M], 1), log_p_star - log_ln_M, weight, level)
    row |= {"a_g1": np.exp(coef[0]), "b_g1": -coef[1], "b_g1_lo": -hi[1], "b_g1_hi": -lo[1]}
    notes = []
    if np.unique(M).size < 3:
        notes.append("b needs ≥ 3 distinct M")
    if len(M) >= 4:
        coef, lo, hi, _ = wls(np.stack([ones, log_M, log_ln_M], 1), log_p_star, weight, level)
        row |= {"a_free": np.exp(coef[0]), "b_free": -coef[1], "b_free_lo": -hi[1],
                "b_free_hi": -lo[1], "g_free": coef[2], "g_free_lo": lo[2], "g_free_hi": hi[2]}
    else:
        notes.append("the free form (a, b, g) needs ≥ 4 groups")
    return row | {"status": "ok", "message": "; ".join(notes)}


def boundary_law(boundary: FitResult | pd.DataFrame, level: float = 0.95,
                 reference_c: float = REFERENCE_C) -> FitResult:
    """Fit p* = c·ln M/M and p* = a·M^-b·(ln M)^g across groups, per condition.

    Weighted least squares on log p* with the bootstrap variance of each group's log p*; the
    headline exponent is ``b_g1`` (g fixed at 1); ``b_free``/``g_free`` come from the free form,
    where g is weakly identified unless M spans a wide range.
    """
    name = "boundary_law"
    table = boundary.table if isinstance(boundary, FitResult) else boundary
    excluded = boundary.excluded if isinstance(boundary, FitResult) else _no_exclusions()
    if table is None or table.empty:
        return FitResult(name, "insufficient", "the boundary table is empty", excluded=excluded)
    missing = [c for c in ("group", "M", "p_star", "log_p_star_se") if c not in table]
    if missing:
        return FitResult(name, "unsupported", f"the boundary table lacks column(s) {missing}",
                         excluded=excluded)
    table = table.assign(condition=table.get("condition", ""))
    finite = _finite_p_star(table)
    rows = []
    for condition, groups in table.groupby("condition", sort=False):
        fitted = groups[finite[groups.index]]
        estimate = _law_estimate(fitted["M"].to_numpy(float), np.log(fitted["p_star"].to_numpy()),
                                 fitted["log_p_star_se"].to_numpy(), level, reference_c)
        skipped = groups.loc[~finite[groups.index], "group"].tolist()
        note = f"groups without a finite p*: {', '.join(map(str, skipped))}" if skipped else ""
        message = "; ".join(m for m in (estimate.pop("message"), note) if m)
        rows.append({"condition": condition, **estimate, "message": message,
                     "groups": ", ".join(map(str, fitted["group"])),
                     "n_runs": int(fitted["n_runs"].sum()) if "n_runs" in fitted else 0})
    result = pd.DataFrame(rows)
    status, message = _overall(result)
    method = (f"weighted least squares on log p* across groups, weights 1/var(log p*) from each"
              f" group's bootstrap; {level:.0%} CI: normal, or t with the covariance scaled by the"
              f" reduced chi² when that is > 1. Headline exponent b_g1 has g fixed at 1; b_free"
              f" and g_free come from the free form a·M^-b·(ln M)^g, where b and g are strongly"
              f" correlated unless M spans a wide range")
    used = int(result.loc[result["status"] == "ok", "n_runs"].sum())
    laws = []
    for row in result[result["status"] == "ok"].itertuples(index=False):
        laws += [law_row(LAW_C, row.condition, row.c, row.c_lo, row.c_hi,
                         reference_c, "the paper code's constant", row.n_runs),
                 law_row(LAW_B, row.condition, row.b_g1, row.b_g1_lo,
                         row.b_g1_hi, 1.0, "Theorem 4: p ~ M⁻¹ log M", row.n_runs)]
    return FitResult(name, status, message, result, pd.DataFrame(), used, excluded, method,
                     _laws(laws))


def _finite_p_star(table: pd.DataFrame) -> pd.Series:
    """Boundary rows with an estimated p* and a positive standard error of log p*."""
    return (np.isfinite(table["p_star"]) & np.isfinite(table["log_p_star_se"])
            & (table["log_p_star_se"] > 0) & (table["M"] >= 2))


# ---------------------------------------------------------------------------------------------
# Collapse, learning rate, weight decay, width


def collapse(runs: pd.DataFrame, n_bins: int = 12, level: float = 0.95) -> FitResult:
    """Generalized fraction per group vs c_eff = n_train/(M ln M), in shared log-spaced bins.

    If p* = c·ln M/M holds, every group crosses 50% at the same c_eff (= c) and the curves
    collapse onto one.
    """
    name = "collapse"
    early = _precheck(name, runs, ("group", "M", "c_eff", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    c_eff = usable["c_eff"].to_numpy(float)
    bad = ~(np.isfinite(c_eff) & (c_eff > 0))
    excluded = pd.concat([excluded, _exclusions(usable[bad], "c_eff is not a positive number")])
    usable, c_eff = usable[~bad], c_eff[~bad]
    if np.unique(c_eff).size < 2:
        return FitResult(name, "insufficient", "needs ≥ 2 distinct c_eff values",
                         excluded=excluded)
    edges = np.geomspace(c_eff.min(), c_eff.max(), n_bins + 1)
    which = np.clip(np.searchsorted(edges, c_eff, side="right") - 1, 0, n_bins - 1)
    conditions = varying_config(usable, exclude=("group", "train_fraction"))
    keys = [*conditions, "group"]
    binned = (usable.assign(bin=which, generalized=usable["generalized"].astype(bool))
              .groupby([*keys, "bin"], dropna=False, sort=True)
              .agg(M=("M", "first"), c_eff=("c_eff", "median"), n=("generalized", "size"),
                   n_generalized=("generalized", "sum"))
              .reset_index())
    binned = _with_wilson(binned, level).assign(
        c_eff_bin_lo=edges[binned["bin"]], c_eff_bin_hi=edges[binned["bin"] + 1],
        condition=condition_labels(binned, conditions))
    groups = binned["group"].nunique()
    message = "" if groups > 1 else "one group only: nothing to collapse across"
    method = f"Wilson {level:.0%} intervals on each bin's generalized fraction"
    return FitResult(name, "ok", message, binned, pd.DataFrame(), len(usable), excluded, method)


def lr_effect(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Generalized fraction vs learning rate at each fixed train_fraction (Wilson CIs)."""
    name = "lr_effect"
    early = _precheck(name, runs, ("lr", "train_fraction", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    if usable["lr"].nunique() < 2:
        return FitResult(name, "insufficient", "needs ≥ 2 learning rates", excluded=excluded)
    conditions = varying_config(usable, exclude=("lr", "train_fraction"))
    keys = [*conditions, "train_fraction", "lr"]
    cells = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby(keys, dropna=False, sort=True)
             .agg(n=("generalized", "size"), n_generalized=("generalized", "sum"))
             .reset_index())
    cells = _with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
    method = f"Wilson {level:.0%} intervals on each cell's generalized fraction"
    return FitResult(name, "ok", "", cells, pd.DataFrame(), len(usable), excluded, method)


def wd_speed(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Grokking time against weight decay: log t_grok = a + b·log η over the runs with η > 0
    that grokked (Li₂: b ≈ −1), and the fraction of η = 0 runs that grok (Fig. 3: none).

    t_grok is the first step with test accuracy ≥ 0.99 (``GROKKED_COLUMN``). Runs that never
    grokked are censored: counted per η (``detail``) and left out of the slope, which biases b
    towards 0 where many of them sit at small η. A slope needs grokked runs at ≥ 3 distinct η.
    """
    name = "wd_speed"
    early = _precheck(name, runs, ("weight_decay", GROKKED_COLUMN))
    if early:
        return early
    usable, excluded = split_usable(runs)
    frame = usable.assign(eta=usable["weight_decay"].to_numpy(float),
                          t_grok=as_float(usable[GROKKED_COLUMN]))
    frame = frame.assign(grokked=np.isfinite(frame["t_grok"]))
    conditions = varying_config(frame, exclude=("weight_decay",))
    per_eta = (frame.groupby([*conditions, "eta"], dropna=False, sort=True)
               .agg(n=("grokked", "size"), n_grokked=("grokked", "sum"),
                    t_grok_q25=("t_grok", lambda t: t.quantile(0.25)),
                    t_grok_median=("t_grok", "median"),
                    t_grok_q75=("t_grok", lambda t: t.quantile(0.75)))
               .reset_index())
    lo, hi = stats.wilson_interval(per_eta["n_grokked"], per_eta["n"], level)
    per_eta = per_eta.assign(n_never=per_eta["n"] - per_eta["n_grokked"],
                             fraction=per_eta["n_grokked"] / per_eta["n"], fraction_lo=lo,
                             fraction_hi=hi, condition=condition_labels(per_eta, conditions))
    positive = frame["eta"] > 0
    on_line = positive & frame["grokked"] & (frame["t_grok"] > 0)
    excluded = pd.concat([
        excluded,
        _exclusions(frame[~positive], "η = 0: log η undefined (counted in the η = 0 contrast)"),
        _exclusions(frame[positive & ~frame["grokked"]],
                    f"never reached {GROKKED_TEXT} (censored)"),
        _exclusions(frame[positive & frame["grokked"] & ~on_line], f"{GROKKED_TEXT} at step 0"),
    ])
    rows, laws = [], []
    for key, cell in (frame.groupby(conditions, dropna=False, sort=True) if conditions
                      else [((), frame)]):
        key = key if isinstance(key, tuple) else (key,)
        points = cell[on_line[cell.index]]
        line = stats.ols(np.log(points["eta"]), np.log(points["t_grok"]), level)
        etas = ", ".join(f"{eta:g}" for eta in sorted(points["eta"].unique()))
        rows.append(dict(zip(conditions, key, strict=True)) | {
            "n_runs": len(points), "n_eta": line.n_distinct_x, "b": line.slope,
            "b_lo": line.slope_lo, "b_hi": line.slope_hi, "b_se": line.slope_se,
            "a": line.intercept, "b_predicted": PREDICTED_WD_SLOPE,
            "status": "ok" if line.ok else "too few η",
            "message": "" if line.ok else
            f"a slope needs grokked runs at ≥ {stats.MIN_DISTINCT_X} distinct η > 0, has"
            f" {line.n_distinct_x} ({etas or 'none'}): a line through fewer fits them exactly"
            " and tests nothing"})
    table = pd.DataFrame(rows).assign(condition=lambda t: condition_labels(t, conditions))
    for row in table[table["status"] == "ok"].itertuples(index=False):
        laws.append(law_row(LAW_WD_SLOPE, row.condition, row.b, row.b_lo,
                            row.b_hi, PREDICTED_WD_SLOPE, "t_grok ~ 1/η", row.n_runs))
    for row in per_eta[per_eta["eta"] == 0].itertuples(index=False):
        laws.append(law_row(LAW_ETA_ZERO, row.condition, row.fraction,
                            row.fraction_lo, row.fraction_hi, 0.0, "none grok, Fig. 3", row.n))
    status, message = _overall(table)
    if status == "insufficient" and (per_eta["eta"] == 0).any():
        status = "partial"  # the η = 0 contrast stands without a slope
    censored = int(per_eta.loc[per_eta["eta"] > 0, "n_never"].sum())
    if censored:
        note = (f"{censored} run(s) with η > 0 never reached {GROKKED_TEXT} and are left out of"
                " the slope (censored), which biases b towards 0 if they sit at small η")
        message = "; ".join(m for m in (message, note) if m)
    method = (f"ordinary least squares of log t_grok on log η over runs that reached"
              f" {GROKKED_TEXT}; {level:.0%} CI on b from the OLS standard error (t"
              f" distribution); Wilson {level:.0%} intervals on the fraction grokked per η")
    return FitResult(name, status, message, table, per_eta, int(table["n_runs"].sum()),
                     excluded, method, _laws(laws))


def _smallest_k(per_k: pd.DataFrame, satisfied: pd.Series) -> float:
    return float(per_k.loc[satisfied, "K"].min()) if satisfied.any() else np.nan


def memorization_width(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """From a K × n_train sweep: per n_train the smallest K whose median final train accuracy is
    1 (K_mem) and the smallest K where at least half the seeds generalize (K_gen), next to the
    sufficient width 2M − 2 of Theorem 3; per condition, log K_mem vs log n_train by OLS."""
    name = "memorization_width"
    early = _precheck(name, runs, ("K", "n_train", "M", "final_train_acc", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = varying_config(usable, exclude=("K", "train_fraction"))
    per_k = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby([*conditions, "n_train", "K"], dropna=False, sort=True)
             .agg(M=("M", "first"), n=("generalized", "size"),
                  train_acc_median=("final_train_acc", "median"),
                  gen_fraction=("generalized", "mean"))
             .reset_index())
    rows = []
    for key, cells in per_k.groupby([*conditions, "n_train"], dropna=False, sort=True):
        rows.append(dict(zip([*conditions, "n_train"], key, strict=True)) | {
            "M": int(cells["M"].iloc[0]), "n_runs": int(cells["n"].sum()),
            "K_min_tried": int(cells["K"].min()), "K_max_tried": int(cells["K"].max()),
            "K_mem": _smallest_k(cells, cells["train_acc_median"] >= 1.0),
            "K_gen": _smallest_k(cells, cells["gen_fraction"] >= 0.5),
            "K_predicted": 2 * int(cells["M"].iloc[0]) - 2})
    detail = pd.DataFrame(rows)
    if detail.empty:
        return FitResult(name, "insufficient", "no usable runs", excluded=excluded)
    detail = detail.assign(condition=condition_labels(detail, conditions))
    fits = []
    for condition, points in detail.groupby("condition", sort=False):
        # K_mem at the smallest K tried is only an upper bound, so it stays out of the fit.
        exact = points[np.isfinite(points["K_mem"]) & (points["K_mem"] > points["K_min_tried"])]
        line = stats.ols(np.log(exact["n_train"].to_numpy(float)),
                         np.log(exact["K_mem"].to_numpy(float)), level)
        fits.append({"condition": condition, "n_points": len(exact),
                     "n_runs": int(points["n_runs"].sum()), "slope": line.slope,
                     "slope_lo": line.slope_lo, "slope_hi": line.slope_hi,
                     "intercept": line.intercept, "status": "ok" if line.ok else "too few points",
                     "message": "" if line.ok else
                     f"needs K_mem above the smallest K tried at ≥ {stats.MIN_DISTINCT_X}"
                     f" distinct n_train, has {line.n_distinct_x}"})
    table = pd.DataFrame(fits)
    status, message = _overall(table)
    if status == "insufficient":
        status = "partial"  # the K_mem / K_gen per n_train still stand without the power law
    method = (f"K_mem, K_gen: smallest K on the grid meeting the criterion; power law of K_mem vs"
              f" n_train by OLS on log-log, {level:.0%} CI from the OLS standard error")
    return FitResult(name, status, message, table, detail, int(detail["n_runs"].sum()),
                     excluded, method)


# ---------------------------------------------------------------------------------------------
# The three stages over training, hidden-node spectra, and the boundary against irrep degree

# Curve quantities of the stages figure, in panel order; the last three need diagnostics.
STAGE_METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "G_F_norm",
                 "FtF_off_diag_ratio", "frequency_dominated_fraction")
# Runs-table columns giving each stage's step per run: memorized (train accuracy 1), features
# emerged (half the active nodes frequency-dominated, diagnostics on Z_M), grokked.
STAGE_STEPS = {"memorized": "step_train_acc_1", "features emerged": "step_features_emerged",
               "grokked": GROKKED_COLUMN}


def stages(runs: pd.DataFrame, curves: pd.DataFrame | None) -> FitResult:
    """Per condition: the median and inter-quartile range over seeds of every curve quantity at
    every evaluated step (``detail``, long format), and the median step of each stage
    (``table``; a run that never got there counts as later than any, so the median is NaN
    when half the seeds or more never did)."""
    name = "stages"
    if curves is None or curves.empty:
        return FitResult(name, "unsupported", "needs the curves table")
    early = _precheck(name, runs, ("run_id",))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = varying_config(usable)
    metrics = [m for m in STAGE_METRICS if m in curves]
    joined = curves[["run_id", "step", *metrics]].merge(
        usable[["run_id", *conditions]], on="run_id", how="inner")
    if joined.empty:
        return FitResult(name, "insufficient", "no curve matches a usable run", excluded=excluded)
    long = joined.melt(id_vars=[*conditions, "run_id", "step"], value_vars=metrics,
                       var_name="metric")
    quantiles = (long.groupby([*conditions, "metric", "step"], dropna=False, sort=True)["value"]
                 .quantile([0.25, 0.5, 0.75]).unstack())
    detail = (quantiles.set_axis(["q25", "median", "q75"], axis=1).reset_index()
              .assign(condition=lambda t: condition_labels(t, conditions)))
    present = {stage: column for stage, column in STAGE_STEPS.items() if column in usable}
    steps = usable.assign(**{stage: np.nan_to_num(as_float(usable[column]), nan=np.inf)
                             for stage, column in present.items()})
    table = (steps.groupby(conditions, dropna=False, sort=True) if conditions
             else steps.groupby(lambda _: "all"))
    table = table.agg(n_runs=("run_id", "size"),
                      **{f"{stage} step": (stage, "median") for stage in present},
                      **{f"{stage} runs": (stage, lambda s: int(np.isfinite(s).sum()))
                         for stage in present})
    table = table.replace(np.inf, np.nan).reset_index(drop=not conditions)
    table = table.assign(condition=condition_labels(table, conditions), status="ok",
                         message="")
    method = ("median and inter-quartile range over seeds at each evaluated step; stage steps:"
              " medians over seeds of " + ", ".join(f"{stage} = {column}"
                                                   for stage, column in present.items()))
    return FitResult(name, "ok", "", table, detail, int(table["n_runs"].sum()), excluded,
                     method)


def node_spectra(runs: pd.DataFrame, features: pd.DataFrame | None) -> FitResult:
    """A grokked run and a memorizing one (train accuracy 1, not generalized) with their active
    hidden nodes' Fourier power (features table, Z_M with diagnostics): ``table`` holds the two
    runs, ``detail`` their nodes."""
    name = "node_spectra"
    if features is None or "power_01" not in features:
        return FitResult(name, "unsupported", "needs the features table with power spectra"
                                              " (diagnostics = true on Z_M)")
    usable, excluded = split_usable(runs)
    examples = []
    for title, chosen in (("grokked", usable[usable["generalized"]]),
                          ("memorized", usable[~usable["generalized"]
                                               & (usable["final_train_acc"] >= 1.0)])):
        if len(chosen):
            examples.append(chosen.sort_values("run_id").iloc[[0]].assign(example=title))
    if not examples:
        return FitResult(name, "insufficient", "no generalized or memorizing run to show",
                         excluded=excluded)
    table = pd.concat(examples, ignore_index=True)
    nodes = features[features["run_id"].isin(table["run_id"]) & features["active"]]
    return FitResult(name, "ok", "", table, nodes, len(table), excluded,
                     "the first run (by run_id) of each kind; active nodes only")


def irrep_scaling(boundary: FitResult, runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Does the boundary constant c = p*·M / ln M grow with the largest irrep degree d_k as
    d_k² (Theorem 4: n ≳ d_k² M log M) or as d_k (the paper code's c·d_k/2)?

    Per condition, weighted least squares of log c on log d_k over the groups with an estimated
    p* (weights from each p*'s bootstrap variance) gives the exponent with its CI; the two
    fixed-exponent forms, each with one free constant, are compared by their weighted χ². A
    group that never generalized bounds c from below; ``detail`` says which forms it
    contradicts (their fitted c at its d_k lies below the bound).
    """
    name = "irrep_scaling"
    early = _precheck(name, runs, ("group", "max_irrep_degree"))
    if early:
        return early
    table = boundary.table
    degrees = runs.drop_duplicates("group").set_index("group")["max_irrep_degree"]
    groups = table.assign(d_k=table["group"].map(degrees).astype(float),
                          c=table["p_star"] * table["M"] / np.log(table["M"]),
                          c_lo=table["p_star_lo"] * table["M"] / np.log(table["M"]),
                          c_hi=table["p_star_hi"] * table["M"] / np.log(table["M"]),
                          condition=table.get("condition", ""))
    never = groups["status"] == "none generalized"
    largest_p = boundary.detail.groupby("group")["train_fraction"].max()
    groups["c_bound"] = np.where(never, groups["group"].map(largest_p) * groups["M"]
                                 / np.log(groups["M"]), np.nan)
    finite = _finite_p_star(groups)
    rows, laws, details = [], [], []
    for condition, cell in groups.groupby("condition", sort=False):
        fitted = cell[finite[cell.index]]
        estimate = _irrep_estimate(fitted["d_k"].to_numpy(), np.log(fitted["c"].to_numpy()),
                                   fitted["log_p_star_se"].to_numpy(), level)
        for form in ("theorem", "code"):
            constant = estimate[f"c_{form}"]
            exponent = THEOREM_DK_EXPONENT if form == "theorem" else CODE_DK_EXPONENT
            contradicts = cell["c_bound"] > constant * cell["d_k"] ** exponent
            cell = cell.assign(**{f"contradicts_{form}": contradicts.where(
                cell["c_bound"].notna())})  # only a group that never generalized has a bound
        details.append(cell)
        rows.append({"condition": condition, **estimate,
                     "n_runs": int(fitted["n_runs"].sum()),
                     "groups_never": ", ".join(cell.loc[cell["c_bound"].notna(), "group"])})
        if estimate["status"] == "ok":
            for predicted, source in ((THEOREM_DK_EXPONENT, "Theorem 4: n ≳ d_k² M log M"),
                                      (CODE_DK_EXPONENT, "paper code: c·d_k/2")):
                laws.append(law_row(LAW_DK_EXPONENT, condition,
                                    estimate["exponent"], estimate["exponent_lo"],
                                    estimate["exponent_hi"], predicted, source,
                                    rows[-1]["n_runs"]))
    result = pd.DataFrame(rows)
    status, message = _overall(result)
    method = (f"c = p*·M/ln M per group from the Firth boundary fit; weighted least squares of"
              f" log c on log d_k with weights 1/var(log p*), {level:.0%} CI normal, or t scaled by"
              f" the reduced χ² when that is > 1; the forms c ∝ d_k² and c ∝ d_k are compared by"
              f" weighted χ² (same number of parameters)")
    return FitResult(name, status, message, result, pd.concat(details, ignore_index=True),
                     int(result["n_runs"].sum()), boundary.excluded, method, _laws(laws))


def _irrep_estimate(d_k: np.ndarray, log_c: np.ndarray, se: np.ndarray,
                    level: float) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(
        ("exponent", "exponent_lo", "exponent_hi", "c_at_1", "chi2_dof", "c_theorem",
         "chi2_theorem", "c_code", "chi2_code"), np.nan) | {"n_groups": len(d_k),
                                            "n_degrees": int(np.unique(d_k).size),
                                            "favoured": ""}
    if np.unique(d_k).size < stats.MIN_DISTINCT_X:
        return row | {"status": "too few degrees",
                      "message": f"the exponent needs groups with an estimated p* at ≥"
                                 f" {stats.MIN_DISTINCT_X} distinct d_k, has"
                                 f" {np.unique(d_k).size} ({sorted({int(d) for d in d_k})})"}
    weight, log_d = 1 / se**2, np.log(d_k)
    ones = np.ones_like(log_d)
    coef, lo, hi, chi2_dof = stats.weighted_least_squares(np.stack([ones, log_d], 1), log_c,
                                                          weight, level)
    row |= {"exponent": coef[1], "exponent_lo": lo[1], "exponent_hi": hi[1],
            "c_at_1": np.exp(coef[0]), "chi2_dof": chi2_dof}
    for form, exponent in (("theorem", THEOREM_DK_EXPONENT), ("code", CODE_DK_EXPONENT)):
        residual = log_c - exponent * log_d
        constant = np.sum(weight * residual) / weight.sum()  # the weighted mean of log c/d_k^e
        row |= {f"c_{form}": np.exp(constant),
                f"chi2_{form}": float(weight @ (residual - constant) ** 2)}
    favoured = "d_k² (Theorem 4)" if row["chi2_theorem"] < row["chi2_code"] else "d_k (code)"
    return row | {"favoured": favoured, "status": "ok", "message": ""}
