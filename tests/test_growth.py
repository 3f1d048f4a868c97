"""Sweeps that grow and pool: a changed sweep trains only its new runs, keeps the others as an
earlier version, and several directories read (and fit) as the union of their runs."""

import shutil

import pandas as pd
import pytest
from helpers import TINY_SWEEP, write_sweep

import grokjax
from grokjax import cli, outdir, spec, sweep

# TINY_SWEEP's 9 runs, long enough for some to generalize (so the fits have something to fit).
BASE = TINY_SWEEP.replace("steps = 40\neval_every = 5", "steps = 300\neval_every = 10").replace(
    "test_size = 0.4", "test_size = 0.3").replace("lr = 0.01", "lr = 0.03")


def run(out, text=BASE, **options):
    return sweep.run_sweep(spec.parse(text), out_dir=out, progress=False, **options)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [key for key in ("run_id", "step", "node") if key in frame]
    return (frame.drop(columns=["wall_seconds", "sweep"], errors="ignore").sort_values(keys)
            .reset_index(drop=True))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("growth") / "base"
    run(out)
    return out


ANOTHER_GROUP = BASE.replace('group = "7"\n', "").replace("[grid]", '[[grid]]\ngroup = ["7"]') \
    + '\n[[grid]]\ngroup = ["5"]\nweight_decay = [1e-3]\nseed = [0, 1, 2]\n'


@pytest.mark.parametrize("text, new_runs", [
    (BASE.replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 3, 4]"), 6),
    (BASE.replace("weight_decay = [0.0, 1e-3, 1e-2]", "weight_decay = [0.0, 1e-3, 1e-2, 3e-2]"),
     3),
    (ANOTHER_GROUP, 3),
], ids=["two seeds", "a weight decay", "a group"])
def test_a_grown_sweep_trains_exactly_its_new_runs(base, tmp_path, text, new_runs):
    out = tmp_path / "grown"
    shutil.copytree(base, out)
    earlier = outdir.read_plan(out)["identity"]
    report = run(out, text)
    assert (report.runs_trained, report.runs_skipped) == (new_runs, 9)
    res = grokjax.load(out)
    assert len(res.runs) == 9 + new_runs and res.runs["run_id"].is_unique and res.earlier.empty
    assert res.manifest["runs"] == 9 + new_runs and res.manifest["earlier_versions"] == [earlier]
    # The grown directory holds the tables of the whole sweep trained at once, to the bit.
    fresh = grokjax.load(run(tmp_path / "fresh", text).out_dir)
    for table in ("runs", "curves"):
        pd.testing.assert_frame_equal(comparable(getattr(res, table)),
                                      comparable(getattr(fresh, table)), check_exact=True)
    assert run(out, text).runs_trained == 0  # and reruns of it resume as before


def test_a_changed_field_keeps_the_earlier_runs_apart(base, tmp_path):
    out = tmp_path / "changed"
    shutil.copytree(base, out)
    earlier = outdir.read_plan(out)["identity"]
    assert run(out, BASE.replace("K = 16", "K = 8")).runs_trained == 9
    res = grokjax.load(out)
    assert set(res.runs["K"]) == {8} and set(res.earlier["K"]) == {16}
    assert repr(res) == f"Results({str(out)!r}: 9 runs (+9 of earlier versions), 1 round, " \
                        "complete)"
    assert set(res.curves["run_id"]) == set(res.runs["run_id"])
    both = grokjax.load(out, include_earlier=True)
    assert len(both.runs) == 18 and list(both.summary().index.names) == ["K", "weight_decay"]
    assert sorted((out / outdir.VERSIONS_DIR).iterdir()) == [out / outdir.VERSIONS_DIR / earlier]
    # Back to the first version: its runs are all there, nothing trains.
    assert run(out).runs_trained == 0 and set(grokjax.load(out).runs["K"]) == {16}


@pytest.fixture(scope="module")
def halves_and_union(tmp_path_factory):
    """Seeds 0-2 and 3-5 in two directories, and 0-5 in a third."""
    root = tmp_path_factory.mktemp("pool")
    texts = {name: BASE.replace("seed = [0, 1, 2]", f"seed = {seeds}")
             for name, seeds in (("low", "[0, 1, 2]"), ("high", "[3, 4, 5]"),
                                 ("union", "[0, 1, 2, 3, 4, 5]"))}
    return {name: run(root / name, text).out_dir for name, text in texts.items()}


def test_two_directories_pool_into_the_tables_and_fits_of_their_union(halves_and_union):
    low, high, union = (halves_and_union[k] for k in ("low", "high", "union"))
    pooled, whole = grokjax.load([low, high]), grokjax.load(union)
    for table in ("runs", "curves"):
        pd.testing.assert_frame_equal(comparable(getattr(pooled, table)),
                                      comparable(getattr(whole, table)), check_exact=True)
    fits, expected = pooled.fit(n_boot=50), whole.fit(n_boot=50)
    assert [name for name, fit in expected.items() if fit.usable] == ["stages", "wd_speed",
                                                                      "grokking_time"]
    for name, fit in expected.items():
        assert fits[name].status == fit.status and fits[name].message == fit.message
        if fit.usable:
            pd.testing.assert_frame_equal(fits[name].table, fit.table)
    pd.testing.assert_frame_equal(pooled.summary(), whole.summary())
    # A run in both directories is read once.
    assert len(grokjax.load([union, low]).runs) == 18


def test_cli_fit_and_summary_of_two_directories_print_those_of_their_union(
        halves_and_union, capsys):
    low, high, union = (str(halves_and_union[k]) for k in ("low", "high", "union"))
    printed = {}
    for name, dirs, reading in (("pooled", [low, high], "grokjax.load([...]).runs"),
                                ("union", [union], f"pandas.read_parquet('{union}/runs')")):
        assert cli.main(["fit", *dirs, "--bootstrap", "50"]) == 0
        assert cli.main(["summary", *dirs]) == 0
        printed[name] = capsys.readouterr().out.replace(reading, "READ").replace(
            " + ".join(dirs), "DIR")
    assert printed["pooled"] == printed["union"]
    assert "18 runs in DIR  (READ)" in printed["union"]


def test_figures_of_pooled_directories_need_a_place(halves_and_union, tmp_path, capsys):
    dirs = [str(halves_and_union[k]) for k in ("low", "high")]
    assert cli.main(["plot", *dirs, "--bootstrap", "20"]) == 2
    assert "pool 2 directories" in capsys.readouterr().err
    assert cli.main(["plot", *dirs, "--bootstrap", "20", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "stages.png").exists()


def test_the_cli_grows_a_directory_from_an_edited_sweep_file(base, tmp_path, capsys):
    out = tmp_path / "edited"
    shutil.copytree(base, out)
    path = write_sweep(tmp_path, BASE.replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 7]"))
    assert cli.main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    assert "runs trained 3 (0 stopped early), skipped (already done) 9" in capsys.readouterr().out
