"""What keeping the weights costs: the throughput of one small bucket trained as a sweep (writing
its parts included) without weights and with each way of keeping them, and the bytes each run
adds to the results directory.

    python benchmarks/keep_weights.py [--repeats 3] [--runs 8] [--steps 3000] [--out DIR]

Throughput is measured in CPU time, which other work on a shared machine disturbs far less than
wall time: each setting trains the sweep at ``--steps`` and at a tenth of them, and the extra
run-steps over the extra CPU seconds of the process (all threads) is its rate, compilation and
fixed costs cancelling out. On an otherwise idle machine the wall-clock rate is this times the
cores in use. Settings are interleaved, ``--repeats`` times; the median is kept.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import jax

from grokjax import engine, outdir, spec, sweep

SETTINGS = {  # label -> the fields that keep the weights
    "no weights": {},
    "float32, at the end": {"keep_weights": "float32"},
    "float32, every 10th evaluation": {"keep_weights": "float32", "keep_weights_every": 10},
    "bfloat16, every 10th evaluation": {"keep_weights": "bfloat16", "keep_weights_every": 10},
}


def sweep_of(fields: dict, runs: int, steps: int) -> spec.SweepSpec:
    return spec.from_dict({
        "sweep": {"name": "bench"},
        "fixed": {"group": "23", "K": 256, "train_fraction": 0.9, "lr": 0.01, "steps": steps,
                  "eval_every": 10, **fields},
        "grid": {"seed": list(range(runs))}})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def trained(fields: dict, runs: int, steps: int, out: Path) -> tuple[int, float]:
    """(run-steps, CPU seconds) of the sweep written to ``out``."""
    start = cpu_seconds()
    report = sweep.run_sweep(sweep_of(fields, runs, steps), out_dir=out, progress=False)
    return report.run_steps, cpu_seconds() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", default=None, help="results root (default: a temporary one)")
    args = parser.parse_args()
    engine.use_every_cpu_core()
    root = Path(args.out or tempfile.mkdtemp(prefix="keep_weights-"))
    rates: dict[str, list[float]] = {label: [] for label in SETTINGS}
    sizes: dict[str, float] = {}
    for repeat in range(args.repeats):
        for number, (label, fields) in enumerate(SETTINGS.items()):
            short = trained(fields, args.runs, args.steps // 10, root / f"{number}-{repeat}-short")
            out = root / f"{number}-{repeat}"
            long = trained(fields, args.runs, args.steps, out)
            rates[label].append((long[0] - short[0]) / (long[1] - short[1]))
            weights = [outdir.part_path(out, "weights", name)
                       for name in outdir.part_names(out, "weights")]
            sizes[label] = sum(Path(path).stat().st_size for path in weights) / args.runs
    print(f"M=23 K=256, train fraction 0.9, {args.runs} runs x {args.steps} steps, evaluated "
          f"every 10; {jax.default_backend()} ({jax.devices()[0].device_kind}, "
          f"{jax.local_device_count()} devices); median of {args.repeats}\n")
    base = statistics.median(rates["no weights"])
    print("| weights kept | run-steps per CPU second | vs none | bytes per run |")
    print("|---|---:|---:|---:|")
    for label in SETTINGS:
        rate = statistics.median(rates[label])
        print(f"| {label} | {rate:,.0f} | {rate / base - 1:+.1%} | {sizes[label]:,.0f} |")


if __name__ == "__main__":
    main()
