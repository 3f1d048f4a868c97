"""Sweep files: every bad input is a clear error before compute; the CLI exits 2, writes nothing."""

import numpy as np
import pytest
from helpers import TINY_SWEEP, write_sweep

from grokjax import api, cli, config, outdir, spec, sweep
from grokjax.toml_writer import to_toml


def problems(text: str) -> str:
    with pytest.raises(spec.SpecError) as err:
        spec.parse(text)
    return str(err.value)


def test_grid_is_the_cartesian_product_over_fixed_fields():
    sweep_spec = spec.parse(TINY_SWEEP)
    runs = sweep_spec.runs()
    assert len(runs) == 9
    assert {(r.weight_decay, r.seed) for r in runs} == {
        (wd, s) for wd in (0.0, 1e-3, 1e-2) for s in (0, 1, 2)}
    assert all(r.group == "7" and r.K == 16 and r.steps == 40 for r in runs)


def test_unknown_key_names_the_closest_valid_key():
    message = problems(TINY_SWEEP.replace("lr = 0.01", "learning_rat = 0.01"))
    assert "unknown key 'learning_rat'" in message
    message = problems(TINY_SWEEP.replace("steps = 40", "stesp = 40"))
    assert "did you mean 'steps'" in message


@pytest.mark.parametrize("line, expected", [
    ('group = "1"', "order >= 2"),
    ('group = "banana"', "unknown group"),
    ("test_size = 1.5", "test_size = 1.5 must be in (0, 1)"),
    ("test_size = 0.0", "must be in (0, 1)"),
    ("lr = -0.1", "lr = -0.1 must be > 0"),
    ("K = 0", "K = 0 (hidden width) must be in [1, 65536]"),
    ("K = 1_000_000_000", "K = 1000000000 (hidden width) must be in [1, 65536]"),
    ("steps = 20_000_000", "steps = 20000000 must be in [1, 10000000]"),
    ("num_ops = 1000", "num_ops = 1000 must be in [2, 22]"),
    ('group = "100000"', "order 100000 is above the limit 2048"),
    ('group = "64x64x64"', "order 262144 is above the limit 2048"),
    ("ridge_lambda = inf", "ridge_lambda must be a finite number, got inf"),
    ("lr = nan", "lr must be a finite number, got nan"),
    ("seed = -1", "seed = -1 must be in [0, 4294967296)"),
    ('activation = "tanh"', "choose one of sqr, relu, silu, relusqr"),
    ('optimizer = "rmsprop"', "choose one of adam, adamw, sgd, muon"),
    ('loss = "hinge"', "choose one of mse, nll"),
    ("steps = 42", "must be a multiple of eval_every"),
    ('K = "wide"', "K must be an integer"),
])
def test_bad_values_name_the_field_and_what_is_allowed(line, expected):
    key = line.split(" =")[0]
    lines = [row for row in TINY_SWEEP.splitlines() if not row.startswith(f"{key} =")]
    text = "\n".join(lines).replace("[fixed]", f"[fixed]\n{line}")
    assert expected in problems(text)


def test_negative_weight_decay_in_a_grid_is_reported():
    assert "weight_decay = -0.001 must be >= 0" in problems(
        TINY_SWEEP.replace("[0.0, 1e-3, 1e-2]", "[0.0, -1e-3]"))


def test_every_problem_is_reported_at_once():
    text = TINY_SWEEP.replace("lr = 0.01", "lr = -1").replace("K = 16", "K = 0")
    message = problems(text)
    assert "lr = -1" in message and "K = 0" in message


def test_split_forms_are_exclusive_and_critical_ratio_resolves():
    both = TINY_SWEEP.replace("test_size = 0.4", "test_size = 0.4\ntrain_fraction = 0.5")
    assert "set only one of" in problems(both)
    run = spec.parse(TINY_SWEEP.replace("test_size = 0.4", "critical_ratio_delta = 0.5")).runs()[0]
    # train fraction (2.7482 − 0.5)·ln 7 / 7
    assert run.resolved_test_size(7) == pytest.approx(1 - 2.2482 * 1.9459101 / 7, rel=1e-6)


def test_ridge_needs_mse():
    text = TINY_SWEEP.replace("lr = 0.01", 'lr = 0.01\nridge_lambda = 1e-3\nloss = "nll"')
    assert "needs loss = 'mse'" in problems(text)


def test_paper_scale_overrides_fixed_and_grid():
    text = TINY_SWEEP + '\n[scale.paper.fixed]\nK = 64\n[scale.paper.grid]\nseed = [5, 6]\n'
    paper = spec.parse(text, scale="paper")
    assert paper.output_name == "tiny-paper"
    assert {r.K for r in paper.runs()} == {64} and {r.seed for r in paper.runs()} == {5, 6}
    with pytest.raises(spec.SpecError, match="available scales: default, paper"):
        spec.parse(text, scale="huge")


def test_cli_exits_2_and_writes_nothing_for_a_bad_sweep(tmp_path, capsys):
    path = write_sweep(tmp_path, TINY_SWEEP.replace("K = 16", "K = -3"))
    results_root = tmp_path / "results"
    code = cli.main(["sweep", str(path), "--results", str(results_root), "--no-progress"])
    assert code == 2
    assert "K = -3 (hidden width) must be in [1, 65536]" in capsys.readouterr().err
    assert not results_root.exists()


def test_cli_sweep_writes_tables_and_prints_a_summary(tmp_path, capsys):
    path = write_sweep(tmp_path)
    results_root = tmp_path / "results"
    code = cli.main(["sweep", str(path), "--results", str(results_root), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "9 runs in" in out and "weight_decay" in out and "run-steps/s" in out
    assert "generalized_fraction: share of the runs" in out and "grokked_runs: how many" in out
    assert (results_root / "tiny" / "_manifest.json").exists()
    assert cli.main(["summary", str(results_root / "tiny")]) == 0
    assert cli.main(["plan", str(path)]) == 0
    assert cli.main(["fit", str(results_root / "tiny"), "--bootstrap", "50"]) == 0
    assert "wd_speed" in capsys.readouterr().out
    assert cli.main(["report", str(results_root / "tiny"), "--bootstrap", "50"]) == 0
    report = (results_root / "tiny" / "_report" / "report.md").read_text()
    assert "weight decay" in report.lower()
    assert cli.main(["fit", str(tmp_path / "nothing")]) == 2


def test_cli_list_names_every_choice(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for choices in config.CHOICES.values():
        assert all(name in out for name in choices)
    assert "dihedral" in out and "2x3x4" in out


def test_several_grids_pool_their_runs_and_scales_override_each():
    text = TINY_SWEEP.replace("[grid]\nweight_decay = [0.0, 1e-3, 1e-2]\nseed = [0, 1, 2]\n", """
[[grid]]
weight_decay = [0.0, 1e-3]
seed = [0, 1]

[[grid]]
ridge_lambda = [1e-3]
seed = [0]

[scale.more.grid]
seed = [7, 8, 9]
""")
    sweep_spec = spec.parse(text)
    runs = sweep_spec.runs()
    assert len(runs) == 4 + 1
    assert [r.ridge_lambda for r in runs] == [None] * 4 + [1e-3]
    assert sweep_spec.axes == ["weight_decay", "seed", "ridge_lambda"]
    more = spec.parse(text, scale="more").runs()
    assert len(more) == 2 * 3 + 3 and {r.seed for r in more} == {7, 8, 9}


def test_invalid_variant_combinations_are_reported():
    text = TINY_SWEEP.replace("lr = 0.01", 'lr = 0.01\ncomplex_weights = true\nactivation = "relu"')
    assert "complex_weights needs activation = 'sqr'" in problems(text)
    assert "imag_init_scale needs complex_weights" in problems(
        TINY_SWEEP.replace("lr = 0.01", "lr = 0.01\nimag_init_scale = 1.0"))


def test_cli_uses_one_cpu_device_per_core(tmp_path):
    """Without a user-set device count the CLI makes one XLA CPU device per core."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-m", "grokjax.cli", "plan", str(write_sweep(tmp_path))],
        env=env | {"JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"on {len(os.sched_getaffinity(0))} device(s)" in out.stdout


def _with_fixed(line: str) -> str:
    return TINY_SWEEP.replace("[fixed]", f"[fixed]\n{line}")


BAD_SWEEPS = {  # name: (file text or bytes, extra arguments, expected in the error)
    "fixed is a number": ("fixed = 5\n", [], "fixed must be a table, got 5"),
    "sweep is a number": ("sweep = 5\n[fixed]\nK = 8\n", [], "sweep must be a table"),
    "grid of numbers": ("grid = [1, 2]\n", [], "grid must be a non-empty list of tables"),
    "empty grid list": ("grid = []\n", [], "grid must be a non-empty list of tables"),
    "not UTF-8": (b"[fixed]\nK = 8 # \xff\xfe\n", [], "not UTF-8 text"),
    "empty file": ("", [], "nothing to run"),
    "comments only": ("# a sweep\n\n# to come\n", [], "nothing to run"),
    "sweep table only": ('[sweep]\nname = "x"\n', [], "nothing to run"),
    "unknown key in an unselected scale": (
        TINY_SWEEP + "[scale.paper.fixed]\nstesp = 10\n", [], "scale.paper.fixed: unknown key"),
    "bad value in an unselected scale": (
        TINY_SWEEP + "[scale.paper.grid]\nK = [8, -1]\n", [], "K = -1 (hidden width)"),
    "unknown key in a scale": (TINY_SWEEP + "[scale.paper]\nfixd = {}\n", [],
                               "scale.paper: unknown key 'fixd'; did you mean 'fixed'?"),
    "scale is a number": ("scale = 5\n" + TINY_SWEEP, [], "scale must be a table"),
    "scale fixed is a number": (TINY_SWEEP + "[scale.paper]\nfixed = 3\n", [],
                                "scale.paper.fixed must be a table"),
    "infinite ridge_lambda": (_with_fixed("ridge_lambda = inf"), [],
                              "ridge_lambda must be a finite number, got inf"),
    "nan lr": (_with_fixed("lr = nan").replace("lr = 0.01\n", ""), [],
               "lr must be a finite number, got nan"),
    "path in the sweep name": (TINY_SWEEP.replace('"tiny"', '"../x"'), [], "must be letters"),
    "description is a number": (TINY_SWEEP.replace('name = "tiny"', 'name = "tiny"\n'
                                                   'description = 5'), [], "description must"),
    "path as a scale": (TINY_SWEEP, ["--scale", "/../../../escaped"], "must be letters"),
    "path as a scale in the file": (TINY_SWEEP + '[scale."../../escaped".fixed]\nK = 8\n',
                                    ["--scale", "../../escaped"], "must be letters"),
    "too many steps": (TINY_SWEEP.replace("steps = 40", "steps = 20_000_000"), [],
                       "steps = 20000000 must be in [1, 10000000]"),
    "huge width": (TINY_SWEEP.replace("K = 16", "K = 1_000_000_000"), [], "K = 1000000000"),
    "huge cyclic group": (TINY_SWEEP.replace('"7"', '"100000"'), [], "above the limit 2048"),
    "huge table": (_with_fixed("num_ops = 8"), [], "5764801 rows, above the limit 4194304"),
    "huge num_ops": (_with_fixed("num_ops = 1000"), [], "num_ops = 1000 must be in [2, 22]"),
    "0 and 0.0 in one grid": (TINY_SWEEP.replace("[0.0, 1e-3, 1e-2]", "[0, 0.0]"), [],
                              "grid.weight_decay repeats a value"),
    "list in fixed": (TINY_SWEEP.replace("K = 16", "K = [16, 32]"), [],
                      "fixed.K must be a single value"),
    "too long a range": (TINY_SWEEP.replace("[0, 1, 2]", "{range = [0, 10_000_000]}"), [],
                         "has 10000000 values"),
    "float range": (TINY_SWEEP.replace("[0, 1, 2]", "{range = [1.5, 3]}"), [],
                    "range takes integers"),
    "zero step": (TINY_SWEEP.replace("[0, 1, 2]", "{range = [0, 3, 0]}"), [], "step != 0"),
    "logspace from 0": (TINY_SWEEP.replace("[0.0, 1e-3, 1e-2]", "{logspace = [0, 1, 3]}"), [],
                        "logspace takes [low, high, n] with low, high > 0"),
    "unknown range form": (TINY_SWEEP.replace("[0, 1, 2]", "{arange = [0, 3]}"), [],
                           "grid.seed must be a list, {range"),
    "too many runs": (TINY_SWEEP.replace("[0, 1, 2]", "{range = [0, 600_000]}")
                      .replace("[0.0, 1e-3, 1e-2]", "[0.0, 1e-3]"), [], "above the limit 1000000"),
    "unknown key in overrides": (TINY_SWEEP + "[[overrides]]\nKK = 3\n", [],
                                 "overrides[0]: unknown key 'KK'"),
    "--set a non-number": (TINY_SWEEP, ["--set", "K=abc"], "K must be an integer, got 'abc'"),
    "--set an unknown field": (TINY_SWEEP, ["--set", "stesp=4"], "did you mean 'steps'?"),
    "--grid without a value": (TINY_SWEEP, ["--grid", "K"], "--grid takes FIELD=VALUE"),
    "--set with several values": (TINY_SWEEP, ["--set", "weight_decay=1e-4,5e-4"],
                                  "--set weight_decay takes one value; use --grid"),
    "a field given twice": (TINY_SWEEP, ["--set", "K=8", "--grid", "K=8,16"], "given twice"),
    "--grid with a bad value": (TINY_SWEEP, ["--grid", "lr=0.1,-1"], "lr = -1 must be > 0"),
    "a run larger than the memory budget": (
        TINY_SWEEP.replace("K = 16", "K = 65536").replace('"7"', '"97"'), ["--memory-budget",
                                                                           "64MiB"],
        "MiB per run, more than the memory budget"),
    "stop is a number": ("stop = 3\n" + TINY_SWEEP, [], "stop must be a table"),
    "stop without when": (TINY_SWEEP + "[stop]\nhold = 3\n", [], "[stop] needs when"),
    "stop on an unknown metric": (TINY_SWEEP + '[stop]\nwhen = "acc >= 1"\n', [],
                                  "unknown metric 'acc'"),
    "stop with a bad hold": (TINY_SWEEP + '[stop]\nwhen = "test_acc > 0.9"\nhold = 1.5\n',
                             [], "hold = 1.5 must be a whole number"),
    "search of a field the grid sets": (
        TINY_SWEEP + '[search]\nfield = "test_size"\nbounds = [0.1, 0.9]\nmax_runs = 9\n', [],
        "choose one of critical_ratio_delta, train_fraction"),
    "search while the grid sets seeds": (
        TINY_SWEEP.replace("test_size = 0.4\n", "") + '[search]\nfield = "train_fraction"\n'
        'bounds = [0.1, 0.9]\nmax_runs = 9\n', [], "must not set it"),
    "search bounds leave no test set": (
        TINY_SWEEP.replace("test_size = 0.4\n", "").replace("seed = [0, 1, 2]\n", "")
        + '[search]\nfield = "critical_ratio_delta"\nbounds = [-9.0, 1.0]\nmax_runs = 9\n',
        [], "n_test = 0"),
    "unknown key in a scale's search": (TINY_SWEEP + "[scale.paper.search]\npionts = 3\n", [],
                                        "scale.paper.search: unknown key 'pionts'"),
    "a results path under a file": (TINY_SWEEP, ["--out", "/etc/hostname/sub"],
                                    "cannot write to"),
    "a scale that does not exist": (TINY_SWEEP, ["--scale", "paper"], "available scales"),
}


@pytest.mark.parametrize("name", list(BAD_SWEEPS))
def test_cli_bad_input_is_one_error_exit_2_and_nothing_written(tmp_path, capsys, name):
    content, extra, expected = BAD_SWEEPS[name]
    path = tmp_path / "bad.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    results_root = tmp_path / "results"
    code = cli.main(["sweep", str(path), "--results", str(results_root), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and expected in err, err
    assert not results_root.exists()


def test_cli_version_and_summary_of_a_missing_or_foreign_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("grokjax ")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    for directory, said in ((tmp_path / "nonexistent", "does not exist"),
                            (tmp_path / "other", "holds no grokjax sweep results")):
        assert cli.main(["summary", str(directory)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1


def test_duplicate_runs_across_grids_are_dropped_and_reported(tmp_path, capsys):
    text = TINY_SWEEP.replace("[grid]\nweight_decay = [0.0, 1e-3, 1e-2]\nseed = [0, 1, 2]\n", """
[[grid]]
weight_decay = [0, 1e-3]
seed = [0, 1]

[[grid]]
weight_decay = [0.0]
seed = [1, 2]
""")
    sweep_spec = spec.parse(text)
    assert len(sweep_spec.runs()) == 5 and sweep_spec.duplicate_runs == 1
    assert len({config.run_id(run) for run in sweep_spec.runs()}) == 5
    assert cli.main(["plan", str(write_sweep(tmp_path, text))]) == 0
    captured = capsys.readouterr()
    assert "note: 1 duplicate run(s) dropped" in captured.err and "5 runs" in captured.out


def test_ranges_expand_in_grids():
    text = TINY_SWEEP.replace("[0, 1, 2]", "{range = [1, 21, 5]}").replace(
        "[0.0, 1e-3, 1e-2]", "{logspace = [1e-4, 1e-2, 5]}")
    sweep_spec = spec.parse(text)
    assert sweep_spec.grids[0]["seed"] == [1, 6, 11, 16]
    assert sweep_spec.grids[0]["weight_decay"] == [1e-4, 0.000316227766017, 1e-3,
                                                   0.00316227766017, 1e-2]
    linear = spec.parse(TINY_SWEEP.replace("[0.0, 1e-3, 1e-2]", "{linspace = [0, 0.3, 4]}"))
    assert linear.grids[0]["weight_decay"] == [0.0, 0.1, 0.2, 0.3]


def test_overrides_fix_or_grid_a_field_in_every_grid():
    text = TINY_SWEEP.replace("[grid]\nweight_decay = [0.0, 1e-3, 1e-2]\nseed = [0, 1, 2]\n",
                              "[[grid]]\nK = [8, 16]\nseed = [0]\n[[grid]]\nlr = [0.1]\n")
    text = text.replace("K = 16\n", "")
    overridden = spec.parse(text, overrides={"K": 32, "weight_decay": {"range": [0, 2]},
                                             "seed": [3, 4]})
    assert overridden.fixed["K"] == 32
    assert all(grid["weight_decay"] == [0.0, 1.0] and grid["seed"] == [3, 4] and "K" not in grid
               for grid in overridden.grids)
    assert len(overridden.runs()) == 4 + 4
    # The effective text re-parses to the same sweep and output directory.
    again = spec.parse(overridden.source_text)
    assert again.runs() == overridden.runs() and again.output_name == overridden.output_name
    assert overridden.output_name == "tiny+K-32+weight_decay-range0,2+seed-3,4"
    assert text in overridden.source_text and "[[overrides]]" in overridden.source_text


def test_output_name_of_long_overrides_is_a_hash():
    long = spec.parse(TINY_SWEEP, overrides={"seed": list(range(40))})
    name = long.output_name
    assert name.startswith("tiny+") and len(name) == len("tiny+") + 10 and "=" not in name


def test_cli_overrides_parse_as_toml_scalars():
    assert spec.cli_override("activation=relu", grid=False) == ("activation", "relu")
    assert spec.cli_override("group=23", grid=False) == ("group", "23")
    assert spec.cli_override("K=256", grid=False) == ("K", 256)
    assert spec.cli_override("diagnostics=true", grid=False) == ("diagnostics", True)
    assert spec.cli_override("weight_decay=1e-4,5e-4", grid=True) == (
        "weight_decay", [1e-4, 5e-4])
    assert spec.cli_override("seed=1:21", grid=True) == ("seed", {"range": [1, 21]})
    assert spec.cli_override("seed=1:21:2", grid=True) == ("seed", {"range": [1, 21, 2]})
    assert spec.cli_override("lr={logspace = [1e-4, 1e-2, 3]}", grid=True) == (
        "lr", {"logspace": [1e-4, 1e-2, 3]})
    assert spec.cli_override("activation=sqr,relu", grid=True) == ("activation", ["sqr", "relu"])


def test_from_dict_validates_like_the_file_and_records_the_effective_toml():
    mapping = {"sweep": {"name": "tiny"}, "fixed": {"group": "7", "K": 16, "lr": 0.01,
                                                    "test_size": 0.4, "steps": 40,
                                                    "eval_every": 5},
               "grid": {"weight_decay": [0.0, 1e-3, 1e-2], "seed": [0, 1, 2]},
               "scale": {"paper": {"fixed": {"K": 64}}}}
    from_file = spec.parse(TINY_SWEEP + "[scale.paper.fixed]\nK = 64\n", "paper")
    from_mapping = spec.from_dict(mapping, "paper")
    assert from_mapping.runs() == from_file.runs()
    assert spec.parse(from_mapping.source_text, "paper").runs() == from_file.runs()
    with_overrides = spec.from_dict(mapping, overrides={"seed": {"range": [5, 7]}, "K": 8})
    assert spec.parse(with_overrides.source_text).runs() == with_overrides.runs()
    assert {r.seed for r in with_overrides.runs()} == {5, 6}
    bad = {**mapping, "fixed": {**mapping["fixed"], "stesp": 3, "K": -1}}
    with pytest.raises(spec.SpecError) as from_dict_error:
        spec.from_dict(bad)
    assert from_dict_error.value.problems == problems_of(to_toml(bad))


def problems_of(text: str) -> list[str]:
    with pytest.raises(spec.SpecError) as err:
        spec.parse(text)
    return err.value.problems


def test_cli_sweep_with_overrides_writes_its_own_directory(tmp_path, capsys):
    path = write_sweep(tmp_path)
    results_root = tmp_path / "results"
    code = cli.main(["sweep", str(path), "--results", str(results_root), "--no-progress",
                     "--set", "K=8", "--grid", "seed=1:3", "--grid", "weight_decay=0,1e-3"])
    assert code == 0
    out_dir = results_root / "tiny+K-8+seed-range1,3+weight_decay-0,0.001"
    runs = outdir.read_table(out_dir, "runs")
    assert len(runs) == 4 and set(runs.K) == {8} and set(runs.seed) == {1, 2}
    assert set(runs.sweep) == {out_dir.name}
    recorded = outdir.read_metadata(out_dir)["sweep_toml"]
    assert "[[overrides]]" in recorded and spec.parse(recorded).output_name == out_dir.name
    assert cli.main(["summary", str(out_dir)]) == 0
    assert "4 runs in" in capsys.readouterr().out


def test_numpy_values_tuples_and_ranges_are_the_runs_of_their_python_values():
    plain = spec.parse(TINY_SWEEP, overrides={"K": 64, "seed": {"range": [1, 4]},
                                              "weight_decay": [0.0, 1e-3]})
    given = spec.parse(TINY_SWEEP, overrides={"K": np.int64(64), "seed": range(1, 4),
                                              "weight_decay": np.array([0.0, 1e-3])})
    assert [config.run_id(r) for r in given.runs()] == [config.run_id(r) for r in plain.runs()]
    assert given.output_name == plain.output_name == (
        "tiny+K-64+seed-range1,4+weight_decay-0.0,0.001")
    assert given.source_text == plain.source_text
    mapping = {"sweep": {"name": "np"}, "fixed": {"group": "7", "K": np.int64(16)},
               "grid": {"seed": (0, 1), "lr": np.logspace(-3, -2, 3)}}
    grid = spec.from_dict(mapping).grids[0]
    assert grid["seed"] == [0, 1] and grid["lr"] == [1e-3, 10**-2.5, 1e-2]
    assert all(type(value) is float for value in grid["lr"])
    with pytest.raises(spec.SpecError, match="K must be an integer, got 64.5"):
        spec.parse(TINY_SWEEP, overrides={"K": np.float64(64.5)})


def test_cli_finds_a_sweep_by_name_as_the_api_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(spec.SpecError) as raised:
        api.sweep_spec("tiny")
    assert cli.main(["sweep", "tiny", "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {raised.value}\n"
    (tmp_path / "sweeps").mkdir()
    write_sweep(tmp_path / "sweeps")
    assert cli.main(["sweep", "tiny", "--set", "K=8", "--set", "seed=0", "--set",
                     "weight_decay=0", "--no-progress"]) == 0
    assert (tmp_path / "results" / "tiny+K-8+seed-0+weight_decay-0" / "_manifest.json").exists()
    assert cli.main(["plan", "wd"]) == 0  # the checkout's sweeps/wd.toml
    assert "wd: " in capsys.readouterr().out


def test_ctrl_c_during_a_sweep_is_one_line_exit_130_and_the_rerun_resumes(
        tmp_path, monkeypatch, capsys):
    path = write_sweep(tmp_path)
    flush = sweep.Writer.flush

    def interrupted(writer):  # Ctrl-C once the first runs are on disk
        flush(writer)
        if writer.report.runs_trained:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep.Writer, "flush", interrupted)
    argv = ["sweep", str(path), "--results", str(tmp_path / "results"), "--no-progress"]
    assert cli.main(argv) == 130
    out_dir = tmp_path / "results" / "tiny"
    saved = len(outdir.read_table(out_dir, "runs"))
    assert 0 < saved < 9
    assert capsys.readouterr().err == (f"interrupted: {saved} runs saved in {out_dir}; rerun "
                                       "the same command to resume\n")
    assert outdir.read_json(out_dir / "_process-0.json")["status"] == "interrupted"
    monkeypatch.setattr(sweep.Writer, "flush", flush)
    assert cli.main(argv) == 0
    assert f"skipped (already done) {saved}" in capsys.readouterr().out
