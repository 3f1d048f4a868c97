"""The engine end to end: tables equal single runs, any device count, resume, refusals."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import TINY_SWEEP
from jax.sharding import Mesh

from grokjax import dataset, engine, groups, outdir, plan, schema, spec, sweep
from grokjax.train import HParams, Task, make_train, split_for


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "tiny"
    sweep_spec = spec.parse(TINY_SWEEP)
    report = sweep.run_sweep(sweep_spec, out_dir=out, progress=False)
    return sweep_spec, report


def without_timing(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.drop(columns=["wall_seconds"]).sort_values("run_id").reset_index(drop=True)


def test_one_runs_row_per_grid_point_with_documented_dtypes(tiny):
    sweep_spec, report = tiny
    runs = pd.read_parquet(report.out_dir / "runs")
    assert len(runs) == len(sweep_spec.runs()) == 9
    assert runs["run_id"].is_unique
    expected = {name: pd.api.types.pandas_dtype(dtype)
                for name, dtype in schema.RUNS_DTYPES.items()}
    assert dict(runs.dtypes) == expected
    curves = outdir.read_table(report.out_dir, "curves")
    assert dict(curves.dtypes) == {name: pd.api.types.pandas_dtype(dtype)
                                   for name, dtype in schema.CURVES_DTYPES.items()}
    assert len(curves) == 9 * (40 // 5 + 1)
    assert set(curves["step"]) == set(range(0, 41, 5))
    assert runs["stopped_step"].isna().all() and (runs["steps_trained"] == 40).all()
    meta = outdir.read_metadata(report.out_dir)
    assert meta["sweep_toml"] == TINY_SWEEP
    assert {"jax", "jaxlib", "optax", "grokjax"} <= set(meta["versions"])
    assert meta["backend"] == "cpu" and meta["device_kind"]
    manifest = json.loads((Path(report.out_dir) / outdir.MANIFEST_FILE).read_text())
    assert manifest["run_steps_planned"] == manifest["run_steps_executed"] == 9 * 40
    assert manifest["runs"] == 9 and manifest["rounds"] == 1


def test_table_rows_equal_the_run_trained_alone(tiny):
    _, report = tiny
    runs = outdir.read_table(report.out_dir, "runs")
    curves = outdir.read_table(report.out_dir, "curves")
    row = runs[(runs["weight_decay"] == 1e-2) & (runs["seed"] == 2)].iloc[0]
    bucket = plan.plan_runs(spec.parse(TINY_SWEEP))[0]
    table = dataset.operation_table(groups.parse_group("7"), 2)
    train_idx, _ = dataset.split(49, 0.4, 2)
    hp = HParams(*(jnp.float32(v) for v in (0.01, 1e-2, 0.0, 1.0, 1.0, 0.0)))
    alone = jax.jit(make_train(bucket.static).train)(
        hp, split_for(table, train_idx, len(train_idx)), jax.random.PRNGKey(2),
        Task(*map(jnp.asarray, table)))
    mine = curves[curves["run_id"] == row["run_id"]].sort_values("step")
    np.testing.assert_allclose(mine["test_loss"], alone.metrics["test_loss"], rtol=2e-6)
    np.testing.assert_allclose(mine["train_acc"], alone.metrics["train_acc"], atol=1e-6)
    assert row["n_train"] == len(train_idx) == 29
    assert row["final_test_loss"] == mine["test_loss"].iloc[-1]


def test_rerun_skips_finished_runs_and_a_changed_stop_rule_is_refused(tiny, tmp_path):
    sweep_spec, report = tiny
    again = sweep.run_sweep(sweep_spec, out_dir=report.out_dir, progress=False)
    assert again.runs_trained == 0 and again.runs_skipped == 9
    # The same run ids would mean other numbers: not reusable (a changed grid is, test_growth).
    stopped = spec.parse(TINY_SWEEP + '\n[stop]\nwhen = "train_acc >= 1.0"\n')
    with pytest.raises(spec.SpecError, match="stop rule 'none'.*--overwrite"):
        sweep.run_sweep(stopped, out_dir=report.out_dir, progress=False)
    assert outdir.read_plan(Path(report.out_dir))["identity"] == plan.identity(
        sweep_spec, [plan.planned_run(run) for run in sweep_spec.runs()])


def test_a_run_larger_than_the_memory_budget_is_refused_before_anything_is_written(tmp_path):
    sweep_spec = spec.parse(TINY_SWEEP)
    needed = plan.bytes_per_run(plan.plan_runs(sweep_spec)[0])
    with pytest.raises(spec.SpecError, match=r"MiB per run.*--memory-budget \d+MiB"):
        sweep.run_sweep(sweep_spec, out_dir=tmp_path / "small", progress=False,
                        memory_budget=needed // 2)
    assert not (tmp_path / "small").exists()


STOP_SWEEP = TINY_SWEEP.replace("steps = 40\neval_every = 5", "steps = 400\neval_every = 10") + \
    '\n[stop]\nwhen = "train_acc >= 1.0"\nhold = 30\n'


def _curves_by_run(out_dir) -> dict[str, pd.DataFrame]:
    curves = outdir.read_table(out_dir, "curves").sort_values(["run_id", "step"])
    return {run_id: frame.reset_index(drop=True) for run_id, frame in curves.groupby("run_id")}


def test_a_stop_rule_ends_runs_at_the_step_it_is_met(tmp_path):
    stopped = sweep.run_sweep(spec.parse(STOP_SWEEP), out_dir=tmp_path / "stop", progress=False,
                              devices=jax.local_devices()[:2])
    full = sweep.run_sweep(spec.parse(STOP_SWEEP.split("[stop]")[0]), out_dir=tmp_path / "full",
                           progress=False, devices=jax.local_devices()[:2])
    runs = outdir.read_table(stopped.out_dir, "runs").set_index("run_id")
    assert runs["stopped_step"].notna().sum() >= 6  # most runs memorize well before step 400
    short, long = _curves_by_run(stopped.out_dir), _curves_by_run(full.out_dir)
    for run_id, row in runs.iterrows():
        mine = short[run_id]
        end = row["stopped_step"] if pd.notna(row["stopped_step"]) else 400
        assert mine["step"].iloc[-1] == end == row["steps_trained"]
        # The stop rule held at every evaluation over the last `hold` steps, and the run is the
        # uninterrupted run up to there, bitwise.
        assert (mine.loc[mine["step"] >= end - 30, "train_acc"] >= 1.0).all() or end == 400
        pd.testing.assert_frame_equal(mine, long[run_id].iloc[:len(mine)], check_exact=True)
        assert row["final_train_loss"] == mine["train_loss"].iloc[-1]
    manifest = json.loads((Path(stopped.out_dir) / outdir.MANIFEST_FILE).read_text())
    assert manifest["run_steps_executed"] == runs["steps_trained"].sum() < \
        manifest["run_steps_planned"] == 9 * 400
    assert manifest["runs_stopped_early"] == runs["stopped_step"].notna().sum()


def test_stopped_and_refilled_runs_equal_the_same_runs_alone_bitwise(tmp_path):
    """9 runs stream through 2 slots (one per device) while others stop early; each equals the
    sweep of that run alone, whatever slot it landed in and whatever ran beside it."""
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        grid = sweep.run_sweep(spec.parse(STOP_SWEEP), out_dir=tmp_path / "grid", progress=False,
                               devices=jax.local_devices()[:2])
        programs = len(compiles)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    # One bucket: its empty state and its segment, compiled once while 9 runs refill 2 slots.
    assert programs == 2, compiles
    runs = outdir.read_table(grid.out_dir, "runs").set_index("run_id")
    curves = _curves_by_run(grid.out_dir)
    for wd, seed in ((0.0, 0), (1e-2, 2), (1e-3, 1)):
        alone_text = STOP_SWEEP.replace("weight_decay = [0.0, 1e-3, 1e-2]",
                                        f"weight_decay = [{wd}]").replace(
            "seed = [0, 1, 2]", f"seed = [{seed}]")
        alone = sweep.run_sweep(spec.parse(alone_text), out_dir=tmp_path / f"alone{wd}{seed}",
                                progress=False, devices=jax.local_devices()[:1])
        [(run_id, mine)] = _curves_by_run(alone.out_dir).items()
        pd.testing.assert_frame_equal(mine, curves[run_id], check_exact=True)
        row = outdir.read_table(alone.out_dir, "runs").iloc[0]
        assert row["stopped_step"] is pd.NA and pd.isna(runs.loc[run_id, "stopped_step"]) or \
            row["stopped_step"] == runs.loc[run_id, "stopped_step"]


def test_diagnostics_add_curves_features_and_stage_summaries(tmp_path):
    text = TINY_SWEEP.replace("lr = 0.01", "lr = 0.01\ndiagnostics = true")
    report = sweep.run_sweep(spec.parse(text), out_dir=tmp_path / "diag", progress=False)
    runs = outdir.read_table(report.out_dir, "runs")
    curves = outdir.read_table(report.out_dir, "curves")
    features = outdir.read_table(report.out_dir, "features")
    assert {"dF_norm", "G_F_norm", "FtF_off_diag_ratio", "dW_cos_dist",
            "frequency_dominated_fraction", "frequency_dominated_all",
            "frequency_dominated_energy"} <= set(curves.columns)
    assert len(features) == len(runs) * 16  # K = 16 nodes per run
    assert set(features["dominant_frequency"]) <= set(range(1, 4))  # Z_7: frequencies 1..3
    assert {"step_G_F_peak", "step_features_emerged", "frequencies_covered"} <= set(runs.columns)
    assert dict(runs.dtypes) == {name: pd.api.types.pandas_dtype(dtype) for name, dtype in (
        schema.RUNS_DTYPES | schema.DIAGNOSTIC_SUMMARY_DTYPES).items()}
    assert runs["frequencies_covered"].between(0, 3).all()
    plain = outdir.read_table(sweep.run_sweep(spec.parse(TINY_SWEEP), out_dir=tmp_path / "plain",
                                              progress=False).out_dir, "runs")
    # The diagnostics observe the same trajectories (run ids differ by the diagnostics flag).
    np.testing.assert_array_equal(np.sort(runs["final_test_loss"]),
                                  np.sort(plain["final_test_loss"]))


FAMILY_SWEEP = """
[fixed]
K = 24
lr = 0.02
weight_decay = 1e-3
test_size = 0.3
steps = 30
eval_every = 10
seed = 1

[[grid]]  # one group of every family `grokjax list` offers, and an expression table
group = ["7", "2x3", "mul7", "dihedral8", "dicyclic8", "semidirect:7:3:2", "S3", "A4",
         "expr:x**2+x*y+y**2 mod 7"]

[[grid]]  # three operands: a+b+c mod 5
group = ["5"]
num_ops = [3]
"""


def test_every_group_family_and_three_operands_train(tmp_path):
    report = sweep.run_sweep(spec.parse(FAMILY_SWEEP), out_dir=tmp_path / "families",
                             progress=False)
    runs = outdir.read_table(report.out_dir, "runs").set_index("group")
    assert len(runs) == 10
    assert np.isfinite(runs["final_train_loss"]).all()
    assert not runs["diverged"].any()
    # Training reduced the loss from its initial value in every task.
    curves = outdir.read_table(report.out_dir, "curves")
    first = curves[curves["step"] == 0].set_index("run_id")["train_loss"]
    last = curves[curves["step"] == 30].set_index("run_id")["train_loss"]
    assert (last < first).all()
    assert runs.loc["S3", "max_irrep_degree"] == 2 and runs.loc["A4", "M"] == 12
    assert runs.loc["5", "n_train"] + runs.loc["5", "n_test"] == 125
    assert runs.loc["expr:x**2+x*y+y**2 mod 7", "max_irrep_degree"] == 0


VMAPPED = engine.Layout(runs_per_batch=None, onehot=False)  # a GPU's layout, forced on CPU


def count_compiles():
    """A list that grows by one per backend compilation, and its listener (the caller
    unregisters it)."""
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    return compiles, listener


def test_vmapped_slots_are_compiled_at_the_count_that_runs_and_fit_the_budget():
    """The slots of a vmapping device (GPU, TPU; forced here on CPU): the whole share is
    compiled first and kept when XLA's figure fits; a smaller budget gives the count that the
    too-large program's own bytes per slot allow, compiled and checked in its turn; every
    (shape, slots) compiles once (empty state + segment), however often it is asked for."""
    bucket = plan.plan_runs(spec.parse(TINY_SWEEP))[0]
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("runs",))
    programs = {}
    jax.random.PRNGKey(0)  # the slots' key derivation, compiled once per process
    compiles, listener = count_compiles()
    try:
        assert engine.size_slots(bucket, 9, mesh, programs, 2**40, VMAPPED) == \
            (9, programs[engine.program_key(bucket, 9, VMAPPED)].memory_bytes)
        assert len(compiles) == 2
        nine = programs[engine.program_key(bucket, 9, VMAPPED)].memory_bytes
        assert nine < 9 * plan.bytes_per_run(bucket)  # the hand formula is conservative
        per_device, memory = engine.size_slots(bucket, 9, mesh, programs, nine - 1, VMAPPED)
        assert per_device == 8 and memory <= nine - 1 and len(compiles) == 4
        finished = []
        engine.train_bucket(bucket, list(bucket.runs), per_device, mesh, finished.extend,
                            programs, lambda seconds: None, VMAPPED)
        engine.train_bucket(bucket, list(bucket.runs[:3]), per_device, mesh, finished.extend,
                            programs, lambda seconds: None, VMAPPED)
        assert len(compiles) == 4
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(finished) == 12 and all(f.curves["step"][-1] == 40 for f in finished)
    with pytest.raises(spec.SpecError, match="for one run per device, more than the memory"):
        engine.size_slots(bucket, 9, mesh, programs, 1000, VMAPPED)
    # The plan, printed before anything compiles, leaves vmapped slots to the compiler.
    text = plan.describe(spec.parse(TINY_SWEEP), [bucket], 2**30, 1, loops_over_runs=False)
    assert re.search(rf"{bucket.id} +7 +9 +xla ", text) and "at the count that will run" in text


def test_a_count_the_compiler_refuses_is_scaled_down_by_the_bytes_it_names(monkeypatch):
    """A TPU's compiler refuses a program its HBM cannot hold and names the temporaries it
    needed; the next count is what those bytes (plus the arguments) per slot allow."""
    bucket = plan.plan_runs(spec.parse(TINY_SWEEP))[0]
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("runs",))
    compile_program, tried = engine.compile_program, []

    def refuse_above_four(static, args, mesh, layout):
        tried.append(len(args[2]))  # the keys: one per slot
        if len(args[2]) > 4:
            raise RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory "
                               "required for HLO temporaries (1.50G) exceeds available HBM "
                               "(1.00G).")
        return compile_program(static, args, mesh, layout)

    monkeypatch.setattr(engine, "compile_program", refuse_above_four)
    per_device, memory = engine.size_slots(bucket, 9, mesh, {}, 2**30, VMAPPED)
    assert tried == [9, 5, 3] and per_device == 3 and memory <= 2**30
