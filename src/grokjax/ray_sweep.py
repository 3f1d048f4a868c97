"""A sweep on a Ray cluster: ``grokjax sweep FILE --ray [ADDRESS]``, ``grokjax.run(..., ray=)``.

The driver (this process: a laptop, a CPU VM, a cluster's head) cuts each round's plan into
chunks (``chunks``) and hands them to a pool of workers: a Ray actor per GPU, per TPU host, or
per core of a node without accelerators, each keeping its compiled programs across chunks and
finding the others' in JAX's persistent compilation cache. A worker trains the runs of a chunk
that no part holds yet and writes ordinary parts (``train_chunk``), so a chunk may run twice (a
retry, a backup copy) without harm: the directory keeps one verified copy per run id.

Workers are disposable. Every second the pool follows the cluster's nodes: a node that joins
gets workers, the chunk of a worker that died goes back to the queue, and once the queue is
empty an idle worker runs a backup copy of the oldest chunk in flight, so a slow node holds up
nobody. The driver holds process 0's lease and a chunk commits only while that lease is the
latest: a driver killed and run again continues where the tables stand and fences the old one's
stragglers. A search's rounds come from the finished runs, as in one process. At the end the
driver stops the workers, verifies every part and writes the manifest.

Ray is optional (``pip install 'grokjax[ray]'``): only a sweep that runs on it imports it.
"""

from __future__ import annotations

import collections
import logging
import os
import platform
import secrets
import socket
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd
from jax.sharding import Mesh

from grokjax import chunks, coordination, engine, outdir, plan, rounds, storage, sweep, tables
from grokjax.chunks import Chunk
from grokjax.coordination import SweepReport, write_manifest
from grokjax.errors import SpecError, SweepIncomplete
from grokjax.plan import Bucket
from grokjax.progress import Progress
from grokjax.spec import SweepSpec
from grokjax.storage import Location

DEFAULT_COMPILE_CACHE = "~/.cache/grokjax/jax"  # on each worker's host
CHUNK_MINUTES = 3.0
MAX_LOSSES = 3  # a chunk whose worker died this often stops the sweep: it may be the cause
MAX_START_FAILURES = 3  # a node on which this many workers failed to start is left out
POLL_SECONDS = 0.5
POOL_SECONDS = 1.0  # how often the pool follows the cluster's nodes
DRIVER_SCOPE = "process-0"  # the lease the driver holds, and its chunks commit under


@dataclass(frozen=True)
class Job:
    """What every chunk of a sweep shares; shipped to the workers once."""

    out_dir: str
    identity: str
    spec: SweepSpec
    schema: tables.Schema
    metadata: dict
    epoch: int  # the driver's lease: a chunk commits only while it is the latest
    memory_budget: int | None  # per device; None: each worker's default


class Worker:
    """One Ray actor: a GPU, a TPU host or a CPU core, and its compiled programs."""

    def __init__(self, compile_cache: str):
        # Before JAX starts its backends: one CPU device (Ray gives the actor one core; a GPU
        # or TPU worker ignores it), and the compilation cache every worker reads and fills.
        jax.config.update("jax_num_cpu_devices", 1)
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        self.mesh = Mesh(np.asarray(jax.local_devices()), ("runs",))
        self.programs: dict = {}
        self.index: outdir.RunIndex | None = None  # the parts this worker has read, by job

    def ready(self) -> dict:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "host": platform.node(),
                "pid": os.getpid(), "memory_budget": engine.default_memory_budget()}

    def run(self, job: Job, bucket: Bucket) -> dict:
        if self.index is None or self.index.identity != job.identity:
            self.index = outdir.RunIndex(Location(job.out_dir), job.identity)
        return train_chunk(job, bucket, self.mesh, self.programs, self.index)


def train_chunk(job: Job, bucket: Bucket, mesh: Mesh, programs: dict,
                index: outdir.RunIndex) -> dict:
    """Train the runs of a chunk (``bucket``) that no part holds yet and write them as parts
    named after this execution; what another execution commits meanwhile is skipped. Every
    commit is fenced by the driver's lease. Returns what it did."""
    out_dir, started = Location(job.out_dir), time.time()
    if not storage.exists(out_dir / outdir.PLAN_FILE):
        raise SpecError([f"{out_dir} is not visible from the Ray worker on {platform.node()}: "
                         "give the workers a shared directory (NFS, a Cloud Storage FUSE mount) "
                         "or a gs:// or s3:// results root"], "results")
    report = SweepReport(out_dir)
    writer = sweep.Writer(out_dir, job.identity, job.spec, job.schema, job.metadata, report,
                          Progress(job.spec.output_name, False), f"r{secrets.token_hex(4)}",
                          index)
    budget = job.memory_budget or engine.default_memory_budget()
    with outdir.fenced(outdir.Fence(out_dir, DRIVER_SCOPE, job.epoch)):
        sweep.train_runs([bucket], index.scan(), 1, mesh, budget, writer, programs)
    return {"trained": report.runs_trained, "generalized": report.runs_generalized,
            "run_steps": report.run_steps, "compile_seconds": report.compile_seconds,
            "start": started, "end": time.time()}


def _worker_options(node: dict) -> tuple[int, dict]:
    """How many workers a node holds and the Ray resources of each: a GPU each, a TPU host's
    chips together (libtpu gives one process all of them), else a CPU core each."""
    resources = node["Resources"]
    if resources.get("GPU"):
        return int(resources["GPU"]), {"num_gpus": 1}
    if resources.get("TPU"):
        return 1, {"resources": {"TPU": resources["TPU"]}}
    return int(resources.get("CPU", 0)), {"num_cpus": 1}


@dataclass
class Slot:
    handle: object
    node: str
    ready: object | None  # the ref of its start-up call, until it answered
    info: dict | None = None
    busy: object | None = None  # the ref of the chunk it runs


class Pool:
    """The workers, as many as the live nodes hold, each placed on its node."""

    def __init__(self, ray, compile_cache: str):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.affinity = ray, NodeAffinitySchedulingStrategy
        self.actor = ray.remote(max_restarts=0)(Worker)
        self.compile_cache = compile_cache
        self.slots: dict[int, Slot] = {}
        self.next_key, self.followed = 0, -float("inf")
        self.failures: collections.Counter = collections.Counter()  # per node
        self.error = ""  # why the last worker failed to start

    def follow(self) -> None:
        """Drop the workers of nodes that are gone; start workers on nodes with room."""
        if time.monotonic() - self.followed < POOL_SECONDS:
            return
        self.followed = time.monotonic()
        nodes = {node["NodeID"]: node for node in self.ray.nodes() if node["Alive"]}
        for key, slot in list(self.slots.items()):
            if slot.node not in nodes:
                self.drop(key)
        for node_id, node in nodes.items():
            if self.failures[node_id] >= MAX_START_FAILURES:
                continue
            count, options = _worker_options(node)
            for _ in range(count - sum(slot.node == node_id for slot in self.slots.values())):
                handle = self.actor.options(
                    **options, scheduling_strategy=self.affinity(node_id, soft=False),
                ).remote(self.compile_cache)
                self.slots[self.next_key] = Slot(handle, node_id, handle.ready.remote())
                self.next_key += 1

    def drop(self, key: int) -> None:
        slot = self.slots.pop(key, None)
        if slot is not None:
            self.ray.kill(slot.handle, no_restart=True)

    def starting(self) -> dict:
        return {slot.ready: key for key, slot in self.slots.items() if slot.ready is not None}

    def started(self, key: int, ref) -> None:
        try:
            self.slots[key].info = self.ray.get(ref)
            self.slots[key].ready = None
        except self.ray.exceptions.RayError as err:  # its node went, or it cannot run there
            node = self.slots[key].node
            self.drop(key)
            self.failures[node] += 1
            self.error = [line for line in str(err).splitlines() if line.strip()][-1].strip()
            if self.failures[node] == MAX_START_FAILURES:
                print(f"warning: no worker starts on Ray node {node[:12]} ({self.error}); it is "
                      "left out", file=sys.stderr, flush=True)

    def idle(self) -> list[int]:
        return [key for key, slot in self.slots.items() if slot.info and slot.busy is None]

    def stop(self) -> None:
        for key in list(self.slots):
            self.drop(key)


@dataclass
class Execution:
    chunk: Chunk
    slot: int
    started: float


class Driver:
    """Hands chunks to the pool until their runs are in the directory."""

    def __init__(self, ray, pool: Pool, job_ref, progress: Progress, report: SweepReport,
                 index: outdir.RunIndex):
        self.ray, self.pool, self.job_ref, self.progress = ray, pool, job_ref, progress
        self.report, self.index = report, index
        self.running: dict[object, Execution] = {}  # kept across rounds: late backup copies
        self.losses: collections.Counter = collections.Counter()
        self.executions: list[dict] = []
        self.counted = np.zeros(3, int)  # runs, generalized, run-steps the round's chunks reported

    def wait_for_workers(self) -> list[dict]:
        """What the first workers report, once there are some."""
        noted = False
        while not any(slot.info for slot in self.pool.slots.values()):
            self.pool.follow()
            if (not self.pool.slots
                    and max(self.pool.failures.values(), default=0) >= MAX_START_FAILURES):
                raise SpecError([f"no worker starts on the Ray cluster's nodes "
                                 f"({self.pool.error}): install the same grokjax, with "
                                 "'grokjax[ray]', on every node"], "ray")
            if not noted and not self.pool.slots:
                self.progress.note("waiting for a Ray node with CPUs, GPUs or TPUs to join")
                noted = True
            self._collect(list(self.pool.starting()))
        return [slot.info for slot in self.pool.slots.values() if slot.info]

    def train(self, chunk_list: list[Chunk]) -> None:
        """Until every run of ``chunk_list`` is in a verified runs part: each chunk with a
        missing run goes to a worker (again, if a chunk's execution ended with runs missing)."""
        ids = {run_id for chunk in chunk_list for run_id in chunk.run_ids}
        todo = [chunk for chunk in chunk_list if set(chunk.run_ids) - self.index.scan()]
        for _ in range(2):
            if not todo:
                return
            self._run(todo)
            missing = ids - self.index.scan()
            todo = [chunk for chunk in chunk_list if set(chunk.run_ids) & missing]
        raise SweepIncomplete(f"{len(ids - self.index.scan())} runs are still missing after "
                              "their chunks ran twice; run the same command again")

    def _run(self, todo: list[Chunk]) -> None:
        queue = collections.deque(todo)
        pending = {chunk.id for chunk in todo}
        while pending:
            self.pool.follow()
            for key in self.pool.idle():
                chunk = queue.popleft() if queue else self._backup(pending)
                if chunk is None:
                    break
                ref = self.pool.slots[key].handle.run.remote(self.job_ref, chunk.bucket)
                self.pool.slots[key].busy = ref
                self.running[ref] = Execution(chunk, key, time.time())
            for execution in self._collect([*self.running, *self.pool.starting()]):
                chunk = execution.chunk
                if execution.slot is not None:
                    pending.discard(chunk.id)
                elif chunk.id in pending and chunk not in queue and not any(
                        e.chunk.id == chunk.id for e in self.running.values()):
                    self.losses[chunk.id] += 1  # lost with its worker, and no copy runs
                    if self.losses[chunk.id] >= MAX_LOSSES:
                        raise SweepIncomplete(
                            f"chunk {chunk.id} ({len(chunk.run_ids)} runs) lost its worker "
                            f"{MAX_LOSSES} times: it may be what kills the worker (memory?); "
                            "see the workers' logs (ray logs) and run the same command again")
                    queue.appendleft(chunk)

    def _backup(self, pending: set[str]) -> Chunk | None:
        """A second copy of the oldest pending chunk that runs once (chunks are idempotent: the
        first copy to commit a run keeps it)."""
        copies = collections.Counter(e.chunk.id for e in self.running.values())
        alone = [e for e in self.running.values()
                 if copies[e.chunk.id] == 1 and e.chunk.id in pending]
        return min(alone, key=lambda e: e.started).chunk if alone else None

    def _collect(self, refs: list) -> list[Execution]:
        """Wait briefly for the pool's calls; the executions that ended (``slot`` None when the
        worker was lost)."""
        if not refs:
            time.sleep(POLL_SECONDS)
            return []
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
        if ready:  # and every other call that has ended by now
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        starting, ended = self.pool.starting(), []
        for ref in ready:
            if ref in starting:
                self.pool.started(starting[ref], ref)
                continue
            execution = self.running.pop(ref)
            slot = self.pool.slots.get(execution.slot)
            record = self._record(execution)
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as err:
                raise err.cause from None  # grokjax's own error, or a bug: as in one process
            except self.ray.exceptions.RayError as err:  # the worker or its node died
                self.pool.drop(execution.slot)
                self.executions.append(record | {"end": time.time(),
                                                 "outcome": f"lost: {type(err).__name__}"})
                execution.slot = None
                ended.append(execution)
                continue
            slot.busy = None
            self.executions.append(record | {"start": result["start"], "end": result["end"],
                                             "outcome": "done", "trained": result["trained"],
                                             "host": slot.info["host"], "pid": slot.info["pid"]})
            self._count(result)
            ended.append(execution)
        return ended

    def _record(self, execution: Execution) -> dict:
        slot = self.pool.slots.get(execution.slot)
        return {"chunk": execution.chunk.id, "runs": len(execution.chunk.run_ids),
                "node": slot.node if slot else None, "start": execution.started}

    def stop(self) -> None:
        """Stop every worker: no copy of a chunk commits after this. The copies still running
        are recorded as stopped (another copy did their chunk)."""
        self.executions += [self._record(execution) | {"end": time.time(), "outcome": "stopped"}
                            for execution in self.running.values()]
        self.running.clear()
        self.pool.stop()

    def _count(self, result: dict) -> None:
        counts = np.array([result["trained"], result["generalized"], result["run_steps"]])
        self.counted += counts
        self.progress.finished(*map(int, counts))
        for bucket, seconds in result["compile_seconds"].items():
            compiled = self.report.compile_seconds
            compiled[bucket] = max(seconds, compiled.get(bucket, 0))

    def settle(self, trained: pd.DataFrame) -> None:
        """A round's counts from its runs in the table (``trained``, one row each): what the
        chunks reported misses the runs a backup copy committed before it was stopped."""
        report = self.report
        actual = np.array([len(trained), trained["generalized"].sum(),
                           trained["steps_trained"].sum()])
        self.progress.finished(*map(int, actual - self.counted))
        self.counted[:] = 0
        report.runs_trained += int(actual[0])
        report.runs_generalized += int(actual[1])
        report.run_steps += int(actual[2])
        report.runs_stopped += int(trained["stopped_step"].notna().sum())


def run_on_ray(spec: SweepSpec, results_root: storage.Where = "results", *,
               address: str | None = None, out_dir: storage.Where | None = None,
               overwrite: bool = False, memory_budget: int | None = None, progress: bool = True,
               chunk_runs: int | None = None, chunk_minutes: float = CHUNK_MINUTES,
               compile_cache: str = DEFAULT_COMPILE_CACHE) -> SweepReport:
    """``sweep.run_sweep`` on a Ray cluster (``address``; None: a Ray started on this machine,
    or the one ``RAY_ADDRESS`` names). Chunks hold ``chunk_runs`` runs, or as many as take
    ``chunk_minutes`` on one worker. ``compile_cache``: JAX's persistent cache, a directory on
    each worker's host or one they share (an NFS path; gs:// or s3:// with etils[epath])."""
    try:
        import ray
    except ImportError:
        raise SpecError(["--ray needs Ray on this machine and on every node: pip install "
                         "'grokjax[ray]'"], "ray") from None
    out_dir = Location(out_dir) if out_dir else Location(results_root) / spec.output_name
    first = rounds.first_round(spec)
    buckets = plan.plan_runs(spec, [run for _, run in first])
    identity = plan.identity(spec, [run for _, run in first])
    report = SweepReport(out_dir)
    bar = Progress(spec.output_name, progress)
    if address:
        _check_reachable(address)
    if Location(compile_cache).protocol is not None:
        try:
            import etils.epath  # noqa: F401  (JAX reads a cache in a bucket through it)
        except ImportError:
            raise SpecError([f"a compilation cache at {compile_cache} needs etils[epath] here "
                             "and on every worker: pip install 'etils[epath]'"], "ray") from None
    # The workers' output (JAX's and XLA's, libtpu's on a TPU VM) stays in Ray's logs (`ray
    # logs`): the driver shows progress, and a chunk's error comes back as its exception.
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    pool = Pool(ray, compile_cache)
    driver = Driver(ray, pool, None, bar, report, outdir.RunIndex(out_dir, identity))
    try:
        workers = driver.wait_for_workers()
        budget = memory_budget or min(worker["memory_budget"] for worker in workers)
        plan.check_memory(buckets, budget)  # before anything is written
        sweep.prepare(out_dir, spec, identity, first, overwrite)
        metadata = tables.provenance(spec.source_text, spec.scale)
        with outdir.Lease(out_dir, 0) as lease:
            try:
                with coordination.reporting(out_dir, report):
                    outdir.verify(out_dir, identity, quarantine_all=True)
                    driver.job_ref = ray.put(Job(str(out_dir), identity, spec,
                                                 tables.schema_of(buckets), metadata,
                                                 lease.fence.epoch, memory_budget))
                    planned = _train_rounds(spec, first, buckets, driver, chunk_runs,
                                            chunk_minutes)
                    driver.stop()
            finally:
                if driver.executions:  # what ran where, for the record
                    outdir.check_fence(out_dir)
                    outdir.write_json(out_dir, out_dir / outdir.EXECUTIONS_FILE,
                                      {"executions": driver.executions})
            write_manifest(out_dir, identity, metadata, budget, [report.stats("done")], planned)
    finally:
        bar.close()
        pool.stop()
        ray.shutdown()
    return report


def _train_rounds(spec: SweepSpec, first: rounds.Round, buckets: list[Bucket], driver: Driver,
                  chunk_runs: int | None, chunk_minutes: float) -> set[str]:
    """Every round of the sweep through the pool; the planned run ids."""
    report, started = driver.report, time.perf_counter()
    flops = chunks.WORKER_FLOPS[_accelerator(driver.ray.cluster_resources())]
    all_rounds = [first]
    while True:
        report.rounds = len(all_rounds)
        work = chunks.cut(buckets, lambda bucket: chunk_runs or chunks.runs_per_chunk(
            bucket, chunk_minutes, flops))
        ids = {run_id for chunk in work for run_id in chunk.run_ids}
        todo = ids - driver.index.scan()
        report.runs += len(ids)
        report.runs_skipped += len(ids) - len(todo)
        driver.progress.add(len(todo))
        driver.progress.note(f"round {len(all_rounds)}: {len(todo)} of {len(ids)} runs to "
                             f"train, in {len(work)} chunks")
        driver.train(work)
        report.train_seconds = time.perf_counter() - started
        report.devices = len({(e["host"], e["pid"]) for e in driver.executions if "host" in e})
        table = outdir.read_table(driver.index.out_dir, "runs").drop_duplicates("run_id")
        driver.settle(table[table["run_id"].isin(todo)])
        new = rounds.next_round(spec, all_rounds, table)
        if not new:
            return sweep.planned_ids(all_rounds)
        all_rounds.append(new)
        outdir.write_planned_runs(driver.index.out_dir, driver.index.identity,
                                  sweep.planned_ids(all_rounds))
        buckets = plan.plan_runs(spec, [run for _, run in new])


def _check_reachable(address: str) -> None:
    """Refuse at once a head that does not answer: Ray itself would retry for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", a ray:// client address: Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise SpecError([f"no Ray head answers at {address} ({err.strerror or err}); start one "
                         "there with `ray start --head`, or check the address"], "ray") from None


def _accelerator(resources: dict) -> str:
    """What the cluster's workers train on (the pool gives accelerators their own workers)."""
    return "gpu" if resources.get("GPU") else "tpu" if resources.get("TPU") else "cpu"
