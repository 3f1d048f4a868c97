"""The report: every prediction tested, each analysis's section with its figures, the analyses
the sweep cannot support, the excluded runs and the provenance, as Markdown text."""

from __future__ import annotations

import pandas as pd

from grokjax.analysis.core import Analysis, FitResult, split_usable
from grokjax.analysis.markdown import interval_column, markdown_table
from grokjax.schema import GENERALIZED_TEST_ACC, GROKKED_TEXT


def law_table(fits: dict[str, FitResult], level: float) -> list[str]:
    """Every prediction the fits tested: measured value with CI, the prediction, the verdict."""
    laws = [result.laws for result in fits.values() if result.usable and len(result.laws)]
    if not laws:
        return ["No prediction of the paper can be tested with this sweep's data (see below for"
                " what each analysis would need).", ""]
    table = pd.concat(laws, ignore_index=True)
    table = table.assign(measured=interval_column(table, "value", "lo", "hi"),
                         predicted=[f"{p:g} ({text})" for p, text in
                                    zip(table["predicted"], table["prediction"], strict=True)])
    return [markdown_table(table, {
        "law": "law", "condition": "condition", "measured": f"measured [{level:.0%} CI]",
        "predicted": "paper's prediction", "verdict": "verdict", "assumes": "assuming",
        "n_runs": "runs"}), ""]


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


def _figure_links(files: dict[str, tuple[str | None, str]]) -> list[str]:
    """An image line per drawn figure (its file beside the report), an italic line saying why
    for each one not drawn."""
    return [f"![{name.replace('_', ' ')}]({file})" if file else
            f"_Figure {name} not drawn: {reason}_" for name, (file, reason) in files.items()]


def render_report(source: str, runs: pd.DataFrame, analyses: tuple[Analysis, ...],
                  fits: dict[str, FitResult], figure_files: dict[str, tuple[str | None, str]],
                  provenance: dict | None, level: float = 0.95) -> str:
    """The report of ``fits`` (every analysis of ``analyses``, in report order) as Markdown:
    ``figure_files`` maps each figure to its file beside the report (or None and the reason it
    was not drawn); ``source`` names where the tables were read."""
    usable, excluded = split_usable(runs)
    sweeps = ", ".join(sorted(map(str, runs["sweep"].dropna().unique()))) if "sweep" in runs else ""
    lines = [f"# grokjax report{': ' + sweeps if sweeps else ''}", "",
             f"{len(runs)} runs read from `{source}`; {len(usable)} usable,"
             f" {len(excluded)} excluded. A run has grokked at the first step with"
             f" {GROKKED_TEXT} and generalized when its final test"
             f" accuracy is ≥ {GENERALIZED_TEST_ACC:g}.", ""]
    if len(excluded):
        kinds = excluded["reason"].str.split(" at step").str[0].value_counts()
        lines += [f"- {reason}: {count}" for reason, count in kinds.items()] + [""]
    lines += ["## Laws tested", ""] + law_table(fits, level)
    unsupported = []
    for analysis in analyses:
        result = fits[analysis.name]
        if not result.usable:
            unsupported.append((analysis.title, result.message if result.status == "unsupported"
                                else f"{result.status}: {result.message}"))
            continue
        files = {name: figure_files[name] for name in analysis.figures}
        lines += [f"## {analysis.title}", ""] + _figure_links(files) + [""]
        if result.message:
            lines += [f"Status: {result.status}. {result.message}", ""]
        if result.method:
            lines += [f"Method: {result.method}.", ""]
        lines += analysis.section(result, level) + [""]
    if unsupported:
        lines += ["## Not supported by this sweep", "",
                  "; ".join(f"**{title}**: {reason}" for title, reason in unsupported) + ".", ""]
    if len(excluded):
        lines += ["## Excluded runs", "", markdown_table(
            excluded, {"run_id": "run_id", "reason": "reason"}), ""]
    lines += _provenance_section(provenance)
    return "\n".join(lines) + "\n"
