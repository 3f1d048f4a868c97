"""Figures and the Markdown report, on the synthetic tables of test_fit.py."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fit import boundary_runs, lr_runs, wd_runs, width_runs

from grokjax import fit, plot, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWEEP_TOML = '[sweep]\nname = "synthetic"\n\n[grid]\nweight_decay = [0.0, 1e-5, 1e-4]\n'


def synthetic_curves(runs: pd.DataFrame, points: int = 40) -> pd.DataFrame:
    """Train accuracy rises by step ~100; test accuracy rises at the run's step_test_acc_095
    (or stays near chance when it never got there)."""
    steps = np.unique(np.geomspace(1, runs["steps"].max(), points).astype(np.int64))
    steps = np.concatenate([[0], steps])
    t_grok = fit.as_float(runs["step_test_acc_095"])
    t_grok = np.where(np.isfinite(t_grok), t_grok, 1e12)[:, None]
    log_step = np.log(np.maximum(steps, 1))[None, :]
    train = 1 / (1 + np.exp(-(log_step - np.log(100)) / 0.3))
    test = 0.05 + 0.95 / (1 + np.exp(-(log_step - np.log(t_grok)) / 0.15))
    shape = (len(runs), len(steps))
    return pd.DataFrame({
        "run_id": np.repeat(runs["run_id"].to_numpy(object), len(steps)),
        "step": np.tile(steps, len(runs)),
        "train_loss": (1 - np.broadcast_to(train, shape)).ravel(),
        "test_loss": (1 - test).ravel(),
        "train_acc": np.broadcast_to(train, shape).ravel(),
        "test_acc": test.ravel(),
    }).astype({"run_id": "string"})


def assert_png(path):
    assert path is not None and path.exists()
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    assert path.stat().st_size > 10_000


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_phase_diagram_and_collapse(rng, tmp_path):
    fits = fit.fit_all(boundary_runs(rng, seeds=8), n_boot=100)
    law = fits["boundary_law"]
    assert_png(plot.plot_phase_diagram(fits["generalization_boundary"], law,
                                       tmp_path / "phase.png"))
    assert_png(plot.plot_collapse(fits["collapse"], tmp_path / "collapse.png", law))


def test_wd_speed_and_grokking_curves(rng, tmp_path):
    runs = wd_runs(rng)
    assert_png(plot.plot_wd_speed(runs, fit.wd_speed(runs), tmp_path / "wd.png"))
    assert_png(plot.plot_grokking_curves(runs, synthetic_curves(runs), tmp_path / "curves.png"))


def test_lr_effect_and_memorization_width(rng, tmp_path):
    assert_png(plot.plot_lr_effect(fit.lr_effect(lr_runs(rng)), tmp_path / "lr.png"))
    assert_png(plot.plot_memorization_width(fit.memorization_width(width_runs(rng)),
                                            tmp_path / "width.png"))


def test_unsupported_data_skip_with_a_reason(rng, tmp_path):
    runs = boundary_runs(rng, orders=(41,), seeds=4)
    fits = fit.fit_all(runs, n_boot=20)
    with pytest.warns(plot.PlotSkipped, match="wd_speed is unsupported: needs weight_decay"):
        assert plot.plot_wd_speed(runs, fits["wd_speed"], tmp_path / "wd.png") is None
    with pytest.warns(plot.PlotSkipped, match="no curves table"):
        assert plot.plot_grokking_curves(runs, None, tmp_path / "curves.png") is None
    everyone = runs.assign(generalized=True)
    boundary = fit.generalization_boundary(everyone, n_boot=20)
    with pytest.warns(plot.PlotSkipped, match="every run generalized"):
        assert plot.plot_phase_diagram(boundary, None, tmp_path / "phase.png") is None
    assert not list(tmp_path.iterdir())


def test_plot_all_reports_what_it_drew_and_why_not(rng, tmp_path):
    runs = wd_runs(rng)
    outcomes = plot.plot_all(runs, synthetic_curves(runs), tmp_path)
    assert_png(outcomes["wd_speed"].path)
    assert_png(outcomes["grokking_curves"].path)
    skipped = {name: o.reason for name, o in outcomes.items() if o.path is None}
    assert set(skipped) == {"phase_diagram", "collapse", "lr_effect", "memorization_width",
                            "node_spectra"}
    assert all(skipped.values())


def test_node_spectra_show_a_grokked_and_a_memorizing_run(tmp_path):
    """Synthetic features: the grokked run's nodes are pure frequencies, the other's flat."""
    order, width = 11, 8
    runs = pd.DataFrame({
        "run_id": ["a", "b"], "generalized": [True, False], "final_train_acc": [1.0, 1.0],
        "final_test_acc": [1.0, 0.1], "weight_decay": [1e-3, 0.0], "seed": [1, 1],
        "final_frequency_dominated_fraction": [1.0, 0.0], "group_name": ["Z_11"] * 2,
        "K": [width] * 2,
    })
    rows = []
    for run_id, pure in (("a", True), ("b", False)):
        for node in range(width):
            power = np.zeros(order // 2 + 1)
            if pure:
                power[node % 5 + 1] = 1.0
            else:
                power[1:] = 1.0
            rows.append({"run_id": run_id, "node": node, "active": True,
                         "dominant_frequency": int(power[1:].argmax()) + 1,
                         "dominant_power_fraction": power[1:].max() / power[1:].sum(),
                         **{f"power_{k:02d}": p for k, p in enumerate(power)}})
    assert_png(plot.plot_node_spectra(runs, pd.DataFrame(rows), tmp_path / "spectra.png"))
    with pytest.warns(plot.PlotSkipped, match="features table"):
        assert plot.plot_node_spectra(runs, None, tmp_path / "none.png") is None


# ---------------------------------------------------------------------------------------------
# Report


def write_results(directory, runs, curves=None, metadata=None):
    """A results directory laid out like the engine's: runs parts under runs/, curves under
    curves/, the provenance JSON in each file's metadata under b"grokjax"."""
    (directory / "runs").mkdir(parents=True, exist_ok=True)
    halves = np.array_split(np.arange(len(runs)), 2)
    for index, rows in enumerate(halves):
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
    path = report.write_report(directory, n_boot=100)
    assert path == directory / "_report" / "report.md"
    text = path.read_text()
    law = fit.boundary_law(fit.generalization_boundary(runs, n_boot=100)).table.iloc[0]
    assert f"**c = {law.c:.4g}** [{law.c_lo:.4g}, {law.c_hi:.4g}]" in text
    assert "b = " in text and "g fixed at 1" in text
    assert "![phase diagram](phase_diagram.png)" in text
    assert (path.parent / "phase_diagram.png").exists()
    assert "```toml\n" + SWEEP_TOML.rstrip() + "\n```" in text
    assert "| jax | 0.4.35 |" in text and "`abc123`" in text
    assert len(pd.read_parquet(directory / "runs")) == len(runs)  # the report breaks no reader


def test_report_on_a_wd_sweep_without_metadata(rng, tmp_path):
    runs = wd_runs(rng)
    runs.loc[0, ["diverged", "diverged_step"]] = [True, 40]
    directory = write_results(tmp_path / "wd", runs, curves=synthetic_curves(runs))
    path = report.write_report(directory, out_path=tmp_path / "out" / "wd.md")
    text = path.read_text()
    assert "No grokjax metadata" in text
    assert "![grokking curves](grokking_curves.png)" in text
    assert "![wd speed](wd_speed.png)" in text
    assert "diverged: 1" in text and "run00000 | diverged at step 40" in text
    assert "Not fitted (unsupported): needs train_fraction to vary" in text
