"""Figure helpers shared by the analyses: panels per condition, colours, log ticks, PNG bytes.

Each analysis draws its figures from the data its fit computed and returns a
:class:`matplotlib.figure.Figure`, or raises :class:`PlotSkipped` saying why the data cannot
support it. Figures are drawn on bare Figure objects (Agg canvas), never through pyplot's
global state, so they display in a notebook and save anywhere. Power laws are drawn on log-log
axes; a condition (a combination of varied config columns other than the figure's own axes) gets
its own panel or colour.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from grokjax.analysis.core import FitResult

MAX_PANELS = 12
MAX_COLOURED_CONDITIONS = 10  # conditions drawn as colours in one panel
DPI = 120


class PlotSkipped(Exception):
    """A figure cannot be drawn from the data; the message says why."""


def require(result: FitResult | None, name: str) -> FitResult:
    if result is None:
        raise PlotSkipped(f"no {name} fit given")
    if not result.usable:
        raise PlotSkipped(f"{result.name} is {result.status}: {result.message}")
    return result


def panels(titles: list[str], width: float = 5.6, height: float = 4.2):
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


def fit_panels(result: FitResult | None, name: str, frame: str = "table"):
    """A usable fit's ``table`` (or ``detail``) and its condition labels in table order."""
    rows = getattr(require(result, name), frame)
    return rows, list(dict.fromkeys(rows["condition"]))


def plain_log_ticks(axis, low: float, high: float) -> None:
    """Ticks at 1, 2, (3,) 5 × 10^k labelled as plain numbers on a narrow log axis, where
    matplotlib's default labels minor ticks as '3×10^1' and they collide."""
    decades = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
    mantissas = (1, 2, 3, 5) if high < 10 * low else (1, 2, 5)
    ticks = [m * 10**d for d in decades for m in mantissas if low <= m * 10**d <= high]
    if len(ticks) >= 2:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def png_bytes(figure: Figure) -> bytes:
    """``figure`` as PNG (plain tick labels on narrow log axes), ready to write anywhere."""
    for ax in figure.axes:
        for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            placed = isinstance(axis.get_major_locator(), FixedLocator)  # ticks chosen already
            if scale == "log" and not placed and 0 < limits[0] < limits[1] < 100 * limits[0]:
                plain_log_ticks(axis, *limits)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def fixed_ticks(axis, positions, labels) -> None:
    axis.set_major_locator(FixedLocator(list(positions)))
    axis.set_major_formatter(FuncFormatter(
        lambda value, index: labels[index] if index is not None and index < len(labels) else ""))
    axis.set_minor_formatter(NullFormatter())
    axis.set_minor_locator(FixedLocator([]))


def group_colors(orders) -> dict[int, tuple]:
    """One colour per group order, on a log scale of M, shared across panels."""
    orders = sorted(set(int(m) for m in orders))
    norm = LogNorm(min(orders), max(orders)) if len(orders) > 1 else Normalize(0, 2 * orders[0])
    cmap = colormaps["viridis"]
    return {m: cmap(0.9 * norm(m)) for m in orders}


def condition_colors(labels: list[str]) -> dict[str, tuple]:
    """Conditions in table order (numeric order of the varied values) along viridis."""
    if len(labels) > MAX_COLOURED_CONDITIONS:
        raise PlotSkipped(f"{len(labels)} conditions would need one colour each (limit"
                          f" {MAX_COLOURED_CONDITIONS}); plot a subset of the runs")
    cmap = colormaps["viridis"]
    return {label: cmap(0.85 * index / max(1, len(labels) - 1))
            for index, label in enumerate(labels)}


def law_fit_row(law: FitResult | None, condition: str) -> pd.Series | None:
    if law is None or not law.usable:
        return None
    rows = law.table[(law.table["condition"] == condition) & (law.table["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def interval_text(value: float, lo: float, hi: float) -> str:
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]"

