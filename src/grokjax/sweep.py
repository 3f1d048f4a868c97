"""spec → plan → buckets → chunks → jit(vmap(train)) on a device mesh → Parquet part files.

A *bucket* is the set of runs sharing a ``Static`` config (one compilation). Its runs are cut into
equal *chunks* sized to a memory budget (the last one padded, padding dropped on write); each
chunk is one batched call, sharded over the local devices along the run axis. Every finished
chunk is written atomically, so a rerun of the same sweep skips it (resume).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
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

from grokjax import data, groups, results
from grokjax.spec import RunConfig, SpecError, SweepSpec
from grokjax.train import HParams, Metrics, Split, Static, Task, make_train

PLAN_FILE = "_plan.json"
MANIFEST_FILE = "_manifest.json"
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


@dataclass
class SweepReport:
    out_dir: Path
    chunks_run: int = 0
    chunks_skipped: int = 0
    compile_seconds: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    run_steps: int = 0

    @property
    def run_steps_per_second(self) -> float:
        return self.run_steps / self.train_seconds if self.train_seconds else float("nan")


def plan_runs(spec: SweepSpec) -> list[Bucket]:
    """Group the spec's runs into buckets of identical static config, in first-seen order."""
    buckets: dict[tuple, list[PlannedRun]] = {}
    statics: dict[tuple, Static] = {}
    for config in spec.runs():
        group = groups.parse_group(config.group)
        test_size = config.resolved_test_size(group.order)
        n_train, n_test = data.split_sizes(group.order**config.num_ops, test_size)
        static = Static(
            order=group.order, num_ops=config.num_ops, width=config.K,
            activation=config.activation, loss=config.loss, optimizer=config.optimizer,
            steps=config.steps, eval_every=config.eval_every, other_layers=config.other_layers,
            ridge=config.ridge_lambda is not None,
        )
        key = (static, group.spec)
        statics[key] = static
        buckets.setdefault(key, []).append(
            PlannedRun(config, results.run_id(config), test_size, n_train, n_test))
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
    hparams = HParams(*(
        np.asarray([getattr(c, name) or 0.0 for c in configs], np.float32)
        for name in HParams._fields
    ))
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
    evals_per_segment: int
    compile_seconds: float


def evals_per_segment(num_evals: int, segments: int = 25) -> int:
    """The largest divisor of num_evals giving at least ``segments`` progress updates."""
    target = max(1, num_evals // segments)
    return max(d for d in range(1, target + 1) if num_evals % d == 0)


def compile_program(static: Static, args: tuple, mesh: Mesh) -> Program:
    """Ahead-of-time compile init, segment and evaluate for the shapes of ``args``."""
    fns = make_train(static)
    per_run = NamedSharding(mesh, P("runs"))
    hparams, split, keys, task = args
    per_segment = evals_per_segment(static.num_evals)
    start = time.perf_counter()
    init = jax.jit(jax.vmap(fns.init), out_shardings=per_run)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=per_run),
                         jax.eval_shape(init, hparams, keys))
    init = init.lower(hparams, keys).compile()
    segment = jax.jit(
        jax.vmap(partial(fns.segment, num_evals=per_segment), in_axes=(0, 0, 0, None)),
        donate_argnums=0,
    ).lower(state, hparams, split, task).compile()
    evaluate = jax.jit(jax.vmap(fns.evaluate, in_axes=(0, 0, 0, None))).lower(
        state, hparams, split, task).compile()
    return Program(init, segment, evaluate, per_segment, time.perf_counter() - start)


def run_chunk(program: Program, static: Static, args: tuple,
              on_progress: Callable[[int], object]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train one chunk; return curves (runs, evals + 1) per metric and each run's diverged_step.

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
    curves = {name: np.concatenate([np.asarray(getattr(p, name)) for p in pieces], axis=1)
              for name in Metrics._fields}
    return curves, np.asarray(state.diverged_step)


def config_columns(chunk: ChunkPlan) -> pd.DataFrame:
    group = groups.parse_group(chunk.bucket.group)
    rows = []
    for run in chunk.runs:
        c = run.config
        num_rows = run.n_train + run.n_test
        rows.append({
            "run_id": run.run_id, "group": group.spec, "group_name": group.name, "M": group.order,
            "group_abelian": group.abelian, "max_irrep_degree": group.max_irrep_degree,
            "num_ops": c.num_ops, "K": c.K, "activation": c.activation, "loss": c.loss,
            "optimizer": c.optimizer, "lr": c.lr, "weight_decay": c.weight_decay,
            "seed": c.seed, "test_size": run.test_size,
            "train_fraction": run.n_train / num_rows,
            "critical_ratio_delta": _nan_if_none(c.critical_ratio_delta),
            "critical_ratio_multiplier": c.critical_ratio_multiplier,
            "n_train": run.n_train, "n_test": run.n_test,
            "c_eff": run.n_train / (group.order * math.log(group.order)),
            "steps": c.steps, "eval_every": c.eval_every, "other_layers": c.other_layers,
            "ridge_lambda": _nan_if_none(c.ridge_lambda),
            "top_layer_init_multiplier": c.top_layer_init_multiplier,
            "output_multiplier": c.output_multiplier,
        })
    return pd.DataFrame(rows)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def chunk_tables(chunk: ChunkPlan, sweep_name: str, curves: dict[str, np.ndarray],
                 diverged_step: np.ndarray, seconds: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of a chunk, padding dropped."""
    real = len(chunk.runs)
    curves = {name: values[:real].astype(np.float64) for name, values in curves.items()}
    for split_name, n in (("train", "n_train"), ("test", "n_test")):
        sizes = np.asarray([getattr(run, n) for run in chunk.runs])[:, None]
        curves[f"{split_name}_acc"] = results.exact_accuracy(curves[f"{split_name}_acc"], sizes)
    static = chunk.bucket.static
    steps = np.arange(0, static.steps + 1, static.eval_every)
    runs = config_columns(chunk)
    summary = results.summarize(curves, steps, diverged_step[:real])
    runs = runs.assign(**summary, wall_seconds=seconds / real, sweep=sweep_name,
                       bucket=chunk.bucket.id, chunk=chunk.index)
    runs = runs[list(results.RUNS_DTYPES)].astype(results.RUNS_DTYPES)
    return runs, results.curves_frame(list(runs["run_id"]), curves, steps)


def plan_hash(spec: SweepSpec, chunks: list[ChunkPlan]) -> str:
    layout = [(c.name, [r.run_id for r in c.runs]) for c in chunks]
    return hashlib.sha1(json.dumps([spec.scale, layout]).encode()).hexdigest()[:16]


def prepare_output(out_dir: Path, spec: SweepSpec, digest: str, overwrite: bool) -> None:
    """Refuse to mix two different sweeps in one directory unless asked to overwrite."""
    plan_path = out_dir / PLAN_FILE
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous.get("plan_hash") == digest:
            return  # the same sweep: resume
        if not overwrite:
            raise SpecError([
                f"{out_dir} holds results of a different sweep (plan {previous.get('plan_hash')}, "
                f"now {digest}); pass --overwrite to replace them or --out to write elsewhere"])
        shutil.rmtree(out_dir)
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise SpecError([f"{out_dir} exists and is not a grokjax sweep directory; pass "
                         "--overwrite to replace it or --out to write elsewhere"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "_sweep.toml").write_text(spec.source_text)
    plan_path.write_text(json.dumps({"plan_hash": digest, "scale": spec.scale}))


def run_sweep(spec: SweepSpec, results_root: str | Path = "results", *,
              out_dir: str | Path | None = None, overwrite: bool = False,
              memory_budget: int | None = None, progress: bool = True,
              devices: list | None = None) -> SweepReport:
    """Train every run of ``spec`` and write its tables; finished chunks are skipped.

    ``devices`` defaults to every local device; the run axis is sharded over them.
    ``progress``: a live bar on a terminal, else a line per finished chunk on stderr.
    """
    out_dir = Path(out_dir) if out_dir else Path(results_root) / spec.output_name
    devices = devices or jax.local_devices()
    mesh = Mesh(np.asarray(devices), ("runs",))
    buckets = plan_runs(spec)
    chunks = plan_chunks(buckets, memory_budget or default_memory_budget(), len(devices))
    # Every process of a multi-host job plans the same chunks and takes every n-th one.
    chunks = chunks[jax.process_index()::jax.process_count()]
    prepare_output(out_dir, spec, plan_hash(spec, chunks), overwrite)
    metadata = results.provenance(spec.source_text, spec.scale)
    report = SweepReport(out_dir)
    todo = [c for c in chunks if not (out_dir / f"runs-{c.name}.parquet").exists()]
    report.chunks_skipped = len(chunks) - len(todo)
    per_run, replicated = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    programs: dict[tuple, Program] = {}
    total = sum(len(c.runs) * c.bucket.static.steps for c in todo)
    # A live bar on a terminal; one line per chunk in a log; nothing from non-zero processes.
    show = progress and jax.process_index() == 0
    bar_on_terminal = show and sys.stderr.isatty()
    with tqdm(total=total, unit="run-step", unit_scale=True, disable=not bar_on_terminal,
              file=sys.stderr, desc=spec.output_name) as bar:
        for chunk in todo:
            static, bucket = chunk.bucket.static, chunk.bucket
            table = data.operation_table(groups.parse_group(bucket.group), static.num_ops)
            hparams, split, seeds = chunk_arrays(chunk)
            keys = jax.vmap(jax.random.PRNGKey)(seeds)
            args = (*jax.device_put((hparams, split, keys), per_run),
                    jax.device_put(Task(*table), replicated))
            shape_key = (static, bucket.group, chunk.size, bucket.train_rows)
            if shape_key not in programs:
                bar.set_postfix_str(f"compiling bucket {bucket.id}")
                programs[shape_key] = compile_program(static, args, mesh)
                report.compile_seconds[bucket.id] = programs[shape_key].compile_seconds
            bar.set_postfix_str(f"bucket {bucket.id} chunk {chunk.index}")
            real_runs = len(chunk.runs)  # progress counts run-steps of real (unpadded) runs
            start = time.perf_counter()
            curves, diverged_step = run_chunk(
                programs[shape_key], static, args,
                partial(lambda steps, runs: bar.update(steps * runs), runs=real_runs))
            seconds = time.perf_counter() - start
            runs, curve_rows = chunk_tables(chunk, spec.output_name, curves, diverged_step,
                                            seconds)
            results.write_table(curve_rows, out_dir / results.CURVES_DIR /
                                f"curves-{chunk.name}.parquet", metadata)
            # The runs part is written last: its presence marks the chunk as done.
            results.write_table(runs, out_dir / f"runs-{chunk.name}.parquet", metadata)
            report.chunks_run += 1
            report.train_seconds += seconds
            report.run_steps += len(chunk.runs) * static.steps
            if show and not bar_on_terminal:
                print(f"{spec.output_name}: chunk {report.chunks_run}/{len(todo)} done "
                      f"({len(chunk.runs)} runs, {seconds:.1f}s)", file=sys.stderr, flush=True)
    write_manifest(report, metadata, chunks)
    return report


def write_manifest(report: SweepReport, metadata: dict, chunks: list[ChunkPlan]) -> None:
    manifest = {
        "provenance": {k: v for k, v in metadata.items() if k != "sweep_toml"},
        "chunks": len(chunks),
        "chunks_run": report.chunks_run,
        "chunks_skipped": report.chunks_skipped,
        "compile_seconds": report.compile_seconds,
        "train_seconds": report.train_seconds,
        "run_steps_per_second": report.run_steps_per_second,
    }
    path = report.out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, default=float))
