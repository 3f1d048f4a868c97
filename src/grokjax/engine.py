"""The engine: compile a bucket once, stream its runs through a fixed set of slots.

A bucket's program is compiled for ``slots`` runs (sharded over the local devices along the run
axis with ``shard_map``: every device trains its own slots, nothing crosses devices). Each call
of its ``segment`` first starts the runs whose slots were refilled (their state initialised in
the same program, so nothing recompiles), then advances every slot by a few evaluations. A run
that finishes, meets its stop rule or diverges is *done*: the host collects its curves at the
next segment boundary and gives its slot the next pending run, so the device stays full until
the queue is empty.

On CPU each device loops over its slots one run at a time (``train.over_runs``), so a run's
numbers are bitwise those of the same run trained alone, whatever ran beside it; on GPU and TPU
the slots are vmapped into every operation.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from grokjax import dataset
from grokjax.plan import Bucket, PlannedRun
from grokjax.train import HParams, Split, Static, Task, make_train, over_runs

SEGMENTS_PER_RUN = 25  # host round trips over one run's evaluations (stop and refill points)


@dataclass(frozen=True)
class FinishedRun:
    run: PlannedRun
    curves: dict[str, np.ndarray]  # per metric (points,), with "step"; ends at the run's end
    diverged_step: int  # -1 if it did not diverge
    stopped_step: int  # -1 if its stop rule did not end it
    features: dict[str, np.ndarray] | None  # per-node (K,) arrays, with diagnostics
    seconds: float  # its share of the device time of the segments it was in
    # With keep_weights: step -> its parameters, the last step's always (for a diverged run its
    # last finite parameters), and those of Static.snapshot_evals that the run reached.
    weights: dict[int, dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class Program:
    """A bucket's compiled pieces for one number of slots."""

    empty: Callable  # (hparams, keys) -> State of idle slots
    segment: Callable  # (state, hparams, split, keys, fresh, task) -> (state, metrics)
    features: Callable | None  # (state, hparams, split, task) -> per-node arrays
    evals_per_segment: int
    compile_seconds: float
    memory_bytes: int  # XLA's figure for one call of segment on one device


def use_every_cpu_core() -> None:
    """One XLA CPU device per core, unless the user chose a device count.

    XLA:CPU runs this model's small matmuls on one thread, so per-core devices, each training
    its own runs, nearly double throughput on 2 cores (3,680 vs 1,960 run-steps/s at M=23,
    K=256). It must run before JAX starts its backends; later it changes nothing.
    """
    if ("JAX_NUM_CPU_DEVICES" in os.environ
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
        return
    try:
        jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))
    except RuntimeError:  # backends already running (e.g. a notebook): keep their devices
        pass


def default_memory_budget() -> int:
    """Per device: half of its memory, or on CPU a quarter of host RAM shared by the devices."""
    devices = jax.local_devices()
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] * 0.5)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(ram * 0.25 / len(devices))


def runs_per_batch(backend: str | None = None) -> int | None:
    """How a device lays out its slots (``train.over_runs``): a CPU loops over them one at a
    time (1: each run's working set stays in cache, and its numbers never depend on what runs
    beside it), a GPU or TPU vmaps all of them into every operation (None) to stay busy."""
    return 1 if (backend or jax.default_backend()) == "cpu" else None


def evals_per_segment(num_points: int, segments: int = SEGMENTS_PER_RUN) -> int:
    return max(1, round(num_points / segments))


class Slots:
    """Host copies of the per-slot inputs; a refill rewrites one slot's rows."""

    def __init__(self, bucket: Bucket, size: int):
        self.bucket, self.size = bucket, size
        self.runs: list[PlannedRun | None] = [None] * size
        self.hparams = np.zeros((len(HParams._fields), size), np.float32)
        self.train_rows = np.zeros((size, bucket.train_rows), np.int32)
        self.is_train = np.zeros((size, bucket.table_rows), bool)
        self.keys = np.zeros((size, 2), np.uint32)
        self.fresh = np.zeros(size, bool)
        self.points: list[list[dict[str, np.ndarray]]] = [[] for _ in range(size)]
        self.kept: list[dict[int, dict[str, np.ndarray]]] = [{} for _ in range(size)]
        self.seconds = np.zeros(size)

    def fill(self, slot: int, run: PlannedRun) -> None:
        config = run.config
        self.runs[slot] = run
        self.hparams[:, slot] = [getattr(config, name) or 0.0 for name in HParams._fields]
        train_idx, _ = dataset.split(self.bucket.table_rows, run.test_size, config.seed)
        self.train_rows[slot] = 0
        self.train_rows[slot, :len(train_idx)] = train_idx
        self.is_train[slot] = False
        self.is_train[slot, train_idx] = True
        self.keys[slot] = np.asarray(jax.random.PRNGKey(config.seed))
        self.fresh[slot] = True
        self.points[slot], self.kept[slot], self.seconds[slot] = [], {}, 0.0

    def inputs(self) -> tuple[HParams, Split, np.ndarray]:
        return HParams(*self.hparams), Split(self.train_rows, self.is_train), self.keys

    def curves(self, slot: int) -> dict[str, np.ndarray]:
        """The slot's run's curves so far: per metric (points,), with "step"."""
        points = self.points[slot]
        return {name: np.concatenate([p[name] for p in points]) for name in points[0]}

    def in_flight(self) -> list[tuple[PlannedRun, dict[str, np.ndarray]]]:
        """Every run in a slot with its curves so far (what the live view shows)."""
        return [(run, self.curves(i)) for i, run in enumerate(self.runs)
                if run is not None and self.points[i]]


def compile_program(static: Static, args: tuple, mesh: Mesh,
                    runs_per_batch: int | None) -> Program:
    """Ahead-of-time compile the empty state, segment and features for the shapes of ``args``
    (hparams, split, keys, fresh, task; arrays or ShapeDtypeStructs with their shardings), with
    a device's slots laid out as ``runs_per_batch`` says (train.over_runs;
    ``runs_per_batch()`` is the backend's own layout)."""
    fns = make_train(static)
    per_run = NamedSharding(mesh, P("runs"))
    hparams, split, keys, fresh, task = args
    per_segment = evals_per_segment(static.num_evals + 1)

    def on_devices(fn, per_run_args: int):
        # Every device computes only its own runs, so there is nothing for the varying-axis
        # type check to find; it would reject a fresh run's constants (step 0) beside a
        # running one's state in one lax.cond.
        return jax.shard_map(over_runs(fn, runs_per_batch), mesh=mesh,
                             in_specs=(P("runs"),) * per_run_args + (P(),), out_specs=P("runs"),
                             check_vma=False)

    def idle(hparams, keys):
        state = fns.init(hparams, keys)
        return state._replace(done=jax.numpy.bool_(True))

    start = time.perf_counter()
    empty = jax.jit(jax.vmap(idle), out_shardings=per_run)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=per_run),
                         jax.eval_shape(empty, hparams, keys))
    empty = empty.lower(hparams, keys).compile()
    segment = jax.jit(on_devices(partial(fns.segment, num_evals=per_segment), 5),
                      donate_argnums=0).lower(state, hparams, split, keys, fresh, task).compile()
    features = (jax.jit(on_devices(fns.features, 3)).lower(state, hparams, split, task).compile()
                if static.diagnostics else None)
    memory = segment.memory_analysis()
    memory_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                    + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
    return Program(empty, segment, features, per_segment, time.perf_counter() - start,
                   memory_bytes)


def bucket_task(bucket: Bucket) -> Task:
    return Task(*dataset.operation_table(bucket.group, bucket.static.num_ops))


def program_key(bucket: Bucket, slots: int, runs_per_batch: int | None) -> tuple:
    """What a compiled program depends on: the bucket's code and shapes, its slots and their
    layout."""
    return bucket.static, bucket.group.spec, slots, bucket.train_rows, runs_per_batch


def program_for(bucket: Bucket, slots: int, mesh: Mesh, programs: dict,
                runs_per_batch: int | None,
                on_compiled: Callable[[float], None] = lambda seconds: None) -> Program:
    """The bucket's program for ``slots`` runs over the mesh, compiled from shapes alone on
    first use and cached in ``programs``."""
    key = program_key(bucket, slots, runs_per_batch)
    if key not in programs:
        per_run, replicated = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())

        def shape(x, sharding):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

        inputs = (*Slots(bucket, slots).inputs(), np.zeros(slots, bool))
        rows, num_ops = bucket.table_rows, bucket.static.num_ops
        task = Task(np.zeros((rows, num_ops), np.int32), np.zeros(rows, np.int32))
        args = (*jax.tree.map(lambda x: shape(x, per_run), inputs),
                jax.tree.map(lambda x: shape(x, replicated), task))
        programs[key] = compile_program(bucket.static, args, mesh, runs_per_batch)
        on_compiled(programs[key].compile_seconds)
    return programs[key]


class Memory(NamedTuple):
    """XLA's memory analysis of a bucket's program on one device: fixed + per_run · slots bytes
    (arguments + outputs + temporaries − donated aliases), from two compiled probe sizes."""

    fixed: int  # what does not grow with the slots: the shared operation table, code buffers
    per_run: int

    @classmethod
    def from_probes(cls, slots: tuple[int, int], total_bytes: tuple[int, int]) -> Memory:
        per_run = max(1, (total_bytes[1] - total_bytes[0]) // (slots[1] - slots[0]))
        return cls(max(0, total_bytes[0] - per_run * slots[0]), per_run)


PROBE_SLOTS = (1, 2)  # per device: two sizes give XLA's fixed and per-run bytes


def measure_memory(bucket: Bucket, mesh: Mesh, programs: dict,
                   runs_per_batch: int | None) -> Memory:
    """XLA's own memory figure for the bucket's program on one device, as fixed + per-run bytes,
    from its programs at PROBE_SLOTS slots per device (cached: a sweep that settles on one of
    these sizes compiles nothing more)."""
    devices = mesh.devices.size
    totals = tuple(program_for(bucket, n * devices, mesh, programs, runs_per_batch).memory_bytes
                   for n in PROBE_SLOTS)
    return Memory.from_probes(PROBE_SLOTS, totals)


def slots_per_device(memory: Memory | None, runs: int, memory_budget: int,
                     num_devices: int) -> int:
    """How many runs each device holds at once.

    A device that loops over its runs one at a time (CPU; ``memory`` None) gains nothing from
    more slots than one; one that vmaps them (GPU, TPU) takes as many as XLA's own figure for
    the program says fit the budget, up to its share.
    """
    if memory is None:
        return 1
    fit = max(1, (memory_budget - memory.fixed) // memory.per_run)
    return max(1, min(fit, math.ceil(runs / num_devices)))


def size_slots(bucket: Bucket, runs: int, mesh: Mesh, programs: dict, memory_budget: int,
               runs_per_batch: int | None) -> tuple[int, Memory | None]:
    """Slots per device for ``runs`` runs of ``bucket``, and XLA's memory figure that sized
    them (None where a device loops over its runs and holds one slot)."""
    memory = (measure_memory(bucket, mesh, programs, runs_per_batch) if runs_per_batch is None
              else None)
    return slots_per_device(memory, runs, memory_budget, mesh.devices.size), memory


def _rows(tree, rows: list[int]):
    """The host copy of the ``rows`` (slots) of a batched pytree: only those cross over."""
    index = np.asarray(rows)
    return jax.device_get(jax.tree.map(lambda x: x[index], tree))


def _keep_weights(slots: Slots, busy: list[int], finished: list[int], snapshots,
                  params) -> None:
    """Copy to the host the parameters this segment kept (Static.snapshot_evals) and the last
    ones of the runs that finished in it."""
    if snapshots is not None:
        steps = jax.device_get(snapshots.step)  # (slots, S), -1 where unused
        taken = [i for i in busy if (steps[i] >= 0).any()]
        kept = _rows(snapshots.params, taken) if taken else {}
        for row, i in enumerate(taken):
            for entry in np.flatnonzero(steps[i] >= 0):
                slots.kept[i][int(steps[i, entry])] = {name: values[row, entry]
                                                       for name, values in kept.items()}
    last = _rows(params, finished) if finished else {}
    for row, i in enumerate(finished):
        step = int(slots.points[i][-1]["step"][-1])
        slots.kept[i][step] = {name: values[row] for name, values in last.items()}


def train_bucket(bucket: Bucket, queue: list[PlannedRun], slots_per_device: int, mesh: Mesh,
                 on_finished: Callable[[list[FinishedRun]], None], programs: dict,
                 on_compiled: Callable[[float], None], runs_per_batch: int | None,
                 on_segment: Callable[[Slots], None] = lambda slots: None) -> None:
    """Train ``queue`` (runs of ``bucket``) through refilling slots.

    ``on_finished`` gets the runs done at each segment boundary, as soon as their metrics are
    on the host (so progress follows compute, not dispatch); ``on_segment`` then gets the slots
    (``Slots.in_flight``: the runs still training, with their curves so far). ``programs``
    caches compiled programs by shape across calls (a search trains a bucket again in every
    round).
    """
    devices = mesh.devices.size
    slots = Slots(bucket, slots_per_device * devices)
    per_run, replicated = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    task = jax.device_put(bucket_task(bucket), replicated)
    pending = list(queue)
    for slot in range(min(slots.size, len(pending))):
        slots.fill(slot, pending.pop(0))
    hparams, split, keys = jax.device_put(slots.inputs(), per_run)
    program = program_for(bucket, slots.size, mesh, programs, runs_per_batch, on_compiled)
    state = program.empty(hparams, keys)
    while any(run is not None for run in slots.runs):
        start = time.perf_counter()
        fresh = jax.device_put(slots.fresh, per_run)
        state, metrics, snapshots = program.segment(state, hparams, split, keys, fresh, task)
        metrics, done, diverged, stopped = jax.device_get(
            (metrics, state.done, state.diverged_step, state.stopped_step))
        seconds = time.perf_counter() - start
        slots.fresh[:] = False
        busy = [i for i, run in enumerate(slots.runs) if run is not None]
        finished = [i for i in busy if done[i]]
        features = (jax.device_get(program.features(state, hparams, split, task))
                    if finished and program.features is not None else None)
        for i in busy:
            measured = metrics["step"][i] >= 0
            slots.points[i].append({name: values[i][measured] for name, values in metrics.items()})
            slots.seconds[i] += seconds / len(busy)
        keeps_weights = bucket.static.keep_weights != "none"
        if keeps_weights:
            _keep_weights(slots, busy, finished, snapshots, state.params)
        done_runs = []
        for i in finished:
            done_runs.append(FinishedRun(
                slots.runs[i], slots.curves(i), int(diverged[i]), int(stopped[i]),
                None if features is None else {k: v[i] for k, v in features.items()},
                float(slots.seconds[i]), slots.kept[i] if keeps_weights else None))
            slots.runs[i] = None
            if pending:
                slots.fill(i, pending.pop(0))
        if done_runs:
            on_finished(done_runs)
        on_segment(slots)
        if slots.fresh.any():
            hparams, split, keys = jax.device_put(slots.inputs(), per_run)
