"""Figure helpers shared by the analyses: panels and colours per condition, log ticks, PNG bytes.

Each analysis draws its figures from the data its fit computed and returns a
:class:`NotebookFigure`, or raises :class:`PlotSkipped` saying why the data cannot support it.
Figures are drawn on bare Figure objects (Agg canvas), never through pyplot's global state, so
they save anywhere, and they show themselves in Jupyter (``_repr_png_``). Power laws are drawn on
log-log axes. A condition (a combination of varied config columns other than the figure's own
axes) gets its own panel or colour; figures that compare conditions within a panel let the
caller's ``by`` choose the field shown as colours (``split_conditions``), and a refusal for too
many conditions names the options that fix it (``--where``/``--by``, ``Results.where``/``by=``).
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from grokjax.analysis.core import CONFIG_COLUMNS, FitResult, condition_labels, format_value

MAX_PANELS = 12
MAX_COLOURED_CONDITIONS = 10  # conditions drawn as colours in one panel
DPI = 120
WHERE_HINT = "--where FIELD=VALUE (Python: results.where(FIELD=VALUE))"
BY_HINT = "--by FIELD (Python: by=FIELD)"


class PlotSkipped(Exception):
    """A figure cannot be drawn from the data; the message says why."""


class NotebookFigure(Figure):
    """A Figure that Jupyter shows as an image: IPython prints a bare Figure as
    ``<Figure size 620x800 with 2 Axes>`` unless ``%matplotlib inline`` registered pyplot's
    formatter, and these figures never touch pyplot."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


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
                          f" {MAX_PANELS}): choose some with {WHERE_HINT}")
    columns = min(len(titles), 3)
    rows = math.ceil(len(titles) / columns)
    figure = NotebookFigure(figsize=(width * columns, height * rows), layout="constrained")
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
                          f" {MAX_COLOURED_CONDITIONS}): choose some with {WHERE_HINT}")
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


def wrapped(text: str, width: int = 52) -> str:
    """A long legend entry (a verdict with its reason) on lines of ``width`` characters, so that
    it cannot squeeze the axes."""
    return textwrap.fill(text, width)


# ---------------------------------------------------------------------------------------------
# Conditions as colours and panels


def condition_fields(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """The config columns of a fit's table that take several values (the conditions the fit
    kept apart), in table order, less the figure's own axes."""
    return [c for c in CONFIG_COLUMNS
            if c in frame and c not in exclude and frame[c].nunique(dropna=False) > 1]


def combinations(frame: pd.DataFrame, fields: list[str]) -> int:
    return len(frame[fields].drop_duplicates()) if fields else 1


@dataclass(frozen=True)
class Split:
    """How a figure shows its conditions: a colour per combination of the fields ``colours``
    within each panel, a panel per combination of the others; ``colour``/``panel`` label each
    row of the frame split."""

    colours: list[str]
    colour: pd.Series
    panel: pd.Series

    def panel_labels(self) -> list[str]:
        return list(dict.fromkeys(self.panel))

    def colour_labels(self) -> list[str]:
        return list(dict.fromkeys(self.colour))

    def legend_title(self) -> str:
        return " · ".join(self.colours) or "condition"

    def legend_label(self, colour: str) -> str:
        """A colour's entry under ``legend_title``: the value alone when one field is shown."""
        if len(self.colours) == 1:
            return colour.removeprefix(f"{self.colours[0]}=")
        return colour or "all runs"


def split_conditions(frame: pd.DataFrame, fields: list[str], by: str | None,
                     max_panels: int = MAX_PANELS) -> Split:
    """Colours for ``by`` (when it is one of ``fields``), else for the field with the most
    values that fit the palette, a panel per combination of the rest; all in colours when
    those panels would be too many but the colours are not. Refuses, naming --where and --by,
    when the conditions fit neither."""
    fitting = [f for f in fields if frame[f].nunique(dropna=False) <= MAX_COLOURED_CONDITIONS]
    if by in fields:
        colours = [by]
    elif len(fields) <= 1 or not fitting:
        colours = list(fields)
    else:
        colours = [max(fitting, key=lambda f: frame[f].nunique(dropna=False))]
        if (combinations(frame, [f for f in fields if f not in colours]) > max_panels
                and combinations(frame, fields) <= MAX_COLOURED_CONDITIONS):
            colours = list(fields)
    rest = [f for f in fields if f not in colours]
    if combinations(frame, colours) > MAX_COLOURED_CONDITIONS:
        raise PlotSkipped(too_many(frame, colours, MAX_COLOURED_CONDITIONS, "colour", rest))
    if combinations(frame, rest) > max_panels:
        raise PlotSkipped(too_many(frame, rest, max_panels, "panel", colours))
    return Split(colours, condition_labels(frame, colours), condition_labels(frame, rest))


def too_many(frame: pd.DataFrame, fields: list[str], limit: int, what: str,
             shown: list[str] = ()) -> str:
    """'24 conditions (4 train_fraction × 6 weight_decay) would need one panel each (limit
    12): choose some with --where ..., e.g. ...; or choose the field compared within each
    panel with --by ...: ...'. ``shown``: the fields the panels already compare."""
    counts = (" × ".join(f"{frame[f].nunique(dropna=False)} {f}" for f in fields)
              if len(fields) > 1 else f"the values of {fields[0]}")
    example = fields[0]
    value = format_value(frame[example].dropna().sort_values().iloc[0])
    text = (f"{combinations(frame, fields)} conditions ({counts}) would need one {what} each"
            f" (limit {limit}): choose some with {WHERE_HINT}, e.g. --where {example}={value}")
    choices = [f for f in [*shown, *fields] if frame[f].nunique(dropna=False)
               <= MAX_COLOURED_CONDITIONS]
    if len(fields) + len(shown) > 1 and choices:
        text += (f"; or choose the field compared within each panel with {BY_HINT}:"
                 f" {', '.join(choices)}")
    return text


def log_spaced(values) -> bool:
    """Whether positive values read better on a log axis: they span a factor of 4 or more and
    their log steps are more even than their linear ones (1, 2, 4, 8 or 1e-4 ... 1e-2)."""
    values = np.unique(np.asarray(values, dtype=float))
    values = values[np.isfinite(values)]
    if len(values) < 2 or values[0] <= 0 or values[-1] < 4 * values[0]:
        return False
    if len(values) == 2:
        return True
    unevenness = [np.std(steps) / np.mean(steps) for steps in (np.diff(np.log(values)),
                                                               np.diff(values))]
    return unevenness[0] <= unevenness[1]


def zero_on_log_axis(values: np.ndarray) -> tuple[np.ndarray, list[float], list[str]]:
    """x positions for values on a log axis, 0 included on its own tick one and a half decades
    left of the smallest positive value (weight decay η = 0); the tick positions and labels."""
    positive = np.sort(np.unique(values[values > 0]))
    zero_at = positive[0] / 10**1.5 if len(positive) else 1.0
    positions = np.where(values > 0, values, zero_at)
    ticks = ([zero_at] if (values == 0).any() else []) + list(positive)
    labels = (["0"] if (values == 0).any() else []) + [f"{value:g}" for value in positive]
    return positions, ticks, labels
