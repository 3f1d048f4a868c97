"""The generalization boundary: per group the train fraction p* at which half the seeds
generalize (phase diagram), and the law p* = c·ln M / M across groups."""

from __future__ import annotations

import functools

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
    wrapped,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.groups import family as group_family
from grokjax.schema import GENERALIZED_TEXT

REFERENCE_C = 2.7482  # critical_ratio_multiplier in the paper's code: p* = 2.7482 ln M / M
# Row statuses of generalization_boundary whose p* (with its standard error) feeds the laws.
BOUNDARY_ESTIMATED = ("ok", "separated")
LAW_C = "c in p* = c·ln M / M"
LAW_B = "exponent b in p* ∝ M^-b·ln M"


@functools.lru_cache(maxsize=4096)
def _boundary_estimate(cells: tuple[tuple[float, int, int], ...],
                       level: float) -> dict[str, object]:
    """p* (50% generalization) of one group from its cells (train fraction p, n runs, k gen.),
    sorted by p. Cached: a search refits every condition each round, most of them unchanged."""
    p, n, k = (np.array(column) for column in zip(*cells, strict=True))
    row: dict[str, object] = {"n_runs": int(n.sum()), "n_p": len(p), "min_seeds": int(n.min()),
                              "p_star": np.nan, "p_star_lo": np.nan, "p_star_hi": np.nan,
                              "log_p_star_se": np.nan, "width": np.nan}

    notes = []

    def status(code: str, message: str = "") -> dict[str, object]:
        return row | {"status": code, "message": "; ".join(m for m in (message, *notes) if m)}

    if len(p) < 2:
        return status("single p", f"one train_fraction only ({p[0]:.4g}); a boundary needs ≥ 2")
    if k.sum() == n.sum():
        return status("all generalized",
                      f"every run generalized: p* < {p[0]:.4g}, the smallest p tried")
    if k.sum() == 0:
        return status("none generalized",
                      f"no run generalized: p* > {p[-1]:.4g}, the largest p tried")
    fraction = k / n
    falls = np.flatnonzero(np.diff(fraction) < 0)
    if np.isin(fraction, (0.0, 1.0)).all() and falls.size:
        # All-or-nothing cells out of order: the boundary is the first rise; keep the cells
        # before generalization falls again (e.g. too few steps at a large p).
        cut = falls[0] + 1
        notes.append(f"cells at p ≥ {p[cut]:.4g} left out: generalization falls again there")
        p, n, k, fraction = p[:cut], n[:cut], k[:cut], fraction[:cut]
        row |= {"n_runs": int(n.sum()), "n_p": len(p), "min_seeds": int(n.min())}
        if k.sum() == n.sum():
            return status("not monotone", f"generalization falls at p={p[-1]:.4g} or above "
                                          "with no rise below it: no boundary in this range")
    fit = stats.logistic_midpoint(np.log(p), n, k, level)
    if not fit.converged:
        return status("no convergence", "the logistic fit did not converge")
    if not fit.width > 0:
        return status("not increasing", "the generalized fraction does not rise with p")
    if not np.log(p[0]) <= fit.centre <= np.log(p[-1]):
        return status("outside grid", f"the fitted p* ≈ {np.exp(fit.centre):.3g} lies outside the"
                                      f" sampled range [{p[0]:.4g}, {p[-1]:.4g}]; extend the grid")
    z = distributions.norm.ppf(0.5 + level / 2)
    # A train fraction above 1 is no split: a closed interval's top stops there (its width, the
    # standard error the laws weigh by, stays the likelihood's); an open one stays inf.
    hi = np.exp(fit.hi)
    row |= {"p_star": np.exp(fit.centre), "p_star_lo": np.exp(fit.lo),
            "p_star_hi": min(hi, 1.0) if np.isfinite(hi) else hi,
            "log_p_star_se": (fit.hi - fit.lo) / (2 * z), "width": fit.width}
    open_ends = [side for side, end in (("below", fit.lo), ("above", fit.hi)) if np.isinf(end)]
    if open_ends:
        notes.append(f"the interval is open {' and '.join(open_ends)}: train fractions beyond the"
                     " grid would close it")
    if np.isin(fraction, (0.0, 1.0)).all():
        first = int(np.argmax(fraction == 1.0))
        return status("separated", f"sharp transition between p={p[first - 1]:.4g} (none"
                                   f" generalized) and p={p[first]:.4g} (all): no partial cell;"
                                   " refine the train_fraction grid")
    return status("ok")


def generalization_boundary(runs: pd.DataFrame, level: float = 0.95,
                            within: str | None = None) -> FitResult:
    """Per group (and condition): the train fraction p* at which half the seeds generalize.
    ``within``: a column whose every value is a condition of its own, instead of the config
    columns that vary (the search's conditions, fitted in one call per round).

    P(generalized) = logistic((log p − log p*)/width) is fitted by Firth-penalised maximum
    likelihood on the binomial counts per train_fraction cell; the CI of p* is the profile
    interval of that penalised likelihood (``stats.logistic_midpoint``), whose coverage
    tests/test_calibration.py measures against known boundaries through the sweeps' own designs.
    """
    name = "generalization_boundary"
    early = precheck(name, runs, ("group", "M", "train_fraction", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = [] if within else varying_config(usable, exclude=("group", "train_fraction"))
    keys = [within, "group"] if within else [*conditions, "group"]
    cells = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby([*keys, "train_fraction"], dropna=False, sort=True)
             .agg(M=("M", "first"), n=("generalized", "size"),
                  n_generalized=("generalized", "sum"),
                  **({"steps": ("steps", "max")} if "steps" in usable and "steps" not in keys
                     else {}))
             .reset_index())
    cells = with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
    rows = []
    for key, group_cells in cells.groupby(keys, dropna=False, sort=True):
        estimate = _boundary_estimate(tuple(zip(
            group_cells["train_fraction"].astype(float), group_cells["n"].astype(int),
            group_cells["n_generalized"].astype(int), strict=True)), level)
        steps = {"steps": group_cells["steps"].max()} if "steps" in group_cells else {}
        rows.append(dict(zip(keys, key, strict=True)) | {"M": int(group_cells["M"].iloc[0])}
                    | steps | estimate)
    table = pd.DataFrame(rows)
    if table.empty:
        return FitResult(name, "insufficient", "no usable runs", excluded=excluded)
    by_group = usable.drop_duplicates("group").set_index("group")
    for position, column in enumerate(c for c in ("group_name", "max_real_irrep_dim")
                                      if c in usable):
        table.insert(len(keys) + position, column, table["group"].map(by_group[column]))
    table = (table.assign(condition=condition_labels(table, conditions),
                          label=condition_labels(table, [*conditions, "group"]))
             .sort_values([*conditions, "M", "group"], ignore_index=True))
    status, message = overall(table, BOUNDARY_ESTIMATED)
    used = table.loc[table["status"].isin(BOUNDARY_ESTIMATED), "n_runs"].sum()
    method = (f"logistic fit of P(generalized) vs log train_fraction per group (Firth-penalised"
              f" maximum likelihood); {level:.0%} CI: profile interval of the penalised"
              f" likelihood, the width profiled out (calibrated by simulation against known"
              f" boundaries, tests/test_calibration.py)")
    return FitResult(name, status, message, table, cells, int(used), excluded, method)


LAW_COLUMNS = ("c", "c_lo", "c_hi", "c_tau", "c_chi2_dof", "c_misfit_p", "c_b_free",
               "c_b_free_lo", "c_b_free_hi", "M_centre", "b_g1", "b_g1_lo", "b_g1_hi", "a_g1",
               "b_free", "b_free_lo", "b_free_hi", "g_free", "g_free_lo", "g_free_hi", "a_free",
               "families", "family_p", "family_c")
FAMILY_ALPHA = 0.05  # a family effect at this level makes the pooled c no test of the law


def _random_effects(y, se, columns, level):
    """``stats.random_effects_regression`` on a design of ``columns`` (None: too few points)."""
    return stats.random_effects_regression(y, se, np.column_stack(columns), level)


def _family_effect(log_c, se, families, level) -> dict[str, object]:
    """Does c differ between group families? The likelihood-ratio test of one c per family
    against one c for all, each with its between-group scatter (ML, τ profiled)."""
    names = sorted(set(families))
    if len(names) < 2:
        return {"families": names[0] if names else ""}
    indicators = [np.asarray(families) == name for name in names]
    pooled = _random_effects(log_c, se, [np.ones_like(log_c)], level)
    split = _random_effects(log_c, se, [i.astype(float) for i in indicators], level)
    if pooled is None or split is None:
        return {"families": ", ".join(names)}
    statistic = max(0.0, 2 * (split.log_likelihood - pooled.log_likelihood))
    return {"families": ", ".join(names),
            "family_p": float(distributions.chi2.sf(statistic, len(names) - 1)),
            "family_c": "; ".join(
                f"{name} {np.exp(coef):.3g} [{np.exp(lo):.3g}, {np.exp(hi):.3g}]"
                for name, coef, lo, hi in zip(names, split.coef, split.lo, split.hi, strict=True))}


def _law_estimate(M, log_p_star, se, families, level: float,
                  reference_c: float) -> dict[str, object]:
    """c (b = 1), b (g = 1), c with b free, and the free (a, b, g) of p* = a·M^-b·(ln M)^g from
    per-group log p*, each a random-effects fit: the groups may scatter about the law by more
    than their own errors (τ), and the intervals (Knapp–Hartung) widen with that scatter."""
    row: dict[str, object] = dict.fromkeys(LAW_COLUMNS, np.nan)
    row |= {"c_reference": reference_c, "n_groups": len(M),
            "M_min": int(M.min()) if len(M) else np.nan,
            "M_max": int(M.max()) if len(M) else np.nan}
    if len(M) < 3:
        return row | {"status": "too few groups",
                      "message": f"needs ≥ 3 groups with a finite p*, has {len(M)}"}
    log_M, log_ln_M = np.log(M), np.log(np.log(M))
    ones = np.ones_like(log_M)
    log_c = log_p_star - log_ln_M + log_M
    fit = _random_effects(log_c, se, [ones], level)
    # Cochran's Q per degree of freedom: the groups' reduced chi² about one c, no scatter.
    chi2_dof = stats.weighted_least_squares(ones[:, None], log_c, 1 / se**2, level)[3]
    row |= {"c": np.exp(fit.coef[0]), "c_lo": np.exp(fit.lo[0]), "c_hi": np.exp(fit.hi[0]),
            "c_tau": fit.tau, "c_chi2_dof": chi2_dof,
            "c_misfit_p": float(distributions.chi2.sf(chi2_dof * (len(M) - 1), len(M) - 1))}
    notes = []
    centre = float(np.exp(log_M.mean()))
    # p* = a·M^-b·ln M with log M centred: the intercept is log c at M_centre, b free; p* ∝ M^-b,
    # so b is minus the slope (and its bounds swap).
    fit = _random_effects(log_p_star - log_ln_M + np.log(centre), se,
                          [ones, log_M - np.log(centre)], level)
    if fit is None or np.unique(M).size < 3:
        notes.append("b needs ≥ 3 distinct M")
    else:
        row |= {"b_g1": -fit.coef[1], "b_g1_lo": -fit.hi[1], "b_g1_hi": -fit.lo[1],
                "a_g1": np.exp(fit.coef[0] - np.log(centre) * (1 + fit.coef[1])),
                "c_b_free": np.exp(fit.coef[0]), "c_b_free_lo": np.exp(fit.lo[0]),
                "c_b_free_hi": np.exp(fit.hi[0]), "M_centre": centre}
    fit = (_random_effects(log_p_star, se, [ones, log_M, log_ln_M], level)
           if np.unique(M).size >= 4 else None)
    if fit is None:
        notes.append("the free form (a, b, g) needs ≥ 4 distinct M")
    else:
        row |= {"a_free": np.exp(fit.coef[0]), "b_free": -fit.coef[1], "b_free_lo": -fit.hi[1],
                "b_free_hi": -fit.lo[1], "g_free": fit.coef[2], "g_free_lo": fit.lo[2],
                "g_free_hi": fit.hi[2]}
    row |= _family_effect(log_c, se, families, level)
    return row | {"status": "ok", "message": "; ".join(notes)}


def _budget_moves(result: pd.DataFrame, table: pd.DataFrame, level: float) -> dict[str, str]:
    """Conditions that differ only in the step budget whose c differs beyond both CIs' errors:
    {condition: why its laws are no test} (a boundary measured with too few steps sits high)."""
    if "steps" not in table or table["steps"].nunique() < 2:
        return {}
    others = varying_config(table, exclude=("group", "train_fraction", "steps"))
    by_condition = table.drop_duplicates("condition").set_index("condition")
    z = distributions.norm.ppf(0.5 + level / 2)
    ok = result[result["status"] == "ok"].assign(
        steps=lambda f: f["condition"].map(by_condition["steps"]),
        key=lambda f: f["condition"].map(by_condition[others].astype(str).agg("|".join, axis=1))
        if others else "", log_c=lambda f: np.log(f["c"]),
        se=lambda f: np.log(f["c_hi"] / f["c_lo"]) / (2 * z))
    why = {}
    for _, same in ok.groupby("key"):
        same = same.sort_values("steps")
        for first, last in zip(same.iloc[:-1].itertuples(), same.iloc[1:].itertuples(),
                               strict=True):
            gap = (first.log_c - last.log_c) / np.hypot(first.se, last.se)
            if abs(gap) > z:
                text = (f"p* moved when the step budget changed (c {first.c:.3g} at"
                        f" {first.steps:g} steps, {last.c:.3g} at {last.steps:g})")
                why[first.condition] = why[last.condition] = text
    return why


def boundary_law(boundary: FitResult | pd.DataFrame, level: float = 0.95,
                 reference_c: float = REFERENCE_C) -> FitResult:
    """Fit p* = c·ln M/M and p* = a·M^-b·(ln M)^g across groups, per condition.

    Random-effects regressions on log p* with each group's standard error from its profile
    interval (``_law_estimate``); the headline exponent is ``b_g1`` (g fixed at 1); c is given
    with b = 1 and with b free (at the groups' central order); ``b_free``/``g_free`` come from the
    free form, where g is weakly identified unless M spans a wide range. A verdict is *not a
    test here* when the groups' families differ in c, their largest real irreps differ (the
    law's c depends on them: irrep_scaling), or the boundary moved with the step budget.
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
                                 fitted["log_p_star_se"].to_numpy(),
                                 [group_family(g) for g in fitted["group"]], level, reference_c)
        skipped = groups.loc[~finite[groups.index], "group"].tolist()
        note = f"groups without a finite p*: {', '.join(map(str, skipped))}" if skipped else ""
        message = "; ".join(m for m in (estimate.pop("message"), note) if m)
        irreps = (sorted(fitted["max_real_irrep_dim"].dropna().astype(int).unique())
                  if "max_real_irrep_dim" in fitted else [])
        steps = fitted["steps"].max() if "steps" in fitted else np.nan
        rows.append({"condition": condition, **estimate, "message": message,
                     "groups": ", ".join(map(str, fitted["group"])), "steps": steps,
                     "real_irrep_dims": ", ".join(map(str, irreps)),
                     "n_runs": int(fitted["n_runs"].sum()) if "n_runs" in fitted else 0})
    result = pd.DataFrame(rows)
    status, message = overall(result)
    method = (f"random-effects regressions on log p* across groups (REML scatter τ between"
              f" groups; each group's standard error from its {level:.0%} profile interval);"
              f" {level:.0%} CI: Knapp–Hartung (t on groups − parameters degrees of freedom);"
              f" misfit: Cochran's Q of the groups about one c (c_misfit_p); family effect:"
              f" likelihood-ratio test of one c per group family (family_p). Headline exponent"
              f" b_g1 has g fixed at 1; c_b_free is c at the groups' central order with b free;"
              f" b_free and g_free come from the free form a·M^-b·(ln M)^g, where b and g are"
              f" strongly correlated unless M spans a wide range")
    used = int(result.loc[result["status"] == "ok", "n_runs"].sum())
    moved = _budget_moves(result, table, level)
    laws = []
    for row in result[result["status"] == "ok"].itertuples(index=False):
        budget = (f"boundaries at {row.steps:g} steps, which sit at or above those of an"
                  " unlimited budget" if np.isfinite(row.steps) else "")
        reason = moved.get(row.condition, "")
        if len(row.real_irrep_dims.split(", ")) > 1:
            reason = (f"the groups' largest real irreps differ (dimensions {row.real_irrep_dims}):"
                      " c depends on them (irrep_scaling)")
        c_reason = reason or (f"c differs between families (p = {row.family_p:.2g}:"
                              f" {row.family_c})" if row.family_p < FAMILY_ALPHA else "")
        c_assumes = "; ".join(a for a in (budget, f"b = 1 (with b free: c = {row.c_b_free:.3g}"
                                          f" at M = {row.M_centre:.3g})"
                                          if np.isfinite(row.c_b_free) else "b = 1") if a)
        laws += [law_row(LAW_C, row.condition, row.c, row.c_lo, row.c_hi, reference_c,
                         "the paper code's constant; the paper states none", row.n_runs,
                         assumes=c_assumes, not_a_test=c_reason),
                 law_row(LAW_B, row.condition, row.b_g1, row.b_g1_lo, row.b_g1_hi, 1.0,
                         "Theorem 4: p ~ M⁻¹ log M", row.n_runs,
                         assumes="; ".join(a for a in (budget, "the budget moves every group"
                                                       " alike") if budget),
                         not_a_test=reason)]
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
    return wrapped(f"fit: c = {interval_text(row.c, row.c_lo, row.c_hi)} ({verdict})")


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
        # An interval the data leave open runs to the edge of the panel.
        lo, hi = estimated["p_star_lo"].clip(lower=y_range[0]), estimated["p_star_hi"].clip(
            upper=y_range[1])
        ax.errorbar([columns[group][0] for group in estimated["group"]], estimated["p_star"],
                    yerr=[estimated["p_star"] - lo, hi - estimated["p_star"]],
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
            f"- {heading}**c = {row.c:.4g}** [{row.c_lo:.4g}, {row.c_hi:.4g}] with b = 1"
            f" ({level:.0%} CI; {result.verdict(LAW_C, row.condition)}) from {row.n_groups}"
            f" groups (M = {row.M_min}…{row.M_max}, {row.n_runs} runs); the groups scatter about"
            f" it by τ = {row.c_tau:.3g} in log c beyond their own errors (misfit: Q/dof ="
            f" {row.c_chi2_dof:.3g}, p = {row.c_misfit_p:.2g})."]
        if np.isfinite(row.b_g1):
            lines += [
                f"- Exponent with g fixed at 1 (the headline b): **b = {row.b_g1:.4g}**"
                f" [{row.b_g1_lo:.4g}, {row.b_g1_hi:.4g}] ({result.verdict(LAW_B, row.condition)})"
                f"; with b free, c = {row.c_b_free:.4g} [{row.c_b_free_lo:.4g},"
                f" {row.c_b_free_hi:.4g}] at the central order M = {row.M_centre:.3g}: the"
                f" difference from c with b = 1 is what b's departure from 1 does across"
                f" M = {row.M_min}…{row.M_max}."]
        if np.isfinite(row.family_p):
            lines.append(f"- Families ({row.families}): one c per family, {row.family_c};"
                         f" likelihood-ratio test of a family effect p = {row.family_p:.2g}.")
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
             lambda i: generalization_boundary(i.runs, i.level),
             boundary_section,
             {"phase_diagram":
              lambda r, fits, _: plot_phase_diagram(r, fits["boundary_law"])},
             varies=("train_fraction",)),
    Analysis("boundary_law", "Boundary law p* = c·ln M / M",
             lambda i: boundary_law(i.fits["generalization_boundary"], i.level),
             law_section, {}, varies=("train_fraction", "group"),
             builds_on="generalization_boundary"),
)
