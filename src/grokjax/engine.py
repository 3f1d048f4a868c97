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
the slots are vmapped into every operation (``Layout``), as many as XLA's memory analysis of
the program compiled at that count says fit the budget (``size_slots``).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from grokjax import dataset, memlimit
from grokjax.errors import SpecError
from grokjax.plan import Bucket, PlannedRun
from grokjax.train import HParams, Split, Static, Task, make_train, over_runs, split_for

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
    """Per device: half of its memory, or on CPU a quarter of what this process may use (host
    RAM, or less under a cgroup's or RLIMIT_AS's limit; memlimit) shared by the devices."""
    devices = jax.local_devices()
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] * 0.5)
    limit, _ = memlimit.process_memory_limit()
    return int(limit * 0.25 / len(devices))


class Layout(NamedTuple):
    """How a device runs its slots: ``train.over_runs``'s ``runs_per_batch`` (1 loops over
    them, None vmaps them) and ``make_train``'s ``onehot`` first layer."""

    runs_per_batch: int | None
    onehot: bool


def layout_for(platform: str | None = None) -> Layout:
    """The layout of a platform's devices (default: JAX's default backend).

    A CPU loops over its slots one run at a time: each run's working set stays in cache, and
    its numbers never depend on what runs beside it. A GPU or TPU vmaps all of them into every
    operation to stay busy. A TPU also computes the first layer as the one-hot matmul: XLA:TPU's
    gather of W's rows reads whole (8, 128) memory tiles (36 of the 50 MB a wd run-step reads
    on a v5e), while on a GPU XLA fuses the gather and σ into one pass and the one-hot form
    only costs memory, and on a CPU it is 17-33% slower.
    """
    platform = platform or jax.default_backend()
    return Layout(1, False) if platform == "cpu" else Layout(None, platform == "tpu")


def evals_per_segment(num_points: int, segments: int = SEGMENTS_PER_RUN) -> int:
    return max(1, round(num_points / segments))


def bucket_task(bucket: Bucket) -> Task:
    """The bucket's operation table (numpy), shared by all its runs."""
    return Task(*dataset.operation_table(bucket.group, bucket.static.num_ops))


class Slots:
    """Host copies of the per-slot inputs; a refill rewrites one slot's rows."""

    def __init__(self, bucket: Bucket, size: int):
        self.bucket, self.size = bucket, size
        self.task = bucket_task(bucket)
        self.runs: list[PlannedRun | None] = [None] * size
        self.hparams = np.zeros((len(HParams._fields), size), np.float32)
        self.train_inputs = np.zeros((size, bucket.train_rows, bucket.static.num_ops), np.int32)
        self.train_labels = np.zeros((size, bucket.train_rows), np.int32)
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
        (self.train_inputs[slot], self.train_labels[slot],
         self.is_train[slot]) = split_for(self.task, train_idx, self.bucket.train_rows)
        self.keys[slot] = np.asarray(jax.random.PRNGKey(config.seed))
        self.fresh[slot] = True
        self.points[slot], self.kept[slot], self.seconds[slot] = [], {}, 0.0

    def inputs(self) -> tuple[HParams, Split, np.ndarray]:
        return (HParams(*self.hparams), Split(self.train_inputs, self.train_labels, self.is_train),
                self.keys)

    def curves(self, slot: int) -> dict[str, np.ndarray]:
        """The slot's run's curves so far: per metric (points,), with "step"."""
        points = self.points[slot]
        return {name: np.concatenate([p[name] for p in points]) for name in points[0]}

    def in_flight(self) -> list[tuple[PlannedRun, dict[str, np.ndarray]]]:
        """Every run in a slot with its curves so far (what the live view shows)."""
        return [(run, self.curves(i)) for i, run in enumerate(self.runs)
                if run is not None and self.points[i]]


def abstract_inputs(bucket: Bucket, slots: int, mesh: Mesh | None = None) -> tuple:
    """(hparams, split, keys, fresh, task) of ``slots`` runs as ShapeDtypeStructs, sharded over
    ``mesh`` as train_bucket places them: what a program is compiled for, without arrays."""
    per_run, replicated = ((None, None) if mesh is None else
                           (NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())))
    rows, n, num_ops = bucket.table_rows, bucket.train_rows, bucket.static.num_ops

    def runs_of(shape, dtype):
        return jax.ShapeDtypeStruct((slots, *shape), dtype, sharding=per_run)

    hparams = HParams(*(runs_of((), np.float32) for _ in HParams._fields))
    split = Split(runs_of((n, num_ops), np.int32), runs_of((n,), np.int32), runs_of((rows,), bool))
    task = Task(jax.ShapeDtypeStruct((rows, num_ops), np.int32, sharding=replicated),
                jax.ShapeDtypeStruct((rows,), np.int32, sharding=replicated))
    return hparams, split, runs_of((2,), np.uint32), runs_of((), bool), task


def on_devices(fn, per_run_args: int, mesh: Mesh, runs_per_batch: int | None):
    """``fn(*per_run, shared)`` for every slot: sharded over the mesh's devices by run, each
    device laying out its own slots as ``runs_per_batch`` says (train.over_runs)."""
    # Every device computes only its own runs, so there is nothing for the varying-axis type
    # check to find; it would reject a fresh run's constants (step 0) beside a running one's
    # state in one lax.cond.
    return jax.shard_map(over_runs(fn, runs_per_batch), mesh=mesh,
                         in_specs=(P("runs"),) * per_run_args + (P(),), out_specs=P("runs"),
                         check_vma=False)


def abstract_state(fns, hparams, keys, sharding: NamedSharding | None):
    """The state of the slots of ``keys`` as ShapeDtypeStructs with ``sharding``."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        jax.eval_shape(jax.vmap(fns.init), hparams, keys))


def compile_program(static: Static, args: tuple, mesh: Mesh, layout: Layout) -> Program:
    """Ahead-of-time compile the empty state, segment and features for the shapes of ``args``
    (hparams, split, keys, fresh, task; arrays or ShapeDtypeStructs with their shardings), laid
    out on the devices as ``layout`` says."""
    fns = make_train(static, layout.onehot)
    per_run = NamedSharding(mesh, P("runs"))
    hparams, split, keys, fresh, task = args
    per_segment = evals_per_segment(static.num_evals + 1)

    def idle(hparams, keys):
        state = fns.init(hparams, keys)
        return state._replace(done=jax.numpy.bool_(True))

    start = time.perf_counter()
    state = abstract_state(fns, hparams, keys, per_run)
    empty = jax.jit(jax.vmap(idle), out_shardings=per_run).lower(hparams, keys).compile()
    segment = jax.jit(on_devices(partial(fns.segment, num_evals=per_segment), 5, mesh,
                                 layout.runs_per_batch),
                      donate_argnums=0).lower(state, hparams, split, keys, fresh, task).compile()
    features = (jax.jit(on_devices(fns.features, 3, mesh, layout.runs_per_batch))
                .lower(state, hparams, split, task).compile() if static.diagnostics else None)
    memory = segment.memory_analysis()
    memory_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                    + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
    return Program(empty, segment, features, per_segment, time.perf_counter() - start,
                   memory_bytes)


def program_key(bucket: Bucket, slots: int, layout: Layout) -> tuple:
    """What a compiled program depends on: the bucket's code and shapes, its slots and their
    layout."""
    return bucket.static, bucket.group.spec, slots, bucket.train_rows, layout


def program_for(bucket: Bucket, slots: int, mesh: Mesh, programs: dict, layout: Layout,
                on_compiled: Callable[[float], None] = lambda seconds: None) -> Program:
    """The bucket's program for ``slots`` runs over the mesh, compiled from shapes alone on
    first use and cached in ``programs``."""
    key = program_key(bucket, slots, layout)
    if key not in programs:
        programs[key] = compile_program(bucket.static, abstract_inputs(bucket, slots, mesh),
                                        mesh, layout)
        on_compiled(programs[key].compile_seconds)
    return programs[key]


class Refused(NamedTuple):
    """A slot count the compiler refused for want of device memory."""

    memory_bytes: int | None  # what it needed by its message, when the message says


_REQUIRED = re.compile(r"memory required[^(]*\(([\d.]+)([KMGT])\)")  # XLA:TPU's refusal


def memory_at(bucket: Bucket, slots: int, mesh: Mesh, programs: dict, layout: Layout,
              on_compiled: Callable[[float], None] = lambda seconds: None) -> int | None:
    """XLA's bytes per device for the bucket's program at ``slots`` slots: its memory analysis,
    or for a count the compiler refused (a TPU refuses a program its HBM cannot hold) the
    temporaries its message names plus the arguments (the slots' state and inputs), which the
    message leaves out; None when the message names no bytes."""
    key = program_key(bucket, slots, layout)
    if not isinstance(programs.get(key), Refused):
        try:
            return program_for(bucket, slots, mesh, programs, layout, on_compiled).memory_bytes
        except Exception as err:  # noqa: BLE001  (jax's runtime error type varies by version)
            if "RESOURCE_EXHAUSTED" not in str(err):
                raise
            found = _REQUIRED.search(str(err))
            inputs = abstract_inputs(bucket, slots, mesh)
            state = abstract_state(make_train(bucket.static, layout.onehot), inputs[0],
                                   inputs[2], None)
            arguments = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((state, inputs)))
            programs[key] = Refused(None if found is None else int(
                float(found.group(1)) * 1024 ** " KMGT".index(found.group(2))
                + arguments / mesh.devices.size))
    return programs[key].memory_bytes


def size_slots(bucket: Bucket, runs: int, mesh: Mesh, programs: dict, memory_budget: int,
               layout: Layout,
               on_compiled: Callable[[float], None] = lambda seconds: None) -> tuple[int, int]:
    """Slots per device for ``runs`` runs of ``bucket``, and XLA's bytes per device for that
    program, which fits ``memory_budget``.

    A device that loops over its runs (CPU) holds one slot. One that vmaps them (GPU, TPU)
    first compiles its whole share; while XLA's figure for the compiled count exceeds the
    budget, the next count is what that program's own bytes per slot allow (with 5% to spare,
    a multiple of 8). Every count is measured where it will run: memory per slot is far from
    linear in the count on a TPU (small programs keep their temporaries on chip), so no line
    through small probes predicts a large one. Raises SpecError, before any training, when one
    slot per device does not fit.
    """
    devices = mesh.devices.size
    per_device = 1 if layout.runs_per_batch is not None else max(1, math.ceil(runs / devices))
    while True:
        need = memory_at(bucket, per_device * devices, mesh, programs, layout, on_compiled)
        if need is not None and need <= memory_budget:
            return per_device, need
        if per_device == 1:
            needed = "more than the compiler could place" if need is None else \
                f"{need / 2**20:,.0f} MiB per device (XLA's memory analysis)"
            raise SpecError([
                f"bucket {bucket.id} ({bucket.group.spec}, K={bucket.static.width}) needs "
                f"{needed} for one run per device, more than the memory budget of "
                f"{memory_budget / 2**20:,.0f} MiB; reduce K or the group, or raise "
                "--memory-budget (memory_budget= in Python) if the device has it"], "memory")
        fewer = per_device // 2 if need is None else \
            math.floor(per_device * memory_budget / need * 0.95)
        per_device = max(1, min(per_device - 1, fewer - fewer % 8 if fewer >= 8 else fewer))


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
                 on_compiled: Callable[[float], None], layout: Layout,
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
    task = jax.device_put(slots.task, replicated)
    pending = list(queue)
    for slot in range(min(slots.size, len(pending))):
        slots.fill(slot, pending.pop(0))
    hparams, split, keys = jax.device_put(slots.inputs(), per_run)
    program = program_for(bucket, slots.size, mesh, programs, layout, on_compiled)
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
