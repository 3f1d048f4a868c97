"""Run a sweep: spec → plan → engine → tables, one process's share, resumable.

``run_sweep`` plans the runs (``plan``), claims the results directory (``outdir``), trains this
process's share of every round through the engine's refilling slots, and writes each batch of
finished runs as soon as it is done. A search sweep repeats this round by round (``search``):
every process computes the next round from the finished runs of all processes, so they agree
without talking. Process 0 waits for every run and writes the manifest.

Several processes (hosts of a TPU VM pod slice, or local test processes) share nothing but the
results directory: each takes every n-th run of each round, reports in ``_process-<i>.json`` and
holds a lease on its share.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace

import jax
import numpy as np
import pandas as pd
from jax.sharding import Mesh
from tqdm.auto import tqdm

from grokjax import config, data, engine, groups, outdir, plan, results, search, storage
from grokjax.engine import FinishedRun
from grokjax.outdir import Part, SweepIncomplete
from grokjax.plan import Bucket, PlannedRun
from grokjax.spec import SweepSpec
from grokjax.storage import Location
from grokjax.train import HParams, Split, Task, make_train

# A process that finishes early waits at jax.distributed's shutdown barrier for all the others,
# and process 0 finishes last (it waits for every part); JAX's default 5 minutes there would
# abort the whole job, so allow a week.
SHUTDOWN_TIMEOUT_SECONDS = 7 * 24 * 3600
# Process 0 gives up on the other processes after this long without a new part (or 3 times its
# own slowest bucket, if longer), or when a status file is still absent this long after it began
# waiting: every process writes its status before training, so the directory is not shared.
MIN_STALL_SECONDS = 600
START_GRACE_SECONDS = 120
FLUSH_SECONDS = 2.0  # finished runs wait at most this long before their part is written
PROGRESS_LINE_SECONDS = 10.0  # a log line this often when the output is not a terminal


@dataclass
class SweepReport:
    """What one process did; its ``stats`` are its ``_process-<i>.json``."""

    out_dir: Location
    process: int = 0
    devices: int = 1
    runs: int = 0  # this process's share, every round so far
    runs_skipped: int = 0  # found on disk, verified, from an earlier invocation
    runs_trained: int = 0
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
            "runs_trained": self.runs_trained, "runs_stopped": self.runs_stopped,
            "rounds": self.rounds, "compile_seconds": self.compile_seconds,
            "memory_per_run_mib": self.memory_per_run_mib,
            "train_seconds": self.train_seconds, "run_steps": self.run_steps,
            "run_steps_per_second": None if math.isnan(rate) else rate,
        }


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-process job; call before any other JAX call.

    With no arguments JAX finds its peers on a TPU VM pod slice (and under Slurm or Open MPI);
    elsewhere pass all three, e.g. ("127.0.0.1:8476", 2, 0) and ("127.0.0.1:8476", 2, 1).
    """
    options = {}
    if "shutdown_timeout_seconds" in inspect.signature(jax.distributed.initialize).parameters:
        options["shutdown_timeout_seconds"] = SHUTDOWN_TIMEOUT_SECONDS  # older JAX lacks it
    jax.distributed.initialize(coordinator, num_processes, process_id, **options)


# ---------------------------------------------------------------------------------------------
# Tables of finished runs


@dataclass(frozen=True)
class Schema:
    """The columns every part of a sweep shares, whatever its buckets mix."""

    curve_columns: tuple[str, ...]
    feature_dtypes: dict[str, str] | None  # None: no features table
    diagnostics: bool


def _abstract(bucket: Bucket):
    fns = make_train(bucket.static)
    scalar = jax.ShapeDtypeStruct((), np.float32)
    hparams = HParams(*(scalar for _ in HParams._fields))
    state = jax.eval_shape(fns.init, hparams, jax.ShapeDtypeStruct((2,), np.uint32))
    rows = bucket.table_rows
    split = Split(jax.ShapeDtypeStruct((bucket.train_rows,), np.int32),
                  jax.ShapeDtypeStruct((rows,), bool))
    task = Task(jax.ShapeDtypeStruct((rows, bucket.static.num_ops), np.int32),
                jax.ShapeDtypeStruct((rows,), np.int32))
    return fns, (state, hparams, split, task)


def schema_of(buckets: list[Bucket]) -> Schema:
    curves, features = dict.fromkeys(results.METRICS), {}
    for bucket in buckets:
        if not bucket.static.diagnostics:
            continue
        fns, args = _abstract(bucket)
        curves |= dict.fromkeys(jax.eval_shape(fns.evaluate, *args))
        features |= {name: results.feature_dtype(np.empty(0, shape.dtype))
                     for name, shape in jax.eval_shape(fns.features, *args).items()}
    diagnostics = any(b.static.diagnostics for b in buckets)
    return Schema(tuple(curves), features if diagnostics else None, diagnostics)


def config_columns(runs: list[PlannedRun]) -> pd.DataFrame:
    """The config columns of the runs table (``config.COLUMNS``), and each run's round."""
    return pd.DataFrame([
        {"run_id": run.run_id, "round": run.round, **config.column_values(
            run.config, config.Resolved(groups.parse_group(run.config.group), run.test_size,
                                        run.n_train, run.n_test))}
        for run in runs])


def part_tables(bucket: Bucket, finished: list[FinishedRun], sweep_name: str, schema: Schema,
                name: str) -> Part:
    """The runs, curves and (with diagnostics) features of a batch of finished runs."""
    planned = [f.run for f in finished]
    run_ids = [run.run_id for run in planned]
    steps = np.asarray(results.padded([f.curves["step"] for f in finished]))
    steps = np.where(np.isnan(steps), -1, steps).astype(np.int64)
    last = (steps >= 0).sum(axis=1) - 1
    curves = {metric: results.padded([f.curves[metric].astype(np.float64) for f in finished])
              for metric in finished[0].curves if metric != "step"}
    for split_name, n in (("train", "n_train"), ("test", "n_test")):
        sizes = np.asarray([getattr(run, n) for run in planned])[:, None]
        curves[f"{split_name}_acc"] = results.exact_accuracy(curves[f"{split_name}_acc"], sizes)
    features = None
    if finished[0].features is not None:
        features = {k: np.stack([f.features[k] for f in finished]) for k in finished[0].features}
    diverged = np.asarray([f.diverged_step for f in finished])
    stopped = np.asarray([f.stopped_step for f in finished])
    summary = results.summarize(curves, steps, last, diverged, stopped)
    summary |= results.diagnostic_summary(curves, steps, last, features)
    runs = config_columns(planned).assign(
        **summary, wall_seconds=[f.seconds for f in finished], sweep=sweep_name,
        bucket=bucket.id)
    dtypes = results.RUNS_DTYPES | (results.DIAGNOSTIC_SUMMARY_DTYPES if schema.diagnostics
                                    else {})
    runs = runs.reindex(columns=list(dtypes)).astype(dtypes)
    feature_rows = None
    if schema.feature_dtypes is not None and features is not None:
        feature_rows = results.features_frame(run_ids, features, schema.feature_dtypes)
    return Part(name, runs, results.curves_frame(run_ids, curves, steps,
                                                 list(schema.curve_columns)), feature_rows)


# ---------------------------------------------------------------------------------------------
# Training one process's share


class Progress:
    """Runs done and generalized, advanced when their metrics reach the host; a live bar on a
    terminal, a line every few seconds in a log, nothing from processes other than 0."""

    def __init__(self, name: str, show: bool):
        self.name, self.show = name, show
        self.terminal = show and sys.stderr.isatty()
        self.bar = tqdm(total=0, unit="run", disable=not self.terminal, file=sys.stderr,
                        desc=name, dynamic_ncols=True)
        self.done = self.generalized = self.run_steps = 0
        self.started = time.perf_counter()
        self.last_line = self.started

    def add(self, runs: int) -> None:
        self.bar.total += runs
        self.bar.refresh()

    def finished(self, runs: int, generalized: int, run_steps: int) -> None:
        self.done += runs
        self.generalized += generalized
        self.run_steps += run_steps
        self.bar.set_postfix_str(f"{self.generalized} generalized, "
                                 f"{self.run_steps:,} run-steps", refresh=False)
        self.bar.update(runs)
        now = time.perf_counter()
        if self.show and not self.terminal and now - self.last_line >= PROGRESS_LINE_SECONDS:
            self.last_line = now
            self.line()

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)
        if self.show and not self.terminal:
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def line(self) -> None:
        seconds = time.perf_counter() - self.started
        left = self.bar.total - self.done
        eta = f", about {left * seconds / self.done:.0f}s left" if self.done and left else ""
        print(f"{self.name}: {self.done}/{self.bar.total} runs done, {self.generalized} "
              f"generalized, {self.run_steps:,} run-steps in {seconds:.0f}s "
              f"({self.run_steps / max(seconds, 1e-9):,.0f}/s){eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.show and not self.terminal and self.done:
            self.line()


class Writer:
    """Collects finished runs and writes them as parts, at most FLUSH_SECONDS late."""

    def __init__(self, out_dir: Location, identity: str, spec: SweepSpec, schema: Schema,
                 metadata: dict, report: SweepReport, progress: Progress):
        self.out_dir, self.identity, self.spec, self.schema = out_dir, identity, spec, schema
        self.metadata, self.report, self.progress = metadata, report, progress
        self.pending: list[FinishedRun] = []
        self.bucket: Bucket | None = None
        self.flushed = -math.inf  # the first finished runs are written at once

    def add(self, bucket: Bucket, finished: list[FinishedRun]) -> None:
        self.bucket = bucket
        self.pending += finished
        if time.monotonic() - self.flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.flushed = time.monotonic()
        if not self.pending:
            return
        finished, self.pending = self.pending, []
        run_ids = sorted(f.run.run_id for f in finished)
        digest = hashlib.sha1(" ".join(run_ids).encode()).hexdigest()[:12]
        name = f"{self.bucket.id}-{self.report.process}-{digest}"
        part = part_tables(self.bucket, finished, self.spec.output_name, self.schema, name)
        outdir.write_part(self.out_dir, part, self.identity, self.metadata)
        generalized = int(part.runs["generalized"].sum())
        run_steps = int(part.runs["steps_trained"].sum())
        self.report.runs_trained += len(finished)
        self.report.runs_stopped += int(part.runs["stopped_step"].notna().sum())
        self.report.runs_generalized += generalized
        self.report.run_steps += run_steps
        self.progress.finished(len(finished), generalized, run_steps)


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
    layout = engine.backend_runs_per_batch()
    for bucket, queue in shares:
        if not queue:
            continue
        start, compile_seconds = time.perf_counter(), []
        memory = None
        if layout is None:  # vmapped slots: size them from XLA's figure for this program
            progress.note(f"measuring bucket {bucket.id}'s memory ({bucket.group}, "
                          f"K={bucket.static.width})")
            memory = engine.measure_memory(bucket, mesh, programs, layout)
            compile_seconds.append(time.perf_counter() - start)  # the probes' compiles
            report.memory_per_run_mib[bucket.id] = memory.per_run / 2**20
        per_device = plan.slots_per_device(memory, len(queue), budget, mesh.devices.size)
        if memory:
            progress.note(f"bucket {bucket.id}: XLA {memory.per_run / 2**20:.2f} MiB per run + "
                          f"{memory.fixed / 2**20:.2f} MiB fixed, {per_device} slots per device")
        if engine.program_key(bucket, per_device * mesh.devices.size, layout) not in programs:
            progress.note(f"compiling bucket {bucket.id} ({bucket.group}, "
                          f"K={bucket.static.width})")

        def compiled(seconds: float, bucket: Bucket = bucket,
                     spent: list[float] = compile_seconds) -> None:
            spent.append(seconds)
            report.compile_seconds[bucket.id] = seconds
            progress.note(f"bucket {bucket.id} compiled in {seconds:.1f}s, training")

        engine.train_bucket(bucket, queue, per_device, mesh,
                            lambda finished, bucket=bucket: writer.add(bucket, finished),
                            programs, compiled, layout)
        writer.flush()
        seconds = time.perf_counter() - start
        report.train_seconds += seconds - sum(compile_seconds)
        report.slowest_bucket_seconds = max(report.slowest_bucket_seconds, seconds)


# ---------------------------------------------------------------------------------------------
# Rounds: a fixed grid is one round; a search adds rounds until its goal is met


def _pad_for_search(buckets: list[Bucket], spec: SweepSpec) -> list[Bucket]:
    """Every round of a search compiles the same shapes: pad the train rows to the largest
    split the bounds allow."""
    largest = {}
    for condition in spec.runs():
        fraction = max(search.train_fraction(spec.search, condition, bound)
                       for bound in spec.search.bounds)
        order = groups.parse_group(condition.group).order
        n_train, _ = data.split_sizes(order**condition.num_ops, 1.0 - fraction)
        largest[condition.group] = max(largest.get(condition.group, 0), n_train)
    return [replace(b, train_rows_at_least=largest.get(b.group, 0)) for b in buckets]


def first_round(spec: SweepSpec) -> list[tuple[int | None, PlannedRun]]:
    """Round 1's runs, each with its search condition (None for a fixed grid)."""
    if spec.search is None:
        return [(None, plan.planned_run(config)) for config in spec.runs()]
    return [(index, plan.planned_run(config)) for index, config in
            search.first_round(spec.search, spec.runs())]


def _round_buckets(spec: SweepSpec, runs: list[PlannedRun]) -> list[Bucket]:
    buckets = plan.plan_runs(spec, runs)
    return _pad_for_search(buckets, spec) if spec.search else buckets


def run_sweep(spec: SweepSpec, results_root: storage.Where = "results", *,
              out_dir: storage.Where | None = None, overwrite: bool = False,
              memory_budget: int | None = None, progress: bool = True,
              devices: list | None = None) -> SweepReport:
    """Train this process's share of ``spec`` and write its tables; finished runs are skipped.

    ``devices`` defaults to every local device; the run axis is sharded over them. Every process
    of a job (see ``initialize_distributed``) plans the same runs and trains every n-th one;
    process 0 then waits for all of them and writes the manifest.
    ``progress``: a live bar on a terminal, else a line every few seconds on stderr.
    """
    out_dir = Location(out_dir) if out_dir else Location(results_root) / spec.output_name
    devices = devices or jax.local_devices()
    process, processes = jax.process_index(), jax.process_count()
    budget = memory_budget or engine.default_memory_budget()
    rounds = [first_round(spec)]
    buckets = _round_buckets(spec, [run for _, run in rounds[0]])
    plan.check_memory(buckets, budget)
    identity = plan.identity(spec, [run for _, run in rounds[0]])
    outdir.prepare(out_dir, identity, spec.source_text, spec.scale, overwrite, process)
    report = SweepReport(out_dir, process, len(devices))
    status_path = out_dir / outdir.PROCESS_FILE.format(process)
    metadata = results.provenance(spec.source_text, spec.scale)
    show = progress and process == 0
    bar = Progress(spec.output_name, show)
    with outdir.Lease(out_dir, process):
        outdir.write_json(out_dir, status_path, report.stats("running"))
        try:
            writer = Writer(out_dir, identity, spec, schema_of(buckets), metadata, report, bar)
            _train_rounds(spec, rounds, buckets, writer, devices, processes, budget)
        except BaseException as err:
            state = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            outdir.write_json(out_dir, status_path, report.stats(state, repr(err)))
            raise
        finally:
            bar.close()
        outdir.write_json(out_dir, status_path, report.stats("done"))
    if process == 0:
        planned = {run.run_id for round_runs in rounds for _, run in round_runs}
        statuses = wait_for_runs(out_dir, identity, planned, processes,
                                 max(MIN_STALL_SECONDS, 3 * report.slowest_bucket_seconds),
                                 final=True)
        write_manifest(out_dir, identity, metadata, budget, statuses)
    return report


def _train_rounds(spec: SweepSpec, rounds: list, buckets: list[Bucket], writer: Writer,
                  devices: list, processes: int, budget: int) -> None:
    """Train round after round; ``rounds`` gains each new round's (condition, run) pairs."""
    report, out_dir, identity = writer.report, writer.out_dir, writer.identity
    mesh = Mesh(np.asarray(devices), ("runs",))
    programs: dict = {}
    # What an earlier invocation finished, verified once: later rounds add runs that only this
    # invocation's processes write.
    done = set(outdir.verify(out_dir, identity, quarantine_process=report.process).run_ids)
    while True:
        report.rounds = len(rounds)
        train_runs(buckets, done, processes, mesh, budget, writer, programs)
        if spec.search is None:
            return
        so_far = [pair for round_runs in rounds for pair in round_runs]
        ids = {run.run_id for _, run in so_far}
        wait_for_runs(out_dir, identity, ids, processes,
                      max(MIN_STALL_SECONDS, 3 * report.slowest_bucket_seconds))
        condition_of = {run.run_id: index for index, run in so_far}
        table = results.read_runs(out_dir)
        table = table[table["run_id"].isin(ids)]
        table = table.assign(search_condition=table["run_id"].map(condition_of))
        conditions = spec.runs()  # the search's conditions: the grid without field and seed
        tried = [set() for _ in conditions]
        for index, run in so_far:
            tried[index].add(getattr(run.config, spec.search.field))
        configs, _ = search.next_round(spec.search, conditions, table, tried, len(rounds) + 1)
        if not configs:
            return
        rounds.append([(index, plan.planned_run(config, len(rounds) + 1))
                       for index, config in configs])
        writer.progress.note(f"round {len(rounds)}: {len(configs)} runs")
        buckets = _round_buckets(spec, [run for _, run in rounds[-1]])


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
                   statuses: list[dict]) -> None:
    """Once every process is done: verify every part (setting aside any that fails), then
    record the sweep's parts, processes and what its stop rules and search saved."""
    verified = outdir.verify(out_dir, identity, quarantine_all=True)
    if verified.damaged:
        raise SweepIncomplete(f"{len(verified.damaged)} part(s) in {out_dir} failed "
                              "verification and were set aside; run the same command again "
                              "to train their runs")
    runs = results.read_runs(out_dir)
    rates = [s["run_steps_per_second"] for s in statuses if s.get("run_steps_per_second")]
    manifest = {
        "identity": identity,
        "provenance": {k: v for k, v in metadata.items() if k != "sweep_toml"},
        "memory_budget": memory_budget,
        "run_steps_per_second": sum(rates) if rates else None,  # all processes together
        "runs": len(runs),
        "rounds": int(runs["round"].max()),
        "runs_stopped_early": int(runs["stopped_step"].notna().sum()),
        "runs_diverged": int(runs["diverged"].sum()),
        "run_steps_planned": int(runs["steps"].sum()),
        "run_steps_executed": int(runs["steps_trained"].sum()),
        "processes": statuses,
        "parts": verified.parts,
    }
    outdir.write_json(out_dir, out_dir / outdir.MANIFEST_FILE, manifest)
    outdir.remove_temporaries(out_dir)
