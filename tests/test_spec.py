"""Sweep files: every bad input is a clear error before compute; the CLI exits 2, writes nothing."""

import pytest
from helpers import TINY_SWEEP, write_sweep

from grokjax import cli, config, spec


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
