"""Weight decay and grokking time: the slope of log t_grok on log η (Li₂: −1), and whether
η = 0 groks (Fig. 3: never)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import stats, survival
from grokjax.analysis.core import (
    QUANTILES,
    Analysis,
    FitResult,
    as_float,
    censored_quantiles,
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
    wrapped,
    zero_on_log_axis,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GROKKED_COLUMN, GROKKED_TEXT

DEGENERATE_SIGMA = 0.1  # σ below this share of the intervals' log-width: no Wald CI is honest
PREDICTED_WD_SLOPE = -1.0  # t_grok ~ 1/η
LAW_WD_SLOPE = "slope b of log t_grok vs log η"
LAW_ETA_ZERO = "fraction of η = 0 runs that grok"
WD_COLUMNS = 4  # pairs of panels in a row of the figure


# The prediction t ~ 1/η goes through the size of the backpropagated gradient (G_F ∝ η, Lemma
# 1): an optimizer that normalises the gradient's scale (Adam, AdamW, Muon) divides it out.
GRADIENT_SCALE_OPTIMIZERS = ("sgd",)


def grok_intervals(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each run's grokking step as an interval (lower, upper]: between the evaluation before
    the first one at the threshold and that one (``eval_every`` steps earlier), or (its last
    step, inf) for a run that had not grokked when its training ended: right-censored, not a
    failure."""
    t_grok = as_float(frame[GROKKED_COLUMN])
    every = as_float(frame["eval_every"]) if "eval_every" in frame else np.zeros(len(frame))
    last = as_float(frame["steps_trained"] if "steps_trained" in frame else frame["steps"])
    grokked = np.isfinite(t_grok)
    lower = np.where(grokked, np.maximum(t_grok - every, 0.0), last)
    return lower, np.where(grokked, t_grok, np.inf)


def wd_speed(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Grokking time against weight decay: log t_grok = a + b·log η + σ·ε over the runs with
    η > 0 (Li₂: b ≈ −1), and the fraction of η = 0 runs that grok within their steps (Fig. 3:
    none).

    t_grok is the first evaluated step with test accuracy ≥ 0.99 (``GROKKED_COLUMN``), so the
    true step lies in the evaluation interval before it; a run that had not grokked when its
    training ended is right-censored at its last step (``grok_intervals``). The slope is the
    maximum-likelihood log-normal accelerated-failure-time fit of these intervals
    (``survival.interval_censored_lognormal``): dropping the censored runs would bias b towards 0
    where they sit at small η. A slope needs grokked runs at ≥ 3 distinct η. Its verdict is
    "not a test here" for an optimizer that normalises the gradient's scale.
    """
    name = "wd_speed"
    early = precheck(name, runs, ("weight_decay", GROKKED_COLUMN))
    if early:
        return early
    usable, excluded = split_usable(runs)
    lower, upper = grok_intervals(usable)
    frame = usable.assign(eta=usable["weight_decay"].to_numpy(float), lower=lower, upper=upper,
                          t_grok=np.where(np.isfinite(upper), upper, np.nan),
                          trained=np.where(np.isfinite(upper), np.nan, lower))
    frame = frame.assign(grokked=np.isfinite(frame["upper"]))
    conditions = varying_config(frame, exclude=("weight_decay",))
    per_eta = (frame.groupby([*conditions, "eta"], dropna=False, sort=True)
               .agg(n=("grokked", "size"), n_grokked=("grokked", "sum"),
                    not_within=("trained", "max"))
               .reset_index())
    quartiles = np.stack([censored_quantiles(cell["t_grok"].to_numpy()) for _, cell in
                          frame.groupby([*conditions, "eta"], dropna=False, sort=True)])
    lo, hi = stats.wilson_interval(per_eta["n_grokked"], per_eta["n"], level)
    per_eta = per_eta.assign(n_not_within=per_eta["n"] - per_eta["n_grokked"],
                             **dict(zip(QUANTILES, quartiles.T, strict=True)),
                             fraction=per_eta["n_grokked"] / per_eta["n"], fraction_lo=lo,
                             fraction_hi=hi, condition=condition_labels(per_eta, conditions))
    positive = frame["eta"] > 0
    on_fit = positive & ~(frame["grokked"] & (frame["t_grok"] <= 0))
    excluded = pd.concat([
        excluded,
        exclusions(frame[~positive], "η = 0: log η undefined (counted in the η = 0 contrast)"),
        exclusions(frame[positive & ~on_fit], f"{GROKKED_TEXT} at step 0"),
    ])
    rows, laws = [], []
    for key, cell in (frame.groupby(conditions, dropna=False, sort=True) if conditions
                      else [((), frame)]):
        key = key if isinstance(key, tuple) else (key,)
        points = cell[on_fit[cell.index]]
        grokked_etas = sorted(points.loc[points["grokked"], "eta"].unique())
        row = dict(zip(conditions, key, strict=True)) | {
            "n_runs": len(points), "n_grokked": int(points["grokked"].sum()),
            "n_censored": int((~points["grokked"]).sum()), "n_eta": len(grokked_etas),
            "b": np.nan, "b_lo": np.nan, "b_hi": np.nan, "b_se": np.nan, "a": np.nan,
            "sigma": np.nan, "b_predicted": PREDICTED_WD_SLOPE,
            "optimizer": ", ".join(sorted(map(str, cell["optimizer"].unique())))
            if "optimizer" in cell else "", "status": "ok", "message": ""}
        if len(grokked_etas) < stats.MIN_DISTINCT_X:
            etas = ", ".join(f"{eta:g}" for eta in grokked_etas)
            rows.append(row | {"status": "too few η", "message":
                               f"a slope needs grokked runs at ≥ {stats.MIN_DISTINCT_X} distinct"
                               f" η > 0, has {len(grokked_etas)} ({etas or 'none'}): a line"
                               " through fewer fits them exactly and tests nothing"})
            continue
        design = np.column_stack([np.ones(len(points)), np.log(points["eta"])])
        fit = survival.interval_censored_lognormal(points["lower"], points["upper"], design, level)
        row |= {"b": fit.coef[1], "b_lo": fit.lo[1], "b_hi": fit.hi[1], "b_se": fit.se[1],
                "a": fit.coef[0], "sigma": fit.sigma}
        if not fit.converged:
            row |= {"status": "no convergence", "message": "the censored fit did not converge"}
        elif fit.sigma < DEGENERATE_SIGMA * np.median(np.log(
                points["upper"] / points["lower"])[np.isfinite(points["upper"])]):
            # far less scatter than the intervals allow: the likelihood is flat along a ridge
            row |= {"status": "no CI", "b_lo": np.nan, "b_hi": np.nan, "message":
                    "one line passes through every grok step's evaluation interval: the data"
                    " bound b only by those intervals (evaluate more often for a CI)"}
        rows.append(row)
    table = pd.DataFrame(rows).assign(condition=lambda t: condition_labels(t, conditions))
    for row in table[table["status"] == "ok"].itertuples(index=False):
        normalising = sorted(set(row.optimizer.split(", ")) - set(GRADIENT_SCALE_OPTIMIZERS))
        laws.append(law_row(
            LAW_WD_SLOPE, row.condition, row.b, row.b_lo, row.b_hi, PREDICTED_WD_SLOPE,
            "t_grok ~ 1/η", row.n_runs,
            assumes=f"optimizer {row.optimizer}; {row.n_censored} run(s) not grokked within"
                    " their steps, censored there",
            not_a_test="" if not normalising or not row.optimizer else
            f"the prediction runs through the gradient's size (G_F ∝ η, Lemma 1), which"
            f" {', '.join(normalising)} normalises away; test it with optimizer = sgd"))
    for row in per_eta[per_eta["eta"] == 0].itertuples(index=False):
        laws.append(law_row(LAW_ETA_ZERO, row.condition, row.fraction, row.fraction_lo,
                            row.fraction_hi, 0.0, "none grok, Fig. 3", row.n,
                            assumes=f"within {row.not_within:g} steps"
                            if np.isfinite(row.not_within) else ""))
    status, message = overall(table)
    if status == "insufficient" and (per_eta["eta"] == 0).any():
        status = "partial"  # the η = 0 contrast stands without a slope
    method = (f"log-normal accelerated-failure-time model of t_grok on log η by maximum"
              f" likelihood, each grok step known to its evaluation interval and each run that had"
              f" not grokked when its training ended right-censored at its last step; Wald"
              f" {level:.0%} CI on b; Wilson {level:.0%} intervals on the fraction grokked per η;"
              " per-η quartiles count censored runs as later than any grokked one")
    return FitResult(name, status, message, table, per_eta, int(table["n_runs"].sum()),
                     excluded, method, laws_frame(laws))


def plot_wd_speed(wd: FitResult) -> Figure:
    """Per condition (a pair of panels, four pairs to a row): top, the fraction of seeds that
    grok per weight decay with Wilson 95% CIs; bottom, the grokking step (median and
    inter-quartile range over the seeds, a run that did not grok within its steps counted as
    later than any that did) with the fitted censored power law and the predicted slope −1.
    η = 0 sits on its own tick at the left."""
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
                title=wrapped(f"{heading}η = 0 predicted never to grok"
                              + (f" ({law})" if law else ""), 60))
        q25, median, q75 = (cells[q].to_numpy() for q in QUANTILES)
        grokked = np.isfinite(median)
        q25, middle = q25[grokked], median[grokked]
        q75 = np.where(np.isfinite(q75[grokked]), q75[grokked], middle)  # a censored quartile
        bottom.errorbar(x[grokked], middle, yerr=[middle - q25, q75 - middle], fmt="s",
                        color="C3", capsize=3, label="median, IQR over seeds (not grokked: later)")
        if (~grokked).any():  # censored medians: at least half not grokked within the steps
            bottom.plot(x[~grokked], cells["not_within"][~grokked], "^", color="C3", mfc="none",
                        ms=8, label="median not within the steps trained (△ at the last step)")
        row = wd.table[wd.table["condition"] == label].iloc[0]
        if row["status"] == "ok":
            eta = np.geomspace(cells.loc[cells["n_grokked"] > 0, "eta"].min(),
                               cells["eta"].max(), 50)
            verdict = wd.verdict(LAW_WD_SLOPE, label)
            bottom.plot(eta, np.exp(row["a"]) * eta ** row["b"], color="black",
                        label=f"fit: b = {interval_text(row.b, row.b_lo, row.b_hi)}\n"
                              + wrapped(f"({verdict})"))
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
        "condition": "condition", "optimizer": "optimizer", "n_runs": "runs (η > 0)",
        "n_censored": "not grokked within their steps (censored)", "n_eta": "η with grokked runs",
        "b": f"b [{level:.0%} CI]", "b_predicted": "predicted b", "status": "status",
        "message": "note"}, intervals=("b",)), "", "Per weight decay:", "",
        markdown_table(result.detail.assign(
            not_within=[f"{n} not within {steps:g} steps" if n else "" for n, steps in
                        zip(result.detail["n_not_within"], result.detail["not_within"],
                            strict=True)],
            t_grok_median=[f"{t:g}" if np.isfinite(t) else "later (not within the steps)"
                           for t in result.detail["t_grok_median"]]), {
            "condition": "condition", "eta": "η", "n": "runs", "n_grokked": "grokked",
            "not_within": "not grokked", "fraction": f"fraction grokked [{level:.0%} Wilson CI]",
            "t_grok_median": "median t_grok"}, intervals=("fraction",))]


ANALYSES = (
    Analysis("wd_speed", "Weight decay and grokking time (t ~ 1/η)",
             lambda i: wd_speed(i.runs, level=i.level), wd_section,
             {"wd_speed": lambda r, *_: plot_wd_speed(r)}, varies=("weight_decay",)),
)
