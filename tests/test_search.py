"""The adaptive boundary search: validated, reproducible, resumable after kill -9, and its runs
go where the boundary is (Z_11 with K=48 generalizes between train fractions 0.6 and 0.75)."""

import dataclasses
import subprocess

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import write_sweep
from test_scale import (
    SUBPROCESS_TIMEOUT,
    assert_same_tables,
    check,
    cli_command,
    kill_when,
    subprocess_env,
)

from grokjax import cli, outdir, plan, rounds, spec, sweep
from grokjax.analysis.boundary import generalization_boundary

SEARCH_SWEEP = """
[sweep]
name = "search"

[fixed]
group = "11"
K = 48
lr = 0.02
weight_decay = 2e-3
steps = 1200
eval_every = 40

[stop]
when = "test_acc >= 0.99"
hold = 80

[search]
field = "train_fraction"
bounds = [0.3, 0.9]
points = 3
seeds = 3
new_points = 2
max_rounds = 3
ci_width = 0.01
"""


def problems(text: str) -> str:
    with pytest.raises(spec.SpecError) as err:
        spec.parse(text)
    return str(err.value)


@pytest.mark.parametrize("change, expected", [
    (('field = "train_fraction"', 'field = "lr"'), "choose one of critical_ratio_delta"),
    (("bounds = [0.3, 0.9]", "bounds = [0.9, 0.3]"), "low < high"),
    (("bounds = [0.3, 0.9]", "bounds = [0.3, 1.5]"), "must lie in (0, 1)"),
    (("ci_width = 0.01", ""), "needs a goal"),
    (("seeds = 3", "seeds = [1, 1]"), "distinct seeds"),
    (("points = 3", "pionts = 3"), "unknown key 'pionts'"),
    (("[fixed]", "[fixed]\nseed = 4"), "must not set it"),
    (("[fixed]", "[fixed]\ntest_size = 0.5"), "must not set it"),
    (('when = "test_acc >= 0.99"', 'when = "test_accuracy >= 0.99"'), "did you mean 'test_acc'"),
    (('when = "test_acc >= 0.99"', 'when = "test_acc >= high"'), "finite number"),
    (("hold = 80", "hold = -1"), "whole number of steps"),
])
def test_bad_search_and_stop_tables_are_reported_before_any_compute(change, expected):
    assert expected in problems(SEARCH_SWEEP.replace(*change))


def test_the_cli_exits_2_for_a_bad_search_and_writes_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path, SEARCH_SWEEP.replace("bounds = [0.3, 0.9]", "bounds = 3"))
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "[search] bounds = 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    return [sweep.run_sweep(spec.parse(SEARCH_SWEEP), out_dir=root / name, progress=False,
                            devices=jax.local_devices()[:2]) for name in ("a", "b")]


def test_a_search_refines_the_boundary_round_by_round(searched):
    runs = outdir.read_table(searched[0].out_dir, "runs")
    assert searched[0].rounds >= 2 and runs["round"].max() == searched[0].rounds
    first = runs[runs["round"] == 1]
    np.testing.assert_allclose(sorted(first["train_fraction"].unique()), [0.3, 0.6, 0.9],
                               atol=1 / 121)  # realised fractions n_train / 121
    # Round 1 brackets the boundary; later values go inside the bracket first, and never past
    # the search's smallest value or a cell where every seed generalized (a partial cell seen
    # later can widen the calibrated interval below the bracket's lower end).
    by_fraction = first.groupby("train_fraction")["generalized"].mean()
    low = by_fraction[by_fraction < 0.5].index.max()
    high = by_fraction[by_fraction >= 0.5].index.min()
    later = runs[runs["round"] > 1]
    assert later[later["round"] == 2]["train_fraction"].between(low, high).all()
    assert later["train_fraction"].between(by_fraction.index.min(), high,
                                            inclusive="neither").all()
    assert (runs.groupby("train_fraction").size() == 3).all()  # every seed at every value
    # The fits read the union unchanged.
    boundary = generalization_boundary(runs).table.iloc[0]
    assert low <= boundary["p_star"] <= high


def test_a_search_is_reproducible(searched):
    assert_same_tables(searched[0].out_dir, searched[1].out_dir)


def test_a_killed_search_resumes_to_the_tables_of_an_uninterrupted_one(searched, tmp_path):
    path = write_sweep(tmp_path, SEARCH_SWEEP, "search.toml")
    out = tmp_path / "killed"
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    command = cli_command("sweep", str(path), "--out", str(out), "--no-progress")
    # Kill once round 2 has begun writing: the search must pick up in the middle of a round.
    kill_when(command, env, lambda: outdir.part_names(out, "runs")
              and (outdir.read_table(out, "runs")["round"] >= 2).any())
    check(subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                         env=env))
    assert_same_tables(out, searched[0].out_dir)


def test_next_round_places_values_at_the_estimate_and_never_repeats_one():
    """A planted round 1: the boundary of condition 0 is open between 0.6 and 0.75."""
    parsed = spec.parse(SEARCH_SWEEP)
    condition = parsed.runs()[0]
    first = [(0, plan.planned_run(dataclasses.replace(condition, train_fraction=f, seed=s)))
             for f in (0.3, 0.6, 0.75, 0.9) for s in parsed.search.seeds]
    table = pd.DataFrame({
        "run_id": [run.run_id for _, run in first], "group": "11", "M": 11,
        "train_fraction": [run.n_train / 121 for _, run in first],
        "generalized": [run.config.train_fraction >= 0.75 for _, run in first],
        "steps_trained": 1200})
    new = rounds.next_round(parsed, [first], table)
    values = sorted({run.config.train_fraction for _, run in new})
    assert len(values) == 2 and all(0.6 < v < 0.75 for v in values)
    boundary = generalization_boundary(table).table.iloc[0]
    assert boundary["status"] == "separated"
    assert boundary["p_star_hi"] - boundary["p_star_lo"] > parsed.search.ci_width
    assert all(index == 0 and run.round == 2 for index, run in new) and len(new) == 2 * 3
    assert rounds.next_round(parsed, [first], table) == new
    # A run-step budget counts the new runs at full length: 12 finished runs of 1200 steps
    # leave room for no new run under 15,000.
    budget = dataclasses.replace(parsed.search, max_run_steps=15_000)
    assert rounds.next_round(dataclasses.replace(parsed, search=budget), [first], table) == []


@pytest.mark.parametrize("goal", ["ci_width = 0.01", "max_runs = 30", "max_run_steps = 9000"])
def test_the_plan_describes_a_search_with_any_one_goal(goal, capsys, tmp_path):
    text = SEARCH_SWEEP.replace("ci_width = 0.01", goal)
    assert cli.main(["plan", str(write_sweep(tmp_path, text))]) == 0
    assert goal.split(" = ")[1] in capsys.readouterr().out
