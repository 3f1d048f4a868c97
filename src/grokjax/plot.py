"""Figures (PNG) from the runs/curves tables and the fits of :mod:`grokjax.fit`.

Each ``plot_*`` function takes DataFrames or FitResults and an output path, and returns the path
it wrote, or None when the data cannot support the figure; the reason is then issued as a
:class:`PlotSkipped` warning, which :func:`plot_all` collects. Figures are drawn on bare
:class:`matplotlib.figure.Figure` objects (Agg canvas), never through pyplot's global state.
Power laws are drawn on log-log axes; a condition (a combination of varied config columns other
than the figure's own axes) gets its own panel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from grokjax import fit
from grokjax.fit import REFERENCE_C, FitResult

MAX_PANELS = 12
MAX_SEED_LINES = 40  # thin per-seed lines drawn per panel; the median uses every seed
GENERALIZED_TEXT = "final test acc ≥ 0.99"


class PlotSkipped(UserWarning):
    """A figure was not drawn; the message says why."""


@dataclass(frozen=True)
class PlotOutcome:
    path: Path | None
    reason: str = ""


def _skip(reason: str) -> None:
    warnings.warn(reason, PlotSkipped, stacklevel=3)


def _unusable(result: FitResult | None, name: str) -> str | None:
    if result is None:
        return f"no {name} fit given"
    if not result.usable:
        return f"{result.name} is {result.status}: {result.message}"
    return None


def _panels(titles: list[str], width: float = 5.6, height: float = 4.2):
    """A grid of axes, one per title; a single untitled panel when nothing varies."""
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
    """A usable fit's ``table`` (or ``detail``) and its condition labels in table order, or
    None after warning why the figure is skipped."""
    reason = _unusable(result, name)
    if reason is None:
        rows = getattr(result, frame)
        labels = list(dict.fromkeys(rows["condition"]))
        reason = _too_many_panels(labels)
    if reason:
        _skip(reason)
        return None
    return rows, labels


def _too_many_panels(labels) -> str | None:
    if len(labels) > MAX_PANELS:
        return (f"{len(labels)} conditions would need one panel each (limit {MAX_PANELS});"
                " plot a subset of the runs")
    return None


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


def _save(figure: Figure, path: str | Path) -> Path:
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


def _group_colors(orders) -> dict[int, tuple]:
    """One colour per group order, on a log scale of M, shared across panels."""
    orders = sorted(set(int(m) for m in orders))
    norm = LogNorm(min(orders), max(orders)) if len(orders) > 1 else Normalize(0, 2 * orders[0])
    cmap = colormaps["viridis"]
    return {m: cmap(0.9 * norm(m)) for m in orders}


def _law_row(law: FitResult | None, condition: str) -> pd.Series | None:
    if law is None or not law.usable:
        return None
    rows = law.table[(law.table["condition"] == condition) & (law.table["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def _interval_text(value: float, lo: float, hi: float) -> str:
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]"


# ---------------------------------------------------------------------------------------------


def plot_grokking_curves(runs: pd.DataFrame, curves: pd.DataFrame | None,
                         path: str | Path) -> Path | None:
    """Train/test accuracy vs step, one panel per weight decay (per condition): every seed as a
    thin line, the median over seeds in bold."""
    if curves is None or curves.empty:
        return _skip("no curves table (results/<sweep>/_curves)")
    needed = {"run_id", "step", "train_acc", "test_acc"}
    if not needed <= set(curves.columns) or "run_id" not in runs:
        return _skip(f"curves need columns {sorted(needed)} and runs need run_id")
    conditions = fit.varying_config(runs)
    joined = curves.merge(runs[["run_id", *conditions]], on="run_id", how="inner")
    joined = joined[joined["step"] > 0]  # log step axis
    if joined.empty:
        return _skip("no curve points after step 0 match a run in the runs table")
    joined = joined.sort_values([*conditions, "run_id", "step"])
    joined["condition"] = fit.condition_labels(joined, conditions)
    labels = list(dict.fromkeys(joined["condition"]))
    reason = _too_many_panels(labels)
    if reason:
        return _skip(reason)
    figure, axes = _panels(labels)
    for ax, label in zip(axes, labels, strict=True):
        panel = joined[joined["condition"] == label]
        run_ids = list(dict.fromkeys(panel["run_id"]))
        for run in run_ids[:MAX_SEED_LINES]:
            one = panel[panel["run_id"] == run]
            ax.plot(one["step"], one["train_acc"], color="C0", lw=0.6, alpha=0.3)
            ax.plot(one["step"], one["test_acc"], color="C1", lw=0.6, alpha=0.3)
        median = panel.groupby("step")[["train_acc", "test_acc"]].median()
        ax.plot(median.index, median["train_acc"], color="C0", lw=2.2, label="train (median)")
        ax.plot(median.index, median["test_acc"], color="C1", lw=2.2, label="test (median)")
        ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="training step (log scale)",
               ylabel="accuracy")
        ax.set_title(f"{label}  ({len(run_ids)} seeds)".strip(), fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    figure.suptitle("Grokking curves: train and test accuracy vs step")
    return _save(figure, path)


def _cell_edges(values: np.ndarray) -> np.ndarray:
    """Log-space cell edges around sorted values (geometric midpoints, mirrored at the ends)."""
    log_v = np.log(values)
    if len(log_v) == 1:
        return np.exp(log_v + np.array([-0.05, 0.05]))
    mid = (log_v[1:] + log_v[:-1]) / 2
    return np.exp(np.concatenate([[2 * log_v[0] - mid[0]], mid, [2 * log_v[-1] - mid[-1]]]))


def plot_phase_diagram(boundary: FitResult, law: FitResult | None,
                       path: str | Path) -> Path | None:
    """M × train fraction heatmap of the generalized fraction, with each group's fitted p*
    (CI bars), the fitted c·ln M/M and the paper code's 2.7482·ln M/M."""
    panels = _fit_panels(boundary, "boundary", "detail")  # table order: numeric, not by text
    if panels is None:
        return None
    (cells, labels), table = panels, boundary.table
    figure, axes = _panels(labels, width=6.4, height=4.8)
    mesh = None
    for ax, label in zip(axes, labels, strict=True):
        panel = cells[cells["condition"] == label]
        y_range = [np.inf, 0.0]
        for _, group_cells in panel.groupby("group"):
            group_cells = group_cells.sort_values("train_fraction")
            order = group_cells["M"].iloc[0]
            x_edges = order * np.array([0.94, 1 / 0.94])
            y_edges = _cell_edges(group_cells["train_fraction"].to_numpy(float))
            mesh = ax.pcolormesh(x_edges, y_edges, group_cells[["fraction"]].to_numpy(float),
                                 cmap="RdYlBu", vmin=0, vmax=1)
            y_range = [min(y_range[0], y_edges[0]), max(y_range[1], y_edges[-1])]
        estimated = table[(table["condition"] == label) & np.isfinite(table["p_star"])]
        ax.errorbar(estimated["M"], estimated["p_star"],
                    yerr=[estimated["p_star"] - estimated["p_star_lo"],
                          estimated["p_star_hi"] - estimated["p_star"]],
                    fmt="o", color="black", mfc="white", ms=5, capsize=3,
                    label="fitted p* (50%), 95% CI")
        orders = np.geomspace(panel["M"].min() * 0.85, panel["M"].max() * 1.15, 100)
        row = _law_row(law, label)
        if row is not None:
            ax.plot(orders, row["c"] * np.log(orders) / orders, color="black",
                    label=f"fit: c = {_interval_text(row.c, row.c_lo, row.c_hi)}")
        ax.plot(orders, REFERENCE_C * np.log(orders) / orders, color="black", ls="--",
                label=f"paper code: c = {REFERENCE_C}")
        ax.set(xscale="log", yscale="log", xlabel="group order M = |G| (log scale)",
               ylabel="training fraction p = n_train / M² (log scale)",
               ylim=(y_range[0] / 1.15, y_range[1] * 1.15))
        orders = sorted(panel["M"].unique())
        ax.xaxis.set_major_locator(FixedLocator(orders))
        if len(orders) > 6:  # neighbouring orders (29, 30, ...) would print over each other
            ax.tick_params(axis="x", labelrotation=90)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8, loc="lower left")
    figure.colorbar(mesh, ax=list(axes),
                    label=f"fraction of seeds generalized ({GENERALIZED_TEXT})")
    figure.suptitle("Phase diagram and boundary p* = c·ln M / M")
    return _save(figure, path)


def plot_collapse(collapse: FitResult, path: str | Path,
                  law: FitResult | None = None) -> Path | None:
    """Generalized fraction vs c_eff = n_train/(M ln M), one line per group: if p* = c ln M/M
    holds, all groups cross 50% at c_eff = c."""
    panels = _fit_panels(collapse, "collapse")
    if panels is None:
        return None
    table, labels = panels
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
            ax.axvline(row["c"], color="black", label=f"fitted c = {row.c:.3g}")
        ax.axvline(REFERENCE_C, color="black", ls="--", label=f"paper code c = {REFERENCE_C}")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="c_eff = n_train / (M ln M) (log scale)",
               ylabel=f"fraction generalized ({GENERALIZED_TEXT})")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    figure.suptitle("Collapse: generalized fraction vs c_eff (Wilson 95% CI)")
    return _save(figure, path)


def plot_wd_speed(runs: pd.DataFrame, wd: FitResult, path: str | Path) -> Path | None:
    """Grokking time vs weight decay on log-log axes: runs, per-η medians, the fitted power
    law and the predicted slope −1; η values with runs that never grokked are annotated."""
    reason = _unusable(wd, "weight-decay")
    if reason:
        return _skip(reason)
    table, per_eta = wd.table, wd.detail
    threshold_col = table["threshold_col"].iloc[0]
    conditions = [c for c in fit.CONFIG_COLUMNS if c in table.columns]
    usable, _ = fit.split_usable(runs)
    points = usable.assign(eta=usable["weight_decay"].to_numpy(float),
                           t_grok=fit.as_float(usable[threshold_col]))
    points = points[(points["eta"] > 0) & (points["t_grok"] > 0)]
    points = points.assign(condition=fit.condition_labels(points, conditions))
    labels = list(table["condition"])
    reason = _too_many_panels(labels)
    if reason:
        return _skip(reason)
    figure, axes = _panels(labels, width=6.0, height=4.6)
    what = fit.threshold_text(threshold_col)
    for ax, (_, row) in zip(axes, table.iterrows(), strict=True):
        panel = points[points["condition"] == row["condition"]]
        counts = per_eta[per_eta["condition"] == row["condition"]]
        ax.scatter(panel["eta"], panel["t_grok"], s=12, alpha=0.45, color="C0",
                   label="runs (grokked)")
        ax.plot(counts["eta"], counts["t_grok_median"], "s", color="C3", ms=6,
                label="median per η")
        if row["status"] == "ok":
            eta = np.geomspace(panel["eta"].min(), panel["eta"].max(), 50)  # grokked runs only
            ax.plot(eta, np.exp(row["a"]) * eta ** row["b"], color="black",
                    label=f"fit: b = {_interval_text(row.b, row.b_lo, row.b_hi)}")
            centre_eta = np.exp(np.log(panel["eta"]).mean())
            centre_t = np.exp(np.log(panel["t_grok"]).mean())
            ax.plot(eta, centre_t * (eta / centre_eta) ** fit.PREDICTED_WD_SLOPE, color="grey",
                    ls="--", label=f"prediction b = {fit.PREDICTED_WD_SLOPE:g}")
        for _, cell in counts[counts["n_never"] > 0].iterrows():
            ax.annotate(f"{cell.n_never}/{cell.n}\nnever", (cell.eta, 1), fontsize=7,
                        xycoords=("data", "axes fraction"), xytext=(0, -18),
                        textcoords="offset points", ha="center", color="C3")
        ax.set(xscale="log", yscale="log", xlabel="weight decay η (log scale)",
               ylabel=f"t_grok: first step with {what} (log)",
               xlim=(counts["eta"].min() / 1.5, counts["eta"].max() * 1.5))  # censored η too
        ax.legend(fontsize=8, loc="lower left")
    figure.suptitle("Grokking time vs weight decay (Li₂: t ~ 1/η)")
    return _save(figure, path)


def plot_lr_effect(lr: FitResult, path: str | Path) -> Path | None:
    """Generalized fraction vs learning rate, one line per train fraction (Wilson 95% CI)."""
    panels = _fit_panels(lr, "learning-rate")
    if panels is None:
        return None
    table, labels = panels
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
    return _save(figure, path)


def plot_memorization_width(mem: FitResult, path: str | Path) -> Path | None:
    """K_mem and K_gen vs n_train on log-log axes, with the sufficient width 2M − 2 and the
    fitted power law of K_mem."""
    panels = _fit_panels(mem, "memorization-width", "detail")
    if panels is None:
        return None
    detail, labels = panels
    if not np.isfinite(detail[["K_mem", "K_gen"]].to_numpy(float)).any():
        return _skip("no n_train reached K_mem or K_gen on the K grid")
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
    return _save(figure, path)


def _spectrum_examples(runs: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """A generalized run and a memorizing one (train accuracy 1, not generalized)."""
    examples = []
    for title, chosen in (
            ("grokked", runs[runs["generalized"]]),
            ("memorized", runs[~runs["generalized"] & (runs["final_train_acc"] >= 1.0)])):
        if len(chosen):
            examples.append((title, chosen.sort_values("run_id").iloc[0]))
    return examples


def plot_node_spectra(runs: pd.DataFrame, features: pd.DataFrame | None,
                      path: str | Path) -> Path | None:
    """Per-node Fourier power of W (features table, Z_M with diagnostics): one heat map per
    example run, active nodes as rows sorted by dominant frequency, power shares as colour."""
    if features is None or "power_01" not in features:
        _skip("needs the features table with power spectra (diagnostics = true on Z_M)")
        return None
    examples = _spectrum_examples(runs)
    if not examples:
        _skip("no generalized or memorizing run to show")
        return None
    power_columns = sorted(c for c in features if c.startswith("power_") and c != "power_00")
    figure, axes = _panels([f"{title} run" for title, _ in examples], width=5.0, height=5.6)
    for ax, (title, run) in zip(axes, examples, strict=False):
        nodes = features[(features["run_id"] == run["run_id"]) & features["active"]]
        nodes = nodes.sort_values(["dominant_frequency", "dominant_power_fraction"])
        power = nodes[power_columns].to_numpy()
        share = power / power.sum(axis=1, keepdims=True)
        ax.grid(False)
        image = ax.imshow(share, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0, vmax=1, extent=(0.5, len(power_columns) + 0.5, len(nodes), 0))
        ax.set_xlabel("frequency k (pooled with M − k)")
        ax.set_ylabel("active hidden node (sorted by dominant frequency)")
        ax.set_title(f"{title}: wd={run['weight_decay']:g}, seed {run['seed']}, "
                     f"test acc {run['final_test_acc']:.2f}\n{len(nodes)} active nodes, "
                     f"{run['final_frequency_dominated_fraction']:.0%} frequency-dominated")
    figure.colorbar(image, ax=list(axes), label="share of the node's non-constant power")
    figure.suptitle(f"Hidden-node spectra on {examples[0][1]['group_name']}, "
                    f"K = {examples[0][1]['K']}")
    return _save(figure, path)


def plot_all(runs: pd.DataFrame, curves: pd.DataFrame | None, out_dir: str | Path,
             fits: dict[str, FitResult] | None = None,
             features: pd.DataFrame | None = None) -> dict[str, PlotOutcome]:
    """Every figure the data support, as ``<out_dir>/<name>.png``; the others say why not."""
    out_dir = Path(out_dir)
    fits = fits if fits is not None else fit.fit_all(runs)
    law = fits.get("boundary_law")
    jobs: dict[str, Callable[[Path], Path | None]] = {
        "grokking_curves": lambda p: plot_grokking_curves(runs, curves, p),
        "phase_diagram": lambda p: plot_phase_diagram(fits["generalization_boundary"], law, p),
        "collapse": lambda p: plot_collapse(fits["collapse"], p, law),
        "wd_speed": lambda p: plot_wd_speed(runs, fits["wd_speed"], p),
        "lr_effect": lambda p: plot_lr_effect(fits["lr_effect"], p),
        "memorization_width": lambda p: plot_memorization_width(fits["memorization_width"], p),
        "node_spectra": lambda p: plot_node_spectra(runs, features, p),
    }
    outcomes = {}
    for name, draw in jobs.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PlotSkipped)
            path = draw(out_dir / f"{name}.png")
        reasons = [str(w.message) for w in caught if issubclass(w.category, PlotSkipped)]
        for other in (w for w in caught if not issubclass(w.category, PlotSkipped)):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        outcomes[name] = PlotOutcome(path, "; ".join(reasons))
    return outcomes
