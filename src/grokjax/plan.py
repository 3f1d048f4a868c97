"""spec → runs → buckets: what will be trained, how it is grouped, its identity and checks.

A *bucket* is the set of runs sharing a ``Static`` config (one compilation); the engine streams
its runs through slots sized from the compiled program. The *plan identity* names the sweep's
runs (and its stop rule and search), independent of grid order, memory budget and device count,
so a rerun with other resources resumes the same sweep. The pre-flight memory check uses a
conservative estimate, so that nothing is written for a run that cannot fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from grokjax import config, dataset, groups
from grokjax.config import RunConfig
from grokjax.errors import SpecError
from grokjax.search import train_fraction
from grokjax.spec import SweepSpec
from grokjax.stop import StopRule
from grokjax.train import Static

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
    round: int = 1  # the adaptive search's round that added the run (1 for a fixed grid)


@dataclass(frozen=True)
class Bucket:
    static: Static
    group: groups.Group
    runs: tuple[PlannedRun, ...]
    train_rows_at_least: int = 0  # a search pads to its largest split, so rounds share shapes

    @property
    def id(self) -> str:
        # Static's repr without the fields a run id omits at their default, so buckets that
        # existed before those fields keep their ids.
        omitted = config.ID_OMITS_DEFAULT
        shown = ", ".join(f"{f.name}={getattr(self.static, f.name)!r}"
                          for f in dataclasses.fields(self.static)
                          if omitted.get(f.name, ...) != getattr(self.static, f.name))
        return hashlib.sha1(f"(Static({shown}), {self.group.spec!r})".encode()).hexdigest()[:8]

    @property
    def table_rows(self) -> int:
        return self.group.order ** self.static.num_ops

    @property
    def train_rows(self) -> int:
        """The padded train-set length shared by every run of the bucket."""
        return max(self.train_rows_at_least, *(run.n_train for run in self.runs))


RENAMED = {"group": "order", "K": "width"}  # static fields Static names by what they mean there


def static_of(run: RunConfig, group: groups.Group, stop: StopRule | None) -> Static:
    """The bucket key: every static field of ``config.FIELDS``, and the sweep's stop rule."""
    return Static(
        order=group.order, width=run.K, ridge=run.ridge_lambda is not None,
        fourier=run.diagnostics and group.spec.isdigit(), stop=stop,
        **{name: getattr(run, name) for name in config.STATIC_FIELDS if name not in RENAMED},
    )


def planned_run(run: RunConfig, round_number: int = 1) -> PlannedRun:
    resolved = config.resolve(run)
    return PlannedRun(run, config.run_id(run), resolved.test_size, resolved.n_train,
                      resolved.n_test, round_number)


def plan_runs(spec: SweepSpec, runs: list[PlannedRun] | None = None) -> list[Bucket]:
    """Group runs (default: the spec's grid) into buckets of identical static config, in
    first-seen order. Every round of a search compiles the same shapes: its buckets pad the
    train rows to the largest split the search's bounds allow."""
    runs = [planned_run(config) for config in spec.runs()] if runs is None else runs
    buckets: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        group = groups.parse_group(run.config.group)
        buckets.setdefault((static_of(run.config, group, spec.stop), group.spec), []).append(run)
    padding = _search_padding(spec) if spec.search else {}
    return [Bucket(static, groups.parse_group(spec_text), tuple(members),
                   padding.get(spec_text, 0))
            for (static, spec_text), members in buckets.items()]


def _search_padding(spec: SweepSpec) -> dict[str, int]:
    """Per group, the largest train set a value of the searched field can give."""
    largest: dict[str, int] = {}
    for condition in spec.runs():
        fraction = max(train_fraction(spec.search, condition, bound)
                       for bound in spec.search.bounds)
        group = groups.parse_group(condition.group)
        n_train, _ = dataset.split_sizes(group.order**condition.num_ops, 1.0 - fraction)
        largest[group.spec] = max(largest.get(group.spec, 0), n_train)
    return largest


def bytes_per_run(bucket: Bucket) -> int:
    """A conservative estimate of one run's device memory inside a batched call, for checks
    before anything compiles (on GPU about 4x XLA's own figure, which sizes the slots)."""
    s = bucket.static
    params = s.num_ops * s.order * s.width + s.width * s.order + s.other_layers * s.width**2
    train_activations = bucket.train_rows * (s.width * (1 + s.other_layers) + s.order)
    eval_activations = bucket.table_rows * (s.width * (1 + s.other_layers) + s.order)
    ridge = (bucket.train_rows + s.width) * s.width if s.ridge else 0
    floats = (PARAM_COPIES * params + ACTIVATION_COPIES * (train_activations + ridge)
              + eval_activations + bucket.table_rows)
    return int(SAFETY * BYTES_PER_FLOAT * floats)


def check_memory(buckets: list[Bucket], memory_budget: int) -> None:
    """Refuse, before anything is written, a bucket whose one run exceeds the budget."""
    problems = [
        f"bucket {b.id} ({b.group.spec}, K={b.static.width}) needs about "
        f"{bytes_per_run(b) / 2**20:,.0f} MiB per run, more than the memory budget of "
        f"{memory_budget / 2**20:,.0f} MiB per device; reduce K or the group, or pass "
        f"--memory-budget {math.ceil(bytes_per_run(b) / 2**20)}MiB (memory_budget= in Python) "
        "if the device has it"
        for b in buckets if bytes_per_run(b) > memory_budget]
    if problems:
        raise SpecError(problems, "plan")


def identity(spec: SweepSpec, runs: list[PlannedRun]) -> str:
    """The sweep's identity: its runs as a set, its stop rule and its search.

    Independent of grid order, memory budget and devices, so all processes of a job agree on it
    and a rerun with other resources resumes. A search sweep passes its first round's runs (the
    later rounds follow from them and the search settings).
    """
    text = json.dumps([sorted(r.run_id for r in runs),
                       spec.stop.text if spec.stop else None,
                       dataclasses.asdict(spec.search) if spec.search else None])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def static_text(static: Static) -> str:
    """The bucket's shape in a few words, with every optional field that is not its default."""
    extras = [f"num_ops={static.num_ops}"] * (static.num_ops != 2) + [
        f"{f.name}={getattr(static, f.name)}" for f in dataclasses.fields(static)
        if f.default is not dataclasses.MISSING and f.name != "stop"
        and getattr(static, f.name) != f.default]
    return " ".join([f"K={static.width}", static.activation, static.loss, static.optimizer,
                     f"steps={static.steps}/{static.eval_every}", *extras])


def describe(spec: SweepSpec, buckets: list[Bucket], memory_budget: int, num_devices: int,
             loops_over_runs: bool, num_processes: int = 1) -> str:
    """The plan, as ``grokjax plan`` and ``grokjax sweep`` print it."""
    total = sum(len(b.runs) for b in buckets)
    head = (f"{spec.output_name}: {total} runs{' in round 1 of a search' if spec.search else ''}"
            f", {len(buckets)} bucket(s) on {num_devices} device(s) x {num_processes} "
            f"process(es); memory budget {memory_budget / 2**20:.2f} MiB per device")
    lines = [head]
    if spec.stop:
        lines.append(f"  stop rule: {spec.stop.text}")
    if spec.search:
        lines.append(f"  search: {spec.search.text}")
    lines.append(f"  {'bucket':<8} {'group':<10} {'runs':>6} {'slots':>6} {'MiB/run':>8}  static")
    for bucket in buckets:
        # Sizing vmapped slots needs the compiled program (engine.size_slots), so the plan
        # shows the conservative hand estimate; the sweep reports XLA's figure as it compiles.
        slots = str(num_devices) if loops_over_runs else "xla"
        lines.append(f"  {bucket.id:<8} {bucket.group.spec:<10} {len(bucket.runs):>6} {slots:>6} "
                     f"{bytes_per_run(bucket) / 2**20:>8.2f}  {static_text(bucket.static)}")
    if not loops_over_runs:
        lines.append("  (MiB/run: the planner's upper estimate; slots per device are sized by "
                     "compiling each bucket's program at the count that will run)")
    return "\n".join(lines)
