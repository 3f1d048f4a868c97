"""The registry of analyses: for each, its name, title, what the sweep must vary, its fit, its
figures and its report section. Fitting, plotting and the report all iterate ``ANALYSES``.

    fits = fit_all(runs, curves, features)          # {name: FitResult}, in registry order
    figures = draw_figures(fits)                    # {figure name: Figure or the reason not}
    write_report("results/wd")                      # results/wd/_report/report.md + PNGs
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from grokjax import fit, plot, report, results
from grokjax.fit import FitResult


@dataclass(frozen=True)
class Inputs:
    """What a fit may read: the tables and the fits of the analyses before it."""

    runs: pd.DataFrame
    curves: pd.DataFrame | None
    features: pd.DataFrame | None
    fits: dict[str, FitResult]
    n_boot: int
    level: float
    seed: int


@dataclass(frozen=True)
class Analysis:
    name: str
    title: str
    fit: Callable[[Inputs], FitResult]
    section: Callable[[FitResult, float], list[str]]  # Markdown lines of its report section
    figures: dict[str, Callable[[FitResult, dict[str, FitResult]], Figure]]
    varies: tuple[str, ...] = ()  # runs-table columns that must take ≥ 2 values
    tables: tuple[str, ...] = ()  # the other tables it reads: "curves", "features"
    builds_on: str | None = None  # an earlier analysis whose usable result it needs

    def unmet(self, inputs: Inputs) -> str | None:
        """What the data lack for this analysis, or None."""
        runs = inputs.runs
        if runs is None or runs.empty:
            return "the runs table is empty"
        constant = [c for c in self.varies if c not in runs or runs[c].nunique(dropna=False) < 2]
        if constant:
            return "needs " + " and ".join(
                f"{c} to vary, it is {fit.format_value(runs[c].iloc[0])}" if c in runs
                else f"a {c} column" for c in constant)
        missing = [t for t in self.tables if getattr(inputs, t) is None]
        if missing:
            return f"needs the {' and '.join(missing)} table, written with diagnostics = true"
        if self.builds_on and not inputs.fits[self.builds_on].usable:
            before = inputs.fits[self.builds_on]
            return f"needs a {before.name} fit, which is {before.status}: {before.message}"
        return None


ANALYSES: tuple[Analysis, ...] = (
    Analysis("stages", "Stages of training: memorization, feature emergence, grokking",
             lambda i: fit.stages(i.runs, i.curves), report.stages_section,
             {"stages": lambda r, _: plot.plot_stages(r)}, tables=("curves",)),
    Analysis("node_spectra", "Hidden-node spectra",
             lambda i: fit.node_spectra(i.runs, i.features), report.spectra_section,
             {"node_spectra": lambda r, _: plot.plot_node_spectra(r)}, tables=("features",)),
    Analysis("wd_speed", "Weight decay and grokking time (t ~ 1/η)",
             lambda i: fit.wd_speed(i.runs, level=i.level), report.wd_section,
             {"wd_speed": lambda r, _: plot.plot_wd_speed(r)}, varies=("weight_decay",)),
    Analysis("generalization_boundary", "Generalization boundary p*(M)",
             lambda i: fit.generalization_boundary(i.runs, i.n_boot, i.level, i.seed),
             report.boundary_section,
             {"phase_diagram": lambda r, fits: plot.plot_phase_diagram(r, fits["boundary_law"])},
             varies=("train_fraction",)),
    Analysis("boundary_law", "Boundary law p* = c·ln M / M",
             lambda i: fit.boundary_law(i.fits["generalization_boundary"], i.level),
             report.law_section, {}, varies=("train_fraction", "group"),
             builds_on="generalization_boundary"),
    Analysis("irrep_scaling", "Boundary constant vs largest irrep degree d_k",
             lambda i: fit.irrep_scaling(i.fits["generalization_boundary"], i.runs, i.level),
             report.irrep_section, {"irrep_scaling": lambda r, _: plot.plot_irrep_scaling(r)},
             varies=("train_fraction", "max_irrep_degree"), builds_on="generalization_boundary"),
    Analysis("collapse", "Collapse onto c_eff = n_train / (M ln M)",
             lambda i: fit.collapse(i.runs, level=i.level), report.collapse_section,
             {"collapse": lambda r, fits: plot.plot_collapse(r, fits["boundary_law"])},
             varies=("train_fraction", "group")),
    Analysis("lr_effect", "Learning rate near the boundary",
             lambda i: fit.lr_effect(i.runs, level=i.level), report.lr_section,
             {"lr_effect": lambda r, _: plot.plot_lr_effect(r)}, varies=("lr",)),
    Analysis("memorization_width", "Width to memorize and to generalize",
             lambda i: fit.memorization_width(i.runs, level=i.level), report.width_section,
             {"memorization_width": lambda r, _: plot.plot_memorization_width(r)},
             varies=("K", "train_fraction")),
)
BY_NAME = {analysis.name: analysis for analysis in ANALYSES}


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


def draw_figures(fits: dict[str, FitResult]) -> dict[str, Figure | str]:
    """Every figure of every fitted analysis: a Figure, or the reason it was not drawn."""
    drawn: dict[str, Figure | str] = {}
    for name, result in fits.items():
        for figure_name, draw in BY_NAME[name].figures.items():
            if not result.usable:
                drawn[figure_name] = f"{name} is {result.status}: {result.message}"
                continue
            try:
                drawn[figure_name] = draw(result, fits)
            except plot.PlotSkipped as skipped:
                drawn[figure_name] = str(skipped)
    return drawn


def save_figures(figures: dict[str, Figure | str],
                 out_dir: str | Path) -> dict[str, tuple[Path | None, str]]:
    """Each Figure as ``<out_dir>/<name>.png``: {name: (path, "")}, or (None, reason)."""
    return {name: (plot.save(drawn, Path(out_dir) / f"{name}.png"), "")
            if isinstance(drawn, Figure) else (None, drawn) for name, drawn in figures.items()}


def read_tables(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None,
                                                  pd.DataFrame | None]:
    """The runs table and, where the sweep wrote them, the curves and features tables."""
    def optional(reader):
        try:
            return reader(results_dir)
        except FileNotFoundError:
            return None

    return (results.read_runs(results_dir), optional(results.read_curves),
            optional(results.read_features))


def _provenance(results_dir: Path) -> dict | None:
    try:
        return results.read_metadata(results_dir)
    except (KeyError, TypeError, ValueError):  # parts written without grokjax metadata
        return None


def write_report(results_dir: str | Path, out_path: str | Path | None = None,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Path:
    """Fit, draw and write ``report.md`` (figures beside it) for ``results_dir``."""
    results_dir = Path(results_dir)
    out_path = Path(out_path) if out_path else results_dir / report.REPORT_DIR / "report.md"
    runs, curves, features = read_tables(results_dir)
    fits = fit_all(runs, curves, features, n_boot=n_boot, level=level, seed=seed)
    saved = save_figures(draw_figures(fits), out_path.parent)
    sections, unsupported = [], []
    for analysis in ANALYSES:
        result = fits[analysis.name]
        if result.usable:
            sections.append((analysis.title, result, analysis.section,
                             {name: saved[name] for name in analysis.figures}))
        else:
            unsupported.append((analysis.title, result.message if result.status == "unsupported"
                                else f"{result.status}: {result.message}"))
    text = report.render_report(results_dir, runs, sections, unsupported, fits,
                                _provenance(results_dir), out_path.parent, level)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    return out_path
