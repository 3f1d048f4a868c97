"""Markdown of a results directory's analyses: the laws tested, each analysis's section with its
figures, the analyses the sweep cannot support, and provenance.

:func:`grokjax.analyses.write_report` fits, draws and calls :func:`render_report`; the section
renderers here turn one FitResult into Markdown lines. The report folder's name starts with '_'
because Parquet readers skip such names; a plain ``report/`` holding PNG files would break
``pandas.read_parquet("results/<sweep>")``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from grokjax import fit
from grokjax.fit import FitResult

REPORT_DIR = "_report"
MAX_EXCLUDED_LISTED = 50


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


def figure_links(outcomes: dict[str, tuple[Path | None, str]], base: Path) -> list[str]:
    """An image line per drawn figure, an italic line saying why for each one not drawn."""
    lines = []
    for name, (path, reason) in outcomes.items():
        if path:
            link = Path(os.path.relpath(path, base)).as_posix()
            lines.append(f"![{name.replace('_', ' ')}]({link})")
        else:
            lines.append(f"_Figure {name} not drawn: {reason}_")
    return lines


# ---------------------------------------------------------------------------------------------
# The laws tested, and the analyses' sections


def law_table(fits: dict[str, FitResult], level: float) -> list[str]:
    """Every prediction the fits tested: measured value with CI, the prediction, the verdict."""
    laws = [result.laws for result in fits.values() if result.usable and len(result.laws)]
    if not laws:
        return ["No prediction of the paper can be tested with this sweep's data (see below for"
                " what each analysis would need).", ""]
    table = pd.concat(laws, ignore_index=True)
    table = table.assign(measured=_interval(table, "value", "lo", "hi"),
                         predicted=[f"{p:g} ({text})" for p, text in
                                    zip(table["predicted"], table["prediction"], strict=True)])
    return [markdown_table(table, {
        "law": "law", "condition": "condition", "measured": f"measured [{level:.0%} CI]",
        "predicted": "paper's prediction", "verdict": "verdict", "n_runs": "runs"}), ""]


def boundary_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(
        p_star_ci=lambda t: _interval(t, "p_star", "p_star_lo", "p_star_hi"))
    return [markdown_table(table, {
        "condition": "condition", "group": "group", "group_name": "name", "M": "M",
        "n_runs": "runs", "n_p": "p values", "min_seeds": "min seeds/cell",
        "p_star_ci": f"p* [{level:.0%} CI]", "width": "logistic width (log p)",
        "status": "status", "message": "note"})]


def law_section(result: FitResult, level: float) -> list[str]:
    lines = []
    for row in result.table.itertuples(index=False):
        heading = f"**{row.condition}**: " if row.condition else ""
        if row.status != "ok":
            lines += [f"- {heading}{row.status}: {row.message}"]
            continue
        lines += [
            f"- {heading}**c = {row.c:.4g}** [{row.c_lo:.4g}, {row.c_hi:.4g}] ({level:.0%} CI;"
            f" {result.verdict(fit.LAW_C, row.condition)}) from {row.n_groups}"
            f" groups (M = {row.M_min}…{row.M_max}, {row.n_runs} runs); reduced χ² ="
            f" {row.c_chi2_dof:.3g}.",
            f"- Exponent with g fixed at 1 (the headline b): **b = {row.b_g1:.4g}**"
            f" [{row.b_g1_lo:.4g}, {row.b_g1_hi:.4g}]"
            f" ({result.verdict(fit.LAW_B, row.condition)}).",
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


def collapse_section(result: FitResult, level: float) -> list[str]:
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


def wd_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(b_ci=lambda t: _interval(t, "b", "b_lo", "b_hi"))
    per_eta = result.detail.assign(
        fraction_ci=lambda t: _interval(t, "fraction", "fraction_lo", "fraction_hi"))
    return [markdown_table(table, {
        "condition": "condition", "n_runs": "grokked runs (η > 0)", "n_eta": "η values",
        "b_ci": f"b [{level:.0%} CI]", "b_predicted": "predicted b", "status": "status",
        "message": "note"}), "", "Per weight decay:", "",
        markdown_table(per_eta, {
            "condition": "condition", "eta": "η", "n": "runs", "n_grokked": "grokked",
            "fraction_ci": f"fraction grokked [{level:.0%} Wilson CI]",
            "t_grok_median": "median t_grok (grokked)"})]


def lr_section(result: FitResult, level: float) -> list[str]:
    table = result.table.assign(
        fraction_ci=lambda t: _interval(t, "fraction", "fraction_lo", "fraction_hi"))
    return [markdown_table(table, {
        "condition": "condition", "train_fraction": "train fraction", "lr": "lr", "n": "runs",
        "n_generalized": "generalized", "fraction_ci": f"fraction [{level:.0%} Wilson CI]"})]


def width_section(result: FitResult, level: float) -> list[str]:
    fits = result.table.assign(slope_ci=lambda t: _interval(t, "slope", "slope_lo", "slope_hi"))
    return [markdown_table(result.detail, {
        "condition": "condition", "n_train": "n_train", "M": "M", "n_runs": "runs",
        "K_min_tried": "smallest K", "K_mem": "K_mem", "K_gen": "K_gen",
        "K_predicted": "2M − 2"}), "", "Power law K_mem ∝ n_train^slope:", "",
        markdown_table(fits, {
            "condition": "condition", "n_points": "points", "slope_ci": f"slope [{level:.0%} CI]",
            "status": "status", "message": "note"})]


def stages_section(result: FitResult, level: float) -> list[str]:
    columns = {"condition": "condition", "n_runs": "runs"}
    for stage, column in fit.STAGE_STEPS.items():
        columns |= {f"{stage} step": f"median step {stage} ({column})",
                    f"{stage} runs": f"runs {stage}"}
    return ["Median step over seeds at which each stage is reached (— when half the seeds or"
            " more never reach it):", "", markdown_table(result.table, columns)]


def spectra_section(result: FitResult, level: float) -> list[str]:
    return ["Fourier power of each active hidden node's weights (features table): a grokked"
            " network's nodes each carry one frequency; a memorizing network's are spread."]


def irrep_section(result: FitResult, level: float) -> list[str]:
    groups = result.detail.assign(c_ci=lambda t: _interval(t, "c", "c_lo", "c_hi"))
    lines = [markdown_table(groups, {
        "condition": "condition", "group": "group", "M": "M", "d_k": "d_k",
        "c_ci": f"c = p*·M/ln M [{level:.0%} CI]", "c_bound": "c lower bound (never generalized)",
        "contradicts_theorem": "contradicts d_k²", "contradicts_code": "contradicts d_k",
        "status": "boundary status"}), ""]
    for row in result.table.itertuples(index=False):
        heading = f"**{row.condition}**: " if row.condition else ""
        if row.status != "ok":
            lines.append(f"- {heading}{row.status}: {row.message}")
            continue
        lines.append(
            f"- {heading}c ∝ d_k^e with **e = {row.exponent:.3g}** [{row.exponent_lo:.3g},"
            f" {row.exponent_hi:.3g}]"
            f" ({result.verdict(fit.LAW_DK_EXPONENT, row.condition)}) from {row.n_groups}"
            f" groups at {row.n_degrees} degrees"
            f" (reduced χ² {row.chi2_dof:.3g}); fixed forms: χ² = {row.chi2_theorem:.3g} for"
            f" c = {row.c_theorem:.3g}·d_k², χ² = {row.chi2_code:.3g} for"
            f" c = {row.c_code:.3g}·d_k; the data favour **{row.favoured}**.")
    return lines


# ---------------------------------------------------------------------------------------------
# The whole report


def _provenance_section(provenance: dict | None) -> list[str]:
    lines = ["## Provenance", ""]
    if provenance is None:
        return lines + ["No grokjax metadata in the Parquet files (written by another tool or an"
                        " older grokjax)."]
    for key in ("backend", "device_kind", "device_count", "process_count", "git_commit",
                "created_utc", "scale", "schema_version"):
        if key in provenance:
            lines.append(f"- {key.replace('_', ' ')}: `{provenance[key]}`")
    versions = provenance.get("versions") or {}
    if versions:
        lines += ["", markdown_table(pd.DataFrame({"package": list(versions),
                                                   "version": list(versions.values())}),
                                     {"package": "package", "version": "version"})]
    if provenance.get("sweep_toml"):
        lines += ["", "Sweep file as run:", "", "```toml", provenance["sweep_toml"].rstrip(),
                  "```"]
    return lines


def render_report(results_dir: Path, runs: pd.DataFrame, sections: list[tuple],
                  unsupported: list[tuple[str, str]], fits: dict[str, FitResult],
                  provenance: dict | None, base: Path, level: float = 0.95) -> str:
    """``sections``: (title, FitResult, Markdown renderer, figure outcomes) per analysis the
    data support, in report order; ``unsupported``: (title, what it would need)."""
    usable, excluded = fit.split_usable(runs)
    sweeps = ", ".join(sorted(map(str, runs["sweep"].dropna().unique()))) if "sweep" in runs else ""
    lines = [f"# grokjax report{': ' + sweeps if sweeps else ''}", "",
             f"{len(runs)} runs read from `{results_dir}`; {len(usable)} usable,"
             f" {len(excluded)} excluded. A run has grokked at the first step with"
             f" {fit.GROKKED_TEXT} and generalized when its final test"
             f" accuracy is ≥ 0.99.", ""]
    if len(excluded):
        kinds = excluded["reason"].str.split(" at step").str[0].value_counts()
        lines += [f"- {reason}: {count}" for reason, count in kinds.items()] + [""]
    lines += ["## Laws tested", ""] + law_table(fits, level)
    for title, result, render, outcomes in sections:
        lines += [f"## {title}", ""] + figure_links(outcomes, base) + [""]
        if result.message:
            lines += [f"Status: {result.status}. {result.message}", ""]
        if result.method:
            lines += [f"Method: {result.method}.", ""]
        lines += render(result, level) + [""]
    if unsupported:
        lines += ["## Not supported by this sweep", "",
                  "; ".join(f"**{title}**: {reason}" for title, reason in unsupported) + ".", ""]
    if len(excluded):
        lines += ["## Excluded runs", "", markdown_table(
            excluded.head(MAX_EXCLUDED_LISTED), {"run_id": "run_id", "reason": "reason"})]
        if len(excluded) > MAX_EXCLUDED_LISTED:
            lines.append(f"\n…and {len(excluded) - MAX_EXCLUDED_LISTED} more.")
        lines.append("")
    lines += _provenance_section(provenance)
    return "\n".join(lines) + "\n"
