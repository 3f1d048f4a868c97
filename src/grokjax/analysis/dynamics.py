"""The stages of training (memorization, feature emergence, grokking) over the curves, and the
Fourier spectra of the hidden nodes of a grokked and a memorizing run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grokjax.analysis.core import (
    Analysis,
    FitResult,
    as_float,
    condition_labels,
    precheck,
    split_usable,
    varying_config,
)
from grokjax.analysis.figures import (
    NotebookFigure,
    condition_colors,
    condition_fields,
    fit_panels,
    panels,
    require,
    split_conditions,
)
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GROKKED_COLUMN

STAGE_PANELS = (  # (curve quantities drawn together, y label, log y); the last three need
    (("train_loss", "test_loss"), "loss", True),  # diagnostics
    (("train_acc", "test_acc"), "accuracy", False),
    (("G_F_norm",), "‖G_F‖ (backpropagated\ngradient, Eqn 2)", True),
    (("FtF_off_diag_ratio",), "F̃ᵀF̃ off-diagonal /\ndiagonal (Lemma 1)", False),
    (("frequency_dominated_energy",), "share of W's energy in\nfrequency-dominated nodes",
     False),
)
STAGE_METRICS = tuple(metric for metrics, _, _ in STAGE_PANELS for metric in metrics)
# Runs-table columns giving each stage's step per run: memorized (train accuracy 1), features
# emerged (half of W's energy in frequency-dominated nodes, diagnostics on Z_M), grokked.
STAGE_STEPS = {"memorized": "step_train_acc_1", "features emerged": "step_features_emerged",
               "grokked": GROKKED_COLUMN}
STAGE_LINESTYLES = {"memorized": ":", "features emerged": "-.", "grokked": "--"}
STAGE_COLUMNS = 4  # columns of panels in a row of the stages figure


def stages(runs: pd.DataFrame, curves: pd.DataFrame | None) -> FitResult:
    """Per condition: the median and inter-quartile range over seeds of every curve quantity at
    every evaluated step (``detail``, long format), and the median step of each stage
    (``table``; a run that never got there counts as later than any, so the median is NaN
    when half the seeds or more never did)."""
    name = "stages"
    if curves is None or curves.empty:
        return FitResult(name, "unsupported", "needs the curves table")
    early = precheck(name, runs, ("run_id",))
    if early:
        return early
    usable, excluded = split_usable(runs)
    conditions = varying_config(usable)
    metrics = [m for m in STAGE_METRICS if m in curves]
    joined = curves[["run_id", "step", *metrics]].merge(
        usable[["run_id", *conditions]], on="run_id", how="inner")
    if joined.empty:
        return FitResult(name, "insufficient", "no curve matches a usable run", excluded=excluded)
    long = joined.melt(id_vars=[*conditions, "run_id", "step"], value_vars=metrics,
                       var_name="metric")
    quantiles = (long.groupby([*conditions, "metric", "step"], dropna=False, sort=True)["value"]
                 .quantile([0.25, 0.5, 0.75]).unstack())
    # How many runs each median is over: a run stopped by the sweep's stop rule has no curve
    # points after its stop step, so the later medians are over the runs still training.
    measured = (joined.groupby([*conditions, "step"], dropna=False, sort=True).size()
                .rename("runs").reset_index())
    detail = (quantiles.set_axis(["q25", "median", "q75"], axis=1).reset_index()
              .merge(measured, on=[*conditions, "step"], how="left")
              .assign(condition=lambda t: condition_labels(t, conditions)))
    present = {stage: column for stage, column in STAGE_STEPS.items() if column in usable}
    steps = usable.assign(**{stage: np.nan_to_num(as_float(usable[column]), nan=np.inf)
                             for stage, column in present.items()},
                          stopped=usable["stopped_step"].notna() if "stopped_step" in usable
                          else False)
    table = (steps.groupby(conditions, dropna=False, sort=True) if conditions
             else steps.groupby(lambda _: "all"))
    table = table.agg(n_runs=("run_id", "size"), stopped_runs=("stopped", "sum"),
                      **{f"{stage} step": (stage, "median") for stage in present},
                      **{f"{stage} runs": (stage, lambda s: int(np.isfinite(s).sum()))
                         for stage in present})
    table = table.replace(np.inf, np.nan).reset_index(drop=not conditions)
    table = table.assign(condition=condition_labels(table, conditions), status="ok",
                         message="")
    method = ("median and inter-quartile range over seeds at each evaluated step; stage steps:"
              " medians over seeds of " + ", ".join(f"{stage} = {column}"
                                                   for stage, column in present.items()))
    return FitResult(name, "ok", "", table, detail, int(table["n_runs"].sum()), excluded,
                     method)


def node_spectra(runs: pd.DataFrame, features: pd.DataFrame | None) -> FitResult:
    """A grokked run and a memorizing one (train accuracy 1, not generalized) with their active
    hidden nodes' Fourier power (features table, Z_M with diagnostics): ``table`` holds the two
    runs, ``detail`` their nodes."""
    name = "node_spectra"
    if features is None or "power_01" not in features:
        return FitResult(name, "unsupported", "needs the features table with power spectra"
                                              " (diagnostics = true on Z_M)")
    usable, excluded = split_usable(runs)
    examples = []
    for title, chosen in (("grokked", usable[usable["generalized"]]),
                          ("memorized", usable[~usable["generalized"]
                                               & (usable["final_train_acc"] >= 1.0)])):
        if len(chosen):
            examples.append(chosen.sort_values("run_id").iloc[[0]].assign(example=title))
    if not examples:
        return FitResult(name, "insufficient", "no generalized or memorizing run to show",
                         excluded=excluded)
    table = pd.concat(examples, ignore_index=True)
    nodes = features[features["run_id"].isin(table["run_id"]) & features["active"]]
    return FitResult(name, "ok", "", table, nodes, len(table), excluded,
                     "the first run (by run_id) of each kind; active nodes only")


def _stage_legend_text(label: str, row: pd.Series, stages: list[str]) -> str:
    counts = [f"{stage} {int(row[f'{stage} runs'])}/{int(row['n_runs'])}" for stage in stages]
    if row["stopped_runs"]:
        counts.append(f"stopped {int(row['stopped_runs'])}/{int(row['n_runs'])}")
    return f"{label} ({', '.join(counts)})"


def _draw_quantiles(ax, line: pd.DataFrame, n_runs: int, stopped: int, color, style: str,
                    end_markers: bool) -> None:
    """Median line and inter-quartile band; fainter from the first step at which stopped runs'
    curves have ended (the median there is over the runs still training), with ▼ where they
    end: where the count of runs measured drops, and at the last step for the rest."""
    steps, median, runs = line["step"].to_numpy(), line["median"].to_numpy(), line["runs"]
    fewer = np.flatnonzero(runs.to_numpy() < n_runs)
    cut = fewer[0] if len(fewer) else len(steps)
    ax.plot(steps[:cut], median[:cut], color=color, ls=style, lw=1.6)
    ax.plot(steps[max(cut - 1, 0):], median[max(cut - 1, 0):], color=color, ls=style, lw=1.0,
            alpha=0.45)
    ax.fill_between(steps, line["q25"], line["q75"], color=color, alpha=0.15, lw=0)
    if not (end_markers and stopped):
        return
    ends = np.flatnonzero(np.diff(runs.to_numpy()) < 0)
    if stopped > int(runs.iloc[0] - runs.iloc[-1]):  # the rest stopped at the last step shown
        ends = np.append(ends, len(steps) - 1)
    ax.plot(steps[ends], median[ends], ls="none", marker="v", ms=6, mfc="none", color=color,
            mew=1.2, zorder=3)


def plot_stages(result: FitResult, by: str | None = None) -> Figure:
    """Li₂'s stages over training: per condition, median (line) and inter-quartile band over
    seeds of loss, accuracy and, with diagnostics, ‖G_F‖, the off-diagonal ratio of F̃ᵀF̃ and
    the frequency-dominated fraction, on one symlog step axis that shows step 0; the median
    step at which each stage is reached is marked in the condition's colour, and ▼ marks where
    the curves of runs stopped by the sweep's stop rule end. Conditions are colours (``by``
    chooses the field, ``split_conditions``), one column of panels per combination of the
    others."""
    table, _ = fit_panels(result, "stages")
    split = split_conditions(table, condition_fields(table), by)
    table = table.assign(colour=split.colour, panel=split.panel)
    quantiles = result.detail.join(table.set_index("condition")[["colour", "panel"]],
                                   on="condition")
    colors = condition_colors(split.colour_labels())
    rows = [panel for panel in STAGE_PANELS if set(panel[0]) & set(quantiles["metric"])]
    stages = [stage for stage in STAGE_STEPS if f"{stage} step" in table]
    columns = split.panel_labels()
    width = min(len(columns), STAGE_COLUMNS)
    blocks = math.ceil(len(columns) / width)
    figure = NotebookFigure(figsize=(9.5 if width == 1 else 5.4 * width,
                                     (2.3 * len(rows) + 0.6) * blocks + 0.6),
                            layout="constrained")
    grid = figure.subplots(len(rows) * blocks, width, sharex=True, squeeze=False)
    for ax in grid[(blocks - 1) * len(rows):, len(columns) - (blocks - 1) * width:].ravel():
        ax.set_visible(False)
    first_step = quantiles.loc[quantiles["step"] > 0, "step"].min()
    for index, column in enumerate(columns):
        block, position = divmod(index, width)
        axes = grid[block * len(rows):(block + 1) * len(rows), position]
        conditions = table[table["panel"] == column]
        for row_index, (ax, (metrics, ylabel, log_y)) in enumerate(zip(axes, rows, strict=True)):
            for _, row in conditions.iterrows():
                color = colors[row["colour"]]
                for metric in metrics:
                    line = quantiles[(quantiles["condition"] == row["condition"])
                                     & (quantiles["metric"] == metric)]
                    _draw_quantiles(ax, line, int(row["n_runs"]), int(row["stopped_runs"]),
                                    color, "--" if metric.startswith("train") else "-",
                                    end_markers=metric == metrics[-1])
                for stage in stages:
                    if np.isfinite(row[f"{stage} step"]):
                        ax.axvline(row[f"{stage} step"], color=color,
                                   ls=STAGE_LINESTYLES[stage], lw=1.0, alpha=0.8)
            ax.set_ylabel(ylabel, fontsize=9)
            ax.grid(True, alpha=0.3)
            if log_y:
                ax.set_yscale("log")
            if position:  # a quantity on one scale along the row
                ax.sharey(grid[block * len(rows) + row_index, 0])
        axes[0].set_title(column, fontsize=10)
        axes[-1].tick_params(labelbottom=True)
        axes[-1].set_xlabel(f"training step (linear up to {first_step:g}, log beyond)")
        axes[0].legend(handles=[Line2D([], [], color=colors[row["colour"]], lw=2,
                                       label=_stage_legend_text(
                                           split.legend_label(row["colour"]), row, stages))
                                for _, row in conditions.iterrows()],
                       loc="lower left", fontsize=7, title_fontsize=7,
                       title=f"{split.legend_title()} (runs reaching each stage)")
    grid[0, 0].set_xscale("symlog", linthresh=first_step, linscale=0.5)
    grid[0, 0].set_xlim(0, quantiles["step"].max())
    keys = ([Line2D([], [], color="black", ls="--", label="train (median, IQR band)"),
             Line2D([], [], color="black", ls="-", label="test (median, IQR band)")]
            + [Line2D([], [], color="grey", ls=STAGE_LINESTYLES[stage],
                      label=f"median step {stage}") for stage in stages])
    if table["stopped_runs"].any():
        keys.append(Line2D([], [], color="grey", ls="none", marker="v", mfc="none",
                           label="stopped runs' curves end (stop rule);\nfainter: the median"
                                 " of the runs still training"))
    grid[1, 0].legend(handles=keys, loc="center right", fontsize=7)
    diagnostics = len(rows) > 2
    figure.suptitle("The Li₂ stages: memorization, feature emergence, grokking" if diagnostics
                    else "Grokking curves: loss and accuracy over training")
    return figure


def plot_node_spectra(spectra: FitResult) -> Figure:
    """Per-node Fourier power of W: one heat map per example run, active nodes as rows sorted
    by dominant frequency, power shares as colour."""
    examples = require(spectra, "node-spectra").table
    power_columns = sorted(c for c in spectra.detail if c.startswith("power_") and c != "power_00")
    figure, axes = panels([f"{title} run" for title in examples["example"]], width=5.0,
                           height=5.6)
    image = None
    for ax, run in zip(axes, examples.itertuples(index=False), strict=True):
        nodes = spectra.detail[spectra.detail["run_id"] == run.run_id]
        nodes = nodes.sort_values(["dominant_frequency", "dominant_power_fraction"])
        power = nodes[power_columns].to_numpy()
        share = power / power.sum(axis=1, keepdims=True)
        ax.grid(False)
        image = ax.imshow(share, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0, vmax=1, extent=(0.5, len(power_columns) + 0.5, len(nodes), 0))
        ax.set_xlabel("frequency k (pooled with M − k)")
        ax.set_ylabel("active hidden node (sorted by dominant frequency)")
        ax.set_title(f"{run.example}: wd={run.weight_decay:g}, seed {run.seed}, "
                     f"test acc {run.final_test_acc:.2f}\n{len(nodes)} active nodes, "
                     f"{run.final_frequency_dominated_fraction:.0%} frequency-dominated")
    figure.colorbar(image, ax=list(axes), label="share of the node's non-constant power")
    figure.suptitle(f"Hidden-node spectra on {examples['group_name'].iloc[0]}, "
                    f"K = {examples['K'].iloc[0]}")
    return figure


def stages_section(result: FitResult, level: float) -> list[str]:
    columns = {"condition": "condition", "n_runs": "runs"}
    for stage, column in STAGE_STEPS.items():
        columns |= {f"{stage} step": f"median step {stage} ({column})",
                    f"{stage} runs": f"runs {stage}"}
    return ["Median step over seeds at which each stage is reached (— when half the seeds or"
            " more never reach it):", "", markdown_table(result.table, columns)]


def spectra_section(result: FitResult, level: float) -> list[str]:
    return ["Fourier power of each active hidden node's weights (features table): a grokked"
            " network's nodes each carry one frequency; a memorizing network's are spread."]


ANALYSES = (
    Analysis("stages", "Stages of training: memorization, feature emergence, grokking",
             lambda i: stages(i.runs, i.curves), stages_section,
             {"stages": lambda r, _, by: plot_stages(r, by)}, tables=("curves",)),
    Analysis("node_spectra", "Hidden-node spectra",
             lambda i: node_spectra(i.runs, i.features), spectra_section,
             {"node_spectra": lambda r, *_: plot_node_spectra(r)}, tables=("features",)),
)
