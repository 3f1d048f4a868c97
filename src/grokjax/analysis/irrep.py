"""The boundary constant c = p*·M / ln M against the largest irrep degree d_k."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax import stats
from grokjax.analysis.boundary import finite_p_star
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    law_row,
    laws_frame,
    overall,
    precheck,
)
from grokjax.analysis.figures import fit_panels, fixed_ticks, interval_text, panels
from grokjax.analysis.markdown import markdown_table

# Theorem 4: n ≳ d_k² M log M; the paper's code scales its critical ratio by d_k/2 instead.
THEOREM_DK_EXPONENT, CODE_DK_EXPONENT = 2.0, 1.0
LAW_DK_EXPONENT = "exponent of d_k in c = n*/(M ln M)"


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
    early = precheck(name, runs, ("group", "max_irrep_degree"))
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
    finite = finite_p_star(groups)
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
    status, message = overall(result)
    method = (f"c = p*·M/ln M per group from the Firth boundary fit; weighted least squares of"
              f" log c on log d_k with weights 1/var(log p*), {level:.0%} CI normal, or t scaled by"
              f" the reduced χ² when that is > 1; the forms c ∝ d_k² and c ∝ d_k are compared by"
              f" weighted χ² (same number of parameters)")
    return FitResult(name, status, message, result, pd.concat(details, ignore_index=True),
                     int(result["n_runs"].sum()), boundary.excluded, method, laws_frame(laws))


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


def plot_irrep_scaling(irrep: FitResult) -> Figure:
    """The boundary constant c = p*·M/ln M against the largest irrep degree d_k (log-log): each
    group with its CI, groups that never generalized as lower bounds (▲), the fitted power law
    and the two forms in question, c ∝ d_k² (Theorem 4) and c ∝ d_k (the paper's code)."""
    groups, labels = fit_panels(irrep, "irrep-scaling", "detail")
    figure, axes = panels(labels, width=9.5, height=5.2)
    for ax, label in zip(axes, labels, strict=True):
        panel = groups[groups["condition"] == label]
        estimated = panel[np.isfinite(panel["c"])].sort_values(["d_k", "M"])
        for index, row in enumerate(estimated.itertuples(index=False)):
            ax.errorbar(row.d_k, row.c, yerr=[[row.c - row.c_lo], [row.c_hi - row.c]], fmt="o",
                        color=colormaps["tab10"](index % 10), capsize=3,
                        label=f"{row.group} (M = {row.M}), 95% CI")
        bounds = panel[panel["c_bound"].notna()]
        if len(bounds):
            ax.plot(bounds["d_k"], bounds["c_bound"], "^", color="C3", ms=8,
                    label="never generalized: c above the largest p tried")
        for row in bounds.itertuples(index=False):
            ax.annotate(row.group, (row.d_k, row.c_bound), fontsize=7, xytext=(5, 3),
                        textcoords="offset points", color="C3")
        row = irrep.table[irrep.table["condition"] == label].iloc[0]
        degrees = np.geomspace(0.9, panel["d_k"].max() * 1.1, 50)
        if row["status"] == "ok":
            exponent = interval_text(row.exponent, row.exponent_lo, row.exponent_hi)
            verdict = irrep.verdict(LAW_DK_EXPONENT, label)
            ax.plot(degrees, row["c_at_1"] * degrees ** row["exponent"], color="black",
                    label=f"fit: c ∝ d_k^{exponent}\n({verdict})")
            for form, exponent, style in (("theorem", THEOREM_DK_EXPONENT, "--"),
                                          ("code", CODE_DK_EXPONENT, ":")):
                ax.plot(degrees, row[f"c_{form}"] * degrees**exponent, color="grey", ls=style,
                        label=f"c ∝ d_k^{exponent:g} ({form}), χ² = {row[f'chi2_{form}']:.3g}")
        else:
            ax.set_title(f"{label}\nno exponent: {row['message']}", fontsize=8)
        degrees_tried = sorted(panel["d_k"].unique())
        ax.set(xscale="log", yscale="log", xlabel="largest irrep degree d_k (log scale)",
               ylabel="boundary constant c = p*·M / ln M (log scale)")
        fixed_ticks(ax.xaxis, degrees_tried, [f"{d:g}" for d in degrees_tried])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.suptitle("Boundary constant vs largest irrep degree: d_k² (Theorem 4) or d_k (code)?")
    return figure


def irrep_section(result: FitResult, level: float) -> list[str]:
    lines = [markdown_table(result.detail, {
        "condition": "condition", "group": "group", "M": "M", "d_k": "d_k",
        "c": f"c = p*·M/ln M [{level:.0%} CI]", "c_bound": "c lower bound (never generalized)",
        "contradicts_theorem": "contradicts d_k²", "contradicts_code": "contradicts d_k",
        "status": "boundary status"}, intervals=("c",)), ""]
    for row in result.table.itertuples(index=False):
        heading = f"**{row.condition}**: " if row.condition else ""
        if row.status != "ok":
            lines.append(f"- {heading}{row.status}: {row.message}")
            continue
        lines.append(
            f"- {heading}c ∝ d_k^e with **e = {row.exponent:.3g}** [{row.exponent_lo:.3g},"
            f" {row.exponent_hi:.3g}]"
            f" ({result.verdict(LAW_DK_EXPONENT, row.condition)}) from {row.n_groups}"
            f" groups at {row.n_degrees} degrees"
            f" (reduced χ² {row.chi2_dof:.3g}); fixed forms: χ² = {row.chi2_theorem:.3g} for"
            f" c = {row.c_theorem:.3g}·d_k², χ² = {row.chi2_code:.3g} for"
            f" c = {row.c_code:.3g}·d_k; the data favour **{row.favoured}**.")
    return lines


ANALYSES = (
    Analysis("irrep_scaling", "Boundary constant vs largest irrep degree d_k",
             lambda i: irrep_scaling(i.fits["generalization_boundary"], i.runs, i.level),
             irrep_section, {"irrep_scaling": lambda r, *_: plot_irrep_scaling(r)},
             varies=("train_fraction", "max_irrep_degree"), builds_on="generalization_boundary"),
)
