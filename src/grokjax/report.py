"""A Markdown report of one results directory: fitted laws with CIs, figures and provenance.

    write_report("results/ratio")   # -> results/ratio/_report/report.md, figures beside it

The report folder's name starts with '_' because Parquet readers skip such names; a plain
``report/`` holding PNG files would break ``pandas.read_parquet("results/<sweep>")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from grokjax import fit, plot, results
from grokjax.fit import FitResult
from grokjax.results import METADATA_KEY

REPORT_DIR = "_report"
MAX_EXCLUDED_LISTED = 50
TITLES = {
    "generalization_boundary": "Generalization boundary p*(M)",
    "boundary_law": "Boundary law p* = c·ln M / M",
    "collapse": "Collapse onto c_eff = n_train / (M ln M)",
    "wd_speed": "Weight decay and grokking time (t ~ 1/η)",
    "lr_effect": "Learning rate near the boundary",
    "memorization_width": "Width to memorize and to generalize",
}
FIGURES = {  # the figures shown in each fit's section
    "generalization_boundary": ("phase_diagram",),
    "collapse": ("collapse",),
    "wd_speed": ("wd_speed",),
    "lr_effect": ("lr_effect",),
    "memorization_width": ("memorization_width",),
}


def write_report(results_dir: str | Path, out_path: str | Path | None = None,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Path:
    """Fit, plot and write ``report.md`` for ``results_dir``; returns the report's path."""
    results_dir = Path(results_dir)
    runs = results.read_runs(results_dir)
    curves = results.read_curves(results_dir) if results.has_table(results_dir, "curves") else None
    out_path = Path(out_path) if out_path else results_dir / REPORT_DIR / "report.md"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fits = fit.fit_all(runs, n_boot=n_boot, level=level, seed=seed)
    features = (results.read_features(results_dir)
                if results.has_table(results_dir, "features") else None)
    figures = plot.plot_all(runs, curves, out_path.parent, fits=fits, features=features)
    text = render_report(results_dir, runs, fits, figures, read_provenance(results_dir),
                         out_path.parent, level)
    out_path.write_text(text, encoding="utf-8")
    return out_path


def read_provenance(results_dir: str | Path) -> tuple[dict | None, list[str]]:
    """The grokjax metadata of the first runs part that has it, and any git commits on which
    the parts disagree (a sweep resumed after the code changed)."""
    found = []
    for part in sorted((Path(results_dir) / "runs").glob("*.parquet")):
        raw = (pq.read_schema(part).metadata or {}).get(METADATA_KEY)
        try:
            metadata = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            metadata = None
        if isinstance(metadata, dict):
            found.append(metadata)
    commits = sorted({str(meta.get("git_commit")) for meta in found})
    return (found[0] if found else None), (commits if len(commits) > 1 else [])


# ---------------------------------------------------------------------------------------------
# Markdown building blocks


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _blank(column: pd.Series) -> bool:
    return bool(column.isna().all() or (column.astype(str) == "").all())


def markdown_table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """A Markdown table of ``frame``'s columns (source name → header); columns that are absent
    or blank in every row (no condition varies, no notes) are left out."""
    present = {c: header for c, header in columns.items() if c in frame and not _blank(frame[c])}
    if frame.empty or not present:
        return "_(no rows)_"
    lines = ["| " + " | ".join(present.values()) + " |", "|" + "---|" * len(present)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |"
              for row in frame[list(present)].itertuples(index=False)]
    return "\n".join(lines)


def _interval(frame: pd.DataFrame, value: str, lo: str, hi: str) -> pd.Series:
    return pd.Series([f"{v:.4g} [{a:.4g}, {b:.4g}]" if np.isfinite(v) else "—"
                      for v, a, b in zip(frame[value], frame[lo], frame[hi], strict=True)],
                     index=frame.index, dtype=object)


def _figure_links(names, figures: dict[str, plot.PlotOutcome], base: Path) -> list[str]:
    lines = []
    for name in names:
        outcome = figures.get(name)
        if outcome and outcome.path:
            link = Path(os.path.relpath(outcome.path, base)).as_posix()
            lines.append(f"![{name.replace('_', ' ')}]({link})")
        elif outcome:
            lines.append(f"_Figure {name} not drawn: {outcome.reason}_")
    return lines


# ---------------------------------------------------------------------------------------------
# Sections


def _overview(results_dir: Path, runs: pd.DataFrame, fits: dict[str, FitResult]) -> list[str]:
    usable, excluded = fit.split_usable(runs)
    sweeps = ", ".join(sorted(map(str, runs["sweep"].dropna().unique()))) if "sweep" in runs else ""
    lines = [f"# grokjax report{': ' + sweeps if sweeps else ''}", "",
             f"{len(runs)} runs read from `{results_dir}`; {len(usable)} usable,"
             f" {len(excluded)} excluded.", ""]
    if len(excluded):
        kinds = excluded["reason"].str.split(" at step").str[0].value_counts()
        lines += [f"- {reason}: {count}" for reason, count in kinds.items()] + [""]
    summary = pd.DataFrame([{"fit": name, "status": r.status, "runs used": r.n_runs,
                             "excluded": len(r.excluded), "note": r.message}
                            for name, r in fits.items()])
    lines += ["## Summary", "", markdown_table(summary, {c: c for c in summary.columns}), ""]
    return lines


def _boundary_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(
        p_star_ci=lambda t: _interval(t, "p_star", "p_star_lo", "p_star_hi"))
    return [markdown_table(table, {
        "condition": "condition", "group": "group", "group_name": "name", "M": "M",
        "n_runs": "runs", "n_p": "p values", "min_seeds": "min seeds/cell",
        "p_star_ci": f"p* [{level:.0%} CI]", "width": "logistic width (log p)",
        "status": "status", "message": "note"})]


def _law_section(result: FitResult, level: float) -> list[str]:
    lines = []
    for row in result.table.itertuples(index=False):
        heading = f"**{row.condition}**: " if row.condition else ""
        if row.status != "ok":
            lines += [f"- {heading}{row.status}: {row.message}"]
            continue
        inside = "inside" if row.c_lo <= row.c_reference <= row.c_hi else "outside"
        lines += [
            f"- {heading}**c = {row.c:.4g}** [{row.c_lo:.4g}, {row.c_hi:.4g}] ({level:.0%} CI)"
            f" from {row.n_groups} groups (M = {row.M_min}…{row.M_max}, {row.n_runs} runs);"
            f" the paper code's {row.c_reference} is {inside} the interval;"
            f" reduced χ² = {row.c_chi2_dof:.3g}.",
            f"- Exponent with g fixed at 1 (the headline b): **b = {row.b_g1:.4g}**"
            f" [{row.b_g1_lo:.4g}, {row.b_g1_hi:.4g}]; prediction b = 1.",
        ]
        if np.isfinite(row.b_free):
            lines.append(
                f"- Free form p* = a·M^-b·(ln M)^g: b = {row.b_free:.4g}"
                f" [{row.b_free_lo:.4g}, {row.b_free_hi:.4g}], g = {row.g_free:.4g}"
                f" [{row.g_free_lo:.4g}, {row.g_free_hi:.4g}] (b and g trade off unless M"
                f" spans a wide range).")
        if row.message:
            lines.append(f"- Note: {row.message}")
    return lines


def _collapse_section(result: FitResult, level: float) -> list[str]:
    """Generalized/total per c_eff bin (rows) and group (columns), one table per condition."""
    lines = []
    for condition, table in result.table.groupby("condition", sort=False):
        table = table.assign(
            c_eff_bin=[f"{lo:.3g}–{hi:.3g}" for lo, hi in
                       zip(table["c_eff_bin_lo"], table["c_eff_bin_hi"], strict=True)],
            cell=[f"{k}/{n}" for k, n in zip(table["n_generalized"], table["n"], strict=True)],
            column=[f"M={m}" if g == str(m) else f"{g} (M={m})"
                    for g, m in zip(table["group"], table["M"], strict=True)])
        columns = list(dict.fromkeys(table.sort_values(["M", "group"])["column"]))
        pivot = (table.pivot(index=["bin", "c_eff_bin"], columns="column", values="cell")
                 .reindex(columns=columns).reset_index())
        if condition:
            lines += [f"**{condition}**", ""]
        lines += ["Generalized / runs per c_eff bin:", "", markdown_table(
            pivot, {"c_eff_bin": "c_eff bin"} | {c: c for c in columns}), ""]
    return lines


def _wd_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(b_ci=lambda t: _interval(t, "b", "b_lo", "b_hi"))
    return [markdown_table(table, {
        "condition": "condition", "n_runs": "grokked runs", "n_eta": "η values",
        "b_ci": f"b [{level:.0%} CI]", "b_predicted": "predicted b", "status": "status",
        "message": "note"}), "", "Per weight decay:", "",
        markdown_table(result.detail, {
            "condition": "condition", "eta": "η", "n": "runs", "n_grokked": "grokked",
            "n_never": "never grokked", "t_grok_median": "median t_grok (grokked)"})]


def _lr_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(
        fraction_ci=lambda t: _interval(t, "fraction", "fraction_lo", "fraction_hi"))
    return [markdown_table(table, {
        "condition": "condition", "train_fraction": "train fraction", "lr": "lr", "n": "runs",
        "n_generalized": "generalized", "fraction_ci": f"fraction [{level:.0%} Wilson CI]"})]


def _width_section(result: FitResult, level: float) -> list[str]:
    fits = result.table.assign(slope_ci=lambda t: _interval(t, "slope", "slope_lo", "slope_hi"))
    return [markdown_table(result.detail, {
        "condition": "condition", "n_train": "n_train", "M": "M", "n_runs": "runs",
        "K_min_tried": "smallest K", "K_mem": "K_mem", "K_gen": "K_gen",
        "K_predicted": "2M − 2"}), "", "Power law K_mem ∝ n_train^slope:", "",
        markdown_table(fits, {
            "condition": "condition", "n_points": "points", "slope_ci": f"slope [{level:.0%} CI]",
            "status": "status", "message": "note"})]


SECTIONS = {
    "generalization_boundary": _boundary_section,
    "boundary_law": _law_section,
    "collapse": _collapse_section,
    "wd_speed": _wd_section,
    "lr_effect": _lr_section,
    "memorization_width": _width_section,
}


def _provenance_section(provenance: dict | None, commits: list[str]) -> list[str]:
    lines = ["## Provenance", ""]
    if provenance is None:
        return lines + ["No grokjax metadata in the Parquet files (written by another tool or an"
                        " older grokjax)."]
    for key in ("backend", "device_kind", "device_count", "process_count", "git_commit",
                "created_utc", "scale", "schema_version"):
        if key in provenance:
            lines.append(f"- {key.replace('_', ' ')}: `{provenance[key]}`")
    if commits:
        lines.append(f"- **parts were written by different commits**: {', '.join(commits)}")
    versions = provenance.get("versions") or {}
    if versions:
        lines += ["", markdown_table(pd.DataFrame({"package": list(versions),
                                                   "version": list(versions.values())}),
                                     {"package": "package", "version": "version"})]
    if provenance.get("sweep_toml"):
        lines += ["", "Sweep file as run:", "", "```toml", provenance["sweep_toml"].rstrip(),
                  "```"]
    return lines


def render_report(results_dir: Path, runs: pd.DataFrame, fits: dict[str, FitResult],
                  figures: dict[str, plot.PlotOutcome], provenance: tuple[dict | None, list[str]],
                  base: Path, level: float = 0.95) -> str:
    lines = _overview(results_dir, runs, fits)
    for name, result in fits.items():
        lines += [f"## {TITLES[name]}", ""]
        if not result.usable:
            lines += [f"Not fitted ({result.status}): {result.message}", ""]
            continue
        if result.method:
            lines += [f"Method: {result.method}.", ""]
        lines += SECTIONS[name](result, level) + [""]
        lines += _figure_links(FIGURES.get(name, ()), figures, base) + [""]
    lines += ["## Grokking curves", ""] + _figure_links(["grokking_curves"], figures, base) + [""]
    if figures.get("node_spectra") and figures["node_spectra"].path:
        lines += ["## Hidden-node spectra", "", "Fourier power of each active hidden node's "
                  "weights (features table): a grokked network's nodes each carry one "
                  "frequency; a memorizing network's are spread.", ""]
        lines += _figure_links(["node_spectra"], figures, base) + [""]
    excluded = fit.split_usable(runs)[1]
    if len(excluded):
        lines += ["## Excluded runs", "", markdown_table(
            excluded.head(MAX_EXCLUDED_LISTED), {"run_id": "run_id", "reason": "reason"})]
        if len(excluded) > MAX_EXCLUDED_LISTED:
            lines.append(f"\n…and {len(excluded) - MAX_EXCLUDED_LISTED} more.")
        lines.append("")
    lines += _provenance_section(*provenance)
    return "\n".join(lines) + "\n"
