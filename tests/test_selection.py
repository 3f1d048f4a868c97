"""Choosing what the fits and figures show: ``Results.where`` and ``by=``, and ``grokjax
fit|plot|report|summary --where`` / ``plot|report --by``, on directories of synthetic runs."""

import numpy as np
import pandas as pd
import pytest
from test_analyses import write_results
from test_fit import synthetic_curves, tfwd_runs

import grokjax
from grokjax import cli
from grokjax.errors import SpecError


@pytest.fixture
def tfwd(tmp_path):
    """One group, 6 train fractions × 3 weight decays × 3 seeds, with curves."""
    runs = tfwd_runs(np.random.default_rng(3), seeds=3).assign(round=1)
    return write_results(tmp_path / "tfwd", runs, curves=synthetic_curves(runs))


def test_where_keeps_the_runs_a_pandas_filter_keeps(tfwd):
    res = grokjax.load(tfwd)
    runs = res.runs
    chosen = res.where(weight_decay=[1e-4, 1e-3], train_fraction=0.3)  # 0.3 as asked for
    expected = runs[runs.weight_decay.isin([1e-4, 1e-3]) & (runs.test_size == 0.7)]
    pd.testing.assert_frame_equal(chosen.runs, expected.reset_index(drop=True))
    assert len(chosen.runs) == 6 and set(chosen.curves.run_id) == set(chosen.runs.run_id)
    realised = runs.train_fraction[runs.test_size == 0.7].iloc[0]
    assert chosen.selection == (("weight_decay", (1e-4, 1e-3)), ("train_fraction", (realised,)))
    assert repr(chosen) == (f"Results({str(tfwd)!r} where weight_decay=0.0001,0.001, "
                            f"train_fraction={realised:g}: 6 of 54 runs, 1 round, "
                            "incomplete (no _manifest.json yet))")
    by_text = res.where(weight_decay="0.001").where(seed=range(2), group=71)  # CLI text, ints
    assert len(by_text.runs) == 6 * 2 and set(by_text.runs.seed) == {0, 1}
    assert res.where(train_fraction=realised).runs.equals(res.where(train_fraction=0.3).runs)
    assert res.where(weight_decay=np.float64(1e-3)).summary().runs.sum() == 18
    fits = res.where(weight_decay=1e-3).fit(n_boot=20)
    assert fits["generalization_boundary"].n_runs == 18
    assert fits["wd_speed"].message == "needs weight_decay to vary, it is 0.001"


@pytest.mark.parametrize("values, message", [
    ({"weight_decy": 1e-3}, "where: no field 'weight_decy' in the runs table; did you mean "
                            "'weight_decay'? (fields that vary here: weight_decay, seed, "
                            "train_fraction)"),
    ({"weight_decay": 0.002}, "where: weight_decay=0.002 matches no run; weight_decay takes 0, "
                              "0.0001, 0.001 there"),
    ({"weight_decay": 0, "seed": [1, 7]}, "where: seed=7 matches no run among the runs with "
                                          "weight_decay=0; seed takes 0, 1, 2 there"),
    ({"train_fraction": 0.35}, "where: train_fraction=0.35 matches no run; train_fraction takes"
                               " 0.0999802, 0.14997, 0.19996, 0.29994, 0.449911, 0.600079 there"
                               " (as asked for: 0.1, 0.15, 0.2, 0.3, 0.45, 0.6)"),
    ({"K": "big"}, "where: K='big': K takes an integer"),
    ({"diagnostics": "maybe"}, "where: diagnostics='maybe': diagnostics takes true or false"),
])
def test_where_refuses_what_no_run_has_and_says_what_there_is(tfwd, values, message):
    with pytest.raises(SpecError) as raised:
        grokjax.load(tfwd).where(**values)
    assert str(raised.value) == message


def test_by_chooses_the_colours_and_must_split_the_runs(tfwd):
    res = grokjax.load(tfwd)
    stages = res.figures(by="train_fraction")["stages"]
    legend = [ax for ax in stages.axes if ax.get_legend()][0].get_legend()
    assert legend.get_title().get_text().startswith("train_fraction")
    assert [ax.get_title() for ax in stages.axes if ax.get_title()] == [
        "weight_decay=0", "weight_decay=0.0001", "weight_decay=0.001"]
    for by, message in (("weight_decy", "by: no field 'weight_decy' in the runs table; did you "
                                        "mean 'weight_decay'?"),
                        ("seed", "by: seed is not a condition the figures keep apart"),
                        ("K", "by: K is 512 in every run here")):
        with pytest.raises(SpecError) as raised:
            res.figures(by=by)
        assert str(raised.value).startswith(message)
        assert str(raised.value).endswith("the fields that vary here are: weight_decay, "
                                          "train_fraction")


def test_cli_where_and_by_write_beside_the_sweeps_figures(tfwd, capsys):
    argv = [str(tfwd), "--bootstrap", "20", "--where", "weight_decay=0.0001,0.001"]
    assert cli.main(["plot", *argv, "--by", "train_fraction"]) == 0
    out = tfwd / "_figures" / "weight_decay-0.0001,0.001+by-train_fraction"
    printed = capsys.readouterr().out
    assert f"stages: {out / 'stages.png'}" in printed
    assert f"generalization_map: {out / 'generalization_map.png'}" in printed
    assert "phase_diagram: skipped: one group only (71, M = 71)" in printed
    assert cli.main(["report", *argv]) == 0
    report = (tfwd / "_report" / "weight_decay-0.0001,0.001" / "report.md").read_text()
    assert f"read from `{tfwd} where weight_decay=0.0001,0.001`" in report
    assert cli.main(["summary", str(tfwd), "--where", "train_fraction=0.3"]) == 0
    assert f"9 of 54 runs in {tfwd} where train_fraction=0.29994" in capsys.readouterr().out
    assert cli.main(["fit", *argv]) == 0
    assert capsys.readouterr().out.startswith(f"Results({str(tfwd)!r} where weight_decay")


@pytest.mark.parametrize("argv, message", [
    (["--where", "weight_decay"], "error: --where: --where takes FIELD=VALUE (or FIELD=V1,V2), "
                                  "got 'weight_decay'"),
    (["--where", "seed=1", "--where", "seed=2"], "error: --where: seed is given twice in "
                                                 "--where; give its values as seed=1,2"),
    (["--where", "seed=9"], "error: where: seed=9 matches no run; seed takes 0, 1, 2 there"),
    (["--by", "K"], "error: by: K is 512 in every run here"),
])
def test_cli_bad_where_or_by_is_one_line_exit_2(tfwd, capsys, argv, message):
    assert cli.main(["plot", str(tfwd), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_too_many_conditions_name_the_flags_that_fix_it(tmp_path):
    runs = pd.concat([tfwd_runs(np.random.default_rng(1), seeds=1).assign(lr=lr)
                      for lr in np.geomspace(1e-4, 1e-2, 5)], ignore_index=True)
    runs["run_id"] = [f"run{i:05d}" for i in range(len(runs))]
    res = grokjax.load(write_results(tmp_path / "many", runs, curves=synthetic_curves(runs)))
    saved = res.save_figures(fits=res.fit(n_boot=20), by="lr")
    reason = saved["stages"][1]  # lr as colours leaves 18 panels: 6 fractions × 3 decays
    assert reason.startswith("18 conditions (3 weight_decay × 6 train_fraction) would need one "
                             "panel each (limit 12): choose some with --where FIELD=VALUE")
    assert "or choose the field compared within each panel with --by FIELD" in reason
    assert saved["generalization_map"][1] == ""  # its rows by lr, a panel per weight decay
