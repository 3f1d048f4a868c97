"""Scale-out on CPU: SIGKILL and resume, two processes, device counts, divergence.

The subprocesses run the real command line (``python -m grokjax.cli``) on a tiny model. On CPU
every device loops over its runs one at a time, so a run's numbers do not depend on what ran
beside it: tables are compared bitwise across kills, processes and device counts.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import pandas as pd
import pytest
from helpers import TINY_SWEEP, write_sweep

import grokjax
from grokjax import cli, coordination, errors, outdir, plan, spec, sweep

# 24 runs of a tiny model; 8000 steps make a run take long enough (~0.3 s) to kill the sweep
# while runs are in flight; the stop rule ends some of them early.
RESUME_SWEEP = TINY_SWEEP.replace('name = "tiny"', 'name = "resume"').replace(
    "steps = 40\neval_every = 5", "steps = 8000\neval_every = 200").replace(
    "seed = [0, 1, 2]", "seed = [0, 1, 2, 3, 4, 5, 6, 7]") + \
    '\n[stop]\nwhen = "train_loss <= 0.001"\nhold = 400\n'

DEVICES = 4  # conftest.py: --xla_force_host_platform_device_count=4
SUBPROCESS_TIMEOUT = 120

def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokjax.cli", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", **extra}


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (f"{proc.args} exited {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.stdout


def tables(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = outdir.read_table(out_dir, "runs").drop(columns="wall_seconds")
    curves = outdir.read_table(out_dir, "curves")
    return (runs.sort_values("run_id").reset_index(drop=True),
            curves.sort_values(["run_id", "step"]).reset_index(drop=True))


def kill_when(command: list[str], env: dict[str, str], ready, poll_seconds: float = 0.01) -> None:
    """Start ``command`` and SIGKILL it as soon as ``ready()`` is true, while it still runs."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not ready() and proc.poll() is None:
        assert time.monotonic() < deadline, f"not ready in {SUBPROCESS_TIMEOUT}s: {command}"
        time.sleep(poll_seconds)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate(timeout=SUBPROCESS_TIMEOUT)[0]
    assert proc.returncode == -signal.SIGKILL, f"it ended before it was killed:\n{output}"


def assert_same_tables(a: Path, b: Path) -> None:
    for mine, theirs in zip(tables(a), tables(b), strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.rglob("*")}


@pytest.fixture(scope="module")
def resume_file(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweeps"), RESUME_SWEEP, "resume.toml")


@pytest.fixture(scope="module")
def uninterrupted(resume_file, tmp_path_factory):
    """The resume sweep run to completion in one go."""
    out = tmp_path_factory.mktemp("results") / "uninterrupted"
    stdout = check(subprocess.run(
        cli_command("sweep", str(resume_file), "--out", str(out), "--no-progress"),
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    return out, stdout


def test_the_plan_is_printed_and_the_manifest_counts_what_the_stop_rule_saved(uninterrupted):
    out, stdout = uninterrupted
    bucket = plan.plan_runs(spec.parse(RESUME_SWEEP))[0]
    assert re.search(rf"{bucket.id} +7 +24 +{DEVICES} ", stdout), stdout  # runs and slots
    assert "stop rule: train_loss <= 0.001, held 400 steps" in stdout
    manifest = json.loads((out / outdir.MANIFEST_FILE).read_text())
    runs = outdir.read_table(out, "runs")
    assert manifest["runs"] == 24 and manifest["run_steps_planned"] == 24 * 8000
    assert manifest["run_steps_executed"] == runs["steps_trained"].sum() < 24 * 8000
    assert manifest["runs_stopped_early"] == runs["stopped_step"].notna().sum() > 0
    assert sorted(manifest["parts"]) == outdir.part_names(out, "runs")


def test_sigkill_then_rerun_gives_the_tables_of_an_uninterrupted_run(resume_file, uninterrupted,
                                                                     tmp_path):
    reference, _ = uninterrupted
    out = tmp_path / "killed"
    command = cli_command("sweep", str(resume_file), "--out", str(out), "--no-progress")
    kill_when(command, subprocess_env(), lambda: outdir.part_names(out, "runs"))
    done_before = len(outdir.read_table(out, "runs"))
    assert 1 <= done_before < 24 and not (out / outdir.MANIFEST_FILE).exists()
    # What a kill in the middle of writing leaves: a curves part without its runs part, and
    # half-written temporaries.
    (out / "curves" / "curves-feedbeef-0-000000000000.parquet").write_bytes(b"half a file")
    (out / outdir.TMP_DIR / "runs-x.parquet.123").write_bytes(b"half a file")

    stdout = check(subprocess.run(command, capture_output=True, text=True,
                                  timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    assert f"runs trained {24 - done_before}" in stdout
    assert f"skipped (already done) {done_before}" in stdout
    assert_same_tables(out, reference)
    runs, curves = tables(out)
    assert runs["run_id"].is_unique and len(runs) == 24
    assert not curves.duplicated(["run_id", "step"]).any()
    assert not (out / outdir.TMP_DIR).exists()  # temporaries removed once the sweep is whole
    assert [p.name for p in (out / outdir.DAMAGED_DIR).iterdir()] == [
        "curves-feedbeef-0-000000000000.parquet"]  # set aside, not deleted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_write_the_tables_of_one(tmp_path):
    """Two jax.distributed processes with 2 CPU devices each, against one process on 2 devices:
    every run executes the same per-device program, so the tables are bitwise equal."""
    text = TINY_SWEEP.replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 3]")
    path = write_sweep(tmp_path, text)
    out, port = tmp_path / "two", free_port()
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen(
        cli_command("sweep", str(path), "--out", str(out), "--no-progress", "--distributed"),
        env=subprocess_env(**flags, GROKJAX_COORDINATOR=f"127.0.0.1:{port}",
                           GROKJAX_NUM_PROCESSES="2", GROKJAX_PROCESS_ID=str(i)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outputs = [proc.communicate(timeout=SUBPROCESS_TIMEOUT) for proc in procs]
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"no result in {SUBPROCESS_TIMEOUT}s: {[p.communicate() for p in procs]}")
    for i, (proc, (stdout, stderr)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"process {i} exited {proc.returncode}\n{stdout}\n{stderr}"
    assert "12 runs in" in outputs[0][0] and "runs in" not in outputs[1][0]

    one = sweep.run_sweep(spec.parse(text), out_dir=tmp_path / "one", progress=False,
                          devices=jax.local_devices()[:2])
    assert_same_tables(out, one.out_dir)
    plans = [(directory / outdir.PLAN_FILE).read_text() for directory in (out, Path(one.out_dir))]
    assert plans[0] == plans[1]
    manifest = json.loads((out / outdir.MANIFEST_FILE).read_text())
    assert sorted(manifest["parts"]) == outdir.part_names(out, "runs")
    assert {name.split("-")[1] for name in manifest["parts"]} == {"0", "1"}
    assert [(p["process"], p["status"], p["runs_trained"]) for p in manifest["processes"]] == [
        (0, "done", 6), (1, "done", 6)]
    assert manifest["provenance"]["process_count"] == 2
    assert all(p["compile_seconds"] and p["run_steps_per_second"] > 0
               for p in manifest["processes"])


@pytest.mark.parametrize("victim, message", [
    (1, "error: process 1 lost (no heartbeat for 5s); rerun all 2 processes, finished runs are "
        "kept"),
    (0, "error: process 0 (the coordinator) lost; rerun all 2 processes, finished runs are kept"),
], ids=["worker", "coordinator"])
def test_a_lost_process_stops_the_others_with_a_message_and_a_rerun_completes(
        resume_file, uninterrupted, tmp_path, victim, message):
    """A process SIGKILLed: the other one says which process was lost and exits 1, instead of
    JAX's abort (within the heartbeat timeout; at once for the coordinator, whose loss JAX
    aborts on, turned into one line by the command's supervising parent); running every
    process again completes the tables."""
    reference, _ = uninterrupted
    out = tmp_path / "lost"

    def start(port: int) -> list[subprocess.Popen]:
        return [subprocess.Popen(
            cli_command("sweep", str(resume_file), "--out", str(out), "--no-progress",
                        "--heartbeat-timeout", "5"),
            env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1",
                               GROKJAX_COORDINATOR=f"127.0.0.1:{port}",
                               GROKJAX_NUM_PROCESSES="2", GROKJAX_PROCESS_ID=str(i)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]

    procs = start(free_port())
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not outdir.part_names(out, "runs") and time.monotonic() < deadline:
        time.sleep(0.05)
    procs[victim].kill()
    survivor = procs[1 - victim]
    _, stderr = survivor.communicate(timeout=SUBPROCESS_TIMEOUT)
    procs[victim].wait()
    assert survivor.returncode == 1, stderr
    assert message in stderr and "Traceback" not in stderr and "stack trace" not in stderr
    again = start(free_port())
    for proc in again:
        stdout, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        assert proc.returncode == 0, f"{stdout}\n{stderr}"
    assert_same_tables(out, reference)


def test_one_device_and_four_devices_agree_bitwise(tmp_path):
    """9 runs through one slot on one device, or four slots on four; every device runs its
    own runs with the same program (shard_map), so not even the last bit differs."""
    tables_by_devices = [
        sweep.run_sweep(spec.parse(TINY_SWEEP), out_dir=tmp_path / str(n), progress=False,
                        devices=jax.local_devices()[:n]).out_dir for n in (1, DEVICES)]
    assert_same_tables(*tables_by_devices)


def test_an_absurd_learning_rate_diverges_alone(tmp_path):
    def run(name: str, lrs: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        text = TINY_SWEEP.replace("lr = 0.01\n", "").replace(
            "weight_decay = [0.0, 1e-3, 1e-2]", f"weight_decay = [1e-3]\nlr = {lrs}")
        report = sweep.run_sweep(spec.parse(text), out_dir=tmp_path / name, progress=False)
        return tables(report.out_dir)

    sane_runs, sane_curves = run("sane", "[0.01, 0.03]")
    runs, curves = run("absurd", "[0.01, 1e30, 0.03]")
    absurd = runs["lr"] == 1e30
    assert absurd.sum() == 3 and runs.loc[absurd, "diverged"].all()
    assert runs.loc[absurd, "diverged_step"].notna().all()
    # Nothing after a divergence is measured: the final metrics are null, not read off NaN
    # outputs, and the run is not "generalized".
    assert runs.loc[absurd, "final_test_acc"].isna().all()
    assert not runs.loc[absurd, "generalized"].any()
    assert not runs.loc[~absurd, "diverged"].any()
    others = runs[~absurd].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, sane_runs, check_exact=True)
    pd.testing.assert_frame_equal(
        curves[curves["run_id"].isin(sane_runs["run_id"])].reset_index(drop=True), sane_curves,
        check_exact=True)


def test_a_changed_sweep_keeps_the_earlier_runs_and_overwrite_sets_them_aside(
        uninterrupted, tmp_path):
    reference, _ = uninterrupted
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    (out / "notes.txt").write_text("mine")  # a user's file beside the results
    earlier = outdir.read_plan(out)["identity"]
    changed = write_sweep(tmp_path, RESUME_SWEEP.replace("lr = 0.01", "lr = 0.02"))
    command = ["sweep", str(changed), "--out", str(out), "--no-progress"]
    assert cli.main(command) == 0
    everything = outdir.read_table(out, "runs")
    assert len(everything) == 48 and set(everything["lr"]) == {0.01, 0.02}
    res = grokjax.load(out)
    assert len(res.runs) == 24 and (res.runs["lr"] == 0.02).all()
    assert len(res.earlier) == 24 and (res.earlier["lr"] == 0.01).all()
    assert len(grokjax.load(out, include_earlier=True).runs) == 48
    assert "lr = 0.01" in (out / outdir.VERSIONS_DIR / earlier / outdir.SWEEP_FILE).read_text()
    assert (out / outdir.VERSIONS_DIR / earlier / outdir.MANIFEST_FILE).exists()
    manifest = json.loads((out / outdir.MANIFEST_FILE).read_text())
    assert manifest["runs"] == 24 and manifest["runs_of_earlier_versions"] == 24
    assert manifest["earlier_versions"] == [earlier]

    parts = sorted(p.name for p in out.rglob("*.parquet"))
    again = write_sweep(tmp_path, RESUME_SWEEP.replace("lr = 0.01", "lr = 0.03"))
    assert cli.main(["sweep", str(again), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert set(outdir.read_table(out, "runs")["lr"]) == {0.03}
    (replaced,) = (out / outdir.REPLACED_DIR).iterdir()  # every earlier part, none deleted
    assert sorted(p.name for p in replaced.rglob("*.parquet")) == parts
    assert (replaced / outdir.VERSIONS_DIR / earlier / outdir.SWEEP_FILE).exists()
    assert outdir.read_plan(out)["earlier"] == []
    assert (out / "notes.txt").read_text() == "mine"


def test_process_zero_explains_why_it_cannot_write_the_manifest(tmp_path):
    wait = dict(out_dir=tmp_path, identity="x", run_ids={"a"}, processes=2, stall_seconds=0.2,
                final=True, start_grace_seconds=0.1, poll_seconds=0.02)

    def status(process: int, state: str) -> None:
        report = coordination.SweepReport(tmp_path, process)
        outdir.write_json(tmp_path, tmp_path / outdir.PROCESS_FILE.format(process),
                          report.stats(state, "boom" if state == "failed" else None))

    status(0, "done")
    with pytest.raises(errors.SweepIncomplete, match=r"process\(es\) \[1\].*do not share"):
        coordination.wait_for_runs(**wait)
    status(1, "running")
    with pytest.raises(errors.SweepIncomplete, match="1 of 1 runs are not in .* nothing new"):
        coordination.wait_for_runs(**wait)
    status(1, "failed")
    with pytest.raises(errors.SweepIncomplete, match="process 1 failed: boom"):
        coordination.wait_for_runs(**wait)
    status(1, "done")
    runs = pd.DataFrame({"run_id": pd.Series(["a"], dtype="string")})
    outdir.write_part(tmp_path, outdir.Part("b-1-0", runs, runs), "x", {})
    assert [s["process"] for s in coordination.wait_for_runs(**wait)] == [0, 1]
