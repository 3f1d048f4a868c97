"""The analyses: from the runs (and curves, features) tables to fits, figures and a report.

One module per family holds its fits, figures, report section and registry entries
(``ANALYSES``); this package lists the families in report order and iterates them. Adding an
analysis is adding a module with its ``ANALYSES`` and naming it in ``FAMILIES``.

    fits = fit_all(runs, curves, features)          # {name: FitResult}, in registry order
    figures = draw_figures(fits, by=None)           # {figure name: Figure or the reason not}
    text = report(runs, fits, figure_files, provenance, source)   # Markdown

Nothing here reads or writes files: ``grokjax.api.Results`` reads the tables (local, gs://,
s3://) and writes what this package returns.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from grokjax.analysis import (
    boundary,
    collapse,
    dynamics,
    generalization_map,
    grok_law,
    grokking_time,
    irrep,
    lr,
    wd,
    width,
)
from grokjax.analysis.core import FitResult, Inputs
from grokjax.analysis.figures import PlotSkipped, png_bytes
from grokjax.analysis.report import render_report

FAMILIES = (dynamics, wd, grokking_time, boundary, generalization_map, irrep, grok_law,
            collapse, lr, width)  # report order
ANALYSES = tuple(analysis for family in FAMILIES for analysis in family.ANALYSES)
BY_NAME = {analysis.name: analysis for analysis in ANALYSES}

__all__ = ["ANALYSES", "BY_NAME", "FitResult", "draw_figures", "fit_all", "png_bytes", "report"]


def fit_all(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
            features: pd.DataFrame | None = None, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict[str, FitResult]:
    """Every analysis the tables support, in registry order; the others are ``unsupported``
    with a message saying what they would need."""
    fits: dict[str, FitResult] = {}
    for analysis in ANALYSES:
        inputs = Inputs(runs, curves, features, fits, n_boot, level, seed)
        unmet = analysis.unmet(inputs)
        fits[analysis.name] = (FitResult(analysis.name, "unsupported", unmet) if unmet
                               else analysis.fit(inputs))
    return fits


def draw_figures(fits: dict[str, FitResult], by: str | None = None) -> dict[str, Figure | str]:
    """Every figure of every fitted analysis: a Figure, or the reason it was not drawn. ``by``:
    the config column that figures comparing conditions within a panel draw as colours (one
    per value), a panel per combination of the other varied columns; by default each figure
    chooses."""
    drawn: dict[str, Figure | str] = {}
    for name, result in fits.items():
        for figure_name, draw in BY_NAME[name].figures.items():
            if not result.usable:
                drawn[figure_name] = f"{name} is {result.status}: {result.message}"
                continue
            try:
                drawn[figure_name] = draw(result, fits, by)
            except PlotSkipped as skipped:
                drawn[figure_name] = str(skipped)
    return drawn


def report(runs: pd.DataFrame, fits: dict[str, FitResult],
           figure_files: dict[str, tuple[str | None, str]], provenance: dict | None,
           source: str, level: float = 0.95) -> str:
    """The Markdown report of ``fits``; ``figure_files`` maps every figure of ``draw_figures``
    to its file name beside the report, or to (None, why it was not drawn)."""
    return render_report(source, runs, ANALYSES, fits, figure_files, provenance, level)
