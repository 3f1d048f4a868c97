"""Generalization per train fraction and another swept field (weight decay, lr, K, …): the
fraction of seeds that generalized in each cell of the grid, with its counts, and each row's
boundary p* where the generalization boundary fit estimated one. The phase diagram of a
sweep of one group, whose boundary cannot be drawn against the group order M."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grokjax.analysis.core import (
    Analysis,
    FitResult,
    condition_labels,
    format_value,
    precheck,
    split_usable,
    varying_config,
    with_wilson,
)
from grokjax.analysis.figures import (
    MAX_PANELS,
    PlotSkipped,
    combinations,
    condition_fields,
    fixed_ticks,
    panels,
    require,
    too_many,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GENERALIZED_TEXT

MAX_COUNTED_CELLS = 20  # columns (or rows) beyond which "generalized/runs" no longer fits a cell


def generalization_map(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Per cell of (every varied config column, train_fraction): runs, how many generalized,
    and the fraction with its Wilson interval."""
    name = "generalization_map"
    early = precheck(name, runs, ("train_fraction", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = varying_config(usable, exclude=("train_fraction",))
    if conditions == ["group"]:
        return FitResult(name, "unsupported", "only the group varies besides train_fraction: the"
                                              " phase diagram shows each group's boundary",
                         excluded=excluded)
    named = {"group_name": ("group_name", "first")} if "group_name" in usable else {}
    cells = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby([*conditions, "train_fraction"], dropna=False, sort=True)
             .agg(n=("generalized", "size"), n_generalized=("generalized", "sum"), **named)
             .reset_index())
    cells = with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
    method = f"Wilson {level:.0%} intervals on each cell's generalized fraction"
    return FitResult(name, "ok", "", cells, pd.DataFrame(), len(usable), excluded, method)


def _rows_field(cells: pd.DataFrame, fields: list[str], by: str | None) -> str | None:
    """The field drawn along the map's rows: ``by``, else the one (not the group) with the most
    values; None when only the train fraction varies."""
    if by in fields:
        return by
    others = [f for f in fields if f != "group"]
    return max(others, key=lambda f: cells[f].nunique(dropna=False)) if others else None


def _boundary_marks(ax, boundary: FitResult | None, panel: pd.DataFrame, keys: list[str],
                    row_field: str | None, rows: list, fractions: np.ndarray) -> bool:
    """Each row's fitted p* with its interval, placed between the columns in log p; whether
    any was drawn."""
    if boundary is None or not boundary.usable:
        return False
    estimates = boundary.table[np.isfinite(boundary.table["p_star"])]
    if keys:
        estimates = estimates.merge(panel[keys].drop_duplicates(), on=keys)
    log_p = np.log(fractions)
    drawn = False
    for estimate in estimates.itertuples(index=False):
        row = rows.index(getattr(estimate, row_field)) if row_field else 0
        # An interval end the data leave open (0 or inf) runs to the map's edge.
        ends = np.clip([estimate.p_star, estimate.p_star_lo, estimate.p_star_hi],
                       fractions.min(), fractions.max())
        x, lo, hi = np.interp(np.log(ends), log_p, np.arange(len(fractions)))
        ax.errorbar(x, row - 0.22, xerr=[[x - lo], [hi - x]], fmt="o", color="black",
                    mfc="white", ms=6, capsize=3)  # below the row's centre, clear of its counts
        drawn = True
    return drawn


def plot_generalization_map(result: FitResult, boundary: FitResult | None,
                            by: str | None = None) -> Figure:
    """Train fraction (columns) × a swept field (rows: ``by``, or the one with the most values)
    heatmap of the fraction of seeds generalized, "generalized/runs" in each cell, each row's
    p* (generalization_boundary) as a point with its interval; a panel per combination of the
    other varied fields."""
    cells = require(result, "generalization-map").table
    fields = condition_fields(cells, exclude=("train_fraction",))
    row_field = _rows_field(cells, fields, by)
    rest = [f for f in fields if f != row_field]
    if combinations(cells, rest) > MAX_PANELS:
        raise PlotSkipped(too_many(cells, rest, MAX_PANELS, "panel", [row_field]))
    cells = cells.assign(panel=condition_labels(cells, rest))
    titles = list(dict.fromkeys(cells["panel"]))
    widest = cells.groupby("panel")["train_fraction"].nunique().max()
    figure, axes = panels(titles, width=max(5.0, 0.55 * widest + 2.5),
                          height=max(3.2, 0.45 * (cells[row_field].nunique() if row_field else 1)
                                     + 2.2))
    cmap = colormaps["RdYlBu"].with_extremes(bad="0.88")
    image, marked = None, False
    for ax, title in zip(axes, titles, strict=True):
        panel = cells[cells["panel"] == title]
        fractions = np.sort(panel["train_fraction"].unique())
        rows = sorted(panel[row_field].unique()) if row_field else [None]
        grid = (panel.pivot(index=row_field, columns="train_fraction", values="fraction")
                if row_field else panel.set_index("train_fraction")[["fraction"]].T)
        grid = grid.reindex(index=rows if row_field else grid.index, columns=fractions)
        ax.grid(False)
        image = ax.imshow(grid.to_numpy(float), cmap=cmap, vmin=0, vmax=1, aspect="auto",
                          origin="lower", interpolation="nearest")
        if len(fractions) <= MAX_COUNTED_CELLS and len(rows) <= MAX_COUNTED_CELLS:
            for cell in panel.itertuples(index=False):
                x = int(np.searchsorted(fractions, cell.train_fraction))
                y = rows.index(getattr(cell, row_field)) if row_field else 0
                dark = not 0.2 < cell.fraction < 0.8  # the ends of RdYlBu are dark
                ax.text(x, y + 0.12, f"{cell.n_generalized}/{cell.n}", ha="center",
                        va="center", fontsize=8, color="white" if dark else "black")
        keys = [f for f in [*rest, row_field] if f]
        marked |= _boundary_marks(ax, boundary, panel, keys, row_field, rows, fractions)
        fixed_ticks(ax.xaxis, range(len(fractions)), [format_value(p) for p in fractions])
        fixed_ticks(ax.yaxis, range(len(rows)),
                    [format_value(v) for v in rows] if row_field else ["all runs"])
        if len(fractions) > 6:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set(xlabel="training fraction p = n_train / N", ylabel=row_field or "")
    figure.colorbar(image, ax=list(axes), label=f"fraction of seeds generalized\n"
                                                f"({GENERALIZED_TEXT}); grey: no runs")
    if marked:
        figure.legend(handles=[Line2D([], [], color="black", marker="o", mfc="white",
                                      label="p*: half the seeds generalize (95% CI)")],
                      loc="outside lower center", fontsize=8, frameon=False)
    group = (f" on {cells['group_name'].iloc[0]}" if "group_name" in cells
             and cells["group_name"].nunique() == 1 else "")
    figure.suptitle(textwrap.fill(f"Generalized seeds per train fraction"
                                  f"{' and ' + row_field if row_field else ''}{group}",
                                  12 * figure.get_figwidth()), fontsize=11)
    return figure


def map_section(result: FitResult, level: float) -> list[str]:
    """Generalized/runs per train fraction (columns), one row per condition."""
    cells = result.table.assign(
        cell=[f"{k}/{n}" for k, n in zip(result.table["n_generalized"], result.table["n"],
                                          strict=True)],
        column=[f"p={p:.3g}" for p in result.table["train_fraction"]])
    columns = list(dict.fromkeys(cells.sort_values("train_fraction")["column"]))
    cells["condition"] = cells["condition"].replace("", "all runs")
    pivot = (cells.pivot(index="condition", columns="column", values="cell")
             .reindex(index=list(dict.fromkeys(cells["condition"])), columns=columns)
             .reset_index())
    return ["Generalized / runs per train fraction:", "",
            markdown_table(pivot, {"condition": "condition"} | {c: c for c in columns})]


ANALYSES = (
    Analysis("generalization_map", "Generalization per train fraction and swept field",
             lambda i: generalization_map(i.runs, i.level), map_section,
             {"generalization_map": lambda r, fits, by: plot_generalization_map(
                 r, fits.get("generalization_boundary"), by)},
             varies=("train_fraction",)),
)
