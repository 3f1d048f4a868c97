"""Sweep files: TOML → validated spec → the list of runs (the plan's rows).

A sweep file has a ``[sweep]`` table (name, description), ``[fixed]`` fields, a ``[grid]`` whose
fields are lists (the Cartesian product is taken) — or several ``[[grid]]`` tables, whose runs
are pooled (for variants that change several fields together) — and optional
``[scale.<name>]`` tables whose ``fixed``/``grid`` override the defaults
(``make sweep-wd SCALE=paper``): a scale's ``grid`` table sets its fields in every grid, a scale's
``[[grid]]`` list replaces the grids. Everything is checked
before any compute; every problem is reported at once, each naming the field and what is allowed.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from grokjax import data, groups, search, stop

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (older TPU VM images)
    import tomli as tomllib
from grokjax.model import ACTIVATIONS, LOSSES
from grokjax.optim import OPTIMIZERS

SPLIT_FIELDS = ("test_size", "train_fraction", "critical_ratio_delta")


class SpecError(ValueError):
    """A sweep file that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str], source: str = "sweep"):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n" +
                         "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one run. Static fields form buckets; the others are vmapped."""

    group: str = "23"
    num_ops: int = 2
    K: int = 512
    activation: str = "sqr"
    loss: str = "mse"
    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 1e-4
    seed: int = 0
    # Exactly one way to set the split; test_size is the default when none is given.
    test_size: float | None = None
    train_fraction: float | None = None
    critical_ratio_delta: float | None = None
    critical_ratio_multiplier: float = data.CRITICAL_RATIO_MULTIPLIER
    steps: int = 1000
    eval_every: int = 10
    other_layers: int = 0
    ridge_lambda: float | None = None  # the code's set_weight_reg; None trains V by gradient
    top_layer_init_multiplier: float = 1.0
    output_multiplier: float = 1.0
    embed_trainable: bool = False  # train the one-hot embedding (identity at init)
    complex_weights: bool = False  # complex W and V; loss and accuracy on the real part
    imag_init_scale: float = 0.0  # imaginary init scale; 0 is the paper code's real cast
    diagnostics: bool = False  # Li2 diagnostics curves and the per-node features table

    def resolved_test_size(self, order: int) -> float:
        if self.train_fraction is not None:
            return 1.0 - self.train_fraction
        if self.critical_ratio_delta is not None:
            return data.critical_ratio_test_size(
                order, self.critical_ratio_delta, self.critical_ratio_multiplier)
        return self.test_size if self.test_size is not None else DEFAULT_TEST_SIZE


DEFAULT_TEST_SIZE = 0.5
FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}
STATIC_FIELDS = ("group", "num_ops", "K", "activation", "loss", "optimizer", "steps",
                 "eval_every", "other_layers", "embed_trainable", "complex_weights",
                 "diagnostics")
CHOICES = {
    "activation": tuple(ACTIVATIONS),
    "loss": LOSSES,
    "optimizer": tuple(OPTIMIZERS),
}
SWEEP_KEYS = ("name", "description")
TOP_KEYS = ("sweep", "fixed", "grid", "stop", "search", "scale")
SCALE_KEYS = ("fixed", "grid", "stop", "search")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    scale: str
    fixed: dict[str, Any]
    grids: tuple[dict[str, list[Any]], ...]
    source_text: str  # the TOML file as written, kept in every results file
    stop: stop.StopRule | None = None
    search: search.Search | None = None  # the runs are then the conditions it searches

    @property
    def output_name(self) -> str:
        return self.name if self.scale == "default" else f"{self.name}-{self.scale}"

    @property
    def axes(self) -> list[str]:
        """Every field that some grid varies, in file order."""
        return list(dict.fromkeys(key for grid in self.grids for key in grid))

    def runs(self) -> list[RunConfig]:
        base = RunConfig(**self.fixed)
        return [replace(base, **dict(zip(grid, values, strict=True)))
                for grid in self.grids
                for values in itertools.product(*grid.values())]


def _suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(allowed)}"


def _unknown_keys(table: dict, allowed, where: str) -> list[str]:
    return [f"{where}: unknown key {key!r}{_suggest(key, allowed)}"
            for key in table if key not in allowed]


def _type_problem(name: str, value: Any) -> str | None:
    kind = FIELD_TYPES[name]
    if "str" in kind:
        return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if isinstance(value, bool):
        return f"{name} must be a number, got {value!r}"
    if kind == "int" and not isinstance(value, int):
        return f"{name} must be an integer, got {value!r}"
    if "float" in kind and not isinstance(value, int | float):
        return f"{name} must be a number, got {value!r}"
    return None


def _value_problems(name: str, value: Any) -> list[str]:
    """Range checks of one field's value (types already checked)."""
    if name in CHOICES and value not in CHOICES[name]:
        return [f"{name} = {value!r} is not available; choose one of {', '.join(CHOICES[name])}"]
    if name == "group":
        try:
            groups.parse_group(value)
        except groups.GroupError as err:
            return [f"group: {err}"]
        return []
    checks = {
        "num_ops": (lambda v: v >= 2, "must be >= 2"),
        "K": (lambda v: v >= 1, "(hidden width) must be >= 1"),
        "lr": (lambda v: v > 0 and math.isfinite(v), "must be a finite number > 0"),
        "weight_decay": (lambda v: v >= 0 and math.isfinite(v), "must be >= 0"),
        "seed": (lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
        "test_size": (lambda v: 0 < v < 1, "must be in (0, 1)"),
        "train_fraction": (lambda v: 0 < v < 1, "must be in (0, 1)"),
        "critical_ratio_delta": (math.isfinite, "must be finite"),
        "critical_ratio_multiplier": (lambda v: v > 0, "must be > 0"),
        "steps": (lambda v: v >= 1, "must be >= 1"),
        "eval_every": (lambda v: v >= 1, "must be >= 1"),
        "other_layers": (lambda v: v >= 0, "must be >= 0"),
        "ridge_lambda": (lambda v: v > 0, "must be > 0 (omit it to train V by gradient)"),
        "top_layer_init_multiplier": (math.isfinite, "must be finite"),
        "output_multiplier": (math.isfinite, "must be finite"),
        "imag_init_scale": (lambda v: v >= 0 and math.isfinite(v), "must be >= 0"),
    }
    ok, message = checks.get(name, (lambda v: True, ""))
    return [] if ok(value) else [f"{name} = {value!r} {message}"]


def _run_problems(run: RunConfig) -> list[str]:
    """Checks that involve several fields of one run."""
    problems = []
    given = [k for k in SPLIT_FIELDS if getattr(run, k) is not None]
    if len(given) > 1:
        problems.append(f"set only one of {', '.join(SPLIT_FIELDS)}; got {', '.join(given)}")
    if run.steps % run.eval_every:
        problems.append(f"steps = {run.steps} must be a multiple of eval_every = "
                        f"{run.eval_every}")
    if run.complex_weights and (run.activation != "sqr" or run.optimizer.startswith("muon")
                                or run.ridge_lambda is not None or run.other_layers):
        problems.append("complex_weights needs activation = 'sqr' (σ(z) = z²), a non-muon "
                        "optimizer, no ridge_lambda and other_layers = 0")
    if run.imag_init_scale and not run.complex_weights:
        problems.append("imag_init_scale needs complex_weights = true")
    if run.ridge_lambda is not None and run.loss != "mse":
        problems.append("ridge_lambda (the ridge top layer) needs loss = 'mse', as in the paper's "
                        f"code; got loss = {run.loss!r}")
    if not problems:
        group = groups.parse_group(run.group)
        if not group.is_group and run.num_ops != 2:
            problems.append(f"group {run.group!r} is an expression of x and y, so num_ops must "
                            f"be 2; got {run.num_ops}")
        order = group.order
        n_train, n_test = data.split_sizes(order**run.num_ops, run.resolved_test_size(order))
        if n_train < 1 or n_test < 1:
            problems.append(f"group {run.group!r} with this split leaves n_train = {n_train}, "
                            f"n_test = {n_test}; both must be >= 1 (change the split)")
    return problems


def _check_fields(fixed: dict, grids: list[dict], where: str) -> list[str]:
    problems = _unknown_keys(fixed, FIELD_TYPES, f"{where}[fixed]")
    values = [(k, v) for k, v in fixed.items() if k in FIELD_TYPES]
    for grid in grids:
        problems += _unknown_keys(grid, FIELD_TYPES, f"{where}[grid]")
        problems += [f"{key!r} is in both [fixed] and [grid]; keep it in one"
                     for key in set(fixed) & set(grid)]
        for key, seq in grid.items():
            if key not in FIELD_TYPES:
                continue
            if not isinstance(seq, list) or not seq:
                problems.append(f"[grid] {key} must be a non-empty list, got {seq!r}")
                continue
            if len(set(map(repr, seq))) != len(seq):
                problems.append(f"[grid] {key} repeats a value: {seq!r}")
            values += [(key, v) for v in seq]
    for key, value in values:
        problem = _type_problem(key, value)
        problems += [problem] if problem else _value_problems(key, value)
    return list(dict.fromkeys(problems))


def _grids(raw) -> list[dict]:
    """A ``[grid]`` table or a ``[[grid]]`` list of tables, as a list of tables."""
    return [dict(g) for g in raw] if isinstance(raw, list) else [dict(raw)]


def parse(text: str, scale: str = "default", source: str = "sweep") -> SweepSpec:
    """Parse and validate a sweep file's text; raise SpecError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError([f"not valid TOML: {err}"], source) from None
    problems = _unknown_keys(raw, TOP_KEYS, "top level")
    sweep = raw.get("sweep", {})
    problems += _unknown_keys(sweep, SWEEP_KEYS, "[sweep]")
    name = sweep.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        problems.append(f"[sweep] name {name!r} must be letters, digits, '-' or '_'")
    fixed, grids = dict(raw.get("fixed", {})), _grids(raw.get("grid", {}))
    scales = raw.get("scale", {})
    if scale != "default":
        if scale not in scales:
            available = ", ".join(["default", *scales]) or "default"
            raise SpecError([f"no [scale.{scale}] in this file; available scales: {available}"],
                            source)
        override = scales[scale]
        problems += _unknown_keys(override, SCALE_KEYS, f"[scale.{scale}]")
        for table in ("stop", "search"):
            if isinstance(override.get(table), dict):
                raw[table] = {**raw.get(table, {}), **override[table]}
        fixed.update(override.get("fixed", {}))
        new_grid = override.get("grid", {})
        if isinstance(new_grid, list):
            grids = _grids(new_grid)
        for grid in grids:
            if isinstance(new_grid, dict):
                grid.update(new_grid)
            for key in override.get("fixed", {}):
                grid.pop(key, None)
        for key in {k for grid in grids for k in grid}:
            fixed.pop(key, None)
    problems += _check_fields(fixed, grids, "" if scale == "default" else f"[scale.{scale}]")
    stop_rule, found = stop.parse(raw["stop"]) if "stop" in raw else (None, [])
    problems += found
    boundary_search = None
    if "search" in raw:
        axes = set(fixed) | {key for grid in grids for key in grid}
        boundary_search, found = search.parse(raw["search"], axes)
        problems += found
    if problems:
        raise SpecError(problems, source)
    spec = SweepSpec(name, sweep.get("description", ""), scale, fixed, tuple(grids), text,
                     stop_rule, boundary_search)
    runs = spec.runs()
    if boundary_search:  # check the runs at both ends of the searched range
        runs = [replace(run, **{boundary_search.field: bound}) for run in runs
                for bound in boundary_search.bounds]
    run_problems = {p for run in runs for p in _run_problems(run)}
    if run_problems:
        raise SpecError(sorted(run_problems), source)
    return spec


def load(path: str | Path, scale: str = "default") -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"no sweep file at {path}"], str(path))
    return parse(path.read_text(), scale, str(path))
