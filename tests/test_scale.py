"""Scale-out on CPU: memory-sized chunks, SIGKILL and resume, two processes, divergence.

The subprocesses run the real command line (``python -m grokjax.cli``) on a tiny model; tables
are compared bitwise wherever both sides run the same per-device program (same device count and
chunk layout).
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

from grokjax import cli, results, spec, sweep

# 24 runs of a tiny model; 8000 steps make a chunk take long enough (~0.5 s) to kill the sweep
# between two chunks.
RESUME_SWEEP = TINY_SWEEP.replace('name = "tiny"', 'name = "resume"').replace(
    "steps = 40\neval_every = 5", "steps = 8000\neval_every = 200").replace(
    "seed = [0, 1, 2]", "seed = [0, 1, 2, 3, 4, 5, 6, 7]")
DEVICES = 4  # conftest.py: --xla_force_host_platform_device_count=4
SUBPROCESS_TIMEOUT = 120
RSS_WRAPPER = ("import resource, sys; from grokjax.cli import main; code = main(sys.argv[1:]); "
               "print('peak RSS KiB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); "
               "sys.exit(code)")


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokjax.cli", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", **extra}


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (f"{proc.args} exited {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.stdout


def one_run_per_device_budget(text: str) -> int:
    return sweep.bytes_per_run(sweep.plan_runs(spec.parse(text))[0])


def tables(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = results.read_runs(out_dir).drop(columns="wall_seconds")
    curves = results.read_curves(out_dir)
    return (runs.sort_values("run_id").reset_index(drop=True),
            curves.sort_values(["run_id", "step"]).reset_index(drop=True))


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
    """The resume sweep run to completion in one go, with its peak RSS."""
    out = tmp_path_factory.mktemp("results") / "uninterrupted"
    budget = one_run_per_device_budget(RESUME_SWEEP)
    proc = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, "sweep", str(resume_file), "--out", str(out),
         "--memory-budget", str(budget), "--no-progress"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env=subprocess_env())
    stdout = check(proc)
    return out, budget, stdout, int(re.search(r"peak RSS KiB (\d+)", stdout).group(1)) * 1024


def test_memory_budget_cuts_the_sweep_into_chunks_and_the_plan_is_printed(uninterrupted):
    out, budget, stdout, peak_rss = uninterrupted
    bucket = sweep.plan_runs(spec.parse(RESUME_SWEEP))[0]
    estimate = len(bucket.runs) * sweep.bytes_per_run(bucket)
    assert estimate >= 4 * budget * DEVICES  # the grid needs at least 4 budgets of all devices
    manifest = json.loads((out / sweep.MANIFEST_FILE).read_text())
    assert len(manifest["chunks"]) == len(list(out.glob("runs-*.parquet"))) == 6
    assert {c["size"] for c in manifest["chunks"]} == {DEVICES}
    assert manifest["memory_budget"] == budget
    assert re.search(rf"{bucket.id} +7 +24 +6 +4 ", stdout), stdout  # the printed chunk plan
    # Reported, not asserted: for a model this small the runtime itself is nearly all of it.
    print(f"\npeak RSS {peak_rss / 2**20:.0f} MiB; estimate {estimate / 2**20:.2f} MiB for "
          f"{len(bucket.runs)} runs; budget {budget / 2**20:.3f} MiB per device")


def test_sigkill_then_rerun_gives_the_tables_of_an_uninterrupted_run(resume_file, uninterrupted,
                                                                     tmp_path):
    reference, budget, _, _ = uninterrupted
    out = tmp_path / "killed"
    command = cli_command("sweep", str(resume_file), "--out", str(out),
                          "--memory-budget", str(budget), "--no-progress")
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not list(out.glob("runs-*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk finished in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate(timeout=SUBPROCESS_TIMEOUT)[0]
    assert proc.returncode == -signal.SIGKILL, f"the sweep ended before it was killed:\n{output}"
    finished = sorted(out.glob("runs-*.parquet"))
    assert 1 <= len(finished) < 6 and not (out / sweep.MANIFEST_FILE).exists()
    # What a kill in the middle of writing leaves: a chunk whose curves part is written but not
    # its runs part, and half-written temporaries.
    finished.pop().unlink()
    for part in (out / "runs-x.parquet", out / results.CURVES_DIR / "curves-x.parquet"):
        results.temporary_path(part).write_bytes(b"half a file")
    done_before = len(finished)

    stdout = check(subprocess.run(command, capture_output=True, text=True,
                                  timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    assert f"chunks run {6 - done_before}, skipped (already done) {done_before}" in stdout
    assert_same_tables(out, reference)
    runs, curves = tables(out)
    assert runs["run_id"].is_unique and len(runs) == 24
    assert not curves.duplicated(["run_id", "step"]).any() and len(curves) == 24 * 41
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries left


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_write_the_tables_of_one(tmp_path):
    """Two jax.distributed processes with 2 CPU devices each, against one process on 2 devices:
    the same chunks run the same per-device program, so the tables are bitwise equal."""
    text = TINY_SWEEP.replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 3]")
    path = write_sweep(tmp_path, text)
    budget = one_run_per_device_budget(text)
    out, port = tmp_path / "two", free_port()
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen(
        cli_command("sweep", str(path), "--out", str(out), "--memory-budget", str(budget),
                    "--no-progress", "--distributed"),
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
                          memory_budget=budget, devices=jax.local_devices()[:2])
    assert_same_tables(out, one.out_dir)
    assert (out / sweep.PLAN_FILE).read_text() == (one.out_dir / sweep.PLAN_FILE).read_text()
    manifest = json.loads((out / sweep.MANIFEST_FILE).read_text())
    assert [c["name"] for c in manifest["chunks"]] == sorted(
        p.name[5:-8] for p in out.glob("runs-*.parquet"))
    assert [(p["process"], p["status"], p["chunks_run"]) for p in manifest["processes"]] == [
        (0, "done", 3), (1, "done", 3)]
    assert manifest["provenance"]["process_count"] == 2
    assert all(p["compile_seconds"] and p["run_steps_per_second"] > 0
               for p in manifest["processes"])


def test_one_device_and_four_devices_agree_bitwise(tmp_path):
    """9 runs: one call of 9 on one device, or of 12 (3 padded) on four; every device runs its
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
    assert not runs.loc[~absurd, "diverged"].any()
    others = runs[~absurd].drop(columns="chunk").reset_index(drop=True)
    pd.testing.assert_frame_equal(others, sane_runs.drop(columns="chunk"), check_exact=True)
    pd.testing.assert_frame_equal(
        curves[curves["run_id"].isin(sane_runs["run_id"])].reset_index(drop=True), sane_curves,
        check_exact=True)


def test_cli_refuses_a_changed_sweep_unless_told_to_overwrite(
        uninterrupted, tmp_path, capsys):
    reference, budget, _, _ = uninterrupted
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = snapshot(out)
    changed = write_sweep(tmp_path, RESUME_SWEEP.replace("lr = 0.01", "lr = 0.02"))
    command = ["sweep", str(changed), "--out", str(out), "--memory-budget", str(budget),
               "--no-progress"]
    assert cli.main(command) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == before
    assert cli.main([*command, "--overwrite"]) == 0
    assert (results.read_runs(out)["lr"] == 0.02).all() and len(results.read_runs(out)) == 24


def test_process_zero_explains_why_it_cannot_write_the_manifest(tmp_path):
    chunks = sweep.plan_chunks(sweep.plan_runs(spec.parse(TINY_SWEEP)), 2**30, DEVICES)
    wait = dict(chunks=chunks, processes=2, stall_seconds=0.2, start_grace_seconds=0.1,
                poll_seconds=0.02)

    def status(process: int, state: str) -> None:
        report = sweep.SweepReport(tmp_path, process)
        results.write_text(tmp_path / sweep.PROCESS_FILE.format(process),
                           json.dumps(report.stats(state, "boom" if state == "failed" else None)))

    status(0, "done")
    with pytest.raises(sweep.SweepIncomplete, match=r"process\(es\) \[1\].*do not share"):
        sweep.wait_for_processes(tmp_path, **wait)
    status(1, "running")
    with pytest.raises(sweep.SweepIncomplete, match="1 of 1 chunks are not in .* nothing new"):
        sweep.wait_for_processes(tmp_path, **wait)
    status(1, "failed")
    with pytest.raises(sweep.SweepIncomplete, match="process 1 failed: boom"):
        sweep.wait_for_processes(tmp_path, **wait)
    status(1, "done")
    (tmp_path / f"runs-{chunks[0].name}.parquet").touch()
    assert [s["process"] for s in sweep.wait_for_processes(tmp_path, **wait)] == [0, 1]
