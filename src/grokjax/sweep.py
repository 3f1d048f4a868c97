"""spec → plan → buckets → chunks → jit(vmap(train)) on a device mesh → Parquet part files.

A *bucket* is the set of runs sharing a ``Static`` config (one compilation). Its runs are cut into
equal *chunks* sized to a memory budget (the last one padded, padding dropped on write); each
chunk is one batched call, sharded over the local devices along the run axis. Every finished
chunk is written atomically, so a rerun of the same sweep skips it (resume).

Several processes (hosts of a TPU VM pod slice, or local test processes) share nothing but the
results directory: each plans the same chunks, trains every n-th one over its own devices and
reports in its ``_process-<i>.json``; process 0 then waits for every part and writes the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from grokjax import config, data, groups, results
from grokjax.spec import RunConfig, SpecError, SweepSpec
from grokjax.train import (
    HParams,
    Split,
    Static,
    Task,
    default_runs_per_batch,
    make_train,
    over_runs,
)

PLAN_FILE = "_plan.json"
SWEEP_FILE = "_sweep.toml"
MANIFEST_FILE = "_manifest.json"
PROCESS_FILE = "_process-{}.json"  # one per process: its share of chunks, status and timings
NOT_A_SWEEP = "not a grokjax sweep"  # what _directory_plan finds in a directory of other files
# A process that finishes early waits at jax.distributed's shutdown barrier for all the others,
# and process 0 finishes last (it waits for every part); JAX's default 5 minutes there would
# abort the whole job, so allow a week.
SHUTDOWN_TIMEOUT_SECONDS = 7 * 24 * 3600
# Process 0 gives up on the other processes after this long without a new part (or 3 times its
# own slowest chunk, if longer), or when a status file is still absent this long after it began
# waiting: every process writes its status before training, so the directory is not shared.
MIN_STALL_SECONDS = 600
START_GRACE_SECONDS = 120
BYTES_PER_FLOAT = 4
# Live copies of each parameter during a step (params, grads, updates, new params, two optimizer
# moments, the frozen copy kept for divergence isolation) and of each activation (forward value,
# its gradient, the activation's derivative), with a factor 2 for XLA temporaries.
PARAM_COPIES, ACTIVATION_COPIES, SAFETY = 8, 3, 2.0


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    run_id: str
    test_size: float
    n_train: int
    n_test: int


@dataclass(frozen=True)
class Bucket:
    static: Static
    group: str
    runs: tuple[PlannedRun, ...]

    @property
    def id(self) -> str:
        return hashlib.sha1(repr((self.static, self.group)).encode()).hexdigest()[:8]

    @property
    def table_rows(self) -> int:
        return groups.parse_group(self.group).order ** self.static.num_ops

    @property
    def train_rows(self) -> int:
        """The padded train-set length shared by every run of the bucket."""
        return max(run.n_train for run in self.runs)


@dataclass
class ChunkPlan:
    bucket: Bucket
    index: int
    runs: tuple[PlannedRun, ...]
    size: int  # runs per call, padding included (the same for every chunk of a bucket)

    @property
    def name(self) -> str:
        return f"{self.bucket.id}-{self.index:04d}"


class SweepIncomplete(RuntimeError):
    """The processes of a job could not all finish, or process 0 cannot see their parts."""


@dataclass
class SweepReport:
    """What one process did; its ``stats`` are its ``_process-<i>.json``."""

    out_dir: Path
    process: int = 0
    devices: int = 1
    chunks: list[str] = field(default_factory=list)  # this process's share, by name
    chunks_run: int = 0
    chunks_skipped: int = 0
    compile_seconds: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    run_steps: int = 0
    slowest_chunk_seconds: float = 0.0  # compilation included

    @property
    def run_steps_per_second(self) -> float:
        return self.run_steps / self.train_seconds if self.train_seconds else float("nan")

    def stats(self, status: str, error: str | None = None) -> dict[str, object]:
        rate = self.run_steps_per_second
        return {
            "process": self.process, "status": status, "error": error, "host": platform.node(),
            "devices": self.devices, "chunks": self.chunks, "chunks_run": self.chunks_run,
            "chunks_skipped": self.chunks_skipped, "compile_seconds": self.compile_seconds,
            "train_seconds": self.train_seconds, "run_steps": self.run_steps,
            "run_steps_per_second": None if math.isnan(rate) else rate,
        }


def plan_runs(spec: SweepSpec) -> list[Bucket]:
    """Group the spec's runs into buckets of identical static config, in first-seen order."""
    buckets: dict[tuple, list[PlannedRun]] = {}
    statics: dict[tuple, Static] = {}
    renamed = {"group": "order", "K": "width"}
    for run in spec.runs():
        resolved = config.resolve(run)
        group = resolved.group
        static = Static(
            order=group.order, width=run.K, ridge=run.ridge_lambda is not None,
            fourier=run.diagnostics and group.spec.isdigit(),
            **{name: getattr(run, name) for name in config.STATIC_FIELDS if name not in renamed},
        )
        key = (static, group.spec)
        statics[key] = static
        buckets.setdefault(key, []).append(
            PlannedRun(run, results.run_id(run), resolved.test_size, resolved.n_train,
                       resolved.n_test))
    return [Bucket(statics[key], key[1], tuple(runs)) for key, runs in buckets.items()]


def bytes_per_run(bucket: Bucket) -> int:
    """A conservative estimate of one run's device memory inside a batched call."""
    s = bucket.static
    params = s.num_ops * s.order * s.width + s.width * s.order + s.other_layers * s.width**2
    train_activations = bucket.train_rows * (s.width * (1 + s.other_layers) + s.order)
    eval_activations = bucket.table_rows * (s.width * (1 + s.other_layers) + s.order)
    ridge = (bucket.train_rows + s.width) * s.width if s.ridge else 0
    floats = (PARAM_COPIES * params + ACTIVATION_COPIES * (train_activations + ridge)
              + eval_activations + bucket.table_rows + 4 * (s.num_evals + 1))
    return int(SAFETY * BYTES_PER_FLOAT * floats)


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


def plan_chunks(buckets: list[Bucket], memory_budget: int, num_devices: int) -> list[ChunkPlan]:
    """Equal chunks per bucket: each device holds at most ``memory_budget`` bytes of runs."""
    chunks = []
    for bucket in buckets:
        fit_per_device = max(1, memory_budget // bytes_per_run(bucket))
        per_device = min(fit_per_device, math.ceil(len(bucket.runs) / num_devices))
        count = math.ceil(len(bucket.runs) / (per_device * num_devices))
        # Spread runs evenly over the chunks so padding is at most one run per device per chunk.
        per_chunk = math.ceil(len(bucket.runs) / count)
        size = math.ceil(per_chunk / num_devices) * num_devices
        for index in range(count):
            runs = bucket.runs[index * per_chunk:(index + 1) * per_chunk]
            chunks.append(ChunkPlan(bucket, index, runs, size))
    return chunks


def chunk_arrays(chunk: ChunkPlan) -> tuple[HParams, Split, np.ndarray]:
    """Host arrays of one chunk, padded to ``chunk.size`` runs by repeating its last run."""
    runs = list(chunk.runs) + [chunk.runs[-1]] * (chunk.size - len(chunk.runs))
    configs = [run.config for run in runs]
    hparams = HParams(**config.hparam_arrays(configs))
    num_rows, train_len = chunk.bucket.table_rows, chunk.bucket.train_rows
    train_rows = np.zeros((len(runs), train_len), np.int32)
    is_train = np.zeros((len(runs), num_rows), bool)
    for i, run in enumerate(runs):
        train_idx, _ = data.split(num_rows, run.test_size, run.config.seed)
        train_rows[i, :len(train_idx)] = train_idx
        is_train[i, train_idx] = True
    seeds = np.asarray([c.seed for c in configs], np.uint32)
    return hparams, Split(train_rows, is_train), seeds


@dataclass(frozen=True)
class Program:
    """A bucket's compiled pieces for one chunk shape."""

    init: Callable
    segment: Callable
    evaluate: Callable
    features: Callable | None  # per-node analysis at the end (diagnostics only)
    evals_per_segment: int
    compile_seconds: float


def evals_per_segment(num_evals: int, segments: int = 25) -> int:
    """The largest divisor of num_evals giving at least ``segments`` progress updates."""
    target = max(1, num_evals // segments)
    return max(d for d in range(1, target + 1) if num_evals % d == 0)


def compile_program(static: Static, args: tuple, mesh: Mesh,
                    runs_per_batch: int | None = None) -> Program:
    """Ahead-of-time compile init, segment and evaluate for the shapes of ``args``.

    Each device trains its own runs (``shard_map``: nothing crosses devices), looping over them
    ``runs_per_batch`` at a time (see ``train.over_runs``; default by backend).
    """
    fns = make_train(static)
    per_run = NamedSharding(mesh, P("runs"))
    hparams, split, keys, task = args
    per_segment = evals_per_segment(static.num_evals)
    if runs_per_batch is None:
        runs_per_batch = default_runs_per_batch(jax.default_backend())

    def on_devices(fn):
        return jax.shard_map(over_runs(fn, runs_per_batch), mesh=mesh,
                             in_specs=(P("runs"),) * 3 + (P(),), out_specs=P("runs"))

    start = time.perf_counter()
    init = jax.jit(jax.vmap(fns.init), out_shardings=per_run)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=per_run),
                         jax.eval_shape(init, hparams, keys))
    init = init.lower(hparams, keys).compile()
    segment = jax.jit(on_devices(partial(fns.segment, num_evals=per_segment)),
                      donate_argnums=0).lower(state, hparams, split, task).compile()
    evaluate = jax.jit(on_devices(fns.evaluate)).lower(state, hparams, split, task).compile()
    features = (jax.jit(on_devices(fns.features)).lower(state, hparams, split, task).compile()
                if static.diagnostics else None)
    return Program(init, segment, evaluate, features, per_segment, time.perf_counter() - start)


def run_chunk(program: Program, static: Static, args: tuple,
              on_progress: Callable[[int], object]) -> tuple[dict, np.ndarray, dict | None]:
    """Train one chunk: curves (runs, evals + 1) per metric, each run's diverged_step, and with
    diagnostics the per-node features (runs, K).

    ``on_progress(steps)`` is called after each segment with the steps it trained.
    """
    hparams, split, keys, task = args
    state = program.init(hparams, keys)
    pieces = []
    for _ in range(static.num_evals // program.evals_per_segment):
        state, metrics = program.segment(state, hparams, split, task)
        pieces.append(metrics)
        on_progress(program.evals_per_segment * static.eval_every)
    pieces.append(jax.tree.map(lambda m: m[:, None], program.evaluate(state, hparams, split, task)))
    curves = {name: np.concatenate([np.asarray(p[name]) for p in pieces], axis=1)
              for name in pieces[0]}
    features = (None if program.features is None else
                jax.tree.map(np.asarray, program.features(state, hparams, split, task)))
    return curves, np.asarray(state.diverged_step), features


def config_columns(chunk: ChunkPlan) -> pd.DataFrame:
    group = groups.parse_group(chunk.bucket.group)
    return pd.DataFrame([
        {"run_id": run.run_id, **config.column_values(
            run.config, config.Resolved(group, run.test_size, run.n_train, run.n_test))}
        for run in chunk.runs])


def chunk_tables(chunk: ChunkPlan, sweep_name: str, curves: dict[str, np.ndarray],
                 diverged_step: np.ndarray, features: dict[str, np.ndarray] | None,
                 seconds: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The runs, curves and (with diagnostics) features tables of a chunk, padding dropped."""
    real = len(chunk.runs)
    curves = {name: values[:real].astype(np.float64) for name, values in curves.items()}
    if features is not None:
        features = {name: values[:real] for name, values in features.items()}
    for split_name, n in (("train", "n_train"), ("test", "n_test")):
        sizes = np.asarray([getattr(run, n) for run in chunk.runs])[:, None]
        curves[f"{split_name}_acc"] = results.exact_accuracy(curves[f"{split_name}_acc"], sizes)
    static = chunk.bucket.static
    steps = np.arange(0, static.steps + 1, static.eval_every)
    runs = config_columns(chunk)
    summary = results.summarize(curves, steps, diverged_step[:real])
    summary |= results.diagnostic_summary(curves, steps, features)
    runs = runs.assign(**summary, wall_seconds=seconds / real, sweep=sweep_name,
                       bucket=chunk.bucket.id, chunk=chunk.index)
    dtypes = results.RUNS_DTYPES | {name: dtype for name, dtype in
                                    results.DIAGNOSTIC_SUMMARY_DTYPES.items() if name in runs}
    runs = runs[list(dtypes)].astype(dtypes)
    run_ids = list(runs["run_id"])
    return (runs, results.curves_frame(run_ids, curves, steps),
            None if features is None else results.features_frame(run_ids, features))


def plan_hash(spec: SweepSpec, chunks: list[ChunkPlan]) -> str:
    """Of the whole plan (every process's chunks), so that all processes agree on it."""
    layout = [(c.name, [r.run_id for r in c.runs]) for c in chunks]
    return hashlib.sha1(json.dumps([spec.scale, layout]).encode()).hexdigest()[:16]


def _static_text(static: Static) -> str:
    """The bucket's shape in a few words, with every optional field that is not its default."""
    extras = [f"num_ops={static.num_ops}"] * (static.num_ops != 2) + [
        f"{f.name}={getattr(static, f.name)}" for f in dataclasses.fields(static)
        if f.default is not dataclasses.MISSING and getattr(static, f.name) != f.default]
    return " ".join([f"K={static.width}", static.activation, static.loss, static.optimizer,
                     f"steps={static.steps}/{static.eval_every}", *extras])


def describe_plan(spec: SweepSpec, memory_budget: int, num_devices: int,
                  num_processes: int = 1) -> str:
    """The chunk plan, as ``grokjax plan`` and ``grokjax sweep`` print it."""
    buckets = plan_runs(spec)
    chunks = plan_chunks(buckets, memory_budget, num_devices)
    lines = [f"{spec.output_name}: {sum(len(b.runs) for b in buckets)} runs, {len(buckets)} "
             f"bucket(s), {len(chunks)} chunk(s) on {num_devices} device(s) x {num_processes} "
             f"process(es); memory budget {memory_budget / 2**20:.2f} MiB per device",
             f"  {'bucket':<8} {'group':<10} {'runs':>6} {'chunks':>6} {'runs/chunk':>10} "
             f"{'MiB/run':>8} {'MiB/chunk':>10}  static"]
    for bucket in buckets:
        mine = [c for c in chunks if c.bucket is bucket]
        per_run = bytes_per_run(bucket) / 2**20
        lines.append(f"  {bucket.id:<8} {bucket.group:<10} {len(bucket.runs):>6} {len(mine):>6} "
                     f"{mine[0].size:>10} {per_run:>8.2f} {per_run * mine[0].size:>10.2f}  "
                     f"{_static_text(bucket.static)}")
    return "\n".join(lines)


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


def _directory_plan(out_dir: Path) -> str | None:
    """The plan hash of the sweep in ``out_dir``; None if there is none, NOT_A_SWEEP if other
    files are there."""
    try:
        visible = [name for name in os.listdir(out_dir) if not name.startswith(".")]
    except FileNotFoundError:
        return None
    try:  # read after listing: every writer creates the plan before any other visible file
        return json.loads((out_dir / PLAN_FILE).read_text())["plan_hash"]
    except FileNotFoundError:
        return NOT_A_SWEEP if visible else None


def prepare_output(out_dir: Path, spec: SweepSpec, digest: str, overwrite: bool,
                   process: int = 0) -> None:
    """Refuse to mix two different sweeps in one directory unless asked to overwrite.

    Every process computes the same digest and may write the same plan (atomically), so this
    works whether or not the hosts share ``out_dir``. Replacing a directory is process 0's alone;
    with ``overwrite`` the others wait until its new plan is there.
    """
    found = _directory_plan(out_dir)
    if found == digest:
        return  # the same sweep: resume
    if found is not None and not overwrite:
        what = ("exists and is not a grokjax sweep directory" if found == NOT_A_SWEEP else
                f"holds results of a different sweep (plan {found}, now {digest})")
        raise SpecError([f"{out_dir} {what}; pass --overwrite to replace it or --out to write "
                         "elsewhere"])
    if overwrite and process != 0:
        deadline = time.monotonic() + MIN_STALL_SECONDS
        while _directory_plan(out_dir) != digest:
            if time.monotonic() > deadline:
                raise SweepIncomplete(
                    f"process {process}: process 0 did not replace {out_dir} within "
                    f"{MIN_STALL_SECONDS}s; if the processes do not share that directory, delete "
                    "it on every host and run again without --overwrite")
            time.sleep(1.0)
        return
    if found is not None:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.write_text(out_dir / PLAN_FILE, json.dumps({"plan_hash": digest, "scale": spec.scale}))
    results.write_text(out_dir / SWEEP_FILE, spec.source_text)


def run_sweep(spec: SweepSpec, results_root: str | Path = "results", *,
              out_dir: str | Path | None = None, overwrite: bool = False,
              memory_budget: int | None = None, progress: bool = True,
              devices: list | None = None) -> SweepReport:
    """Train this process's share of ``spec`` and write its tables; finished chunks are skipped.

    ``devices`` defaults to every local device; the run axis is sharded over them. Every process
    of a job (see ``initialize_distributed``) plans the same chunks and trains every n-th one;
    process 0 then waits for all of them and writes the manifest.
    ``progress``: a live bar on a terminal, else a line per finished chunk on stderr.
    """
    out_dir = Path(out_dir) if out_dir else Path(results_root) / spec.output_name
    devices = devices or jax.local_devices()
    process, processes = jax.process_index(), jax.process_count()
    memory_budget = memory_budget or default_memory_budget()
    chunks = plan_chunks(plan_runs(spec), memory_budget, len(devices))
    prepare_output(out_dir, spec, plan_hash(spec, chunks), overwrite, process)
    share = chunks[process::processes]
    report = SweepReport(out_dir, process, len(devices), [c.name for c in share])
    status_path = out_dir / PROCESS_FILE.format(process)
    results.write_text(status_path, json.dumps(report.stats("running")))
    metadata = results.provenance(spec.source_text, spec.scale)
    try:
        train_share(spec, share, devices, metadata, report,
                    show=progress and process == 0)
    except Exception as err:
        results.write_text(status_path, json.dumps(report.stats("failed", repr(err))))
        raise
    results.write_text(status_path, json.dumps(report.stats("done")))
    if process == 0:
        stall = max(MIN_STALL_SECONDS, 3 * report.slowest_chunk_seconds)
        statuses = wait_for_processes(out_dir, chunks, processes, stall)
        write_manifest(out_dir, metadata, memory_budget, chunks, statuses)
        remove_temporaries(out_dir)
    return report


def train_share(spec: SweepSpec, share: list[ChunkPlan], devices: list, metadata: dict,
                report: SweepReport, show: bool) -> None:
    """Train the chunks of ``share`` whose runs part is not on disk yet, one part pair each."""
    out_dir = report.out_dir
    mesh = Mesh(np.asarray(devices), ("runs",))
    todo = [c for c in share if not (out_dir / f"runs-{c.name}.parquet").exists()]
    report.chunks_skipped = len(share) - len(todo)
    per_run, replicated = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    programs: dict[tuple, Program] = {}
    runs_total = sum(len(c.runs) for c in share)
    runs_done = runs_total - sum(len(c.runs) for c in todo)
    # A live bar on a terminal; one line per chunk in a log; nothing from non-zero processes.
    bar_on_terminal = show and sys.stderr.isatty()
    with tqdm(total=sum(len(c.runs) * c.bucket.static.steps for c in todo), unit="run-step",
              unit_scale=True, disable=not bar_on_terminal, file=sys.stderr,
              desc=spec.output_name) as bar:
        for number, chunk in enumerate(todo, 1):
            static, bucket = chunk.bucket.static, chunk.bucket
            table = data.operation_table(groups.parse_group(bucket.group), static.num_ops)
            hparams, split, seeds = chunk_arrays(chunk)
            keys = jax.vmap(jax.random.PRNGKey)(seeds)
            args = (*jax.device_put((hparams, split, keys), per_run),
                    jax.device_put(Task(*table), replicated))
            shape_key = (static, bucket.group, chunk.size, bucket.train_rows)
            compile_seconds = 0.0
            if shape_key not in programs:
                bar.set_postfix_str(f"{runs_done}/{runs_total} runs, compiling bucket {bucket.id}")
                programs[shape_key] = compile_program(static, args, mesh)
                compile_seconds = programs[shape_key].compile_seconds
                report.compile_seconds[bucket.id] = compile_seconds
            bar.set_postfix_str(f"{runs_done}/{runs_total} runs, chunk {number}/{len(todo)} "
                                f"(bucket {bucket.id})")
            real_runs = len(chunk.runs)  # progress counts run-steps of real (unpadded) runs
            start = time.perf_counter()
            curves, diverged_step, features = run_chunk(
                programs[shape_key], static, args,
                partial(lambda steps, runs: bar.update(steps * runs), runs=real_runs))
            seconds = time.perf_counter() - start
            runs, curve_rows, feature_rows = chunk_tables(chunk, spec.output_name, curves,
                                                          diverged_step, features, seconds)
            results.write_table(curve_rows, out_dir / results.CURVES_DIR /
                                f"curves-{chunk.name}.parquet", metadata)
            if feature_rows is not None:
                results.write_table(feature_rows, out_dir / results.FEATURES_DIR /
                                    f"features-{chunk.name}.parquet", metadata)
            # The runs part is written last: its presence marks the chunk as done.
            results.write_table(runs, out_dir / f"runs-{chunk.name}.parquet", metadata)
            runs_done += real_runs
            report.chunks_run += 1
            report.train_seconds += seconds
            report.run_steps += real_runs * static.steps
            report.slowest_chunk_seconds = max(report.slowest_chunk_seconds,
                                               seconds + compile_seconds)
            bar.set_postfix_str(f"{runs_done}/{runs_total} runs")
            if show and not bar_on_terminal:
                print(f"{spec.output_name}: chunk {number}/{len(todo)} done, {runs_done}/"
                      f"{runs_total} runs, {seconds:.1f}s, "
                      f"{real_runs * static.steps / seconds:,.0f} run-steps/s",
                      file=sys.stderr, flush=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def wait_for_processes(out_dir: Path, chunks: list[ChunkPlan], processes: int,
                       stall_seconds: float, start_grace_seconds: float = START_GRACE_SECONDS,
                       poll_seconds: float = 1.0) -> list[dict]:
    """Process 0: every process's final status, once every planned chunk's runs part is there.

    Nothing but the shared directory connects the processes. Raises SweepIncomplete when a
    process failed, when nothing new arrived for ``stall_seconds``, or when a process's status
    file is still absent after ``start_grace_seconds`` (the directory is not shared).
    """
    started = changed = time.monotonic()
    progress = None
    while True:
        names = set(os.listdir(out_dir))
        missing = [c for c in chunks if f"runs-{c.name}.parquet" not in names]
        statuses = [_read_json(out_dir / PROCESS_FILE.format(i)) for i in range(processes)]
        done = [s for s in statuses if s and s["status"] == "done"]
        if not missing and len(done) == processes:
            return statuses
        # Statuses are trusted after a grace period: by then every process has replaced the one
        # a previous run may have left with its own.
        now = time.monotonic()
        settled = now - started > start_grace_seconds
        failed = [s for s in statuses if s and s["status"] == "failed"]
        if failed and settled:
            raise SweepIncomplete(f"process {failed[0]['process']} failed: {failed[0]['error']}; "
                                  "run the same command again to finish the missing chunks")
        absent = [i for i, s in enumerate(statuses) if s is None]
        if absent and settled:
            raise SweepIncomplete(
                f"process 0 does not see the status file of process(es) {absent} in {out_dir}: "
                "the processes do not share this directory, so each host holds its own parts "
                f"and no {MANIFEST_FILE} is written. Copy every host's part files into one "
                "directory to read them as one table")
        if (len(missing), len(done)) != progress:
            progress, changed = (len(missing), len(done)), now
        elif now - changed > stall_seconds:
            waiting = [i for i, s in enumerate(statuses) if not s or s["status"] != "done"]
            raise SweepIncomplete(
                f"{len(missing)} of {len(chunks)} chunks are not in {out_dir} and nothing new "
                f"arrived for {stall_seconds:.0f}s (process(es) {waiting} not done); "
                f"{MANIFEST_FILE} is not written. Run the same command again to finish them")
        time.sleep(poll_seconds)


def write_manifest(out_dir: Path, metadata: dict, memory_budget: int, chunks: list[ChunkPlan],
                   statuses: list[dict]) -> None:
    rates = [s["run_steps_per_second"] for s in statuses if s["run_steps_per_second"]]
    manifest = {
        "provenance": {k: v for k, v in metadata.items() if k != "sweep_toml"},
        "memory_budget": memory_budget,
        "run_steps_per_second": sum(rates) if rates else None,  # all processes together
        "processes": statuses,
        "chunks": [{"name": c.name, "bucket": c.bucket.id, "index": c.index, "runs": len(c.runs),
                    "size": c.size, "process": n % len(statuses)} for n, c in enumerate(chunks)],
    }
    results.write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2))


def remove_temporaries(out_dir: Path) -> None:
    """Hidden files of writers killed mid-write; called when every process has finished."""
    for path in out_dir.rglob(f".*{results.TEMPORARY_SUFFIX}"):
        path.unlink(missing_ok=True)
