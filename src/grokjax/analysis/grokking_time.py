"""Grokking time against every swept numeric field (K, lr, weight_decay, train_fraction, …):
the median and inter-quartile range over seeds of the grokking step t_grok.

A run that had not reached the threshold when its training ended (at ``steps``, or at its stop
step) is right-censored: it would grok later than any step it was trained for, or not at all;
the data cannot tell which, so it is counted as later than every grokked run, never as a
failure, and a quantile that needs it is "not within N steps" (``inf`` in the table).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grokjax import config
from grokjax.analysis.core import (
    QUANTILES,
    Analysis,
    FitResult,
    as_float,
    censored_quantiles,
    condition_labels,
    format_value,
    precheck,
    split_usable,
    varying_config,
)
from grokjax.analysis.figures import (
    NotebookFigure,
    condition_colors,
    condition_fields,
    fixed_ticks,
    log_spaced,
    require,
    split_conditions,
    zero_on_log_axis,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GROKKED_COLUMN, GROKKED_TEXT

# The fields a grokking time can be drawn against: the numeric ones that define a condition.
NUMERIC_FIELDS = tuple(name for name, field in config.FIELDS.items()
                       if field.condition and field.type in (int, float))
MAX_COLUMNS = 4  # panels in a row: one row per swept field
MAX_COUNTED_COLOURS = 3  # "grokked/runs" is written beside each point up to this many colours


def grokking_time(runs: pd.DataFrame) -> FitResult:
    """Per condition (every combination of the varied config columns): runs, how many grokked
    within their steps, the quartiles of t_grok over seeds (``censored_quantiles``) and
    ``not_within``, the most steps a run that did not grok was trained for."""
    name = "grokking_time"
    early = precheck(name, runs, (GROKKED_COLUMN,))
    if early:
        return early
    usable, excluded = split_usable(runs)
    swept = [f for f in NUMERIC_FIELDS if f in usable and usable[f].nunique(dropna=False) > 1]
    if not swept:
        return FitResult(name, "unsupported", "needs a numeric field to vary (one of "
                                              f"{', '.join(NUMERIC_FIELDS)})", excluded=excluded)
    conditions = varying_config(usable)
    trained = usable["steps_trained"] if "steps_trained" in usable else usable["steps"]
    frame = usable.assign(t_grok=as_float(usable[GROKKED_COLUMN]), trained=as_float(trained))
    rows = []
    for key, cell in frame.groupby(conditions, dropna=False, sort=True):
        t_grok = cell["t_grok"].to_numpy()
        censored = cell.loc[~np.isfinite(t_grok), "trained"]
        rows.append(dict(zip(conditions, key, strict=True))
                    | dict(zip(QUANTILES, censored_quantiles(t_grok), strict=True))
                    | {"n": len(cell), "n_grokked": int(np.isfinite(t_grok).sum()),
                       "not_within": censored.max() if len(censored) else np.nan})
    table = pd.DataFrame(rows)
    table = table.assign(condition=condition_labels(table, conditions), status="ok", message="")
    method = (f"quartiles over seeds of the first step with {GROKKED_TEXT}; a run that had not"
              " reached it when its training ended is right-censored (counted as later than"
              " any grokked run), so a quartile that needs it is 'not within N steps' (inf)")
    return FitResult(name, "ok", "", table, pd.DataFrame(), len(usable), excluded, method)


def _x_axis(ax, values: np.ndarray, field: str):
    """Positions of ``values`` on ``ax``'s x axis: log when they are log-spaced (0 on its own
    tick, as weight decay η = 0), else linear; ticks at the values when they are few."""
    unique = np.unique(values)
    positive = unique[unique > 0]
    if (unique == 0).any() and len(positive) and (len(positive) == 1 or log_spaced(positive)):
        positions, ticks, labels = zero_on_log_axis(values)
        scale = "log"
    else:
        positions, ticks, labels = values, list(unique), [format_value(v) for v in unique]
        scale = "log" if log_spaced(unique) else "linear"
    ax.set_xscale(scale)
    ax.set_xlabel(field + (" (log scale)" if scale == "log" else ""))
    if len(ticks) <= 10:
        fixed_ticks(ax.xaxis, ticks, labels)
        if len(ticks) > 5:
            ax.tick_params(axis="x", labelrotation=45)
    return positions, scale


def _draw_field(ax, cells: pd.DataFrame, field: str, split_colour: pd.Series, colors: dict,
                band: float) -> None:
    """t_grok against ``field``: per colour, the median (line and marker) and the
    inter-quartile range (bar); a censored quartile is drawn in the 'not within' band."""
    positions, scale = _x_axis(ax, cells[field].to_numpy(float), field)
    cells = cells.assign(x=positions, colour=split_colour[cells.index])
    labels = list(dict.fromkeys(cells["colour"]))
    where = np.unique(cells["x"])
    gaps = np.diff(np.log(where) if scale == "log" else where)
    step = 0.3 * (gaps.min() if len(gaps) else 1.0) / max(len(labels), 2)
    for index, label in enumerate(labels):
        points = cells[cells["colour"] == label].sort_values("x")
        offset = step * (index - (len(labels) - 1) / 2)  # side by side: no bar hides another
        x = (points["x"] * np.exp(offset) if scale == "log"
             else points["x"] + offset).to_numpy()
        q25, median, q75 = (np.minimum(points[q].to_numpy(), band) for q in QUANTILES)
        color = colors[label]
        ax.vlines(x, q25, q75, color=color, lw=1.4)
        grokked = median < band
        ax.plot(x[grokked], median[grokked], "o-", color=color, ms=5, lw=1.2)
        ax.plot(x[~grokked], median[~grokked], "^", color=color, ms=7, mfc="none", mew=1.4)
        if len(labels) <= MAX_COUNTED_COLOURS:  # where some seeds had not grokked: how many did
            for xi, yi, row in zip(x, median, points.itertuples(index=False), strict=True):
                if row.n_grokked < row.n:
                    ax.annotate(f"{row.n_grokked}/{row.n}", (xi, yi), xytext=(-5, -9),
                                textcoords="offset points", fontsize=7, color=color, ha="right")


def plot_grokking_time(result: FitResult, by: str | None = None) -> Figure:
    """One row of panels per swept numeric field: t_grok (log) against the field, the median
    and inter-quartile range over seeds per condition colour (``by`` chooses the field drawn
    as colours), a panel per combination of the rest; runs that had not grokked when training
    ended sit in the 'not within N steps' band at the top."""
    table = require(result, "grokking-time").table
    fields = condition_fields(table)
    swept = [f for f in NUMERIC_FIELDS if f in fields]
    splits = {f: split_conditions(table, [g for g in fields if g != f], by, MAX_COLUMNS)
              for f in swept}
    columns = max(len(split.panel_labels()) for split in splits.values())
    figure = NotebookFigure(figsize=(8.2 * columns, 4.4 * len(swept) + 0.5),
                            layout="constrained")
    grid = figure.subplots(len(swept), columns, squeeze=False)
    finite = table[list(QUANTILES)].to_numpy(float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    censored = table["not_within"].dropna()
    top = max([*finite, *censored])
    band = top * 2.2  # the 'not within N steps' band, above every measured step
    bound_text = f"{censored.iloc[0]:g}" if censored.nunique() == 1 else "their"
    for row, field in zip(grid, swept, strict=True):
        split = splits[field]
        colors = condition_colors(split.colour_labels())
        for ax in row[len(split.panel_labels()):]:
            ax.set_visible(False)
        for ax, panel in zip(row, split.panel_labels(), strict=False):
            cells = table[split.panel == panel]
            _draw_field(ax, cells, field, split.colour, colors, band)
            if len(censored):  # labelled outside, at the right, where no point can hide it
                ax.axhspan(band / 1.45, band * 1.45, color="0.9", lw=0, zorder=0)
                ax.text(1.01, band, f"not within\n{bound_text}\nsteps", va="center", fontsize=7,
                        transform=ax.get_yaxis_transform(), color="0.3")
            ax.set(yscale="log", ylim=(finite.min(initial=top) / 2, band * 1.6),
                   ylabel=f"t_grok: first step with\n{GROKKED_TEXT} (log)", title=panel)
            ax.grid(True, which="major", alpha=0.3)
            totals = cells.groupby(split.colour[cells.index], sort=False)[["n_grokked", "n"]]
            handles = [Line2D([], [], color=colors[label], marker="o", lw=1.2,
                              label=f"{split.legend_label(label)} (grokked {k}/{n})")
                       for label, (k, n) in totals.sum().iterrows()]
            handles += [Line2D([], [], color="black", marker="o", lw=1.2,
                               label="median; bar: inter-quartile range over seeds"),
                        Line2D([], [], color="black", marker="^", mfc="none", ls="none",
                               label="median not within the steps trained;\n"
                                     "k/n: seeds grokked where not all did")]
            ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0),
                      title=split.legend_title(), title_fontsize=7)  # beside: no point hidden
    note = textwrap.fill("median and inter-quartile range over seeds; a run not grokked when"
                         " its training ended is censored (△), not a failure", 12 * 8.2 * columns)
    figure.suptitle(f"Grokking step against {' and '.join(swept)}\n{note}", fontsize=10)
    return figure


def _quantile_text(value: float, not_within: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else f"not within {not_within:g}"


def grokking_time_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(**{
        q: [_quantile_text(v, bound) for v, bound in
            zip(result.table[q], result.table["not_within"], strict=True)] for q in QUANTILES})
    return ["Grokking step t_grok per condition, quartiles over seeds (a run that had not"
            " grokked when its training ended counts as later than any that did):", "",
            markdown_table(table, {"condition": "condition", "n": "runs",
                                   "n_grokked": "grokked within their steps",
                                   "t_grok_q25": "t_grok 25%", "t_grok_median": "median t_grok",
                                   "t_grok_q75": "t_grok 75%"})]


ANALYSES = (
    Analysis("grokking_time", "Grokking time against the swept fields",
             lambda i: grokking_time(i.runs), grokking_time_section,
             {"grokking_time": lambda r, _, by: plot_grokking_time(r, by)}),
)
