"""Throughput of the engine's training call: run-steps/s and FLOP/s vs this machine's matmul peak.

    python benchmarks/bench.py [--buckets 0 1 2] [--runs 1 8 64 256 1024] [--eval-every 1 100]

For each standard bucket, grid size R and eval cadence it measures what a sweep runs (the same
compiled ``segment`` call the engine uses): compile seconds, steady-state run-steps per second
(median of several calls), achieved FLOP/s and its fraction of the float32 matmul peak measured
in this same process, and XLA's memory estimate of the call.

Each call is sized to take about CALL_SECONDS, by the rate of the previous grid size of the same
setting (at first, by the FLOPs and a quarter of the peak): a sweep's own calls last a 25th of a
run, which at R = 256 and eval every 100 is 4,000 steps of 256 runs, minutes per call here. A
setting whose shortest call (one evaluation interval of every run) would exceed
MAX_CALL_SECONDS is skipped, with its larger grids.

Useful FLOPs per run-step (stated, not profiled): the three K×M matmuls of a step,
forward F·V and backward Fᵀ·G and G·Vᵀ, 6·n_train·K·M, plus the evaluation forward pass on
all N = M² rows amortised over the cadence, 2·N·K·M / eval_every. Gathers, activations and the
optimizer update are O(n·K + params) and not counted.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import config, engine, plan
from grokjax.chunks import useful_flops_per_run_step
from grokjax.spec import SweepSpec

# (label, group, K, test_size): the standard buckets.
BUCKETS = (
    ("M=23 K=256 n=476", "23", 256, 0.1),
    ("M=71 K=512 n=2016", "71", 512, 0.6),
    ("M=127 K=2048 n=3225", "127", 2048, 0.8),
    ("M=23 K=512 n=264", "23", 512, 0.5),  # sweeps/fig3.toml's bucket (not run by default)
    ("M=71 K=2048 n=2016", "71", 2048, 0.6),  # the wd sweep's paper scale (not run by default)
)
MEMORY_BUDGET = float(os.environ.get("BENCH_MEMORY_GIB", 6)) * 2**30  # per call (24 GiB CPU)
CALL_SECONDS = 2.0  # the length of a timed call aimed at
MAX_CALL_SECONDS = 15.0  # skip the larger grids of a setting whose calls would take longer


PEAK_PRECISION = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}


def matmul_peak(precision: str = "highest", size: int | None = None, repeats: int = 10) -> float:
    """FLOP/s of one large square float32 matmul on the default device at a sweep's precision
    (``highest``: true float32, the default on accelerators would be TF32; median of repeats)."""
    size = size or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision=PEAK_PRECISION[precision]))
    matmul(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


@dataclass
class Row:
    bucket: str
    runs: int
    eval_every: int
    compile_seconds: float
    run_steps_per_second: float
    gflops: float
    peak_fraction: float
    memory_mib: float


def measure(label: str, group: str, width: int, test_size: float, runs: int, eval_every: int,
            evals_per_call: int, peak: float, repeats: int, diagnostics: bool = False,
            **static: str) -> Row:
    """``static``: precision, as in a sweep file."""
    # A run lasts SEGMENTS_PER_RUN calls of evals_per_call evaluations (engine.evals_per_segment
    # of its num_evals + 1 points), more than the warm-up and timed calls: every slot stays busy.
    steps = eval_every * (engine.SEGMENTS_PER_RUN * evals_per_call - 1)
    fixed = dict(group=group, K=width, test_size=test_size, lr=1e-3, weight_decay=1e-4,
                 steps=steps, eval_every=eval_every, diagnostics=diagnostics, **static)
    spec = SweepSpec("bench", "", "default", fixed, ({"seed": list(range(runs))},), "")
    [bucket] = plan.plan_runs(spec)
    mesh = jax.sharding.Mesh(np.asarray(jax.local_devices()), ("runs",))
    per_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    devices = jax.local_device_count()
    slots = engine.Slots(bucket, -(-runs // devices) * devices)  # R slots, padded to devices
    for slot in range(slots.size):
        slots.fill(slot, bucket.runs[slot % runs])
    hparams, split, keys = jax.device_put(slots.inputs(), per_run)
    fresh = jax.device_put(slots.fresh, per_run)
    task = slots.task
    program = engine.compile_program(bucket.static, (hparams, split, keys, fresh, task), mesh,
                                     engine.layout_for())
    assert program.evals_per_segment == evals_per_call and repeats < engine.SEGMENTS_PER_RUN
    state = program.empty(hparams, keys)
    state, _, _ = program.segment(state, hparams, split, keys, fresh, task)  # start, warm up
    fresh = jax.device_put(np.zeros(slots.size, bool), per_run)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics, _ = program.segment(state, hparams, split, keys, fresh, task)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    steps_per_call = program.evals_per_segment * eval_every
    rate = runs * steps_per_call / statistics.median(times)
    flops = rate * useful_flops_per_run_step(int(group), width, bucket.train_rows, eval_every)
    label += " +diagnostics" * diagnostics + "".join(
        f" {value}" for name, value in static.items() if value != config.FIELDS[name].default)
    return Row(label, runs, eval_every, program.compile_seconds, rate, flops / 1e9, flops / peak,
               program.memory_bytes / 2**20)


def markdown(rows: list[Row], peak: float) -> str:
    lines = [
        f"float32 matmul peak at this precision measured in-process: {peak / 1e9:.1f} GFLOP/s "
        f"({jax.devices()[0].device_kind}, {jax.default_backend()}, jax {jax.__version__})",
        "",
        "| bucket | R | eval every | compile s | run-steps/s | per-run steps/s | GFLOP/s | "
        "of peak | XLA memory MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.bucket} | {r.runs} | {r.eval_every} | {r.compile_seconds:.2f} | "
            f"{r.run_steps_per_second:,.0f} | {r.run_steps_per_second / r.runs:,.1f} | "
            f"{r.gflops:.1f} | {r.peak_fraction:.0%} | {r.memory_mib:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    engine.use_every_cpu_core()  # as the CLI does: one CPU device per core
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    parser.add_argument("--eval-every", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--buckets", type=int, nargs="+", default=[0, 1, 2],
                        help="indices into the standard buckets (3: the fig3 bucket, 4: wd at paper scale)")
    parser.add_argument("--diagnostics", action="store_true",
                        help="also measure each setting with the Li2 diagnostics on")
    parser.add_argument("--precision", default="highest", choices=config.CHOICES["precision"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args(argv)
    peak = matmul_peak(args.precision)
    print(f"matmul peak ({args.precision}) {peak / 1e9:.1f} GFLOP/s", file=sys.stderr)
    rows = []
    for index in args.buckets:
        label, group, width, test_size = BUCKETS[index]
        for eval_every in args.eval_every:
            for runs in args.runs:
                [probe] = plan.plan_runs(SweepSpec(
                    "b", "", "default", dict(group=group, K=width, test_size=test_size,
                                             steps=eval_every, eval_every=eval_every),
                    ({"seed": [0]},), ""))
                bucket_bytes, bucket_rows = plan.bytes_per_run(probe), probe.train_rows
                if runs * bucket_bytes > MEMORY_BUDGET:
                    print(f"skip {label} R={runs}: ~{runs * bucket_bytes / 2**30:.1f} GiB",
                          file=sys.stderr)
                    break
                same = rows and rows[-1].bucket.startswith(label) and \
                    rows[-1].eval_every == eval_every
                rate = (rows[-1].run_steps_per_second if same else 0.25 * peak /
                        useful_flops_per_run_step(int(group), width, bucket_rows, eval_every))
                interval = runs * eval_every / rate  # the shortest call: one evaluation
                if interval > MAX_CALL_SECONDS:
                    print(f"skip {label} R={runs} eval every {eval_every}: ~{interval:.0f} s "
                          "per call", file=sys.stderr)
                    break
                evals_per_call = max(1, round(CALL_SECONDS / interval))
                for diagnostics in (False, True) if args.diagnostics else (False,):
                    row = measure(label, group, width, test_size, runs, eval_every,
                                  evals_per_call, peak, args.repeats, diagnostics,
                                  precision=args.precision)
                    rows.append(row)
                    print(markdown([row], peak).splitlines()[-1], file=sys.stderr)
    table = markdown(rows, peak)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(table + "\n")
    with open(args.out / "bench.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bucket", "runs", "eval_every", "compile_seconds",
                         "run_steps_per_second", "gflops", "peak_fraction", "memory_mib",
                         "peak_gflops", "device_kind"])
        for r in rows:
            writer.writerow([r.bucket, r.runs, r.eval_every, f"{r.compile_seconds:.3f}",
                             f"{r.run_steps_per_second:.1f}", f"{r.gflops:.2f}",
                             f"{r.peak_fraction:.4f}", f"{r.memory_mib:.1f}",
                             f"{peak / 1e9:.1f}", jax.devices()[0].device_kind])
    return 0


if __name__ == "__main__":
    sys.exit(main())
