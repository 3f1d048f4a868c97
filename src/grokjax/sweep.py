"""Run a sweep: spec → plan → engine → tables, one process's share, resumable.

``run_sweep`` plans the runs (``plan``), claims the results directory (``outdir``), trains this
process's share of every round through the engine's refilling slots, and writes each batch of
finished runs as soon as it is done. A search sweep repeats this round by round (``rounds``):
every process computes the next round from the finished runs of all processes, so they agree
without talking. Process 0 waits for every run and writes the manifest (``coordination``).

Several processes (hosts of a TPU VM pod slice, or local test processes) share nothing but the
results directory: each takes every n-th run of each round, reports in ``_process-<i>.json`` and
holds a lease on its share.
"""

from __future__ import annotations

import contextlib
import math
import time

import jax
import numpy as np
from jax.sharding import Mesh

from grokjax import engine, outdir, plan, rounds, storage, tables
from grokjax.coordination import (
    MIN_STALL_SECONDS,
    SweepReport,
    reporting,
    wait_for_runs,
    write_manifest,
)
from grokjax.engine import FinishedRun
from grokjax.errors import SpecError
from grokjax.plan import Bucket
from grokjax.progress import Progress
from grokjax.rounds import Round
from grokjax.spec import SweepSpec, parse
from grokjax.storage import Location
from grokjax.tables import Schema

FLUSH_SECONDS = 2.0  # finished runs wait at most this long before their part is written
LIVE_SECONDS = 2.0  # the live view of the runs in flight is rewritten at most this often


class Writer:
    """Collects finished runs and writes them as parts, at most FLUSH_SECONDS late; keeps a
    process's status file and the live view of its runs in flight current.

    Parts are named after ``writer`` (default: the process index). A chunk task (a ``writer``
    of its own) keeps neither: the status is its driver's. With a run ``index`` (a chunk task,
    which another execution of the same chunk may race), runs that another writer has committed
    meanwhile are dropped: what remains of a race is a duplicate part, which the directory's
    verification sets aside."""

    def __init__(self, out_dir: Location, identity: str, spec: SweepSpec, schema: Schema,
                 metadata: dict, report: SweepReport, progress: Progress,
                 writer: str | None = None, index: outdir.RunIndex | None = None):
        self.out_dir, self.identity, self.spec, self.schema = out_dir, identity, spec, schema
        self.metadata, self.report, self.progress = metadata, report, progress
        self.writer = str(report.process) if writer is None else writer
        self.share = writer is None  # a process's share, not a chunk task
        self.index = index
        self.pending: list[FinishedRun] = []
        self.bucket: Bucket | None = None
        self.flushed = self.live_written = -math.inf  # the first are written at once
        self.live_path = outdir.live_path(out_dir, report.process)

    def status(self) -> None:
        """The process's counts so far in its status file (not once it lost its lease: the file
        is then its successor's)."""
        if self.share:
            outdir.check_fence(self.out_dir)
            outdir.write_json(self.out_dir, self.out_dir / outdir.PROCESS_FILE.format(
                self.report.process), self.report.stats("running"))

    def add(self, bucket: Bucket, finished: list[FinishedRun]) -> None:
        self.bucket = bucket
        self.pending += finished
        if time.monotonic() - self.flushed >= FLUSH_SECONDS:
            self.flush()

    def segment(self, bucket: Bucket, slots: engine.Slots) -> None:
        """At a segment boundary, at most every LIVE_SECONDS: the curves so far of the runs in
        flight (and of finished ones not yet in a part) replace the live view, atomically."""
        self.report.runs_in_flight = sum(run is not None for run in slots.runs)
        if not self.share or time.monotonic() - self.live_written < LIVE_SECONDS:
            return
        self.live_written = time.monotonic()
        self.status()
        in_flight = slots.in_flight() + [(f.run, f.curves) for f in self.pending]
        if in_flight:
            frame = tables.live_frame(bucket, in_flight, self.schema)
            outdir.write_bytes(self.out_dir, self.live_path, outdir.parquet_bytes(frame, {}))

    def close(self) -> None:
        """The live view is gone once this process's runs are all in parts (a process that
        lost its lease leaves it to its successor)."""
        with contextlib.suppress(outdir.LeaseLost):
            outdir.check_fence(self.out_dir)
            storage.remove(self.live_path)

    def flush(self) -> None:
        self.flushed = time.monotonic()
        if not self.pending:
            return
        finished, self.pending = self.pending, []
        if self.index is not None:
            finished = [f for f in finished if f.run.run_id not in self.index.scan()]
        if not finished:
            return
        part = tables.part_tables(self.bucket, finished, self.spec.output_name, self.schema,
                                  f"{self.bucket.id}-{self.writer}")
        outdir.write_part(self.out_dir, part, self.identity, self.metadata)
        generalized = int(part.runs["generalized"].sum())
        run_steps = int(part.runs["steps_trained"].sum())
        self.report.runs_trained += len(finished)
        self.report.runs_stopped += int(part.runs["stopped_step"].notna().sum())
        self.report.runs_generalized += generalized
        self.report.run_steps += run_steps
        self.progress.finished(len(finished), generalized, run_steps)
        self.status()


def train_runs(buckets: list[Bucket], done: set[str], processes: int, mesh: Mesh,
               budget: int, writer: Writer, programs: dict) -> None:
    """Train this process's share (every n-th run of each bucket) of what is not done."""
    report, progress = writer.report, writer.progress
    shares = [(bucket, [r for r in bucket.runs[report.process::processes]
                        if r.run_id not in done]) for bucket in buckets]
    share_size = sum(len(b.runs[report.process::processes]) for b in buckets)
    todo = sum(len(queue) for _, queue in shares)
    report.runs += share_size
    report.runs_skipped += share_size - todo
    progress.add(todo)
    writer.status()
    layout = engine.layout_for(mesh.devices.flat[0].platform)
    for bucket, queue in shares:
        if not queue:
            continue
        start, compile_seconds = time.perf_counter(), []
        progress.note(f"bucket {bucket.id} ({bucket.group.spec}, K={bucket.static.width}): "
                      f"{len(queue)} runs, sizing its slots")

        def compiled(seconds: float, bucket: Bucket = bucket,
                     spent: list[float] = compile_seconds) -> None:
            spent.append(seconds)
            report.compile_seconds[bucket.id] = report.compile_seconds.get(bucket.id, 0) + seconds
            progress.note(f"bucket {bucket.id} compiled in {seconds:.1f}s")

        per_device, memory = engine.size_slots(bucket, len(queue), mesh, programs, budget,
                                               layout, compiled)
        report.memory_per_run_mib[bucket.id] = memory / per_device / 2**20
        progress.note(f"bucket {bucket.id}: {per_device} slot(s) per device, XLA "
                      f"{memory / 2**20:,.2f} MiB per device; training")
        engine.train_bucket(bucket, queue, per_device, mesh,
                            lambda finished, bucket=bucket: writer.add(bucket, finished),
                            programs, compiled, layout,
                            lambda slots, bucket=bucket: writer.segment(bucket, slots))
        writer.flush()
        seconds = time.perf_counter() - start
        report.train_seconds += seconds - sum(compile_seconds)
        report.slowest_bucket_seconds = max(report.slowest_bucket_seconds, seconds)


def first_plan(spec: SweepSpec, memory_budget: int) -> tuple[Round, list[Bucket]]:
    """Round 1 and its buckets, checked against the memory budget: what ``grokjax plan``
    shows and what ``run_sweep`` trains first."""
    first = rounds.first_round(spec)
    buckets = plan.plan_runs(spec, [run for _, run in first])
    plan.check_memory(buckets, memory_budget)
    return first, buckets


def run_sweep(spec: SweepSpec, results_root: storage.Where = "results", *,
              out_dir: storage.Where | None = None, overwrite: bool = False,
              memory_budget: int | None = None, progress: bool = True,
              devices: list | None = None) -> SweepReport:
    """Train this process's share of ``spec`` and write its tables; finished runs are skipped.

    ``devices`` defaults to every local device; the run axis is sharded over them. Every process
    of a job (see ``coordination.initialize_distributed``) plans the same runs and trains every
    n-th one; process 0 then waits for all of them and writes the manifest.
    ``progress``: a live bar on a terminal, else a line every few seconds on stderr.
    """
    out_dir = Location(out_dir) if out_dir else Location(results_root) / spec.output_name
    devices = devices or jax.local_devices()
    process, processes = jax.process_index(), jax.process_count()
    budget = memory_budget or engine.default_memory_budget()
    first, buckets = first_plan(spec, budget)
    all_rounds = [first]
    identity = plan.identity(spec, [run for _, run in first])
    prepare(out_dir, spec, identity, first, overwrite, process)
    report = SweepReport(out_dir, process, len(devices))
    metadata = tables.provenance(spec.source_text, spec.scale)
    bar = Progress(spec.output_name, progress and process == 0)
    writer = Writer(out_dir, identity, spec, tables.schema_of(buckets), metadata, report, bar)
    with outdir.Lease(out_dir, process):
        try:
            with reporting(out_dir, report):
                _train_rounds(spec, all_rounds, buckets, writer, devices, processes, budget)
                report.runs_in_flight = 0
        finally:
            bar.close()
            writer.close()
        if process == 0:
            planned = planned_ids(all_rounds)
            statuses = wait_for_runs(out_dir, identity, planned, processes,
                                     max(MIN_STALL_SECONDS, 3 * report.slowest_bucket_seconds),
                                     final=True)
            write_manifest(out_dir, identity, metadata, budget, statuses, planned)
    return report


def prepare(out_dir: Location, spec: SweepSpec, identity: str, first: Round, overwrite: bool,
            process: int = 0) -> None:
    """``outdir.prepare`` for this sweep, reusing the runs of an earlier version only if they
    ended by the same stop rule; process 0 then records the runs of round 1 as planned."""
    stop = spec.stop.text if spec.stop else None
    outdir.prepare(out_dir, identity, spec.source_text, spec.scale, overwrite, process, stop,
                   lambda earlier: check_reusable(out_dir, earlier, stop))
    if process == 0:
        outdir.write_planned_runs(out_dir, identity, planned_ids([first]))


def planned_ids(all_rounds: list[Round]) -> set[str]:
    return {run.run_id for round_runs in all_rounds for _, run in round_runs}


def check_reusable(out_dir: Location, earlier: dict, stop: str | None) -> None:
    """A changed sweep reuses the directory's runs by id, which is right only if they ended by
    the same stop rule (``earlier`` is the directory's plan); refused otherwise, before
    anything is written."""
    if "stop" in earlier:
        earlier_stop = earlier["stop"]
    else:  # a directory of older grokjax: its sweep file says
        text = storage.read_text(out_dir / outdir.SWEEP_FILE)
        recorded = parse(text, earlier.get("scale", "default"), str(out_dir / outdir.SWEEP_FILE))
        earlier_stop = recorded.stop.text if recorded.stop else None
    if earlier_stop != stop:
        raise SpecError([
            f"{out_dir} holds runs that ended by the stop rule {earlier_stop or 'none'!r}, this "
            f"sweep's is {stop or 'none'!r}: a run of the same id would differ, so they cannot "
            "be reused. Pass --overwrite (overwrite=True in Python) to set the earlier results "
            f"aside in {outdir.REPLACED_DIR}/ and train afresh, or write elsewhere: --out DIR "
            "(in Python, results= another root)"], "results")


def _train_rounds(spec: SweepSpec, all_rounds: list[Round], buckets: list[Bucket],
                  writer: Writer, devices: list, processes: int, budget: int) -> None:
    """Train round after round; ``all_rounds`` gains each new round's (condition, run) pairs."""
    report, out_dir, identity = writer.report, writer.out_dir, writer.identity
    mesh = Mesh(np.asarray(devices), ("runs",))
    programs: dict = {}
    # What an earlier invocation finished, verified once: later rounds add runs that only this
    # invocation's processes write.
    done = set(outdir.verify(out_dir, identity, quarantine_process=report.process).run_ids)
    while True:
        report.rounds = len(all_rounds)
        train_runs(buckets, done, processes, mesh, budget, writer, programs)
        if spec.search is None:
            return
        ids = {run.run_id for round_runs in all_rounds for _, run in round_runs}
        wait_for_runs(out_dir, identity, ids, processes,
                      max(MIN_STALL_SECONDS, 3 * report.slowest_bucket_seconds))
        new = rounds.next_round(spec, all_rounds, outdir.read_table(out_dir, "runs"))
        if not new:
            return
        all_rounds.append(new)
        if report.process == 0:
            outdir.write_planned_runs(out_dir, identity, planned_ids(all_rounds))
        writer.progress.note(f"round {len(all_rounds)}: {len(new)} runs")
        buckets = plan.plan_runs(spec, [run for _, run in new])
