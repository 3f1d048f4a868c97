"""The results-directory protocol: nothing of the user's is deleted, damaged parts are never
trusted, one writer per sweep, and the tables keep one schema (each a regression test)."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import pandas as pd
import pytest
from helpers import TINY_SWEEP, write_sweep

from grokjax import cli, errors, outdir, spec, sweep


def tables(out_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = outdir.read_table(out_dir, "runs").drop(columns="wall_seconds")
    curves = outdir.read_table(out_dir, "curves")
    return (runs.sort_values("run_id").reset_index(drop=True),
            curves.sort_values(["run_id", "step"]).reset_index(drop=True))


def run(out_dir, text=TINY_SWEEP, **options):
    return sweep.run_sweep(spec.parse(text), out_dir=out_dir, progress=False,
                           devices=jax.local_devices()[:2], **options)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return Path(run(tmp_path_factory.mktemp("ref") / "tiny").out_dir)


def everything(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "thesis.txt").write_text("years of work")
    path = write_sweep(tmp_path)
    assert cli.main(["sweep", str(path), "--out", str(mydata), "--overwrite"]) == 2
    assert "not a grokjax sweep directory" in capsys.readouterr().err
    assert everything(mydata) == {"thesis.txt": b"years of work"}


def test_out_dot_in_a_checkout_is_refused_and_nothing_is_touched(tmp_path, monkeypatch, capsys):
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main")
    path = write_sweep(checkout)
    before = everything(checkout)
    monkeypatch.chdir(checkout)
    assert cli.main(["sweep", "tiny.toml", "--out", ".", "--overwrite"]) == 2
    assert everything(checkout) == before and path.exists()


def test_a_file_as_the_results_directory_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("x")
    assert cli.main(["sweep", str(write_sweep(tmp_path)), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "cannot write to" in err and "Traceback" not in err and target.read_text() == "x"


def test_a_zero_memory_budget_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        cli.main(["sweep", str(write_sweep(tmp_path)), "--memory-budget", "0"])
    assert code.value.code == 2 and "not a usable size" in capsys.readouterr().err


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["truncated runs part", "truncated curves part",
                                    "deleted curves part", "part of another sweep"])
def test_damaged_or_foreign_parts_are_set_aside_and_their_runs_trained_again(
        reference, tmp_path, damage):
    out = tmp_path / "tiny"
    run(out)
    name = outdir.part_names(out, "runs")[0]
    foreign = damage == "part of another sweep"
    if damage == "truncated runs part":
        _truncate(outdir.part_path(out, "runs", name))
    elif damage == "truncated curves part":
        _truncate(outdir.part_path(out, "curves", name))
    elif damage == "deleted curves part":
        outdir.part_path(out, "curves", name).unlink()
    else:  # an old sweep's rows under this sweep's plan (e.g. --overwrite raced a live writer)
        other = tmp_path / "other"
        run(other, TINY_SWEEP.replace("lr = 0.01", "lr = 0.02"))
        other_name = outdir.part_names(other, "runs")[0]
        for table in ("runs", "curves"):
            os.replace(outdir.part_path(other, table, other_name),
                       outdir.part_path(out, table, other_name))
    (out / outdir.MANIFEST_FILE).unlink()
    again = run(out)
    # A foreign part's rows are not this sweep's: its own runs are all there already.
    assert again.runs_trained == 0 if foreign else again.runs_trained >= 1
    for mine, theirs in zip(tables(out), tables(reference), strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    assert (out / outdir.DAMAGED_DIR).is_dir() and (out / outdir.MANIFEST_FILE).exists()
    assert (outdir.read_table(out, "runs")["lr"] == 0.01).all()
    assert cli.main(["summary", str(out)]) == 0


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _lease(out, pid, heartbeat=None, process=0, **fields) -> int:
    """Another process's lease on process ``process``'s share, as the latest epoch."""
    scope = f"process-{process}"
    epoch = max(outdir._epochs(out, scope), default=0) + 1
    outdir.write_json(out, out / outdir.LEASES_DIR / scope / f"{epoch:010d}.json", {
        "token": "someone-else", "process": process, "host": platform.node(), "pid": pid,
        "heartbeat": time.time() if heartbeat is None else heartbeat, **fields})
    return epoch


def _released(out, process=0) -> bool:
    scope = f"process-{process}"
    return outdir._holder(out, scope, outdir._epochs(out, scope)[-1])["released"]


def test_a_second_writer_and_an_overwrite_are_refused_while_a_live_process_writes(
        tmp_path, live_process):
    out = tmp_path / "tiny"
    run(out)
    _lease(out, live_process)
    before = everything(out)
    with pytest.raises(errors.DirectoryBusy, match=f"pid {live_process}"):
        run(out)
    with pytest.raises(errors.DirectoryBusy, match="before --overwrite"):
        run(out, TINY_SWEEP.replace("lr = 0.01", "lr = 0.02"), overwrite=True)
    assert everything(out) == before


def test_a_stale_lease_is_taken_over(tmp_path):
    out = tmp_path / "tiny"
    run(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    _lease(out, int(dead))  # the same host, its process gone (kill -9)
    assert run(out).runs_skipped == 9
    _lease(out, os.getpid(), heartbeat=time.time() - 2 * outdir.LEASE_SECONDS, process=0)
    assert run(out).runs_skipped == 9  # another host's lease that stopped beating
    assert _released(out)


def test_a_kill_before_the_plan_is_written_leaves_a_resumable_directory(tmp_path):
    out = tmp_path / "tiny"
    out.mkdir()
    (out / outdir.SWEEP_FILE).write_text(TINY_SWEEP)  # killed between the two writes
    assert run(out).runs_trained == 9
    assert (out / outdir.SWEEP_FILE).read_text() == TINY_SWEEP


def test_the_identity_ignores_memory_budget_and_grid_order(tmp_path):
    out = tmp_path / "tiny"
    run(out)
    reordered = TINY_SWEEP.replace("seed = [0, 1, 2]", "seed = [2, 0, 1]").replace(
        "weight_decay = [0.0, 1e-3, 1e-2]", "weight_decay = [1e-2, 0.0, 1e-3]")
    again = run(out, reordered, memory_budget=2**27)
    assert again.runs_skipped == 9 and again.runs_trained == 0


def test_grids_that_mix_diagnostics_share_one_schema(tmp_path):
    text = TINY_SWEEP.replace("[grid]", "[[grid]]") + (
        "\n[[grid]]\nweight_decay = [1e-3]\nseed = [5]\ndiagnostics = [true]\n")
    out = Path(run(tmp_path / "mixed", text).out_dir)
    runs, curves = outdir.read_table(out, "runs"), outdir.read_table(out, "curves")
    assert len(runs) == 10 and runs["diagnostics"].sum() == 1
    plain = runs[~runs["diagnostics"]]
    assert {"step_G_F_peak", "frequencies_covered"} <= set(runs.columns)
    assert plain["step_G_F_peak"].isna().all()
    assert runs.loc[runs["diagnostics"], "step_G_F_peak"].notna().all()
    assert "G_F_norm" in curves and curves["G_F_norm"].notna().sum() == 9
    for part in outdir.part_names(out, "runs"):  # every part, not only the first read
        assert "G_F_norm" in pd.read_parquet(outdir.part_path(out, "curves", part)).columns


def test_ctrl_c_marks_the_process_interrupted_and_releases_its_lease(tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(outdir, "write_part", interrupt)
    out = tmp_path / "tiny"
    with pytest.raises(KeyboardInterrupt):
        run(out)
    status = json.loads((out / outdir.PROCESS_FILE.format(0)).read_text())
    assert status["status"] == "interrupted"
    assert _released(out)


def test_parts_are_synced_to_disk_before_they_are_renamed(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    outdir.write_bytes(tmp_path, tmp_path / "runs" / "x.parquet", b"data")
    assert len(synced) == 2  # the file, then its directory
    assert (tmp_path / "runs" / "x.parquet").read_bytes() == b"data"
    assert not list((tmp_path / outdir.TMP_DIR).iterdir())


# Faults injected into a finished sweep: every rerun repairs the directory (or refuses it with
# exit 2, writing nothing) and prints no traceback; the tables stay those of the uninterrupted
# sweep.


@pytest.fixture
def finished(reference, tmp_path):
    """A copy of the finished reference sweep, and the command line that reruns it."""
    out = tmp_path / "tiny"
    shutil.copytree(reference, out)
    return out, ["sweep", str(write_sweep(tmp_path)), "--out", str(out), "--no-progress"]


def assert_repaired(out, reference, err):
    assert "Traceback" not in err
    for mine, theirs in zip(tables(out), tables(reference), strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    manifest = json.loads((out / outdir.MANIFEST_FILE).read_text())
    assert sorted(manifest["parts"]) == outdir.part_names(out, "runs")


def test_a_flipped_byte_inside_a_runs_part_is_caught_by_its_digest(finished, reference, capsys):
    out, command = finished
    name = outdir.part_names(out, "runs")[0]
    path = outdir.part_path(out, "runs", name)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10  # inside a column chunk: the footer still reads
    path.write_bytes(bytes(data))
    assert cli.main(command) == 0
    err = capsys.readouterr().err
    assert "does not match the digest in its name" in err
    assert_repaired(out, reference, err)
    assert (out / outdir.DAMAGED_DIR / path.name).exists()


@pytest.mark.parametrize("table", ["curves", "features"])
def test_an_unreadable_part_is_set_aside_and_its_runs_trained_again(tmp_path, monkeypatch,
                                                                    capsys, table):
    text = TINY_SWEEP.replace("[grid]", "diagnostics = true\n\n[grid]")
    command = ["sweep", str(write_sweep(tmp_path, text)), "--out", str(tmp_path / "diag"),
               "--no-progress"]
    assert cli.main(command) == 0
    out = tmp_path / "diag"
    before = tables(out)
    path = outdir.part_path(out, table, outdir.part_names(out, "runs")[0])
    path.chmod(0)  # and, as root reads anyway, refused by the read itself:
    real = outdir.storage.read_bytes

    def read_bytes(where):
        if str(where) == str(path):
            raise PermissionError(13, "Permission denied", str(where))
        return real(where)

    monkeypatch.setattr(outdir.storage, "read_bytes", read_bytes)
    assert cli.main(command) == 0
    err = capsys.readouterr().err
    assert f"its {table} part is unreadable (PermissionError)" in err and "Traceback" not in err
    for mine, theirs in zip(tables(out), before, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    assert (out / outdir.DAMAGED_DIR / path.name).exists()


def test_an_unreadable_status_file_is_a_one_line_error(finished, monkeypatch, capsys):
    out, command = finished
    real = outdir.storage.read_bytes

    def read_bytes(where):
        if str(where).endswith(outdir.PLAN_FILE):
            raise PermissionError(13, "Permission denied", str(where))
        return real(where)

    monkeypatch.setattr(outdir.storage, "read_bytes", read_bytes)
    before = everything(out)
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "fix its permissions" in err and "Traceback" not in err
    assert everything(out) == before


@pytest.mark.parametrize("junk", ["runs-junk.parquet", "runs-0123abcd-0-deadbeef.parquet"])
def test_a_file_named_like_a_part_is_set_aside_at_once(finished, reference, capsys, junk):
    out, command = finished
    (out / "runs" / junk).write_bytes(b"not parquet")
    assert cli.main(command) == 0
    err = capsys.readouterr().err
    assert_repaired(out, reference, err)
    assert (out / outdir.DAMAGED_DIR / junk).exists()


def test_a_plan_recording_another_scale_is_refused_and_nothing_is_written(finished, capsys):
    out, command = finished
    plan = json.loads((out / outdir.PLAN_FILE).read_text())
    (out / outdir.PLAN_FILE).write_text(json.dumps(plan | {"scale": "bogus"}))
    before = everything(out)
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "records scale 'bogus'" in err and "Traceback" not in err
    assert everything(out) == before


def test_a_name_too_long_is_refused_before_anything_is_created(tmp_path, capsys):
    text = TINY_SWEEP.replace('name = "tiny"', f'name = "{"x" * 300}"')
    root = tmp_path / "results"
    assert cli.main(["sweep", str(write_sweep(tmp_path, text)), "--results", str(root)]) == 2
    err = capsys.readouterr().err
    assert "300 bytes, more than the 255" in err and "Traceback" not in err
    assert not root.exists()


@pytest.mark.parametrize("pid, age, code", [
    ("not a number", 0, 2),  # its heartbeat is recent: refused until it ages out
    ("not a number", 2 * outdir.LEASE_SECONDS, 0),
    (1, "not a number", 0),  # a heartbeat that is not a number is not recent
])
def test_a_malformed_lease_proves_nothing(finished, reference, capsys, pid, age, code):
    out, command = finished
    heartbeat = time.time() - age if isinstance(age, float | int) else age
    epoch = _lease(out, pid, heartbeat=heartbeat)
    before = everything(out)
    assert cli.main(command) == code
    err = capsys.readouterr().err
    if code == 2:
        assert "being written by another grokjax process" in err and "Traceback" not in err
        assert everything(out) == before
    else:
        assert_repaired(out, reference, err)
        assert outdir._epochs(out, "process-0")[-1] == epoch + 1


def test_a_requeued_slurm_job_takes_over_its_leases_on_new_hosts(finished, reference,
                                                                  monkeypatch, capsys):
    """Slurm ends a job's processes before it requeues the job (same id, the restart count one
    higher), on any hosts: their leases are provably gone, however recent their heartbeat."""
    out, command = finished
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    epoch = _lease(out, 123, host="a-host-of-the-first-run", slurm_job="4242", slurm_restart=1)
    assert cli.main(command) == 2  # the same incarnation: it may still be running
    assert "being written by another grokjax process" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert cli.main(command) == 0
    assert_repaired(out, reference, capsys.readouterr().err)
    assert outdir._epochs(out, "process-0")[-1] == epoch + 1


def test_racing_claimants_get_one_lease(finished, monkeypatch):
    """Another process creates the next epoch between this one's look and its claim: the
    create-only write fails, where a check-then-write let both believe they had won."""
    out, _ = finished
    real = outdir.storage.create_bytes

    def create_bytes(where, data, **options):
        real(where, b'{"token": "the other claimant"}', **options)
        real(where, data, **options)

    monkeypatch.setattr(outdir.storage, "create_bytes", create_bytes)
    with pytest.raises(errors.DirectoryBusy, match="at the same moment"):
        run(out)


def test_a_writer_taken_over_stops_before_its_next_commit(reference, tmp_path, monkeypatch,
                                                          capsys):
    """A writer paused past its lease (SIGSTOP, a stalled network) while another takes the
    lease over: when it resumes, its next commit is fenced and it exits 1 without writing."""
    out = tmp_path / "tiny"
    real = outdir.write_part
    commits = []

    def write_part(out_dir, part, *args):
        if len(commits) == 1:  # after the first commit, another process takes over
            _lease(out, os.getpid() + 10**6, heartbeat=time.time())
        commits.append(real(out_dir, part, *args))
        return commits[-1]

    monkeypatch.setattr(outdir, "write_part", write_part)
    command = ["sweep", str(write_sweep(tmp_path)), "--out", str(out), "--no-progress"]
    assert cli.main(command) == 1
    err = capsys.readouterr().err
    assert "lease of process-0 was taken over" in err and "Traceback" not in err
    assert len(outdir.part_names(out, "runs")) == 1
    assert outdir.part_names(out, "curves") == outdir.part_names(out, "runs")
    status = json.loads((out / outdir.PROCESS_FILE.format(0)).read_text())
    assert status["status"] == "running"  # the successor's to write now


def test_duplicate_parts_are_set_aside_not_damaged(finished, reference, capsys):
    """Two executions of the same runs (a retried or raced chunk). The first part by name keeps
    a run: a whole repeat is moved to _duplicates/, a partial one is rewritten with the runs no
    other part holds; nothing is damaged and the manifest is written."""
    out, command = finished
    identity = json.loads((out / outdir.PLAN_FILE).read_text())["identity"]
    metadata = outdir.read_metadata(out)

    def frames(name):
        return [pd.read_parquet(outdir.part_path(out, table, name)) for table in ("runs", "curves")]

    def copy(name, prefix, run_ids):
        runs, curves = frames(name)
        return outdir.write_part(out, outdir.Part(prefix, runs[runs["run_id"].isin(run_ids)],
                                                  curves[curves["run_id"].isin(run_ids)]),
                                 identity, metadata)

    sizes = {name: len(frames(name)[0]) for name in outdir.part_names(out, "runs")}
    big = max(sizes, key=sizes.get)
    other = min(sizes, key=sizes.get)
    assert sizes[big] >= 2 and other != big
    first_run = frames(big)[0]["run_id"].iloc[0]
    whole = copy(other, "ffffffff-7", frames(other)[0]["run_id"])  # sorts last: a whole repeat
    head = copy(big, "0-7", [first_run])  # sorts first: big then repeats one of its runs
    (out / outdir.MANIFEST_FILE).unlink()
    assert cli.main(command) == 0
    assert_repaired(out, reference, capsys.readouterr().err)
    assert not (out / outdir.DAMAGED_DIR).exists()
    assert sorted(p.name for p in (out / outdir.DUPLICATES_DIR).iterdir()) == sorted(
        f"{table}-{name}.parquet" for name in (big, whole) for table in ("runs", "curves"))
    names = outdir.part_names(out, "runs")
    assert head in names and big not in names and len(names) == len(sizes) + 1
