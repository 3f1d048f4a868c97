"""The generalization boundary: per group the train fraction p* at which half the seeds
generalize (phase diagram), and the law p* = c·ln M / M across groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as distributions

from grokjax import stats
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    condition_labels,
    law_row,
    laws_frame,
    no_exclusions,
    overall,
    precheck,
    split_usable,
    varying_config,
    with_wilson,
)
from grokjax.analysis.figures import (
    PlotSkipped,
    fit_panels,
    fixed_ticks,
    interval_text,
    law_fit_row,
    panels,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GENERALIZED_TEXT

REFERENCE_C = 2.7482  # critical_ratio_multiplier in the paper's code: p* = 2.7482 ln M / M
# Row statuses of generalization_boundary whose p* (with its standard error) feeds the laws.
BOUNDARY_ESTIMATED = ("ok", "separated")
LAW_C = "c in p* = c·ln M / M"
LAW_B = "exponent b in p* ∝ M^-b·ln M"


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
    early = precheck(name, runs, ("group", "M", "train_fraction", "generalized"))
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
    cells = with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
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
    status, message = overall(table, BOUNDARY_ESTIMATED)
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
    excluded = boundary.excluded if isinstance(boundary, FitResult) else no_exclusions()
    if table is None or table.empty:
        return FitResult(name, "insufficient", "the boundary table is empty", excluded=excluded)
    missing = [c for c in ("group", "M", "p_star", "log_p_star_se") if c not in table]
    if missing:
        return FitResult(name, "unsupported", f"the boundary table lacks column(s) {missing}",
                         excluded=excluded)
    table = table.assign(condition=table.get("condition", ""))
    finite = finite_p_star(table)
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
    status, message = overall(result)
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
                     laws_frame(laws))


def finite_p_star(table: pd.DataFrame) -> pd.Series:
    """Boundary rows with an estimated p* and a positive standard error of log p*."""
    return (np.isfinite(table["p_star"]) & np.isfinite(table["log_p_star_se"])
            & (table["log_p_star_se"] > 0) & (table["M"] >= 2))


def _cell_edges(values: np.ndarray) -> np.ndarray:
    """Log-space cell edges around sorted values (geometric midpoints, mirrored at the ends)."""
    log_v = np.log(values)
    if len(log_v) == 1:
        return np.exp(log_v + np.array([-0.05, 0.05]))
    mid = (log_v[1:] + log_v[:-1]) / 2
    return np.exp(np.concatenate([[2 * log_v[0] - mid[0]], mid, [2 * log_v[-1] - mid[-1]]]))


def _columns_by_order(groups: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each group's column in the phase diagram, (centre, half-width in log M): at its order M,
    side by side with the other groups of the same order."""
    columns = {}
    for order, same in groups.groupby("M"):
        half = 0.06 / len(same)
        for index, group in enumerate(sorted(same["group"])):
            columns[group] = (order * np.exp(2 * half * (index - (len(same) - 1) / 2)), half)
    return columns


def law_label(law: FitResult, row: pd.Series) -> str:
    verdict = law.verdict(LAW_C, row["condition"])
    return f"fit: c = {interval_text(row.c, row.c_lo, row.c_hi)} ({verdict})"


def plot_phase_diagram(boundary: FitResult, law: FitResult | None) -> Figure:
    """M × train fraction heatmap of the generalized fraction, with each group's fitted p*
    (CI bars), the fitted c·ln M/M and the paper code's 2.7482·ln M/M."""
    cells, labels = fit_panels(boundary, "boundary", "detail")  # table order: numeric
    if cells["group"].nunique() == 1:
        raise PlotSkipped(f"one group only ({cells['group'].iloc[0]}, M = {cells['M'].iloc[0]}):"
                          " the phase diagram's axis is the group order M, and c·ln M / M needs"
                          " several; generalization_map shows the train fraction against the"
                          " sweep's other fields")
    table = boundary.table
    figure, axes = panels(labels, width=6.4, height=4.8)
    mesh = None
    for ax, label in zip(axes, labels, strict=True):
        panel = cells[cells["condition"] == label]
        y_range = [np.inf, 0.0]
        columns = _columns_by_order(panel.drop_duplicates("group"))
        for group, group_cells in panel.groupby("group"):
            group_cells = group_cells.sort_values("train_fraction")
            centre, half = columns[group]
            x_edges = centre * np.exp([-half, half])
            y_edges = _cell_edges(group_cells["train_fraction"].to_numpy(float))
            mesh = ax.pcolormesh(x_edges, y_edges, group_cells[["fraction"]].to_numpy(float),
                                 cmap="RdYlBu", vmin=0, vmax=1)
            y_range = [min(y_range[0], y_edges[0]), max(y_range[1], y_edges[-1])]
        estimated = table[(table["condition"] == label) & np.isfinite(table["p_star"])]
        ax.errorbar([columns[group][0] for group in estimated["group"]], estimated["p_star"],
                    yerr=[estimated["p_star"] - estimated["p_star_lo"],
                          estimated["p_star_hi"] - estimated["p_star"]],
                    fmt="o", color="black", mfc="white", ms=5, capsize=3,
                    label="fitted p* (50%), 95% CI")
        orders = np.geomspace(panel["M"].min() * 0.85, panel["M"].max() * 1.15, 100)
        row = law_fit_row(law, label)
        if row is not None:
            ax.plot(orders, row["c"] * np.log(orders) / orders, color="black",
                    label=law_label(law, row))
        ax.plot(orders, REFERENCE_C * np.log(orders) / orders, color="black", ls="--",
                label=f"paper code: c = {REFERENCE_C}")
        ax.set(xscale="log", yscale="log", xlabel="group order M = |G| (log scale)",
               ylabel="training fraction p = n_train / M² (log scale)",
               ylim=(y_range[0] / 1.15, y_range[1] * 1.15))
        orders = sorted(panel["M"].unique())
        fixed_ticks(ax.xaxis, orders, [f"{m:g}" for m in orders])
        if len(orders) > 6:  # neighbouring orders (29, 30, ...) would print over each other
            ax.tick_params(axis="x", labelrotation=90)
        ax.legend(fontsize=8, loc="lower left")
    figure.colorbar(mesh, ax=list(axes),
                    label=f"fraction of seeds generalized ({GENERALIZED_TEXT})")
    figure.suptitle("Phase diagram and boundary p* = c·ln M / M")
    return figure


def boundary_section(result: FitResult, level: float) -> list[str]:
    return [markdown_table(result.table, {
        "condition": "condition", "group": "group", "group_name": "name", "M": "M",
        "n_runs": "runs", "n_p": "p values", "min_seeds": "min seeds/cell",
        "p_star": f"p* [{level:.0%} CI]", "width": "logistic width (log p)",
        "status": "status", "message": "note"}, intervals=("p_star",))]


def law_section(result: FitResult, level: float) -> list[str]:
    lines = []
    for row in result.table.itertuples(index=False):
        heading = f"**{row.condition}**: " if row.condition else ""
        if row.status != "ok":
            lines += [f"- {heading}{row.status}: {row.message}"]
            continue
        lines += [
            f"- {heading}**c = {row.c:.4g}** [{row.c_lo:.4g}, {row.c_hi:.4g}] ({level:.0%} CI;"
            f" {result.verdict(LAW_C, row.condition)}) from {row.n_groups}"
            f" groups (M = {row.M_min}…{row.M_max}, {row.n_runs} runs); reduced χ² ="
            f" {row.c_chi2_dof:.3g}.",
            f"- Exponent with g fixed at 1 (the headline b): **b = {row.b_g1:.4g}**"
            f" [{row.b_g1_lo:.4g}, {row.b_g1_hi:.4g}]"
            f" ({result.verdict(LAW_B, row.condition)}).",
        ]
        if np.isfinite(row.b_free):
            lines.append(
                f"- Free form p* = a·M^-b·(ln M)^g: b = {row.b_free:.4g}"
                f" [{row.b_free_lo:.4g}, {row.b_free_hi:.4g}], g = {row.g_free:.4g}"
                f" [{row.g_free_lo:.4g}, {row.g_free_hi:.4g}] (b and g trade off unless M"
                f" spans a wide range).")
        if row.message:
            lines.append(f"- Note: {row.message}")
    return lines


ANALYSES = (
    Analysis("generalization_boundary", "Generalization boundary p*(M)",
             lambda i: generalization_boundary(i.runs, i.n_boot, i.level, i.seed),
             boundary_section,
             {"phase_diagram":
              lambda r, fits, _: plot_phase_diagram(r, fits["boundary_law"])},
             varies=("train_fraction",)),
    Analysis("boundary_law", "Boundary law p* = c·ln M / M",
             lambda i: boundary_law(i.fits["generalization_boundary"], i.level),
             law_section, {}, varies=("train_fraction", "group"),
             builds_on="generalization_boundary"),
)
