"""Figures of the analyses, drawn from the data their fits computed (:mod:`grokjax.fit`).

Each ``plot_*`` function takes FitResults and returns a :class:`matplotlib.figure.Figure`, or
raises :class:`PlotSkipped` saying why the data cannot support it; :func:`save` writes a figure
as PNG. Figures are drawn on bare Figure objects (Agg canvas), never through pyplot's global
state. Power laws are drawn on log-log axes; a condition (a combination of varied config
columns other than the figure's own axes) gets its own panel or colour.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from grokjax import fit
from grokjax.fit import REFERENCE_C, FitResult

MAX_PANELS = 12
MAX_COLOURED_CONDITIONS = 10  # conditions drawn as colours in one panel
GENERALIZED_TEXT = "final test acc ≥ 0.99"


class PlotSkipped(Exception):
    """A figure cannot be drawn from the data; the message says why."""


def _require(result: FitResult | None, name: str) -> FitResult:
    if result is None:
        raise PlotSkipped(f"no {name} fit given")
    if not result.usable:
        raise PlotSkipped(f"{result.name} is {result.status}: {result.message}")
    return result


def _panels(titles: list[str], width: float = 5.6, height: float = 4.2):
    """A grid of axes, one per title; a single untitled panel when nothing varies."""
    if len(titles) > MAX_PANELS:
        raise PlotSkipped(f"{len(titles)} conditions would need one panel each (limit"
                          f" {MAX_PANELS}); plot a subset of the runs")
    columns = min(len(titles), 3)
    rows = math.ceil(len(titles) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(titles):]:
        ax.set_visible(False)
    for ax, title in zip(axes, titles, strict=False):
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    return figure, axes[:len(titles)]


def _fit_panels(result: FitResult | None, name: str, frame: str = "table"):
    """A usable fit's ``table`` (or ``detail``) and its condition labels in table order."""
    rows = getattr(_require(result, name), frame)
    return rows, list(dict.fromkeys(rows["condition"]))


def _plain_log_ticks(axis, low: float, high: float) -> None:
    """Ticks at 1, 2, (3,) 5 × 10^k labelled as plain numbers on a narrow log axis, where
    matplotlib's default labels minor ticks as '3×10^1' and they collide."""
    decades = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
    mantissas = (1, 2, 3, 5) if high < 10 * low else (1, 2, 5)
    ticks = [m * 10**d for d in decades for m in mantissas if low <= m * 10**d <= high]
    if len(ticks) >= 2:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG (plain tick labels on narrow log axes); returns the path."""
    for ax in figure.axes:
        for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            placed = isinstance(axis.get_major_locator(), FixedLocator)  # ticks chosen already
            if scale == "log" and not placed and 0 < limits[0] < limits[1] < 100 * limits[0]:
                _plain_log_ticks(axis, *limits)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _fixed_ticks(axis, positions, labels) -> None:
    axis.set_major_locator(FixedLocator(list(positions)))
    axis.set_major_formatter(FuncFormatter(
        lambda value, index: labels[index] if index is not None and index < len(labels) else ""))
    axis.set_minor_formatter(NullFormatter())
    axis.set_minor_locator(FixedLocator([]))


def _group_colors(orders) -> dict[int, tuple]:
    """One colour per group order, on a log scale of M, shared across panels."""
    orders = sorted(set(int(m) for m in orders))
    norm = LogNorm(min(orders), max(orders)) if len(orders) > 1 else Normalize(0, 2 * orders[0])
    cmap = colormaps["viridis"]
    return {m: cmap(0.9 * norm(m)) for m in orders}


def _condition_colors(labels: list[str]) -> dict[str, tuple]:
    """Conditions in table order (numeric order of the varied values) along viridis."""
    if len(labels) > MAX_COLOURED_CONDITIONS:
        raise PlotSkipped(f"{len(labels)} conditions would need one colour each (limit"
                          f" {MAX_COLOURED_CONDITIONS}); plot a subset of the runs")
    cmap = colormaps["viridis"]
    return {label: cmap(0.85 * index / max(1, len(labels) - 1))
            for index, label in enumerate(labels)}


def _law_row(law: FitResult | None, condition: str) -> pd.Series | None:
    if law is None or not law.usable:
        return None
    rows = law.table[(law.table["condition"] == condition) & (law.table["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def _interval_text(value: float, lo: float, hi: float) -> str:
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]"


# ---------------------------------------------------------------------------------------------
# The stages of training

STAGE_PANELS = (  # (quantities drawn together, y label, log y)
    (("train_loss", "test_loss"), "loss", True),
    (("train_acc", "test_acc"), "accuracy", False),
    (("G_F_norm",), "‖G_F‖ (backpropagated\ngradient, Eqn 2)", True),
    (("FtF_off_diag_ratio",), "F̃ᵀF̃ off-diagonal /\ndiagonal (Lemma 1)", False),
    (("frequency_dominated_fraction",), "frequency-dominated\nfraction of nodes", False),
)
STAGE_LINESTYLES = {"memorized": ":", "features emerged": "-.", "grokked": "--"}


def _stage_legend_text(row: pd.Series, stages: list[str]) -> str:
    counts = ", ".join(f"{stage} {int(row[f'{stage} runs'])}/{int(row['n_runs'])}"
                       for stage in stages)
    return f"{row['condition'] or 'all runs'} ({counts})"


def plot_stages(result: FitResult) -> Figure:
    """Li₂'s stages over training, per condition (colour): median (line) and inter-quartile
    band over seeds of loss, accuracy and, with diagnostics, ‖G_F‖, the off-diagonal ratio of
    F̃ᵀF̃ and the frequency-dominated fraction, on one symlog step axis that shows step 0; the
    median step at which each stage is reached is marked in the condition's colour."""
    table, labels = _fit_panels(result, "stages")
    quantiles = result.detail
    colors = _condition_colors(labels)
    panels = [panel for panel in STAGE_PANELS if set(panel[0]) & set(quantiles["metric"])]
    stages = [stage for stage in fit.STAGE_STEPS if f"{stage} step" in table]
    figure = Figure(figsize=(9.5, 2.3 * len(panels) + 1.2), layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    first_step = quantiles.loc[quantiles["step"] > 0, "step"].min()
    for ax, (metrics, ylabel, log_y) in zip(axes, panels, strict=True):
        for label in labels:
            for metric in metrics:
                line = quantiles[(quantiles["condition"] == label)
                                 & (quantiles["metric"] == metric)]
                style = "--" if metric.startswith("train") else "-"
                ax.plot(line["step"], line["median"], color=colors[label], ls=style, lw=1.6)
                ax.fill_between(line["step"], line["q25"], line["q75"], color=colors[label],
                                alpha=0.15, lw=0)
            row = table[table["condition"] == label].iloc[0]
            for stage in stages:
                if np.isfinite(row[f"{stage} step"]):
                    ax.axvline(row[f"{stage} step"], color=colors[label],
                               ls=STAGE_LINESTYLES[stage], lw=1.0, alpha=0.8)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
        if log_y:
            ax.set_yscale("log")
    axes[-1].set_xscale("symlog", linthresh=first_step, linscale=0.5)
    axes[-1].set_xlim(0, quantiles["step"].max())
    axes[-1].set_xlabel(f"training step (linear up to {first_step:g}, log beyond)")
    conditions = [Line2D([], [], color=colors[label], lw=2,
                         label=_stage_legend_text(table[table["condition"] == label].iloc[0],
                                                  stages)) for label in labels]
    keys = ([Line2D([], [], color="black", ls="--", label="train (median, IQR band)"),
             Line2D([], [], color="black", ls="-", label="test (median, IQR band)")]
            + [Line2D([], [], color="grey", ls=STAGE_LINESTYLES[stage],
                      label=f"median step {stage}") for stage in stages])
    axes[0].legend(handles=conditions, loc="lower left", fontsize=7,
                   title="condition (runs reaching each stage)", title_fontsize=7)
    axes[1].legend(handles=keys, loc="center right", fontsize=7)
    diagnostics = len(panels) > 2
    figure.suptitle("The Li₂ stages: memorization, feature emergence, grokking" if diagnostics
                    else "Grokking curves: loss and accuracy over training")
    return figure


# ---------------------------------------------------------------------------------------------
# The generalization boundary


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


def _law_label(law: FitResult, row: pd.Series) -> str:
    verdict = law.verdict(fit.LAW_C, row["condition"])
    return f"fit: c = {_interval_text(row.c, row.c_lo, row.c_hi)} ({verdict})"


def plot_phase_diagram(boundary: FitResult, law: FitResult | None) -> Figure:
    """M × train fraction heatmap of the generalized fraction, with each group's fitted p*
    (CI bars), the fitted c·ln M/M and the paper code's 2.7482·ln M/M."""
    cells, labels = _fit_panels(boundary, "boundary", "detail")  # table order: numeric
    table = boundary.table
    figure, axes = _panels(labels, width=6.4, height=4.8)
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
        row = _law_row(law, label)
        if row is not None:
            ax.plot(orders, row["c"] * np.log(orders) / orders, color="black",
                    label=_law_label(law, row))
        ax.plot(orders, REFERENCE_C * np.log(orders) / orders, color="black", ls="--",
                label=f"paper code: c = {REFERENCE_C}")
        ax.set(xscale="log", yscale="log", xlabel="group order M = |G| (log scale)",
               ylabel="training fraction p = n_train / M² (log scale)",
               ylim=(y_range[0] / 1.15, y_range[1] * 1.15))
        orders = sorted(panel["M"].unique())
        _fixed_ticks(ax.xaxis, orders, [f"{m:g}" for m in orders])
        if len(orders) > 6:  # neighbouring orders (29, 30, ...) would print over each other
            ax.tick_params(axis="x", labelrotation=90)
        ax.legend(fontsize=8, loc="lower left")
    figure.colorbar(mesh, ax=list(axes),
                    label=f"fraction of seeds generalized ({GENERALIZED_TEXT})")
    figure.suptitle("Phase diagram and boundary p* = c·ln M / M")
    return figure


def plot_collapse(collapse: FitResult, law: FitResult | None) -> Figure:
    """Generalized fraction vs c_eff = n_train/(M ln M), one line per group: if p* = c ln M/M
    holds, all groups cross 50% at c_eff = c."""
    table, labels = _fit_panels(collapse, "collapse")
    colors = _group_colors(table["M"])
    figure, axes = _panels(labels, width=6.4, height=4.6)
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
        row = _law_row(law, label)
        if row is not None:
            ax.axvline(row["c"], color="black", label=_law_label(law, row))
        ax.axvline(REFERENCE_C, color="black", ls="--", label=f"paper code c = {REFERENCE_C}")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="c_eff = n_train / (M ln M) (log scale)",
               ylabel=f"fraction generalized ({GENERALIZED_TEXT})")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    figure.suptitle("Collapse: generalized fraction vs c_eff (Wilson 95% CI)")
    return figure


# ---------------------------------------------------------------------------------------------
# Weight decay, learning rate, width, node spectra, irrep degree


def _eta_positions(etas: np.ndarray) -> tuple[np.ndarray, list[float], list[str]]:
    """x positions on a log axis for weight decays, η = 0 included on its own tick one and a
    half decades left of the smallest positive η; the tick positions and labels."""
    positive = np.sort(etas[etas > 0])
    zero_at = positive[0] / 10**1.5 if len(positive) else 1.0
    positions = np.where(etas > 0, etas, zero_at)
    ticks = ([zero_at] if (etas == 0).any() else []) + list(positive)
    labels = (["0"] if (etas == 0).any() else []) + [f"{eta:g}" for eta in positive]
    return positions, ticks, labels


def plot_wd_speed(wd: FitResult) -> Figure:
    """Per condition (column): top, the fraction of seeds that grok per weight decay with
    Wilson 95% CIs; bottom, the grokking step (median and inter-quartile range over the seeds
    that grokked) with the fitted power law and the predicted slope −1. η = 0 sits on its own
    tick at the left."""
    per_eta, labels = _fit_panels(wd, "weight-decay", "detail")
    if len(labels) > 4:
        raise PlotSkipped(f"{len(labels)} conditions would need a column each (limit 4)")
    what = fit.GROKKED_TEXT
    figure = Figure(figsize=(6.2 * len(labels), 8.0), layout="constrained")
    axes = figure.subplots(2, len(labels), sharex="col", squeeze=False)
    for (top, bottom), label in zip(axes.T, labels, strict=True):
        cells = per_eta[per_eta["condition"] == label].sort_values("eta")
        x, ticks, tick_labels = _eta_positions(cells["eta"].to_numpy(float))
        top.errorbar(x, cells["fraction"], yerr=[cells["fraction"] - cells["fraction_lo"],
                                                 cells["fraction_hi"] - cells["fraction"]],
                     fmt="o-", color="C0", capsize=3)
        for position, cell in zip(x, cells.itertuples(index=False), strict=True):
            top.annotate(f"{cell.n_grokked}/{cell.n}", (position, cell.fraction), fontsize=8,
                         xytext=(0, 7), textcoords="offset points", ha="center")
        law = wd.verdict(fit.LAW_ETA_ZERO, label)
        top.set(ylim=(-0.05, 1.12), ylabel=f"fraction of seeds grokked\n({what})",
                title=f"{label + ': ' if label else ''}η = 0 predicted never to grok"
                      + (f" ({law})" if law else ""))
        grokked = cells["n_grokked"].to_numpy() > 0
        bottom.errorbar(x[grokked], cells["t_grok_median"][grokked],
                        yerr=[(cells["t_grok_median"] - cells["t_grok_q25"])[grokked],
                              (cells["t_grok_q75"] - cells["t_grok_median"])[grokked]],
                        fmt="s", color="C3", capsize=3, label="median, IQR (grokked seeds)")
        for position in x[~grokked]:
            bottom.annotate("never\ngroks", (position, 0.5), xycoords=("data", "axes fraction"),
                            ha="center", fontsize=8, color="C3")
        row = wd.table[wd.table["condition"] == label].iloc[0]
        if row["status"] == "ok":
            eta = np.geomspace(cells.loc[cells["n_grokked"] > 0, "eta"].min(),
                               cells["eta"].max(), 50)
            verdict = wd.verdict(fit.LAW_WD_SLOPE, label)
            bottom.plot(eta, np.exp(row["a"]) * eta ** row["b"], color="black",
                        label=f"fit: b = {_interval_text(row.b, row.b_lo, row.b_hi)}\n"
                              f"({verdict})")
            anchor = np.exp(row["a"]) * np.sqrt(eta[0] * eta[-1]) ** row["b"]
            bottom.plot(eta, anchor * (eta / np.sqrt(eta[0] * eta[-1])) ** fit.PREDICTED_WD_SLOPE,
                        color="grey", ls="--", label=f"prediction b = {fit.PREDICTED_WD_SLOPE:g}")
        else:
            bottom.set_title(f"no slope: {row['message']}", fontsize=8, wrap=True)
        bottom.set(yscale="log", xscale="log", xlabel="weight decay η",
                   ylabel=f"t_grok: first step with\n{what} (log)")
        bottom.legend(fontsize=8, loc="lower left")
        _fixed_ticks(bottom.xaxis, ticks, tick_labels)
        bottom.set_xlim(ticks[0] / 2, ticks[-1] * 2)
        bottom.tick_params(axis="x", labelrotation=45)
    figure.suptitle("Weight decay and grokking (Li₂: t_grok ~ 1/η; η = 0 does not grok)")
    return figure


def plot_lr_effect(lr: FitResult) -> Figure:
    """Generalized fraction vs learning rate, one line per train fraction (Wilson 95% CI)."""
    table, labels = _fit_panels(lr, "learning-rate")
    figure, axes = _panels(labels, width=6.0, height=4.4)
    for ax, label in zip(axes, labels, strict=True):
        panel = table[table["condition"] == label]
        for index, (fraction, cells) in enumerate(panel.groupby("train_fraction")):
            dodge = 1.03**index  # side by side, so overlapping intervals stay readable
            ax.errorbar(cells["lr"] * dodge, cells["fraction"],
                        yerr=[cells["fraction"] - cells["fraction_lo"],
                              cells["fraction_hi"] - cells["fraction"]],
                        marker="o", ms=4, capsize=2, label=f"p = {fraction:.3g}")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="learning rate (log scale)",
               ylabel=f"fraction generalized ({GENERALIZED_TEXT})")
        ax.legend(fontsize=8, title="train fraction", title_fontsize=8)
    figure.suptitle("Generalized fraction vs learning rate (Wilson 95% CI)")
    return figure


def plot_memorization_width(mem: FitResult) -> Figure:
    """K_mem and K_gen vs n_train on log-log axes, with the sufficient width 2M − 2 and the
    fitted power law of K_mem."""
    detail, labels = _fit_panels(mem, "memorization-width", "detail")
    if not np.isfinite(detail[["K_mem", "K_gen"]].to_numpy(float)).any():
        raise PlotSkipped("no n_train reached K_mem or K_gen on the K grid")
    figure, axes = _panels(labels, width=6.0, height=4.6)
    for ax, label in zip(axes, labels, strict=True):
        panel = detail[detail["condition"] == label].sort_values("n_train")
        ax.plot(panel["n_train"], panel["K_mem"], "o-", color="C0",
                label="K_mem: median final train acc = 1")
        ax.plot(panel["n_train"], panel["K_gen"], "s-", color="C2",
                label="K_gen: ≥ 50% of seeds generalize")
        ax.axhline(panel["K_predicted"].iloc[0], color="black", ls="--",
                   label=f"2M − 2 = {panel['K_predicted'].iloc[0]} (Thm 3)")
        row = mem.table[mem.table["condition"] == label].iloc[0]
        if row["status"] == "ok":
            n = np.geomspace(panel["n_train"].min(), panel["n_train"].max(), 50)
            ax.plot(n, np.exp(row["intercept"]) * n ** row["slope"], color="C0", ls=":",
                    label=f"K_mem ∝ n^{_interval_text(row.slope, row.slope_lo, row.slope_hi)}")
        ax.set(xscale="log", yscale="log", xlabel="training samples n_train (log scale)",
               ylabel="hidden width K (log scale)")
        ax.legend(fontsize=7)
    figure.suptitle("Width needed to memorize and to generalize")
    return figure


def plot_node_spectra(spectra: FitResult) -> Figure:
    """Per-node Fourier power of W: one heat map per example run, active nodes as rows sorted
    by dominant frequency, power shares as colour."""
    examples = _require(spectra, "node-spectra").table
    power_columns = sorted(c for c in spectra.detail if c.startswith("power_") and c != "power_00")
    figure, axes = _panels([f"{title} run" for title in examples["example"]], width=5.0,
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


def plot_irrep_scaling(irrep: FitResult) -> Figure:
    """The boundary constant c = p*·M/ln M against the largest irrep degree d_k (log-log): each
    group with its CI, groups that never generalized as lower bounds (▲), the fitted power law
    and the two forms in question, c ∝ d_k² (Theorem 4) and c ∝ d_k (the paper's code)."""
    groups, labels = _fit_panels(irrep, "irrep-scaling", "detail")
    figure, axes = _panels(labels, width=9.5, height=5.2)
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
            exponent = _interval_text(row.exponent, row.exponent_lo, row.exponent_hi)
            verdict = irrep.verdict(fit.LAW_DK_EXPONENT, label)
            ax.plot(degrees, row["c_at_1"] * degrees ** row["exponent"], color="black",
                    label=f"fit: c ∝ d_k^{exponent}\n({verdict})")
            for form, exponent, style in (("theorem", fit.THEOREM_DK_EXPONENT, "--"),
                                          ("code", fit.CODE_DK_EXPONENT, ":")):
                ax.plot(degrees, row[f"c_{form}"] * degrees**exponent, color="grey", ls=style,
                        label=f"c ∝ d_k^{exponent:g} ({form}), χ² = {row[f'chi2_{form}']:.3g}")
        else:
            ax.set_title(f"{label}\nno exponent: {row['message']}", fontsize=8)
        degrees_tried = sorted(panel["d_k"].unique())
        ax.set(xscale="log", yscale="log", xlabel="largest irrep degree d_k (log scale)",
               ylabel="boundary constant c = p*·M / ln M (log scale)")
        _fixed_ticks(ax.xaxis, degrees_tried, [f"{d:g}" for d in degrees_tried])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.suptitle("Boundary constant vs largest irrep degree: d_k² (Theorem 4) or d_k (code)?")
    return figure
