"""Weight decay and grokking time: the slope of log t_grok on log η (Li₂: −1), and whether
η = 0 groks (Fig. 3: never)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import stats
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    as_float,
    condition_labels,
    exclusions,
    law_row,
    laws_frame,
    overall,
    precheck,
    split_usable,
    varying_config,
)
from grokjax.analysis.figures import (
    MAX_PANELS,
    NotebookFigure,
    PlotSkipped,
    condition_fields,
    fit_panels,
    fixed_ticks,
    interval_text,
    too_many,
    zero_on_log_axis,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GROKKED_COLUMN, GROKKED_TEXT

PREDICTED_WD_SLOPE = -1.0  # t_grok ~ 1/η
LAW_WD_SLOPE = "slope b of log t_grok vs log η"
LAW_ETA_ZERO = "fraction of η = 0 runs that grok"
WD_COLUMNS = 4  # pairs of panels in a row of the figure


def wd_speed(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Grokking time against weight decay: log t_grok = a + b·log η over the runs with η > 0
    that grokked (Li₂: b ≈ −1), and the fraction of η = 0 runs that grok (Fig. 3: none).

    t_grok is the first step with test accuracy ≥ 0.99 (``GROKKED_COLUMN``). Runs that never
    grokked are censored: counted per η (``detail``) and left out of the slope, which biases b
    towards 0 where many of them sit at small η. A slope needs grokked runs at ≥ 3 distinct η.
    """
    name = "wd_speed"
    early = precheck(name, runs, ("weight_decay", GROKKED_COLUMN))
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
        exclusions(frame[~positive], "η = 0: log η undefined (counted in the η = 0 contrast)"),
        exclusions(frame[positive & ~frame["grokked"]],
                    f"never reached {GROKKED_TEXT} (censored)"),
        exclusions(frame[positive & frame["grokked"] & ~on_line], f"{GROKKED_TEXT} at step 0"),
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
    status, message = overall(table)
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
                     excluded, method, laws_frame(laws))


def plot_wd_speed(wd: FitResult) -> Figure:
    """Per condition (a pair of panels, four pairs to a row): top, the fraction of seeds that
    grok per weight decay with Wilson 95% CIs; bottom, the grokking step (median and
    inter-quartile range over the seeds that grokked) with the fitted power law and the
    predicted slope −1. η = 0 sits on its own tick at the left."""
    per_eta, labels = fit_panels(wd, "weight-decay", "detail")
    if len(labels) > MAX_PANELS:
        raise PlotSkipped(too_many(per_eta, condition_fields(per_eta), MAX_PANELS, "column"))
    what = GROKKED_TEXT
    columns = min(len(labels), WD_COLUMNS)
    rows = math.ceil(len(labels) / columns)
    figure = NotebookFigure(figsize=(6.2 * columns, 8.0 * rows), layout="constrained")
    grid = figure.subplots(2 * rows, columns, squeeze=False)
    pairs = [grid[2 * (index // columns):2 * (index // columns) + 2, index % columns]
             for index in range(rows * columns)]
    for ax in np.ravel(pairs[len(labels):]):
        ax.set_visible(False)
    for (top, bottom), label in zip(pairs, labels, strict=False):
        top.sharex(bottom)
        top.tick_params(labelbottom=False)
        cells = per_eta[per_eta["condition"] == label].sort_values("eta")
        x, ticks, tick_labels = zero_on_log_axis(cells["eta"].to_numpy(float))
        top.errorbar(x, cells["fraction"], yerr=[cells["fraction"] - cells["fraction_lo"],
                                                 cells["fraction_hi"] - cells["fraction"]],
                     fmt="o-", color="C0", capsize=3)
        for position, cell in zip(x, cells.itertuples(index=False), strict=True):
            top.annotate(f"{cell.n_grokked}/{cell.n}", (position, cell.fraction), fontsize=8,
                         xytext=(0, 7), textcoords="offset points", ha="center")
        law = wd.verdict(LAW_ETA_ZERO, label)
        heading = f"{label}\n" if label else ""  # the condition on a line of its own
        top.set(ylim=(-0.05, 1.12), ylabel=f"fraction of seeds grokked\n({what})",
                title=f"{heading}η = 0 predicted never to grok" + (f" ({law})" if law else ""))
        grokked = cells["n_grokked"].to_numpy() > 0
        bottom.errorbar(x[grokked], cells["t_grok_median"][grokked],
                        yerr=[(cells["t_grok_median"] - cells["t_grok_q25"])[grokked],
                              (cells["t_grok_q75"] - cells["t_grok_median"])[grokked]],
                        fmt="s", color="C3", capsize=3, label="median, IQR (grokked seeds)")
        for position in x[~grokked]:  # censored: not grokked within the steps trained
            bottom.annotate("none within\nthe steps\ntrained", (position, 0.5),
                            xycoords=("data", "axes fraction"), ha="center", fontsize=8,
                            color="C3")
        row = wd.table[wd.table["condition"] == label].iloc[0]
        if row["status"] == "ok":
            eta = np.geomspace(cells.loc[cells["n_grokked"] > 0, "eta"].min(),
                               cells["eta"].max(), 50)
            verdict = wd.verdict(LAW_WD_SLOPE, label)
            bottom.plot(eta, np.exp(row["a"]) * eta ** row["b"], color="black",
                        label=f"fit: b = {interval_text(row.b, row.b_lo, row.b_hi)}\n"
                              f"({verdict})")
            anchor = np.exp(row["a"]) * np.sqrt(eta[0] * eta[-1]) ** row["b"]
            bottom.plot(eta, anchor * (eta / np.sqrt(eta[0] * eta[-1])) ** PREDICTED_WD_SLOPE,
                        color="grey", ls="--", label=f"prediction b = {PREDICTED_WD_SLOPE:g}")
        else:
            bottom.set_title(f"no slope: {row['message']}", fontsize=8, wrap=True)
        bottom.set(yscale="log", xscale="log", xlabel="weight decay η",
                   ylabel=f"t_grok: first step with\n{what} (log)")
        bottom.legend(fontsize=8, loc="lower left")
        fixed_ticks(bottom.xaxis, ticks, tick_labels)
        bottom.set_xlim(ticks[0] / 2, ticks[-1] * 2)
        bottom.tick_params(axis="x", labelrotation=45)
    figure.suptitle("Weight decay and grokking (Li₂: t_grok ~ 1/η; η = 0 does not grok)")
    return figure


def wd_section(result: FitResult, level: float) -> list[str]:
    return [markdown_table(result.table, {
        "condition": "condition", "n_runs": "grokked runs (η > 0)", "n_eta": "η values",
        "b": f"b [{level:.0%} CI]", "b_predicted": "predicted b", "status": "status",
        "message": "note"}, intervals=("b",)), "", "Per weight decay:", "",
        markdown_table(result.detail, {
            "condition": "condition", "eta": "η", "n": "runs", "n_grokked": "grokked",
            "fraction": f"fraction grokked [{level:.0%} Wilson CI]",
            "t_grok_median": "median t_grok (grokked)"}, intervals=("fraction",))]


ANALYSES = (
    Analysis("wd_speed", "Weight decay and grokking time (t ~ 1/η)",
             lambda i: wd_speed(i.runs, level=i.level), wd_section,
             {"wd_speed": lambda r, *_: plot_wd_speed(r)}, varies=("weight_decay",)),
)
