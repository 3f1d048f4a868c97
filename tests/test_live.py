"""Runs in flight: their curves are readable while a sweep runs, the process status counts them,
and the TensorBoard export follows them until the sweep is complete."""

import json
import threading
import time

import pandas as pd
import pytest

import grokjax
from grokjax import cli, outdir, spec, sweep
from grokjax.export import run_names

# 6 runs of Z_11 streaming through the 4 test devices: long enough (a few seconds each) for
# the live view, rewritten every 0.2 s here, to show a run several times before it finishes.
LIVE_SWEEP = """
[fixed]
group = "11"
K = 64
lr = 0.01
steps = 30000
eval_every = 300

[grid]
seed = [0, 1, 2, 3, 4, 5]
"""
WAIT_SECONDS = 300


@pytest.fixture
def running(tmp_path, monkeypatch):
    """Start the sweep in a thread; yield its directory and the thread."""
    monkeypatch.setattr(sweep, "LIVE_SECONDS", 0.2)
    out = tmp_path / "live"
    errors = []

    def run():
        try:
            sweep.run_sweep(spec.parse(LIVE_SWEEP), out_dir=out, progress=False)
        except BaseException as err:  # reported by the test, not lost in the thread
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    yield out, thread
    thread.join(WAIT_SECONDS)
    assert not errors, errors


def poll(until, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while not (found := until()):
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.05)
    return found


def test_a_runs_curve_grows_in_the_live_view_before_it_finishes(running):
    out, thread = running
    poll(lambda: (out / outdir.PLAN_FILE).exists())
    seen: dict[str, list[int]] = {}  # run id -> the last step of its live curve, each look

    def grown():
        res = grokjax.load(out)  # a running sweep loads; nothing of its runs may be done yet
        finished = set(res.runs["run_id"])
        live = res.live  # read after the runs: a run finished since is left out of it
        assert not set(live["run_id"]) & finished  # a run is shown once
        for run_id, last in live.groupby("run_id")["step"].max().items():
            seen.setdefault(run_id, []).append(int(last))
        return next((run_id for run_id, steps in seen.items()
                     if len(set(steps)) >= 2 and run_id not in finished), None)

    run_id = poll(grown)
    assert seen[run_id] == sorted(seen[run_id]) and max(seen[run_id]) < 30000
    res = grokjax.load(out)
    status = json.loads((out / outdir.PROCESS_FILE.format(0)).read_text())
    assert status["status"] == "running" and status["runs"] == 6
    everything = res.curves_live()
    assert {"finished", "seed"} <= set(everything.columns)
    assert not everything.duplicated(["run_id", "step"]).any()

    thread.join(WAIT_SECONDS)
    done = grokjax.load(out)
    assert done.manifest["runs"] == 6 and done.live.empty
    assert not (out / outdir.LIVE_DIR / "curves-0.parquet").exists()  # gone once all are in
    status = json.loads((out / outdir.PROCESS_FILE.format(0)).read_text())
    assert (status["status"], status["runs_trained"], status["runs_in_flight"]) == ("done", 6, 0)
    final = done.curves_live()
    assert final["finished"].all() and len(final) == len(done.curves)
    # Every point the live view showed is the finished curve's point.
    curves = done.curves.set_index(["run_id", "step"])
    shown = everything[~everything["finished"]].set_index(["run_id", "step"])
    pd.testing.assert_series_equal(shown["test_loss"], curves.loc[shown.index, "test_loss"])


def test_the_tensorboard_export_follows_the_runs_in_flight(running, tmp_path):
    pytest.importorskip("tensorboardX", reason="the export needs tensorboardX: pip install -e "
                                               "'.[dev]'")
    from test_export import read_event_file

    out, _ = running
    poll(lambda: (out / outdir.PLAN_FILE).exists())
    tensorboard = tmp_path / "tensorboard"
    assert cli.main(["export", "tensorboard", str(out), str(tensorboard), "--follow",
                     "--interval", "0.2"]) == 0  # returns once the sweep is complete
    res = grokjax.load(out)
    names = dict(zip(res.runs["run_id"], run_names(res.runs), strict=True))
    assert sorted(p.name for p in tensorboard.iterdir()) == sorted(names.values())
    files = {run_id: list((tensorboard / name).glob("events.out.tfevents.*"))
             for run_id, name in names.items()}
    assert max(map(len, files.values())) >= 2  # some run was written to while in flight
    for run_id, paths in files.items():
        steps = sorted(event.step for path in paths for event in read_event_file(path)
                       for value in event.summary.value if value.tag == "test_loss")
        assert steps == sorted(res.curves.loc[res.curves["run_id"] == run_id, "step"])
