"""The Python API: grokjax.run and grokjax.load against the command line, and Results."""

from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY_SWEEP, write_sweep
from matplotlib.figure import Figure

import grokjax
from grokjax import analysis, cli, outdir, spec, storage
from grokjax.spec import tomllib  # tomli on Python 3.10
from grokjax.toml_writer import to_toml

TINY = tomllib.loads(TINY_SWEEP)  # the helpers' sweep file as a dict: 9 runs of Z_7
ONE_RUN = {"seed": 0, "weight_decay": 0.0}  # overrides that leave one run of TINY


@pytest.fixture(scope="module")
def python_and_cli(tmp_path_factory):
    """The same sweep, K overridden, run from Python and from the command line."""
    tmp = tmp_path_factory.mktemp("api")
    res = grokjax.run(TINY, K=8, results=tmp / "python", progress=False)
    path = write_sweep(tmp)
    assert cli.main(["sweep", str(path), "--set", "K=8", "--results", str(tmp / "cli"),
                     "--no-progress"]) == 0
    return res, tmp / "cli" / "tiny+K-8"


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["run_id", "step"] if "step" in frame else ["run_id"]
    return (frame.drop(columns="wall_seconds", errors="ignore").sort_values(keys)
            .reset_index(drop=True))


def test_run_from_python_equals_the_same_sweep_from_the_cli(python_and_cli):
    res, cli_dir = python_and_cli
    assert isinstance(res, grokjax.Results) and res.directory.name == cli_dir.name
    assert len(res.runs) == 9 and set(res.runs.K) == {8}
    for table in ("runs", "curves"):
        pd.testing.assert_frame_equal(comparable(getattr(res, table)),
                                      comparable(outdir.read_table(cli_dir, table)),
                                      check_exact=True)


def test_a_bad_dict_gets_the_cli_message_and_nothing_is_written(tmp_path, capsys):
    bad = {**TINY, "fixed": {**TINY["fixed"], "activation": "tanh", "K": -3}}
    path = write_sweep(tmp_path, to_toml(bad), "bad.toml")
    assert cli.main(["sweep", str(path), "--results", str(tmp_path / "cli")]) == 2
    printed = capsys.readouterr().err
    with pytest.raises(spec.SpecError) as raised:
        grokjax.run(bad, results=tmp_path / "python")
    message = str(raised.value)
    assert "2 problem(s)" in message and "activation" in message and "K = -3" in message
    assert printed == f"error: {path}: {message.removeprefix('sweep: ')}\n"
    assert not (tmp_path / "cli").exists() and not (tmp_path / "python").exists()


def test_a_sweep_is_found_by_name_or_path_and_an_unknown_name_says_where_it_looked(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(spec.SpecError, match=r"no sweep named 'tiny': neither sweeps/tiny\.toml"
                                             r" nor .*sweeps/tiny\.toml exists"):
        grokjax.api.sweep_spec("tiny")
    (tmp_path / "sweeps").mkdir()
    write_sweep(tmp_path / "sweeps")
    by_name = grokjax.api.sweep_spec("tiny", overrides={"K": 8})
    assert by_name.runs() == grokjax.api.sweep_spec("sweeps/tiny.toml", overrides={"K": 8}).runs()
    assert by_name.runs() == grokjax.api.sweep_spec(TINY, overrides={"K": 8}).runs()
    assert grokjax.api.sweep_spec("wd").name == "wd"  # the repository's sweeps/


def test_an_override_writes_its_own_directory_and_a_changed_sweep_grows_it(tmp_path):
    first = grokjax.run(TINY, results=tmp_path, progress=False, K=8, **ONE_RUN)
    assert first.directory.name == "tiny+K-8+seed-0+weight_decay-0.0" and len(first.runs) == 1
    other = grokjax.run(TINY, results=tmp_path, progress=False, K=4, **ONE_RUN)
    assert other.directory.name == "tiny+K-4+seed-0+weight_decay-0.0"
    assert first.runs.run_id.tolist() != other.runs.run_id.tolist()
    changed = {**TINY, "fixed": {**TINY["fixed"], "lr": 0.02}}
    grown = grokjax.run(changed, results=tmp_path, progress=False, K=8, **ONE_RUN)
    assert grown.directory == first.directory and set(grown.runs.lr) == {0.02}
    pd.testing.assert_frame_equal(grown.earlier, first.runs)
    again = grokjax.run(changed, results=tmp_path, progress=False, K=8, **ONE_RUN)  # resumes
    pd.testing.assert_frame_equal(again.runs, grown.runs)
    replaced = grokjax.run(TINY, results=tmp_path, progress=False, overwrite=True, K=8,
                           **ONE_RUN)
    assert set(replaced.runs.lr) == {0.01} and replaced.earlier.empty


def test_load_refuses_a_missing_or_foreign_directory_in_one_line(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    for directory, said in ((tmp_path / "nonexistent", "does not exist"),
                            (tmp_path / "other", "holds no grokjax sweep results")):
        with pytest.raises(spec.SpecError) as raised:
            grokjax.load(directory)
        assert said in str(raised.value) and "\n" not in str(raised.value)


def test_results_tables_provenance_fits_and_figures(python_and_cli, tmp_path):
    res, cli_dir = python_and_cli
    loaded = grokjax.load(cli_dir)
    assert repr(loaded) == f"Results({str(cli_dir)!r}: 9 runs, 1 round, complete)"
    assert loaded.features is None and loaded.manifest["runs"] == 9
    assert "[[overrides]]" in res.provenance["sweep_toml"] and res.spec.fixed["K"] == 8
    assert res.varying_columns() == ["weight_decay", "seed"]
    joined = res.curves_with_config()
    assert list(joined.columns) == [*res.curves.columns, "group", "M", "weight_decay", "seed"]
    assert len(joined) == len(res.curves) and joined.weight_decay.notna().all()
    assert list(res.curves_with_config(["lr"]).columns) == [*res.curves.columns, "lr"]
    summary = res.summary()
    assert summary.index.name == "weight_decay" and summary.runs.tolist() == [3, 3, 3]
    # a share and a count side by side, named so that they cannot be mistaken for each other
    assert list(summary.columns) == ["runs", "generalized_fraction", "grokked_runs",
                                     "median_grok_step", "median_final_test_acc",
                                     "diverged_runs"]
    fits = res.fit(n_boot=20)
    assert list(fits) == [entry.name for entry in analysis.ANALYSES]
    assert fits["stages"].usable and fits["lr_effect"].message == "needs lr to vary, it is 0.01"
    figures = res.figures(fits)
    assert "stages" in figures and all(isinstance(f, Figure) for f in figures.values())
    report = res.report(tmp_path / "report.md", n_boot=20)
    assert Path(report) == tmp_path / "report.md" and (tmp_path / "stages.png").exists()
    saved = res.save_figures(fits=fits)
    assert saved["stages"] == (res.directory / "_figures" / "stages.png", "")
    assert saved["collapse"][0] is None and "needs" in saved["collapse"][1]
    assert Path(saved["stages"][0]).read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_on_cloud_storage_from_python(storage_root):
    res = grokjax.run(TINY, results=storage_root, progress=False, K=8, seed=0)
    url = f"{storage_root}/tiny+K-8+seed-0"
    assert str(res.directory) == url
    loaded = grokjax.load(url)
    assert len(loaded.runs) == 3 and loaded.manifest["runs"] == 3
    pd.testing.assert_frame_equal(loaded.runs, res.runs)
    assert set(loaded.curves_with_config().weight_decay) == {0.0, 1e-3, 1e-2}
    report = loaded.report(n_boot=20)  # written beside the tables, in the bucket too
    assert str(report) == f"{url}/_report/report.md" and storage.exists(report)
    assert "![stages](stages.png)" in storage.read_text(report)
    assert storage.exists(f"{url}/_report/stages.png")
