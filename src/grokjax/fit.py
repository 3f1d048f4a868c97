"""Scaling-law fits with confidence intervals, from the runs table: DataFrames in, DataFrames out.

Every fit returns a :class:`FitResult`: a status (``ok``, ``partial``, ``insufficient`` or
``unsupported``), a message saying why when it is not ``ok``, a table of estimates in which every
row carries its own status and message, the per-cell data behind it, how many runs it used, the
runs it left out with the reason, and a sentence on how its intervals are computed. Degenerate
data never raise and never produce a number that was not estimated: such rows hold NaN and say why.

A *condition* is one combination of the config columns that vary in the table, other than the
axes a fit sweeps, so a table that varies lr and train_fraction gets one boundary per (group, lr)
rather than a boundary pooled over learning rates. Tables label it in a ``condition`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from grokjax import config

REFERENCE_C = 2.7482  # critical_ratio_multiplier in the paper's code: p* = 2.7482 ln M / M
PREDICTED_WD_SLOPE = -1.0  # t_grok ~ 1/η
CONFIG_COLUMNS = config.CONDITION_COLUMNS  # the columns that define an experimental condition
# Row statuses of generalization_boundary whose p* (with its standard error) feeds the law.
BOUNDARY_ESTIMATED = ("ok", "separated")
_MAX_NEWTON_STEP = 2.0  # keeps Newton from overshooting while a replicate is near separation


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

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "partial")


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


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def condition_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """'lr=0.001, K=512' per row; '' when no column varies."""
    if not columns:
        return pd.Series("", index=frame.index, dtype="string")
    parts = [f"{c}=" + frame[c].map(_format_value) for c in columns]
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


def wilson_interval(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion k/n (sensible at 0/n and n/n)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        denom = 1 + z**2 / n
        centre = (phat + z**2 / (2 * n)) / denom
        half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / denom
    # min/max: rounding must not put k/n itself outside its interval at 0/n or n/n
    lo, hi = np.minimum(centre - half, phat), np.maximum(centre + half, phat)
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def _with_wilson(cells: pd.DataFrame, level: float) -> pd.DataFrame:
    lo, hi = wilson_interval(cells["n_generalized"], cells["n"], level)
    return cells.assign(fraction=cells["n_generalized"] / cells["n"], fraction_lo=lo,
                        fraction_hi=hi)


def _ols(x: np.ndarray, y: np.ndarray, level: float) -> dict[str, float]:
    """Least squares y = intercept + slope·x with a t-based CI on the slope (OLS standard error)."""
    nan = {"slope": np.nan, "slope_lo": np.nan, "slope_hi": np.nan, "intercept": np.nan,
           "slope_se": np.nan}
    if len(x) < 3 or np.unique(x).size < 2:
        return nan
    slope, intercept = np.polyfit(x, y, 1)
    dof = len(x) - 2
    residual = y - (intercept + slope * x)
    se = np.sqrt(residual @ residual / dof / ((x - x.mean()) ** 2).sum())
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return {"slope": slope, "slope_lo": slope - half, "slope_hi": slope + half,
            "intercept": intercept, "slope_se": se}


# ---------------------------------------------------------------------------------------------
# Generalization boundary p*(M)


def _firth_logistic(x: np.ndarray, n: np.ndarray, k: np.ndarray, max_iter: int = 200,
                    tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Firth-penalised logistic fit of k successes out of n on x, for many replicates at once.

    x, n: (cells,); k: (replicates, cells). Returns (intercept, slope) per replicate and whether
    it converged. Firth's penalty (Jeffreys prior) keeps the estimates finite for (quasi-)
    separated replicates, where the maximum-likelihood slope runs off to infinity, and removes
    the MLE's first-order small-sample bias.
    """
    design = np.stack([np.ones_like(x), x], axis=1)  # (cells, 2)
    beta = np.zeros((k.shape[0], 2))
    step = np.full_like(beta, np.inf)
    for _ in range(max_iter):
        prob = expit(beta @ design.T)  # (replicates, cells)
        weight = n * prob * (1 - prob)
        s0, s1, s2 = weight.sum(1), weight @ x, weight @ x**2  # Fisher information entries
        det = s0 * s2 - s1**2
        with np.errstate(divide="ignore", invalid="ignore"):
            # diagonal of the hat matrix W^1/2 X (X'WX)^-1 X' W^1/2, from the 2x2 inverse
            hat = weight * (s2[:, None] - 2 * s1[:, None] * x + s0[:, None] * x**2) / det[:, None]
            score = (k - n * prob + hat * (0.5 - prob)) @ design
            step = np.stack([s2 * score[:, 0] - s1 * score[:, 1],
                             s0 * score[:, 1] - s1 * score[:, 0]], axis=1) / det[:, None]
            largest = np.abs(step).max(axis=1, keepdims=True)
            step = step * np.minimum(1.0, _MAX_NEWTON_STEP / largest)
        beta = beta + step
        if np.nanmax(np.abs(step), initial=0.0) < tol:
            break
    return beta, np.isfinite(beta).all(axis=1) & (np.abs(step).max(axis=1) < tol)


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
    z = stats.norm.ppf(0.5 + level / 2)
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
    beta, converged = _firth_logistic(x, n, k[None, :])
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
    boot_beta, boot_converged = _firth_logistic(x, n, boot_k)
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


def _wls(design: np.ndarray, y: np.ndarray, weight: np.ndarray, level: float):
    """Weighted least squares with known variances 1/weight; the covariance is scaled by the
    reduced chi² when it exceeds 1 (Birge ratio), so scatter beyond the per-point errors —
    a law that does not quite hold — widens the interval instead of being ignored."""
    dof = len(y) - design.shape[1]
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        nan = np.full(design.shape[1], np.nan)
        return nan, nan, nan, np.nan
    normal = design.T @ (weight[:, None] * design)
    covariance = np.linalg.inv(normal)
    coef = covariance @ design.T @ (weight * y)
    residual = y - design @ coef
    chi2_dof = float(weight @ residual**2 / dof)
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(np.diag(covariance) * max(1.0, chi2_dof))
    return coef, coef - half, coef + half, chi2_dof


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
    coef, lo, hi, chi2 = _wls(ones[:, None], log_p_star - log_ln_M + log_M, weight, level)
    row |= {"c": np.exp(coef[0]), "c_lo": np.exp(lo[0]), "c_hi": np.exp(hi[0]), "c_chi2_dof": chi2}
    # p* ∝ M^-b, so b is minus the coefficient of log M (and its bounds swap).
    coef, lo, hi, _ = _wls(np.stack([ones, log_M], 1), log_p_star - log_ln_M, weight, level)
    row |= {"a_g1": np.exp(coef[0]), "b_g1": -coef[1], "b_g1_lo": -hi[1], "b_g1_hi": -lo[1]}
    notes = []
    if np.unique(M).size < 3:
        notes.append("b needs ≥ 3 distinct M")
    if len(M) >= 4:
        coef, lo, hi, _ = _wls(np.stack([ones, log_M, log_ln_M], 1), log_p_star, weight, level)
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
    finite = (np.isfinite(table["p_star"]) & np.isfinite(table["log_p_star_se"])
              & (table["log_p_star_se"] > 0) & (table["M"] >= 2))
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
              f" group's bootstrap; {level:.0%} CI: normal, covariance scaled by the reduced chi²"
              f" when > 1. Headline exponent b_g1 has g fixed at 1; b_free and g_free come from"
              f" the free form a·M^-b·(ln M)^g, where b and g are strongly correlated unless M"
              f" spans a wide range")
    used = int(result.loc[result["status"] == "ok", "n_runs"].sum())
    return FitResult(name, status, message, result, pd.DataFrame(), used, excluded, method)


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


def threshold_text(threshold_col: str) -> str:
    """'step_test_acc_095' -> 'test accuracy ≥ 0.95'."""
    digits = threshold_col.rsplit("_", 1)[-1]
    return f"test accuracy ≥ {int(digits) / 100:g}" if digits.isdigit() else threshold_col


def wd_speed(runs: pd.DataFrame, threshold_col: str = "step_test_acc_095",
             level: float = 0.95) -> FitResult:
    """Fit log t_grok = a + b·log η over runs with η > 0 that reached the threshold; b ≈ −1.

    Runs that never reached the threshold are censored; they are counted per η and left out,
    which biases b towards 0 where many of them sit at small η.
    """
    name = "wd_speed"
    early = _precheck(name, runs, ("weight_decay", threshold_col))
    if early:
        return early
    usable, excluded = split_usable(runs)
    eta = usable["weight_decay"].to_numpy(float)
    t_grok = as_float(usable[threshold_col])
    positive = eta > 0
    reached = positive & np.isfinite(t_grok) & (t_grok > 0)
    never = positive & ~np.isfinite(t_grok)
    what = threshold_text(threshold_col)
    excluded = pd.concat([
        excluded,
        _exclusions(usable[~positive], "weight_decay ≤ 0: log η undefined"),
        _exclusions(usable[never], f"never reached {what} (censored)"),
        _exclusions(usable[positive & ~never & ~reached], f"{threshold_col} is 0"),
    ])
    frame = usable.assign(eta=eta, t_grok=t_grok, reached=reached, never=never)[positive]
    conditions = varying_config(frame, exclude=("weight_decay",))
    per_eta = (frame.groupby([*conditions, "eta"], dropna=False, sort=True)
               .agg(n=("reached", "size"), n_grokked=("reached", "sum"),
                    n_never=("never", "sum"), t_grok_median=("t_grok", "median"))
               .reset_index())
    per_eta = per_eta.assign(condition=condition_labels(per_eta, conditions))
    grokked = frame[frame["reached"]]
    if grokked.empty:
        return FitResult(name, "insufficient", f"no run with η > 0 reached {what}",
                         detail=per_eta, excluded=excluded)
    rows = []
    for key, cell in (grokked.groupby(conditions, dropna=False, sort=True) if conditions
                      else [((), grokked)]):
        key = key if isinstance(key, tuple) else (key,)
        line = _ols(np.log(cell["eta"].to_numpy()), np.log(cell["t_grok"].to_numpy()), level)
        ok = np.isfinite(line["slope"])
        rows.append(dict(zip(conditions, key, strict=True)) | {
            "n_runs": len(cell), "n_eta": cell["eta"].nunique(), "b": line["slope"],
            "b_lo": line["slope_lo"], "b_hi": line["slope_hi"], "b_se": line["slope_se"],
            "a": line["intercept"], "b_predicted": PREDICTED_WD_SLOPE,
            "threshold_col": threshold_col, "status": "ok" if ok else "too few points",
            "message": "" if ok else "needs ≥ 3 grokked runs over ≥ 2 values of η"})
    table = pd.DataFrame(rows).assign(condition=lambda t: condition_labels(t, conditions))
    status, message = _overall(table)
    censored = int(per_eta["n_never"].sum())
    if censored:
        note = (f"{censored} run(s) never reached {what} and are left out (censored), which"
                " biases b towards 0 if they sit at small η")
        message = "; ".join(m for m in (message, note) if m)
    method = (f"ordinary least squares of log t_grok on log η over runs that reached {what};"
              f" {level:.0%} CI on b from the OLS standard error (t distribution)")
    return FitResult(name, status, message, table, per_eta, int(table["n_runs"].sum()),
                     excluded, method)


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
        line = _ols(np.log(exact["n_train"].to_numpy(float)), np.log(exact["K_mem"].to_numpy()),
                    level)
        ok = np.isfinite(line["slope"])
        fits.append({"condition": condition, "n_points": len(exact),
                     "n_runs": int(points["n_runs"].sum()), "slope": line["slope"],
                     "slope_lo": line["slope_lo"], "slope_hi": line["slope_hi"],
                     "intercept": line["intercept"], "status": "ok" if ok else "too few points",
                     "message": "" if ok else "needs K_mem above the smallest K tried at ≥ 3"
                                               " values of n_train (≥ 2 distinct)"})
    table = pd.DataFrame(fits)
    status, message = _overall(table)
    if status == "insufficient":
        status = "partial"  # the K_mem / K_gen per n_train still stand without the power law
    method = (f"K_mem, K_gen: smallest K on the grid meeting the criterion; power law of K_mem vs"
              f" n_train by OLS on log-log, {level:.0%} CI from the OLS standard error")
    return FitResult(name, status, message, table, detail, int(detail["n_runs"].sum()),
                     excluded, method)


# ---------------------------------------------------------------------------------------------
# Everything the table supports


def _needs_varying(name: str, runs: pd.DataFrame, varying: set[str], *columns: str):
    lacking = [c for c in columns if c not in varying]
    if not lacking:
        return None
    described = ", ".join(
        f"{c} is constant ({_format_value(runs[c].iloc[0])})" if c in runs else f"{c} is absent"
        for c in lacking)
    return FitResult(name, "unsupported", f"needs {', '.join(lacking)} to vary: {described}")


def fit_all(runs: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict[str, FitResult]:
    """Every fit the table supports, judged by which config columns vary; the others say why."""
    names = ("generalization_boundary", "boundary_law", "collapse", "wd_speed", "lr_effect",
             "memorization_width")
    if runs is None or runs.empty:
        return {n: FitResult(n, "unsupported", "the runs table is empty") for n in names}
    varying = set(varying_config(runs))
    boundary = (_needs_varying(names[0], runs, varying, "train_fraction")
                or generalization_boundary(runs, n_boot=n_boot, level=level, seed=seed))
    if not boundary.usable:
        law = FitResult(names[1], "unsupported", f"no boundary: {boundary.message}")
    else:
        law = (_needs_varying(names[1], runs, varying, "group")
               or boundary_law(boundary, level=level))
    return {
        names[0]: boundary,
        names[1]: law,
        names[2]: (_needs_varying(names[2], runs, varying, "train_fraction", "group")
                   or collapse(runs, level=level)),
        names[3]: (_needs_varying(names[3], runs, varying, "weight_decay")
                   or wd_speed(runs, level=level)),
        names[4]: _needs_varying(names[4], runs, varying, "lr") or lr_effect(runs, level=level),
        names[5]: (_needs_varying(names[5], runs, varying, "K", "train_fraction")
                   or memorization_width(runs, level=level)),
    }
