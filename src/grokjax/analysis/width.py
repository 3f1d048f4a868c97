"""The width needed to memorize and to generalize, per train-set size."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import groups, stats
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    condition_labels,
    overall,
    precheck,
    split_usable,
    varying_config,
)
from grokjax.analysis.figures import PlotSkipped, fit_panels, interval_text, panels
from grokjax.analysis.markdown import markdown_table


def _smallest_k(per_k: pd.DataFrame, satisfied: pd.Series) -> float:
    return float(per_k.loc[satisfied, "K"].min()) if satisfied.any() else np.nan


def _theorem3_width(runs: pd.DataFrame, cells: pd.DataFrame) -> float:
    """Theorem 3's width for the group of ``cells``: the runs table's ``theorem3_width``, or
    from the group itself for tables written before it had the column (NaN for a table that
    is not a group)."""
    mine = runs[runs["M"] == cells["M"].iloc[0]]
    if "group" in cells:
        mine = runs[runs["group"] == cells["group"].iloc[0]]
    if "theorem3_width" in mine:
        width = int(mine["theorem3_width"].iloc[0])
        return float(width) if width else np.nan
    group = groups.parse_group(str(mine["group"].iloc[0]))
    return float(group.irrep_facts.theorem3_width) if group.is_group else np.nan


def memorization_width(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """From a K × n_train sweep: per n_train the smallest K whose median final train accuracy is
    1 (K_mem) and the smallest K where at least half the seeds generalize (K_gen), next to the
    sufficient width of Theorem 3 for the group (2 Σ_k d_k⁴ over its irreps; 2M − 2 when it
    is abelian); per condition, log K_mem vs log n_train by OLS."""
    name = "memorization_width"
    early = precheck(name, runs, ("K", "n_train", "M", "final_train_acc", "generalized"))
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
            "K_predicted": _theorem3_width(usable, cells)})
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
    status, message = overall(table)
    if status == "insufficient":
        status = "partial"  # the K_mem / K_gen per n_train still stand without the power law
    method = (f"K_mem, K_gen: smallest K on the grid meeting the criterion; power law of K_mem vs"
              f" n_train by OLS on log-log, {level:.0%} CI from the OLS standard error")
    return FitResult(name, status, message, table, detail, int(detail["n_runs"].sum()),
                     excluded, method)


def plot_memorization_width(mem: FitResult) -> Figure:
    """K_mem and K_gen vs n_train on log-log axes, with Theorem 3's sufficient width and the
    fitted power law of K_mem."""
    detail, labels = fit_panels(mem, "memorization-width", "detail")
    if not np.isfinite(detail[["K_mem", "K_gen"]].to_numpy(float)).any():
        raise PlotSkipped("no n_train reached K_mem or K_gen on the K grid")
    figure, axes = panels(labels, width=6.0, height=4.6)
    for ax, label in zip(axes, labels, strict=True):
        panel = detail[detail["condition"] == label].sort_values("n_train")
        ax.plot(panel["n_train"], panel["K_mem"], "o-", color="C0",
                label="K_mem: median final train acc = 1")
        ax.plot(panel["n_train"], panel["K_gen"], "s-", color="C2",
                label="K_gen: ≥ 50% of seeds generalize")
        ax.axhline(panel["K_predicted"].iloc[0], color="black", ls="--",
                   label=f"Theorem 3's width 2Σd_k⁴ = {panel['K_predicted'].iloc[0]:g}")
        row = mem.table[mem.table["condition"] == label].iloc[0]
        if row["status"] == "ok":
            n = np.geomspace(panel["n_train"].min(), panel["n_train"].max(), 50)
            ax.plot(n, np.exp(row["intercept"]) * n ** row["slope"], color="C0", ls=":",
                    label=f"K_mem ∝ n^{interval_text(row.slope, row.slope_lo, row.slope_hi)}")
        ax.set(xscale="log", yscale="log", xlabel="training samples n_train (log scale)",
               ylabel="hidden width K (log scale)")
        ax.legend(fontsize=7)
    figure.suptitle("Width needed to memorize and to generalize")
    return figure


def width_section(result: FitResult, level: float) -> list[str]:
    return [markdown_table(result.detail, {
        "condition": "condition", "n_train": "n_train", "M": "M", "n_runs": "runs",
        "K_min_tried": "smallest K", "K_mem": "K_mem", "K_gen": "K_gen",
        "K_predicted": "Theorem 3's width"}), "", "Power law K_mem ∝ n_train^slope:", "",
        markdown_table(result.table, {
            "condition": "condition", "n_points": "points", "slope": f"slope [{level:.0%} CI]",
            "status": "status", "message": "note"}, intervals=("slope",))]


ANALYSES = (
    Analysis("memorization_width", "Width to memorize and to generalize",
             lambda i: memorization_width(i.runs, level=i.level), width_section,
             {"memorization_width": lambda r, *_: plot_memorization_width(r)},
             varies=("K", "train_fraction")),
)
