"""``grokjax``: run sweep files, check them, and summarise their tables.

Exit codes: 0 success, 2 a bad sweep file or argument (nothing is written), 1 anything else.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys

import pandas as pd

from grokjax import __version__, api, config, engine, errors, plan, ray_sweep, spec, sweep
from grokjax.coordination import initialize_distributed, leave_distributed
from grokjax.schema import GENERALIZED_TEST_ACC

SUPERVISED = "GROKJAX_SUPERVISED"  # set in the child that a --distributed sweep runs in
# JAX's abort of a multi-process job: the coordinator lost, or a process that never joined.
JAX_FATAL = re.compile(rb"^F\d{4} .*Terminating process because the JAX distributed service")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str) -> int:
    """'512MB', '2GiB', '1000000' → bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower().removesuffix("b") if match else None
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 512MB, 2GiB)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise argparse.ArgumentTypeError(f"not a usable size: {text!r} (use e.g. 512MB, 2GiB)")
    return size


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def print_summary(res: api.Results) -> None:
    print(f"\n{len(res.runs)} runs in {res.directory}  "
          f"(pandas.read_parquet({str(res.directory / 'runs')!r}))")
    print(f"generalized = final test accuracy >= {GENERALIZED_TEST_ACC}; grok step = first step "
          f"with test accuracy >= {GENERALIZED_TEST_ACC}")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(res.summary().to_string(float_format=lambda v: f"{v:.3g}"))


def describe_plan(sweep_spec: spec.SweepSpec, budget: int, processes: int = 1) -> str:
    import jax

    _, buckets = sweep.first_plan(sweep_spec, budget)
    return plan.describe(sweep_spec, buckets, budget, jax.local_device_count(),
                         engine.runs_per_batch() is not None, processes)


def load_spec(args) -> spec.SweepSpec:
    """The sweep file with its --set/--grid overrides (a field given twice is an error)."""
    overrides: dict[str, object] = {}
    for text, grid in [(t, False) for t in args.set] + [(t, True) for t in args.grid]:
        key, value = spec.cli_override(text, grid)
        if key in overrides:
            raise errors.SpecError([f"{key} is given twice in --set/--grid"], "command line")
        overrides[key] = value
    sweep_spec = spec.load(args.file, args.scale, overrides)
    if sweep_spec.duplicate_runs:
        print(f"note: {sweep_spec.duplicate_runs} duplicate run(s) dropped (the same config in "
              "several grids)", file=sys.stderr)
    return sweep_spec


def distributed(args) -> bool:
    return bool(args.distributed or args.coordinator or args.num_processes
                or args.process_id is not None)


def supervise(argv: list[str], processes: int | None) -> int:
    """Run this ``grokjax sweep --distributed`` in a child process, and turn JAX's abort of it
    into one line and exit 1: the abort (the coordinator, process 0, lost; a process that never
    joined) comes from C++, where no Python handler of the child can stop it. Everything else
    the child writes passes through."""
    child = subprocess.Popen([sys.executable, "-m", "grokjax.cli", *argv],
                             env={**os.environ, SUPERVISED: "1"}, stderr=subprocess.PIPE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the child too
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda signum, frame: child.send_signal(signum))
    fatal = b""
    for line in child.stderr:
        if fatal or JAX_FATAL.match(line):
            fatal += line
        else:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
    code = child.wait()
    if code >= 0 or not fatal:
        return code if code >= 0 else 128 - code
    if b"RegisterTask" in fatal:
        what = "not every process joined the job within its start-up timeout (--startup-timeout)"
    elif b"coordination service" in fatal:
        what = "process 0 (the coordinator) lost"
    else:
        what = "the job's coordination service failed"
    everyone = f"all {processes}" if processes else "all the"
    status = re.search(rb"absl::Status: ([^.\n]*)", fatal)
    print(f"error: {what}; rerun {everyone} processes, finished runs are kept (JAX: "
          f"{status[1].decode(errors='replace') if status else 'aborted'})", file=sys.stderr)
    return 1


def die_with_parent() -> None:
    """A supervised child ends with its supervisor, even one killed by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() == 1:  # the supervisor was gone before prctl
        os._exit(1)


def cmd_sweep(args) -> int:
    sweep_spec = load_spec(args)
    if args.ray is not None:
        if distributed(args):
            raise errors.SpecError(["--ray and --distributed (or --coordinator, --num-processes, "
                                    "--process-id, GROKJAX_DISTRIBUTED) exclude each other: Ray "
                                    "schedules the workers itself"], "command line")
        return cmd_sweep_on_ray(args, sweep_spec)
    if distributed(args):
        initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                               args.heartbeat_timeout, args.startup_timeout)
    import jax

    process = jax.process_index()
    budget = args.memory_budget or engine.default_memory_budget()
    if process == 0:
        print(describe_plan(sweep_spec, budget, jax.process_count()), flush=True)
    report = sweep.run_sweep(sweep_spec, args.results, out_dir=args.out,
                             overwrite=args.overwrite, memory_budget=budget,
                             progress=not args.no_progress)
    compile_text = ", ".join(f"{b}: {s:.1f}s" for b, s in report.compile_seconds.items())
    print(f"{f'process {process}: ' if jax.process_count() > 1 else ''}"
          f"runs trained {report.runs_trained} ({report.runs_stopped} stopped early), skipped "
          f"(already done) {report.runs_skipped}; rounds {report.rounds}; compile "
          f"{compile_text or 'none'}; training {report.train_seconds:.1f}s, "
          f"{report.run_steps_per_second:,.0f} run-steps/s")
    if process == 0:
        print_summary(api.load(report.out_dir))
    leave_distributed()
    return 0


def cmd_sweep_on_ray(args, sweep_spec: spec.SweepSpec) -> int:
    report = ray_sweep.run_on_ray(
        sweep_spec, args.results, address=args.ray or None, out_dir=args.out,
        overwrite=args.overwrite, memory_budget=args.memory_budget,
        progress=not args.no_progress, chunk_runs=args.chunk_runs,
        chunk_minutes=args.chunk_minutes, compile_cache=args.compile_cache)
    print(f"runs trained {report.runs_trained} on {report.devices} Ray worker(s), skipped "
          f"(already done) {report.runs_skipped}; rounds {report.rounds}; "
          f"{report.run_steps_per_second:,.0f} run-steps/s")
    print_summary(api.load(report.out_dir))
    return 0


def cmd_plan(args) -> int:
    sweep_spec = load_spec(args)
    budget = args.memory_budget or engine.default_memory_budget()
    print(describe_plan(sweep_spec, budget))
    return 0


def cmd_summary(args) -> int:
    print_summary(api.load(args.dir))
    return 0


def cmd_export(args) -> int:
    """Each run's curves as a TensorBoard run under OUT, tagged with its config."""
    from grokjax import export

    res = api.load(args.dir)
    try:
        count = export.export_tensorboard(res.runs, res.curves, args.out)
    except (ImportError, errors.StorageError) as err:  # a usage problem: exit 2, one line
        raise errors.SpecError([str(err)], "export") from None
    print(f"wrote {count} runs to {args.out}; view them with: tensorboard --logdir {args.out}")
    return 0


def cmd_fit(args) -> int:
    """Every analysis the tables support, printed with the laws it tested; the others say why
    not, one line each."""
    fits = api.load(args.dir).fit(n_boot=args.bootstrap)
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        for name, result in fits.items():
            print(f"\n== {name}: {result.status}. {result.message}")
            if not result.usable:
                continue
            print(f"   ({result.n_runs} runs, {len(result.excluded)} excluded; {result.method})")
            print(result.table.to_string(float_format=lambda v: f"{v:.4g}"))
            if len(result.laws):
                print("   laws tested:")
                print(result.laws.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_plot(args) -> int:
    res = api.load(args.dir)
    for name, (path, reason) in res.save_figures(args.out, res.fit(n_boot=args.bootstrap)).items():
        print(f"{name}: {path or 'skipped: ' + reason}")
    return 0


def cmd_report(args) -> int:
    path = api.load(args.dir).report(args.out, n_boot=args.bootstrap)
    print(f"wrote {path}")
    return 0


def cmd_list(args) -> int:
    """Every name a sweep file accepts for the categorical fields; for each group family, the
    irreps of its example (degree, R/C/H for real/complex/quaternionic, how many)."""
    from grokjax.groups import GROUP_FAMILIES, parse_group

    print("groups (field `group`):")
    for syntax, description, example in GROUP_FAMILIES:
        group = parse_group(example)
        irreps = f"; irreps {group.irrep_facts.description}" if group.is_group else ""
        print(f"  {syntax:<18} {description}  e.g. {example!r}{irreps}")
    for name, choices in config.CHOICES.items():
        print(f"field `{name}`: {', '.join(choices)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokjax", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"grokjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_file(name, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("file", help="a sweep TOML file, e.g. sweeps/wd.toml")
        sub.add_argument("--scale", default="default",
                         help="a [scale.NAME] of the file, e.g. paper (default: the CPU scale)")
        sub.add_argument("--memory-budget", type=parse_bytes, default=None,
                         help="device memory per batched call, e.g. 2GiB (default: half the "
                              "device's memory, a quarter of RAM on CPU)")
        sub.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                         help="fix a field in every run, e.g. K=256 (removes it from the grids)")
        sub.add_argument("--grid", action="append", default=[], metavar="FIELD=VALUES",
                         help="make a field an axis of every grid: a,b,c or start:stop[:step] "
                              "or a TOML list or range table, e.g. weight_decay=1e-4,5e-4")
        return sub

    run = with_file("sweep", "train every run of a sweep file and write its tables")
    run.add_argument("--results", default="results", help="root of the results (default: results)")
    run.add_argument("--out", default=None, help="write to this directory instead")
    run.add_argument("--overwrite", action="store_true",
                     help="replace results of a different sweep in the output directory")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    hosts = run.add_argument_group(
        "several processes (hosts)", "each trains every n-th run; on a TPU VM pod slice "
        "--distributed alone is enough. Defaults come from GROKJAX_DISTRIBUTED=1, "
        "GROKJAX_COORDINATOR, GROKJAX_NUM_PROCESSES, GROKJAX_PROCESS_ID, "
        "GROKJAX_HEARTBEAT_TIMEOUT, GROKJAX_STARTUP_TIMEOUT")
    hosts.add_argument("--distributed", action="store_true",
                       default=os.environ.get("GROKJAX_DISTRIBUTED", "0") not in ("", "0"),
                       help="call jax.distributed.initialize() first")
    hosts.add_argument("--coordinator", default=os.environ.get("GROKJAX_COORDINATOR"),
                       metavar="HOST:PORT", help="process 0's address, e.g. 127.0.0.1:8476")
    hosts.add_argument("--num-processes", type=int,
                       default=os.environ.get("GROKJAX_NUM_PROCESSES"))
    hosts.add_argument("--process-id", type=int, default=os.environ.get("GROKJAX_PROCESS_ID"))
    hosts.add_argument("--heartbeat-timeout", type=positive_int, metavar="SECONDS",
                       default=os.environ.get("GROKJAX_HEARTBEAT_TIMEOUT"),
                       help="declare a process lost after this long without a heartbeat "
                            "(default: JAX's, 100)")
    hosts.add_argument("--startup-timeout", type=positive_int, metavar="SECONDS",
                       default=os.environ.get("GROKJAX_STARTUP_TIMEOUT"),
                       help="give up when not every process has started within this long "
                            "(default: JAX's, 300)")
    cluster = run.add_argument_group(
        "a Ray cluster", "workers on every node of a Ray cluster take chunks of the plan; "
        "nodes may join, leave or fail while it runs (pip install 'grokjax[ray]')")
    cluster.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                         help="train on the Ray cluster whose head is at ADDRESS (host:port); "
                              "without one, on the Ray this machine runs, or one started for the "
                              "sweep")
    cluster.add_argument("--chunk-runs", type=positive_int, default=None, metavar="N",
                         help="runs per chunk (default: as many as take --chunk-minutes)")
    cluster.add_argument("--chunk-minutes", type=float, default=ray_sweep.CHUNK_MINUTES,
                         metavar="M", help="the time one chunk takes on a worker, estimated "
                                           "(default: %(default)s)")
    cluster.add_argument("--compile-cache", default=ray_sweep.DEFAULT_COMPILE_CACHE,
                         metavar="DIR|URL",
                         help="JAX's persistent compilation cache, on each worker's host or "
                              "shared by all: an NFS path, or gs:// or s3:// with etils[epath] "
                              "(default: %(default)s)")
    run.set_defaults(func=cmd_sweep)
    with_file("plan", "validate a sweep file and show its buckets and chunks; trains "
                      "nothing").set_defaults(func=cmd_plan)
    commands.add_parser("list", help="list the available groups, activations, losses and "
                                     "optimizers").set_defaults(func=cmd_list)
    for name, func, help_text in (
            ("fit", cmd_fit, "fit the scaling laws to a results directory"),
            ("plot", cmd_plot, "draw the figures of a results directory (PNG)"),
            ("report", cmd_report, "fits, figures and provenance as a Markdown report")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("dir", help="e.g. results/ratio")
        sub.add_argument("--bootstrap", type=int, default=1000,
                         help="bootstrap replicates for the confidence intervals")
        sub.add_argument("--out", default=None, help="output file (report) or directory (plot)")
        sub.set_defaults(func=func)
    summary = commands.add_parser("summary", help="summarise a results directory")
    summary.add_argument("dir", help="e.g. results/wd")
    summary.set_defaults(func=cmd_summary)
    export = commands.add_parser("export", help="write a results directory for another tool")
    export.add_argument("format", choices=["tensorboard"],
                        help="tensorboard: event files, one run each (needs grokjax[tensorboard])")
    export.add_argument("dir", help="a results directory, e.g. results/wd")
    export.add_argument("out", help="the output directory, e.g. tensorboard/wd")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sweep" and distributed(args) and args.ray is None:
        if os.environ.get(SUPERVISED) != "1":
            return supervise(sys.argv[1:] if argv is None else argv, args.num_processes)
        die_with_parent()
    engine.use_every_cpu_core()
    try:
        return args.func(args)
    except errors.UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except errors.SweepIncomplete as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
