"""What the processes of a sweep tell each other through its results directory: each process's
status (``_process-<i>.json``), waiting for every run to be in, and the manifest.

Several processes (hosts of a TPU VM pod slice, or local test processes) share nothing but the
results directory: each reports in its status file and process 0 waits for all of them.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import platform
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jax

from grokjax import outdir
from grokjax.errors import SpecError, SweepIncomplete
from grokjax.storage import Location

# A process that finishes early waits at jax.distributed's shutdown barrier for all the others,
# and process 0 finishes last (it waits for every part); JAX's default 5 minutes there would
# abort the whole job, so allow a week.
SHUTDOWN_TIMEOUT_SECONDS = 7 * 24 * 3600
# Process 0 gives up on the other processes after this long without a new part (or 3 times its
# own slowest bucket, if longer), or when a status file is still absent this long after it began
# waiting: every process writes its status before training, so the directory is not shared.
MIN_STALL_SECONDS = 600
START_GRACE_SECONDS = 120


@dataclass
class SweepReport:
    """What one process did; its ``stats`` are its ``_process-<i>.json``."""

    out_dir: Location
    process: int = 0
    devices: int = 1
    runs: int = 0  # this process's share, every round so far
    runs_skipped: int = 0  # found on disk, verified, from an earlier invocation
    runs_trained: int = 0  # so far, written to parts
    runs_in_flight: int = 0  # in slots now
    runs_stopped: int = 0  # ended early by the stop rule
    runs_generalized: int = 0  # of those trained now
    rounds: int = 0
    compile_seconds: dict[str, float] = field(default_factory=dict)
    memory_per_run_mib: dict[str, float] = field(default_factory=dict)  # XLA's, vmapped slots
    train_seconds: float = 0.0
    run_steps: int = 0  # executed by this invocation
    slowest_bucket_seconds: float = 0.0

    @property
    def run_steps_per_second(self) -> float:
        return self.run_steps / self.train_seconds if self.train_seconds else float("nan")

    def stats(self, status: str, error: str | None = None) -> dict[str, object]:
        rate = self.run_steps_per_second
        return {
            "process": self.process, "status": status, "error": error, "host": platform.node(),
            "devices": self.devices, "runs": self.runs, "runs_skipped": self.runs_skipped,
            "runs_trained": self.runs_trained, "runs_in_flight": self.runs_in_flight,
            "runs_stopped": self.runs_stopped,
            "rounds": self.rounds, "compile_seconds": self.compile_seconds,
            "memory_per_run_mib": self.memory_per_run_mib,
            "train_seconds": self.train_seconds, "run_steps": self.run_steps,
            "run_steps_per_second": None if math.isnan(rate) else rate,
        }


@contextlib.contextmanager
def reporting(out_dir: Location, report: SweepReport) -> Iterator[None]:
    """The process's status file around its work: running, then done, or failed or interrupted
    with the error; nothing once this process lost its lease (the file is its successor's)."""
    path = out_dir / outdir.PROCESS_FILE.format(report.process)
    outdir.write_json(out_dir, path, report.stats("running"))
    try:
        yield
    except outdir.LeaseLost:
        raise
    except BaseException as err:
        state = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        outdir.write_json(out_dir, path, report.stats(state, repr(err)))
        raise
    outdir.write_json(out_dir, path, report.stats("done"))


class PeerLost(SweepIncomplete):
    """A process of a multi-process job stopped answering; this one stops too."""


@dataclass
class _Job:
    """This process's place in a jax.distributed job, watched for lost peers."""

    client: object  # jax's DistributedRuntimeClient
    process: int
    processes: int
    heartbeat: int | None
    stop: threading.Event = field(default_factory=threading.Event)
    lost: list[int] = field(default_factory=list)


_job: _Job | None = None
LEFT_KEY = "grokjax/left/{}"  # set by a process that leaves the job at its normal end
WATCH_SECONDS = 0.5
LEAVE_SECONDS = 60.0  # process 0 waits this long, at most, for the others to leave first


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, heartbeat_timeout: int | None = None,
                           startup_timeout: int | None = None) -> None:
    """Join a multi-process job; call before any other JAX call.

    With no arguments JAX finds its peers on a TPU VM pod slice (and under Slurm or Open MPI);
    elsewhere pass all three, e.g. ("127.0.0.1:8476", 2, 0) and ("127.0.0.1:8476", 2, 1).
    ``heartbeat_timeout``: seconds without a heartbeat after which a process counts as lost;
    the others then stop with PeerLost ("process 2 lost; rerun all 4 processes") instead of
    JAX's abort (default: JAX's, 100). ``startup_timeout``: seconds for every process to join
    (default: JAX's, 300).
    """
    global _job
    parameters = inspect.signature(jax.distributed.initialize).parameters
    wanted = {"shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_SECONDS,
              "heartbeat_timeout_seconds": heartbeat_timeout,
              "initialization_timeout": startup_timeout}
    options = {name: value for name, value in wanted.items()
               if value is not None and name in parameters}  # older JAX lacks some
    if heartbeat_timeout is not None and "heartbeat_timeout_seconds" not in parameters:
        raise SpecError([f"JAX {jax.__version__} cannot set the heartbeat timeout; upgrade JAX "
                         "or leave out --heartbeat-timeout"], "command line")
    try:  # a lost peer is then reported to the survivors instead of aborting them
        jax.config.update("jax_enable_recoverability", True)
        recoverable = True
    except AttributeError:
        recoverable = False
    jax.distributed.initialize(coordinator, num_processes, process_id, **options)
    if recoverable and jax.process_count() > 1:
        from jax._src import distributed

        _job = _Job(distributed.global_state.client, jax.process_index(), jax.process_count(),
                    heartbeat_timeout)
        signal.signal(signal.SIGUSR1, _peer_lost)
        threading.Thread(target=_watch, args=(_job, threading.main_thread().ident),
                         daemon=True, name="grokjax-peers").start()


def _watch(job: _Job, main_thread: int) -> None:
    """Every WATCH_SECONDS: has a process that did not leave stopped answering? Then interrupt
    the main thread (``_peer_lost``), which writes its status and stops."""
    everyone = list(range(job.processes))
    while not job.stop.wait(WATCH_SECONDS):
        live = job.client.get_live_nodes(everyone)
        job.lost[:] = [i for i in everyone if i not in live and not _left(job, i)]
        if job.lost:
            signal.pthread_kill(main_thread, signal.SIGUSR1)
            return


def _left(job: _Job, process: int) -> bool:
    try:
        job.client.key_value_try_get(LEFT_KEY.format(process))
    except jax.errors.JaxRuntimeError:  # NOT_FOUND
        return False
    return True


def _peer_lost(signum, frame) -> None:
    job = _job
    after = f" (no heartbeat for {job.heartbeat}s)" if job.heartbeat else ""
    raise PeerLost(f"process {', '.join(map(str, job.lost))} lost{after}; rerun all "
                   f"{job.processes} processes, finished runs are kept")


def leave_distributed() -> None:
    """End this process's part in the job: it tells the others it leaves (so they do not take
    it for lost). Process 0 runs the job's coordination service, whose end the others would
    take for a loss: it leaves last, once the others have gone (or LEAVE_SECONDS passed)."""
    job = _job
    if job is None:
        return
    job.client.key_value_set(LEFT_KEY.format(job.process), "1")
    deadline = time.monotonic() + LEAVE_SECONDS
    while (job.process == 0 and time.monotonic() < deadline
           and len(job.client.get_live_nodes(list(range(job.processes)))) > 1):
        time.sleep(WATCH_SECONDS)
    job.stop.set()
    jax.distributed.shutdown()


def _read_status(out_dir: Location, process: int) -> dict | None:
    return outdir.read_json(out_dir / outdir.PROCESS_FILE.format(process))


def wait_for_runs(out_dir: Location, identity: str, run_ids: set[str], processes: int,
                  stall_seconds: float, final: bool = False,
                  start_grace_seconds: float = START_GRACE_SECONDS,
                  poll_seconds: float = 1.0) -> list[dict]:
    """Until every run of ``run_ids`` is in a runs part (and, if ``final``, every process is
    done): every process's status.

    Nothing but the shared directory connects the processes. Raises SweepIncomplete when a
    process failed, when nothing new arrived for ``stall_seconds``, or when a process's status
    file is still absent after ``start_grace_seconds`` (the directory is not shared).
    """
    started = changed = time.monotonic()
    index = outdir.RunIndex(out_dir, identity)
    seen = None
    while True:
        missing = run_ids - index.scan()
        statuses = [_read_status(out_dir, i) for i in range(processes)]
        done = [s for s in statuses if s and s.get("status") == "done"]
        if not missing and (not final or len(done) == processes):
            return statuses
        now = time.monotonic()
        settled = now - started > start_grace_seconds
        failed = [s for s in statuses if s and s.get("status") in ("failed", "interrupted")]
        if failed and settled:
            raise SweepIncomplete(f"process {failed[0]['process']} {failed[0]['status']}: "
                                  f"{failed[0]['error']}; run the same command again to finish "
                                  "the missing runs")
        absent = [i for i, s in enumerate(statuses) if s is None]
        if absent and settled:
            raise SweepIncomplete(
                f"process 0 does not see the status file of process(es) {absent} in {out_dir}: "
                "the processes do not share this directory, so each host holds its own parts "
                f"and no {outdir.MANIFEST_FILE} is written. Copy every host's part files into "
                "one directory to read them as one table")
        if processes == 1:  # this process trained its share: nothing else will arrive
            raise SweepIncomplete(
                f"{len(missing)} of {len(run_ids)} runs are not in a verified part of "
                f"{out_dir}; {outdir.MANIFEST_FILE} is not written. Run the same command again "
                "to train them")
        if (len(missing), len(done)) != seen:
            seen, changed = (len(missing), len(done)), now
        elif now - changed > stall_seconds:
            waiting = [i for i, s in enumerate(statuses) if not s or s.get("status") != "done"]
            raise SweepIncomplete(
                f"{len(missing)} of {len(run_ids)} runs are not in {out_dir} and nothing new "
                f"arrived for {stall_seconds:.0f}s (process(es) {waiting} not done); "
                f"{outdir.MANIFEST_FILE} is not written. Run the same command again to finish "
                "them")
        time.sleep(poll_seconds)


def write_manifest(out_dir: Location, identity: str, metadata: dict, memory_budget: int,
                   statuses: list[dict], planned: set[str]) -> None:
    """Once every process is done: verify every part (setting aside any that fails or repeats
    runs of another), then, if every ``planned`` run is in, record the sweep's parts, processes
    and what its stop rules and search saved. Counts are of the ``planned`` runs; the runs of
    earlier versions kept in the directory are counted apart."""
    verified = outdir.verify(out_dir, identity, quarantine_all=True)
    missing = planned - set(verified.run_ids)
    if missing:
        raise SweepIncomplete(f"{len(missing)} run(s) of {out_dir} are not in a verified part "
                              f"({len(verified.damaged)} damaged part(s) set aside); run the "
                              "same command again to train them")
    everything = outdir.read_table(out_dir, "runs")
    runs = everything[everything["run_id"].isin(planned)]
    rates = [s["run_steps_per_second"] for s in statuses if s.get("run_steps_per_second")]
    manifest = {
        "identity": identity,
        "earlier_versions": outdir.read_plan(out_dir).get("earlier", []),
        "provenance": {k: v for k, v in metadata.items() if k != "sweep_toml"},
        "memory_budget": memory_budget,
        "run_steps_per_second": sum(rates) if rates else None,  # all processes together
        "runs": len(runs),
        "runs_of_earlier_versions": len(everything) - len(runs),
        "rounds": int(runs["round"].max()),
        "runs_stopped_early": int(runs["stopped_step"].notna().sum()),
        "runs_diverged": int(runs["diverged"].sum()),
        "run_steps_planned": int(runs["steps"].sum()),
        "run_steps_executed": int(runs["steps_trained"].sum()),
        "processes": statuses,
        "parts": verified.parts,
    }
    outdir.check_fence(out_dir)
    outdir.write_json(out_dir, out_dir / outdir.MANIFEST_FILE, manifest)
    outdir.remove_temporaries(out_dir)
