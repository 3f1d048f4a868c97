"""Compile a sweep for a TPU or GPU that this machine does not have, and say what it would cost.

    grokjax aot sweeps/wd.toml --target tpu-v5e        # or tpu-v4, tpu-v5p, tpu-v6e, h100
    report = grokjax.aot.check("wd", "tpu-v5e"); print(report.table())

Every bucket of the sweep (its first round, for a search) is compiled for one chip of the target
— a compile-only device of the installed libtpu or CUDA plugin (``pip install 'grokjax[aot]'``),
no hardware — at the slot count the engine would choose there (``engine.size_slots``, half the
chip's HBM), laid out as on that chip (``engine.layout_for``). Per bucket the report gives XLA's
memory per chip and per run and whether it fits, then XLA's cost analysis of two programs at
that count: one optimizer step and one evaluation of every slot (the engine's segment cannot be
costed: cost analysis counts a loop body once). Per run-step they make step + evaluation /
eval_every; FLOP per byte against the chip's ridge point (peak FLOP/s / HBM bytes/s, public
figures in ``TARGETS``) gives the fraction of peak the roofline allows. XLA:GPU has no cost
analysis for a compile-only device, so an H100 report has memory only.

All TPU compiles must happen in one process: libtpu locks itself to the first process that
loads it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from grokjax import api, engine, plan, rounds
from grokjax.errors import SpecError, UsageError
from grokjax.plan import Bucket
from grokjax.spec import SweepSpec
from grokjax.train import make_train

# XLA's gpu_specs/h100_sxm.txtpb, with the cuDNN version that XLA asks for.
H100_SXM = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: 3352320000000 l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: 84978434048 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 3 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


@dataclass(frozen=True)
class Target:
    """One chip, from its public spec sheet."""

    platform: str  # "tpu" or "cuda"
    topology: str
    options: tuple  # more get_topology_desc keywords, as (name, value) pairs
    bf16_flops: float  # dense peak FLOP/s: bf16 operands (a TPU's one-pass float32 too)
    f32_flops: float  # float32 at precision HIGHEST
    tf32_flops: float  # the backend's float32 default (precision = "tf32")
    hbm_bytes_per_second: float
    hbm_bytes: int
    peaks_text: str  # how the figures are stated in the report


def _tpu(topology: str, bf16: float, bandwidth: float, hbm_gib: int, **options) -> Target:
    # A TPU computes a HIGHEST float32 matmul as 6 bf16 passes; its float32 default is one.
    return Target("tpu", topology, tuple(options.items()), bf16, bf16 / 6, bf16, bandwidth,
                  hbm_gib * 2**30, f"{bf16 / 1e12:.0f} TFLOP/s bf16 (float32 at HIGHEST: "
                  f"6 bf16 passes, {bf16 / 6e12:.1f}), HBM {bandwidth / 1e9:,.0f} GB/s, "
                  f"{hbm_gib} GiB")


TARGETS = {
    "tpu-v5e": _tpu("v5e:1x1", 197e12, 819e9, 16),
    "tpu-v4": _tpu("v4:1x1x1", 275e12, 1228e9, 32, chip_config_name="megacore"),
    "tpu-v5p": _tpu("v5p:1x1x1", 459e12, 2765e9, 95),
    "tpu-v6e": _tpu("v6e:1x1", 918e12, 1640e9, 32),
    "h100": Target("cuda", "1x1x1", (("target_config", H100_SXM),), 989e12, 67e12, 495e12,
                   3.35e12, 84978434048, "989 TFLOP/s bf16, 495 TF32, 67 float32 (dense, SXM), "
                   "HBM 3,350 GB/s, 79 GiB"),
}


@cache
def target_mesh(name: str) -> Mesh:
    """A one-chip mesh of compile-only devices of ``name`` (one per process: see above)."""
    target = TARGETS[name]
    # Before a backend starts: no accelerator to find, no TPU VM metadata server to ask.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    jax.config.update("jax_platforms", "cpu")
    from jax.experimental import topologies

    try:
        if target.platform == "tpu":
            # One chip per host: libtpu 0.0.42's default bounds (2x2x1) refuse a single chip.
            topology = topologies.get_topology_desc(target.topology, "tpu",
                                                    chips_per_host_bounds=(1, 1, 1),
                                                    **dict(target.options))
        else:
            topology = topologies.get_topology_desc(platform="cuda", topology=target.topology,
                                                    **dict(target.options))
    except Exception as err:  # noqa: BLE001  (what a missing plugin raises varies by version)
        plugin = "libtpu" if target.platform == "tpu" else "jax-cuda12-plugin"
        raise UsageError(f"cannot compile for {name} without {plugin}: pip install "
                         f"'grokjax[aot]' ({type(err).__name__}: {err})") from None
    return Mesh(np.asarray(topology.devices[:1]), ("runs",))


@dataclass(frozen=True)
class BucketCost:
    """One bucket at one slot count on one chip; costs per run (XLA's cost analysis)."""

    bucket: str
    group: str
    width: int
    runs: int
    slots: int
    memory_bytes: int | None  # XLA's figure per chip; None: the compiler refused it unsized
    fits: bool
    eval_every: int
    precision: str
    step_flops: float | None  # one optimizer step, per run (None: no cost analysis)
    step_bytes: float | None
    eval_flops: float | None  # one evaluation on the whole table, per run
    eval_bytes: float | None
    compile_seconds: float

    @property
    def run_step_flops(self) -> float | None:
        if self.step_flops is None:
            return None
        return self.step_flops + self.eval_flops / self.eval_every

    @property
    def run_step_bytes(self) -> float | None:
        if self.step_bytes is None:
            return None
        return self.step_bytes + self.eval_bytes / self.eval_every

    def roofline_fraction(self, target: Target) -> float | None:
        """The fraction of the chip's peak (at the bucket's precision) that its FLOP/byte
        allows if HBM bandwidth is the limit: min(1, FLOP/byte / ridge point)."""
        if not self.run_step_bytes:
            return None
        peak = {"highest": target.f32_flops, "tf32": target.tf32_flops,
                "bf16": target.bf16_flops}[self.precision]
        ridge = peak / target.hbm_bytes_per_second
        return min(1.0, self.run_step_flops / self.run_step_bytes / ridge)


@dataclass(frozen=True)
class Report:
    sweep: str
    target_name: str
    device_kind: str
    versions: str
    memory_budget: int
    buckets: list[BucketCost]

    @property
    def fits(self) -> bool:
        return all(b.fits for b in self.buckets)

    def table(self) -> str:
        target = TARGETS[self.target_name]
        lines = [
            f"{self.sweep} on {self.target_name}: {self.device_kind}, one chip, compile-only "
            f"({self.versions})",
            f"chip (public spec): {target.peaks_text}; memory budget "
            f"{self.memory_budget / 2**30:,.2f} GiB per chip",
            "per run: step = one optimizer step, eval = one evaluation of the whole table; "
            "run-step = step + eval / eval_every; roofline = share of peak at that FLOP/byte",
            f"{'bucket':<8} {'group':<8} {'K':>5} {'runs':>6} {'slots':>6} {'MiB/chip':>9} "
            f"{'MiB/run':>8} {'fits':>4} {'step MFLOP':>10} {'step MB':>8} {'eval MFLOP':>10} "
            f"{'eval MB':>8} {'MB/run-step':>11} {'FLOP/B':>6} {'roofline':>8} {'compile s':>9}",
        ]

        def number(value, scale=1e6, digits=2):
            return "n/a" if value is None else f"{value / scale:,.{digits}f}"

        for b in self.buckets:
            fraction = b.roofline_fraction(target)
            intensity = (None if b.run_step_bytes is None
                         else b.run_step_flops / b.run_step_bytes)
            memory = (None, None) if b.memory_bytes is None else \
                (b.memory_bytes / 2**20, b.memory_bytes / b.slots / 2**20)
            lines.append(
                f"{b.bucket:<8} {b.group:<8} {b.width:>5} {b.runs:>6} {b.slots:>6} "
                f"{number(memory[0], 1):>9} {number(memory[1], 1):>8} "
                f"{'yes' if b.fits else 'NO':>4} {number(b.step_flops):>10} "
                f"{number(b.step_bytes):>8} {number(b.eval_flops):>10} "
                f"{number(b.eval_bytes):>8} {number(b.run_step_bytes):>11} "
                f"{number(intensity, 1):>6} "
                f"{'n/a' if fraction is None else f'{fraction:.2%}':>8} "
                f"{b.compile_seconds:>9.1f}")
        if target.platform == "cuda":
            lines.append("n/a: XLA:GPU gives no cost analysis for a compile-only device")
        return "\n".join(lines)


def _versions() -> str:
    found = []
    for name in ("jax", "libtpu", "jax-cuda12-plugin"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _cost(compiled) -> tuple[float | None, float | None]:
    """(FLOPs, bytes accessed) by XLA's cost analysis; (None, None) where it has none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per device
        cost = cost[0] if cost else None
    if not cost or "bytes accessed" not in cost:
        return None, None
    return float(cost.get("flops", 0.0)), float(cost["bytes accessed"])


def step_and_evaluate(bucket: Bucket, slots: int, mesh: Mesh,
                      layout: engine.Layout) -> tuple[float | None, ...]:
    """XLA's (FLOPs, bytes) per run of one optimizer step and of one evaluation of ``slots``
    runs on the mesh's chip, each compiled as the engine lays its segment out."""
    fns = make_train(bucket.static, layout.onehot)
    hparams, split, keys, _, task = engine.abstract_inputs(bucket, slots, mesh)
    state = engine.abstract_state(fns, hparams, keys, NamedSharding(mesh, P("runs")))
    step = jax.jit(engine.on_devices(fns.step, 3, mesh, layout.runs_per_batch), donate_argnums=0)
    evaluate = jax.jit(engine.on_devices(fns.evaluate, 3, mesh, layout.runs_per_batch))
    costs = []
    for program in (step, evaluate):
        try:
            cost = _cost(program.lower(state, hparams, split, task).compile())
        except Exception as err:  # noqa: BLE001  (as engine.memory_at)
            if "RESOURCE_EXHAUSTED" not in str(err):
                raise
            cost = (None, None)  # a count forced past the chip's memory
        costs += [None if c is None else c / slots for c in cost]
    return tuple(costs)


def check(sweep: SweepSpec | Mapping | str | Path, target: str, *, slots: int | None = None,
          scale: str = "default", memory_budget: int | None = None, progress: bool = True,
          **overrides: Any) -> Report:
    """Compile every bucket of ``sweep`` (a dict, TOML path or name under sweeps/, with
    ``scale`` and ``overrides`` as in ``grokjax.run``; or a parsed SweepSpec, taken as it is)
    for one chip of ``target`` (a key of ``TARGETS``) at
    ``slots`` per chip, or at the count the engine would choose within ``memory_budget``
    (default: half the chip's HBM, as on the device). ``progress``: a line per bucket on
    stderr. Raises UsageError for an unknown target or a missing plugin."""
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if slots is not None and slots < 1:
        raise UsageError(f"slots must be at least 1, got {slots}")
    spec = sweep if isinstance(sweep, SweepSpec) else api.sweep_spec(sweep, scale, overrides)
    mesh = target_mesh(target)
    layout = engine.layout_for(mesh.devices.flat[0].platform)
    budget = memory_budget or TARGETS[target].hbm_bytes // 2
    buckets = plan.plan_runs(spec, [run for _, run in rounds.first_round(spec)])
    programs: dict = {}
    costs = []
    for bucket in buckets:
        if progress:
            print(f"compiling bucket {bucket.id} ({bucket.group.spec}, K={bucket.static.width}, "
                  f"{len(bucket.runs)} runs) for {target}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        if slots is not None:
            count = slots
            need = engine.memory_at(bucket, count, mesh, programs, layout)
        else:
            try:
                count, need = engine.size_slots(bucket, len(bucket.runs), mesh, programs,
                                                budget, layout)
            except SpecError:  # not even one run fits: report what one run needs
                count = 1
                need = engine.memory_at(bucket, count, mesh, programs, layout)
        step_flops, step_bytes, eval_flops, eval_bytes = step_and_evaluate(
            bucket, count, mesh, layout)
        costs.append(BucketCost(
            bucket.id, bucket.group.spec, bucket.static.width, len(bucket.runs), count, need,
            need is not None and need <= budget, bucket.static.eval_every,
            bucket.static.precision, step_flops, step_bytes, eval_flops, eval_bytes,
            time.perf_counter() - start))
    return Report(spec.output_name, target, mesh.devices.flat[0].device_kind, _versions(),
                  budget, costs)
