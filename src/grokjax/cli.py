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
import time

import pandas as pd

from grokjax import (
    __version__,
    aot,
    api,
    config,
    engine,
    errors,
    outdir,
    plan,
    ray_sweep,
    spec,
    sweep,
    tables,
)
from grokjax.coordination import initialize_distributed, leave_distributed
from grokjax.schema import GENERALIZED_TEST_ACC
from grokjax.storage import Location

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
    where = " + ".join(map(str, res.directories))
    runs = (f"{len(res.runs)} of {len(res.whole.runs)} runs in {where} where "
            f"{res.selection_text}" if res.whole is not None
            else f"{len(res.runs)} runs in {where}")
    earlier = f", and {len(res.earlier)} of earlier versions" if len(res.earlier) else ""
    reading = (f"pandas.read_parquet({str(res.directory / 'runs')!r})"
               if len(res.directories) == 1 else "grokjax.load([...]).runs")
    print(f"\n{runs}{earlier}  ({reading})")
    print(f"generalized_fraction: share of the runs whose final test accuracy >= "
          f"{GENERALIZED_TEST_ACC}; grokked_runs: how many runs reached test accuracy >= "
          f"{GENERALIZED_TEST_ACC} (median_grok_step: the first step they did)")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(res.summary().to_string(float_format=lambda v: f"{v:.4g}"))


def describe_plan(sweep_spec: spec.SweepSpec, budget: int, processes: int = 1) -> str:
    import jax

    _, buckets = sweep.first_plan(sweep_spec, budget)
    return plan.describe(sweep_spec, buckets, budget, jax.local_device_count(),
                         engine.layout_for().runs_per_batch is not None, processes)


def load_spec(args) -> spec.SweepSpec:
    """The sweep file (a path or a name under sweeps/, looked up as ``grokjax.run`` does) with
    its --set/--grid overrides (a field given twice is an error)."""
    overrides: dict[str, object] = {}
    for text, grid in [(t, False) for t in args.set] + [(t, True) for t in args.grid]:
        key, value = spec.cli_override(text, grid)
        if key in overrides:
            raise errors.SpecError([f"{key} is given twice in --set/--grid"], "command line")
        overrides[key] = value
    sweep_spec = api.sweep_spec(args.file, args.scale, overrides)
    if sweep_spec.duplicate_runs:
        print(f"note: {sweep_spec.duplicate_runs} duplicate run(s) dropped (the same config in "
              "several grids)", file=sys.stderr)
    return sweep_spec


def saved_runs(out: Location) -> int:
    """How many runs of the sweep in ``out`` are in its parts (as their footers record)."""
    plan_record = outdir.read_plan(out)
    if not plan_record:
        return 0
    return len(outdir.RunIndex(out, plan_record["identity"]).scan())


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
    """Train the sweep (on a Ray cluster with --ray); Ctrl-C ends it with one line saying what
    is saved (exit 130, the shell's code for SIGINT) instead of a traceback: every finished run
    is on disk."""
    sweep_spec = load_spec(args)
    if args.ray is not None and distributed(args):
        raise errors.SpecError(["--ray and --distributed (or --coordinator, --num-processes, "
                                "--process-id, GROKJAX_DISTRIBUTED) exclude each other: Ray "
                                "schedules the workers itself"], "command line")
    out = Location(args.out) if args.out else Location(args.results) / sweep_spec.output_name
    try:
        if args.ray is not None:
            return cmd_sweep_on_ray(args, sweep_spec, out)
        return train_and_summarise(args, sweep_spec, out)
    except KeyboardInterrupt:
        print(f"interrupted: {saved_runs(out)} runs saved in {out}; rerun the same command to "
              "resume", file=sys.stderr)
        return 130


def train_and_summarise(args, sweep_spec: spec.SweepSpec, out: Location) -> int:
    if distributed(args):
        initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                               args.heartbeat_timeout, args.startup_timeout)
    import jax

    process = jax.process_index()
    budget = args.memory_budget or engine.default_memory_budget()
    if process == 0:
        print(describe_plan(sweep_spec, budget, jax.process_count()), flush=True)
    report = sweep.run_sweep(sweep_spec, out_dir=out, overwrite=args.overwrite,
                             memory_budget=budget, progress=not args.no_progress)
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


def cmd_sweep_on_ray(args, sweep_spec: spec.SweepSpec, out: Location) -> int:
    report = ray_sweep.run_on_ray(
        sweep_spec, address=args.ray or None, out_dir=out,
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


def cmd_aot(args) -> int:
    """The compile-only report; exit 1 when a bucket does not fit the chip."""
    report = aot.check(load_spec(args), args.target, slots=args.slots,
                       memory_budget=args.memory_budget)
    print(report.table())
    return 0 if report.fits else 1


def load_results(args) -> api.Results:
    """The results directories of a command, pooled (a run id once), restricted by every
    ``--where FIELD=VALUE[,VALUE...]``."""
    selection: dict[str, list[str]] = {}
    for text in args.where:
        name, sep, values = (part.strip() for part in text.partition("="))
        if not sep or not name or not values:
            raise errors.SpecError([f"--where takes FIELD=VALUE (or FIELD=V1,V2), got {text!r}"],
                                   "--where")
        if name in selection:
            raise errors.SpecError([f"{name} is given twice in --where; give its values as "
                                    f"{name}={','.join(selection[name])},{values}"], "--where")
        selection[name] = [value.strip() for value in values.split(",")]
    res = api.load(args.dirs, include_earlier=args.include_earlier)
    return res.where(**selection) if selection else res


def cmd_summary(args) -> int:
    print_summary(load_results(args))
    return 0


def cmd_export(args) -> int:
    """Each run's curves as a TensorBoard run under OUT, tagged with its config (with
    --follow, as the sweep runs); or each kept step of each run as a PyTorch checkpoint."""
    from grokjax import export

    if args.follow and args.format != "tensorboard":
        raise errors.SpecError(["--follow is for the tensorboard export"], "export")
    try:
        if args.format == "torch":
            count = export.export_torch(api.load(args.dir), args.out)
            print(f"wrote {count} checkpoints to {args.out}; load one with "
                  "ModularAdditionNN(**c['constructor']).load_state_dict(c['model'])")
            return 0
        planned = None
        if args.follow:  # the runs in flight named as they will be in the whole sweep
            sweep_spec = api.load(args.dir).spec
            planned = None if sweep_spec is None else tables.planned_config(sweep_spec)
        exporter = export.TensorBoardExport(args.out, planned)
    except (ImportError, errors.StorageError) as err:  # a usage problem: exit 2, one line
        raise errors.SpecError([str(err)], "export") from None
    if args.follow:
        count = follow_tensorboard(exporter, args)
    else:
        res = api.load(args.dir)
        count = exporter.update(res.runs, res.curves)
    print(f"wrote {count} runs to {args.out}; view them with: tensorboard --logdir {args.out}")
    return 0


def follow_tensorboard(exporter, args) -> int:
    """Export what is new every --interval seconds until the sweep is complete (its manifest is
    written), or until no process has written the directory for a lease's lifetime."""
    from grokjax import outdir

    quiet_since = time.monotonic()
    while True:
        res = api.load(args.dir)
        complete = res.manifest is not None  # read first: the tables read next are then whole
        exporter.update(res.runs, res.curves, None if complete else res.live)
        if complete:
            return len(exporter.last_step)
        if outdir.live_leases(res.directory):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > outdir.LEASE_SECONDS:
            print(f"note: no process has written {args.dir} for {outdir.LEASE_SECONDS:.0f}s and "
                  "it has no manifest: stopped following (run the sweep again to finish it)",
                  file=sys.stderr)
            return len(exporter.last_step)
        time.sleep(args.interval)


def cmd_fit(args) -> int:
    """Every analysis the tables support, printed with the laws it tested; the others say why
    not, one line each."""
    res = load_results(args)
    if res.selection:
        print(repr(res))
    fits = res.fit(n_boot=args.bootstrap)
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
    res = load_results(args)
    saved = res.save_figures(args.out, res.fit(n_boot=args.bootstrap), by=args.by)
    for name, (path, reason) in saved.items():
        print(f"{name}: {path or 'skipped: ' + reason}")
    return 0


def cmd_report(args) -> int:
    path = load_results(args).report(args.out, n_boot=args.bootstrap, by=args.by)
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
        sub.add_argument("file", help="a sweep TOML file (e.g. sweeps/wd.toml) or the name of one "
                                      "under sweeps/ (e.g. wd)")
        sub.add_argument("--scale", default="default",
                         help="a [scale.NAME] of the file, e.g. paper (default: the CPU scale)")
        sub.add_argument("--memory-budget", type=parse_bytes, default=None,
                         help="device memory per batched call, e.g. 2GiB (default: half the "
                              "device's memory; on CPU a quarter of what the process may use: "
                              "RAM, or its cgroup's memory limit)")
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
                     help="set the results already in the output directory aside (in "
                          "_replaced/, never deleted) and train afresh; without it a changed "
                          "sweep reuses the runs there that it still plans")
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
    ahead = with_file("aot", "compile a sweep for a TPU or GPU that this machine lacks: slots, "
                             "memory, FLOPs and bytes per run-step (needs grokjax[aot])")
    ahead.add_argument("--target", required=True, choices=list(aot.TARGETS),
                       help="one chip of this kind (compile-only: no hardware needed)")
    ahead.add_argument("--slots", type=int, default=None,
                       help="runs per chip (default: as many as the engine would fit)")
    ahead.set_defaults(func=cmd_aot)
    commands.add_parser("list", help="list the available groups, activations, losses and "
                                     "optimizers").set_defaults(func=cmd_list)
    def reader(name, func, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("dirs", nargs="+", metavar="DIR",
                         help="results directories, e.g. results/ratio; several are pooled "
                              "(a run once)")
        sub.add_argument("--include-earlier", action="store_true",
                         help="pool in the runs of earlier versions of each sweep, kept in its "
                              "directory")
        sub.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                         help="only the runs with this config value (FIELD=V1,V2: any of them); "
                              "repeat for several fields, e.g. --where K=64 --where "
                              "weight_decay=0.001,0.01")
        sub.set_defaults(func=func)
        return sub

    for name, func, help_text in (
            ("fit", cmd_fit, "fit the scaling laws to results directories"),
            ("plot", cmd_plot, "draw the figures of results directories (PNG)"),
            ("report", cmd_report, "fits, figures and provenance as a Markdown report")):
        sub = reader(name, func, help_text)
        sub.add_argument("--bootstrap", type=int, default=1000,
                         help="bootstrap replicates for the confidence intervals")
        if name == "fit":
            continue
        sub.add_argument("--out", default=None, help="output file (report) or directory (plot); "
                                                     "needed for several directories")
        sub.add_argument("--by", default=None, metavar="FIELD",
                         help="the field the figures draw as colours, one per value, with a "
                              "panel per combination of the other varied fields, e.g. --by "
                              "weight_decay (default: each figure chooses)")
    reader("summary", cmd_summary, "summarise results directories")
    export = commands.add_parser("export", help="write a results directory for another tool")
    export.add_argument("format", choices=["tensorboard", "torch"],
                        help="tensorboard: event files, one run each (needs "
                             "grokjax[tensorboard]); torch: each kept step of each run as a "
                             "checkpoint of the paper's PyTorch model (needs torch)")
    export.add_argument("dir", help="a results directory, e.g. results/wd")
    export.add_argument("out", help="the output directory, e.g. tensorboard/wd")
    export.add_argument("--follow", action="store_true",
                        help="tensorboard: keep adding the curves of the runs in flight until "
                             "the sweep is complete")
    export.add_argument("--interval", type=float, default=10.0,
                        help="seconds between updates with --follow (default 10)")
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
