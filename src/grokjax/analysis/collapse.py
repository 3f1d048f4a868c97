"""The collapse test: generalized fraction per group against c_eff = n_train / (M ln M); if
p* = c·ln M / M holds, every group crosses 50% at c_eff = c."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax.analysis.boundary import REFERENCE_C, law_label
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    condition_labels,
    exclusions,
    precheck,
    split_usable,
    varying_config,
    with_wilson,
)
from grokjax.analysis.figures import fit_panels, group_colors, law_fit_row, panels
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GENERALIZED_TEXT


def collapse(runs: pd.DataFrame, n_bins: int = 12, level: float = 0.95) -> FitResult:
    """Generalized fraction per group vs c_eff = n_train/(M ln M), in shared log-spaced bins.

    If p* = c·ln M/M holds, every group crosses 50% at the same c_eff (= c) and the curves
    collapse onto one.
    """
    name = "collapse"
    early = precheck(name, runs, ("group", "M", "c_eff", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    c_eff = usable["c_eff"].to_numpy(float)
    bad = ~(np.isfinite(c_eff) & (c_eff > 0))
    excluded = pd.concat([excluded, exclusions(usable[bad], "c_eff is not a positive number")])
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
    binned = with_wilson(binned, level).assign(
        c_eff_bin_lo=edges[binned["bin"]], c_eff_bin_hi=edges[binned["bin"] + 1],
        condition=condition_labels(binned, conditions))
    groups = binned["group"].nunique()
    message = "" if groups > 1 else "one group only: nothing to collapse across"
    method = f"Wilson {level:.0%} intervals on each bin's generalized fraction"
    return FitResult(name, "ok", message, binned, pd.DataFrame(), len(usable), excluded, method)


def plot_collapse(collapse: FitResult, law: FitResult | None) -> Figure:
    """Generalized fraction vs c_eff = n_train/(M ln M), one line per group: if p* = c ln M/M
    holds, all groups cross 50% at c_eff = c."""
    table, labels = fit_panels(collapse, "collapse")
    colors = group_colors(table["M"])
    figure, axes = panels(labels, width=6.4, height=4.6)
    for ax, label in zip(axes, labels, strict=True):
        panel = table[table["condition"] == label]
        for (order, group), bins in panel.groupby(["M", "group"], sort=True):
            bins = bins.sort_values("c_eff")
            ax.errorbar(bins["c_eff"], bins["fraction"],
                        yerr=[bins["fraction"] - bins["fraction_lo"],
                              bins["fraction_hi"] - bins["fraction"]],
                        color=colors[order], marker="o", ms=4, capsize=2, lw=1.2,
                        elinewidth=0.7, label=f"M={order}" if group == str(order)
                        else f"{group} (M={order})")
        row = law_fit_row(law, label)
        if row is not None:
            ax.axvline(row["c"], color="black", label=law_label(law, row))
        ax.axvline(REFERENCE_C, color="black", ls="--", label=f"paper code c = {REFERENCE_C}")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="c_eff = n_train / (M ln M) (log scale)",
               ylabel=f"fraction generalized ({GENERALIZED_TEXT})")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    figure.suptitle("Collapse: generalized fraction vs c_eff (Wilson 95% CI)")
    return figure


def collapse_section(result: FitResult, level: float) -> list[str]:
    """Generalized/total per c_eff bin (rows) and group (columns), one table per condition."""
    lines = []
    for condition, table in result.table.groupby("condition", sort=False):
        table = table.assign(
            c_eff_bin=[f"{lo:.3g}–{hi:.3g}" for lo, hi in
                       zip(table["c_eff_bin_lo"], table["c_eff_bin_hi"], strict=True)],
            cell=[f"{k}/{n}" for k, n in zip(table["n_generalized"], table["n"], strict=True)],
            column=[f"M={m}" if g == str(m) else f"{g} (M={m})"
                    for g, m in zip(table["group"], table["M"], strict=True)])
        columns = list(dict.fromkeys(table.sort_values(["M", "group"])["column"]))
        pivot = (table.pivot(index=["bin", "c_eff_bin"], columns="column", values="cell")
                 .reindex(columns=columns).reset_index())
        if condition:
            lines += [f"**{condition}**", ""]
        lines += ["Generalized / runs per c_eff bin:", "", markdown_table(
            pivot, {"c_eff_bin": "c_eff bin"} | {c: c for c in columns}), ""]
    return lines


ANALYSES = (
    Analysis("collapse", "Collapse onto c_eff = n_train / (M ln M)",
             lambda i: collapse(i.runs, level=i.level), collapse_section,
             {"collapse": lambda r, fits, _: plot_collapse(r, fits["boundary_law"])},
             varies=("train_fraction", "group")),
)
