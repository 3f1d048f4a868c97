"""The registry of analyses: what each needs, fit_all, the figures and the Markdown report."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from test_fit import boundary_runs, runs_table, synthetic_curves, wd_runs

import grokjax
from grokjax import analysis
from grokjax.analysis.boundary import LAW_C, boundary_law, generalization_boundary
from grokjax.analysis.wd import LAW_ETA_ZERO, LAW_WD_SLOPE

SWEEP_TOML = '[sweep]\nname = "synthetic"\n\n[grid]\nweight_decay = [0.0, 1e-5, 1e-4]\n'


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_registry_names_and_figures_are_unique():
    names = [entry.name for entry in analysis.ANALYSES]
    figures = [name for entry in analysis.ANALYSES for name in entry.figures]
    assert len(set(names)) == len(names) and len(set(figures)) == len(figures)
    for entry in analysis.ANALYSES:  # an analysis builds only on one fitted before it
        assert entry.builds_on is None or names.index(entry.builds_on) < names.index(entry.name)


def test_fit_all_runs_what_the_table_supports_and_says_what_the_rest_need(rng):
    fits = analysis.fit_all(boundary_runs(rng, orders=(23, 41, 71)), n_boot=50)
    assert list(fits) == [entry.name for entry in analysis.ANALYSES]
    for name in ("generalization_boundary", "boundary_law", "collapse"):
        assert fits[name].status == "ok", name
    assert fits["wd_speed"].message == "needs weight_decay to vary, it is 0.0002"
    assert fits["stages"].message == "needs the curves table, written with diagnostics = true"
    assert fits["irrep_scaling"].message == "needs max_irrep_degree to vary, it is 1"
    wd = analysis.fit_all(wd_runs(rng))
    assert wd["wd_speed"].usable and wd["generalization_boundary"].status == "unsupported"
    assert wd["boundary_law"].message == ("needs train_fraction to vary, it is 0.3999 and group"
                                          " to vary, it is 71")


def test_fit_all_on_an_empty_or_diverged_table(rng):
    empty = runs_table(np.array([], dtype=int), 0.2, np.array([], dtype=bool))
    for result in analysis.fit_all(empty).values():
        assert result.status == "unsupported" and "empty" in result.message
    runs = boundary_runs(rng, orders=(23, 41, 71), seeds=4).assign(diverged=True,
                                                                    diverged_step=7)
    fits = analysis.fit_all(runs, n_boot=20)
    assert fits["generalization_boundary"].status == "insufficient"
    assert fits["boundary_law"].message.startswith("needs a generalization_boundary fit")
    assert fits["collapse"].status == "insufficient" and len(fits["collapse"].excluded) == len(runs)


def test_draw_figures_gives_figures_or_reasons(rng, tmp_path):
    runs = wd_runs(rng)
    drawn = analysis.draw_figures(analysis.fit_all(runs, synthetic_curves(runs)))
    assert isinstance(drawn["stages"], Figure) and isinstance(drawn["wd_speed"], Figure)
    assert drawn["phase_diagram"].startswith("generalization_boundary is unsupported: needs")
    assert analysis.png_bytes(drawn["stages"])[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------
# Report


def write_results(directory, runs, curves=None, metadata=None):
    """A results directory laid out like the engine's: runs parts under runs/, curves under
    curves/, the provenance JSON in each file's metadata under b"grokjax"."""
    (directory / "runs").mkdir(parents=True, exist_ok=True)
    for index, rows in enumerate(np.array_split(np.arange(len(runs)), 2)):
        table = pa.Table.from_pandas(runs.iloc[rows], preserve_index=False)
        if metadata is not None:
            table = table.replace_schema_metadata(
                {**table.schema.metadata, b"grokjax": json.dumps(metadata).encode()})
        pq.write_table(table, directory / "runs" / f"runs-b0-0-{index:03d}.parquet")
    if curves is not None:
        (directory / "curves").mkdir()
        curves.to_parquet(directory / "curves" / "curves-b0-0-000.parquet", index=False)
    return directory


def provenance():
    return {"schema_version": 1, "versions": {"grokjax": "0.1.0", "jax": "0.4.35"},
            "backend": "cpu", "git_commit": "abc123", "sweep_toml": SWEEP_TOML}


def test_report_on_a_boundary_sweep(rng, tmp_path):
    runs = boundary_runs(rng, seeds=8)
    directory = write_results(tmp_path / "ratio", runs, metadata=provenance())
    path = Path(grokjax.load(directory).report(n_boot=100))
    assert path == directory / "_report" / "report.md"
    text = path.read_text()
    law = boundary_law(generalization_boundary(runs)).table.iloc[0]
    assert f"**c = {law.c:.4g}** [{law.c_lo:.4g}, {law.c_hi:.4g}]" in text
    assert f"| {LAW_C} | {law.c:.4g} [{law.c_lo:.4g}, {law.c_hi:.4g}] |" in text
    assert "![phase diagram](phase_diagram.png)" in text
    assert (path.parent / "phase_diagram.png").exists()
    assert "```toml\n" + SWEEP_TOML.rstrip() + "\n```" in text
    assert "| jax | 0.4.35 |" in text and "`abc123`" in text
    assert len(pd.read_parquet(directory / "runs")) == len(runs)  # the report breaks no reader


def test_report_on_a_wd_sweep_starts_with_its_laws(rng, tmp_path):
    runs = wd_runs(rng, slope=-0.7, noise=0.05)
    runs.loc[0, ["diverged", "diverged_step"]] = [True, 40]
    directory = write_results(tmp_path / "wd", runs, curves=synthetic_curves(runs))
    report = grokjax.load(directory).report(tmp_path / "out" / "wd.md")
    text = Path(report).read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Laws tested", "## Stages of training: memorization, feature"
                            " emergence, grokking", "## Weight decay and grokking time (t ~ 1/η)"]
    assert f"| {LAW_WD_SLOPE} |" in text and "rejected: CI excludes -1" in text
    assert f"| {LAW_ETA_ZERO} | 0 [0, " in text
    assert "![stages](stages.png)" in text and "![wd speed](wd_speed.png)" in text
    unsupported = text.split("## Not supported by this sweep\n\n")[1].split("\n")[0]
    assert unsupported.startswith("**Hidden-node spectra**: needs the features table")
    assert "**Generalization boundary p*(M)**: needs train_fraction to vary" in unsupported
    assert unsupported.count("**: needs") == 9
    assert "diverged: 1" in text and "run00000 | diverged at step 40" in text
    assert "No grokjax metadata" in text


def test_a_long_table_in_the_report_says_where_the_rest_is():
    from grokjax.analysis.markdown import markdown_table

    frame = pd.DataFrame({"condition": [f"p={i}" for i in range(45)], "n": range(45)})
    text = markdown_table(frame, {"condition": "condition", "n": "runs"}, max_rows=40)
    assert text.count("\n| p=") == 40 and "…and 5 more rows" in text
    assert "Results.fit()" in text and "--where" in text
    assert "more rows" not in markdown_table(frame.head(40), {"n": "runs"}, max_rows=40)
