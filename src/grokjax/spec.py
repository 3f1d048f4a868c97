"""Sweep files (or the same mapping as a Python dict) → validated spec → the list of runs.

A sweep has a ``sweep`` table (name, description), ``fixed`` fields, a ``grid`` whose fields are
lists (the Cartesian product is taken) — or several ``[[grid]]`` tables, whose runs are pooled
(for variants that change several fields together) — and optional ``scale.<name>`` tables whose
``fixed``/``grid`` override the defaults (``make sweep-wd SCALE=paper``): a scale's ``grid``
table sets its fields in every grid, a scale's ``[[grid]]`` list replaces the grids.

Optional ``[stop]`` (``grokjax.stop``: end runs once decided) and ``[search]``
(``grokjax.search``: an adaptive boundary search, whose grid lists the conditions it searches)
tables apply to every run; a scale's own ``stop``/``search`` tables update them.

A grid value is a list, or a range: ``{range = [start, stop]}`` / ``[start, stop, step]``
(integers, half-open like Python's), ``{linspace = [low, high, n]}``, ``{logspace = [low, high,
n]}`` (n values from low to high, both included).

``[[overrides]]`` tables (what ``--set``/``--grid`` and ``overrides=`` append to the text) are
applied in order after the scale: a single value fixes a field (removing it from every grid), a
list or range makes it an axis of every grid. The spec's ``source_text`` is the *effective*
sweep — the text as written plus its overrides — so it re-parses to the same runs.

Everything is checked before any compute; every problem is reported at once, each naming the
field (as a dotted key path, the same for a file and a dict) and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grokjax import config, search, stop
from grokjax.config import FIELDS, RunConfig
from grokjax.errors import SpecError
from grokjax.toml_writer import to_toml

# Top-level keys and the kind of value each holds; a new top-level table is one entry here.
TOP_KEYS = {"sweep": dict, "fixed": dict, "grid": (dict, list), "stop": dict, "search": dict,
            "scale": dict, "overrides": list}
SWEEP_KEYS = ("name", "description")
SCALE_KEYS = ("fixed", "grid", "stop", "search")
RANGE_FORMS = ("range", "linspace", "logspace")
MAX_RUNS = 1_000_000  # per sweep; bounds the expansion of grids and ranges before it happens
SPACED_DIGITS = 12  # linspace/logspace values are rounded so their run ids are reproducible
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9.,_-]")
MAX_LABEL_CHARS = 80  # a longer override label in an output name becomes a hash
OVERRIDES_HEADER = "# --- overrides (--set/--grid or overrides=), applied after the scale ---"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    scale: str
    fixed: dict[str, Any]
    grids: tuple[dict[str, list[Any]], ...]
    source_text: str  # the effective sweep as TOML (as written, plus overrides); in every result
    overrides: tuple[dict[str, Any], ...] = ()  # every [[overrides]] table, in order
    stop: stop.StopRule | None = None
    search: search.Search | None = None  # the runs are then the conditions it searches

    @property
    def output_name(self) -> str:
        """``name``, ``name-scale``, and with overrides ``+K-256+seed-range1,21`` (or, when
        long, ``+`` a hash of them); never containing '=' (read as a hive partition)."""
        name = self.name if self.scale == "default" else f"{self.name}-{self.scale}"
        if not self.overrides:
            return name
        label = "+".join(_override_label(key, value) for table in self.overrides
                         for key, value in table.items())
        if len(label) > MAX_LABEL_CHARS:
            label = hashlib.sha1(label.encode()).hexdigest()[:10]
        return f"{name}+{label}"

    @property
    def axes(self) -> list[str]:
        """Every field that some grid varies, in file order."""
        return list(dict.fromkeys(key for grid in self.grids for key in grid))

    def all_runs(self) -> list[RunConfig]:
        """Every grid's runs, in order, duplicates across grids included."""
        base = RunConfig(**self.fixed)
        return [replace(base, **dict(zip(grid, values, strict=True)))
                for grid in self.grids
                for values in itertools.product(*grid.values())]

    def runs(self) -> list[RunConfig]:
        """The distinct runs (a run that several grids produce appears once, first-seen)."""
        return list(dict.fromkeys(self.all_runs()))

    @property
    def duplicate_runs(self) -> int:
        """Runs dropped from ``runs()`` because an earlier grid has the same config."""
        return len(self.all_runs()) - len(self.runs())


def _override_label(key: str, value: Any) -> str:
    if isinstance(value, dict):
        (form, args), = value.items()
        text = form + ",".join(map(str, args))
    elif isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
    return _SAFE_CHARS.sub("_", f"{key}-{text}")


def _suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(allowed)}"


def _unknown_keys(table: dict, allowed, where: str) -> list[str]:
    return [f"{where}: unknown key {key!r}{_suggest(key, allowed)}"
            for key in table if key not in allowed]


def _kind(expected) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join({dict: "a table", list: "a list of tables"}[k] for k in kinds)


def _structure_problems(raw: dict) -> list[str]:
    """Tables where tables must be: what the rest of validation relies on."""
    problems = _unknown_keys(raw, TOP_KEYS, "top level")
    for key, expected in TOP_KEYS.items():
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, expected):
            problems.append(f"{key} must be {_kind(expected)}, got {value!r}")
        elif isinstance(value, list) and not (value and all(isinstance(t, dict) for t in value)):
            problems.append(f"{key} must be a non-empty list of tables, got {value!r}")
    scales = raw.get("scale") if isinstance(raw.get("scale"), dict) else {}
    for name, table in scales.items():
        where = f"scale.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: a scale name must be letters, digits, '-' or '_'")
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table, got {table!r}")
            continue
        problems += _unknown_keys(table, SCALE_KEYS, where)
        for key in ("stop", "search"):
            if not isinstance(table.get(key, {}), dict):
                problems.append(f"{where}.{key} must be a table, got {table[key]!r}")
            else:
                allowed = stop.KEYS if key == "stop" else search.KEYS
                problems += _unknown_keys(table.get(key, {}), allowed, f"{where}.{key}")
        for key, expected in (("fixed", dict), ("grid", (dict, list))):
            value = table.get(key, {})
            if not isinstance(value, expected) or (isinstance(value, list) and not (
                    value and all(isinstance(t, dict) for t in value))):
                problems.append(f"{where}.{key} must be {_kind(expected)} (non-empty), "
                                f"got {value!r}")
    return problems


def _expand(key: str, value: Any, where: str) -> tuple[list, list[str]]:
    """A grid value as its list of values; a range form is expanded (after bounding it)."""
    if isinstance(value, list):
        return value, [] if value else [f"{where}.{key} must be a non-empty list"]
    forms = ("a list, {range = [start, stop(, step)]}, {linspace = [low, high, n]} or "
             "{logspace = [low, high, n]}")
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGE_FORMS):
        return [], [f"{where}.{key} must be {forms}; got {value!r}"]
    (form, args), = value.items()
    numbers = isinstance(args, list) and all(
        isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args)
    if form == "range":
        if not (numbers and all(isinstance(a, int) for a in args) and len(args) in (2, 3)
                and (len(args) == 2 or args[2] != 0)):
            return [], [f"{where}.{key}: range takes integers [start, stop] or [start, stop, "
                        f"step] with step != 0; got {args!r}"]
        values = range(*args)
        if not 1 <= len(values) <= MAX_RUNS:
            return [], [f"{where}.{key}: range {args!r} has {len(values)} values; it needs 1 "
                        f"to {MAX_RUNS}"]
        return list(values), []
    if not (numbers and len(args) == 3 and isinstance(args[2], int)
            and 1 <= args[2] <= MAX_RUNS and (form == "linspace" or min(args[:2]) > 0)):
        positive = " > 0" if form == "logspace" else ""
        return [], [f"{where}.{key}: {form} takes [low, high, n] with low, high{positive} and "
                    f"an integer 1 <= n <= {MAX_RUNS}; got {args!r}"]
    low, high, n = args
    if form == "logspace":
        low, high = math.log10(low), math.log10(high)
    steps = [low + (high - low) * i / max(n - 1, 1) for i in range(n)]
    values = [10**v if form == "logspace" else v for v in steps]
    values = [float(f"{v:.{SPACED_DIGITS}g}") for v in values]
    return values, []


def _field_problems(fixed: dict, grids: list[dict], where: str) -> tuple[list[str], dict, list]:
    """Keys, types and values of every field; the fixed and grid tables normalised (ranges
    expanded, integers of float fields as floats, so 0 and 0.0 are one value)."""
    problems = _unknown_keys(fixed, FIELDS, f"{where}fixed")
    for key, value in fixed.items():
        if key in FIELDS:
            if _is_axis(key, value):
                problems.append(f"{where}fixed.{key} must be a single value (lists and ranges "
                                f"belong in grid), got {value!r}")
            else:
                problems += FIELDS[key].problems(value)
    fixed = {k: FIELDS[k].normalise(v) for k, v in fixed.items() if k in FIELDS}
    normalised = []
    for number, grid in enumerate(grids):
        label = f"{where}grid" if len(grids) == 1 else f"{where}grid[{number}]"
        problems += _unknown_keys(grid, FIELDS, label)
        problems += [f"{key!r} is in both {where}fixed and {label}; keep it in one"
                     for key in set(fixed) & set(grid)]
        expanded = {}
        for key, value in grid.items():
            if key not in FIELDS:
                continue
            values, expand_problems = _expand(key, value, label)
            problems += expand_problems
            for item in values:
                problems += FIELDS[key].problems(item)
            values = [FIELDS[key].normalise(v) for v in values]
            if len(set(map(repr, values))) != len(values):
                problems.append(f"{label}.{key} repeats a value: {value!r}")
            expanded[key] = values
        normalised.append(expanded)
    return list(dict.fromkeys(problems)), fixed, normalised


def _grids(raw) -> list[dict]:
    """A ``grid`` table or a ``[[grid]]`` list of tables, as a list of tables."""
    return [dict(g) for g in raw] if isinstance(raw, list) else [dict(raw)]


def _apply(fixed: dict, grids: list[dict], new_fixed: dict, new_grid) -> list[dict]:
    """A scale or an override on top of (fixed, grids): ``new_fixed`` fields leave every grid,
    a ``new_grid`` table is set in every grid (a list replaces them), grid fields leave fixed."""
    fixed.update(new_fixed)
    if isinstance(new_grid, list):
        grids = _grids(new_grid)
    for grid in grids:
        if isinstance(new_grid, dict):
            grid.update(new_grid)
        for key in new_fixed:
            grid.pop(key, None)
    for key in {k for grid in grids for k in grid}:
        fixed.pop(key, None)
    return grids


def _is_axis(key: str, value: Any) -> bool:
    """Whether a field's value is several values (a list or a range): for a field whose value
    is a list (e.g. keep_weights_at), a list of lists."""
    if isinstance(value, list) and key in FIELDS and FIELDS[key].type is tuple:
        return any(isinstance(item, list) for item in value)
    return isinstance(value, list | dict)


def _split_override(table: dict) -> tuple[dict, dict]:
    """An override table as (fixed part, grid part): lists and ranges are grid axes."""
    fixed = {k: v for k, v in table.items() if not _is_axis(k, v)}
    return fixed, {k: v for k, v in table.items() if k not in fixed}


def _build(raw: dict, text: str, scale: str, source: str,
           overrides: dict[str, Any] | None) -> SweepSpec:
    if not isinstance(raw, dict):
        raise SpecError([f"a sweep must be a table (a dict), got {raw!r}"], source)
    problems = _structure_problems(raw)
    if not _NAME.match(scale):
        problems.append(f"scale {scale!r} must be letters, digits, '-' or '_'")
    override_tables = [*raw.get("overrides", [])] if isinstance(raw.get("overrides"), list) else []
    if overrides:
        if not isinstance(overrides, dict):
            problems.append(f"overrides must be a dict of field → value, got {overrides!r}")
        else:
            override_tables.append(dict(overrides))
    if problems:
        raise SpecError(problems, source)
    sweep = raw.get("sweep", {})
    problems += _unknown_keys(sweep, SWEEP_KEYS, "sweep")
    name = sweep.get("name", Path(source).stem)
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"sweep.name {name!r} must be letters, digits, '-' or '_'")
    description = sweep.get("description", "")
    if not isinstance(description, str):
        problems.append(f"sweep.description must be a string, got {description!r}")
    scales = raw.get("scale", {})
    for scale_name, table in scales.items():  # every scale, selected or not
        problems += _field_problems(table.get("fixed", {}), _grids(table.get("grid", {})),
                                    f"scale.{scale_name}.")[0]
    for number, table in enumerate(override_tables):
        problems += _unknown_keys(table, FIELDS, f"overrides[{number}]")
    if scale != "default" and scale not in scales:
        available = ", ".join(["default", *scales])
        problems.append(f"no scale.{scale} in this sweep; available scales: {available}")
    if problems:
        raise SpecError(list(dict.fromkeys(problems)), source)
    fixed, grids = dict(raw.get("fixed", {})), _grids(raw.get("grid", {}))
    if not fixed and not any(grids) and not override_tables and not scales.get(scale):
        raise SpecError(["nothing to run: set some field in fixed or grid"], source)
    if scale != "default":
        grids = _apply(fixed, grids, dict(scales[scale].get("fixed", {})),
                       scales[scale].get("grid", {}))
    for table in override_tables:
        grids = _apply(fixed, grids, *_split_override(table))
    problems, fixed, grids = _field_problems(fixed, grids, "")
    selected = scales.get(scale, {})
    stop_rule, boundary_search = None, None
    if "stop" in raw or "stop" in selected:
        stop_rule, found = stop.parse({**raw.get("stop", {}), **selected.get("stop", {})})
        problems += found
    if "search" in raw or "search" in selected:
        axes = set(fixed) | {key for grid in grids for key in grid}
        boundary_search, found = search.parse(
            {**raw.get("search", {}), **selected.get("search", {})}, axes)
        problems += found
    if problems:
        raise SpecError(problems, source)
    total = sum(math.prod(len(values) for values in grid.values()) for grid in grids)
    if total > MAX_RUNS:
        raise SpecError([f"the grids hold {total} runs, above the limit {MAX_RUNS}"], source)
    spec = SweepSpec(name, description, scale, fixed, tuple(grids),
                     _with_overrides(text, overrides), tuple(override_tables), stop_rule,
                     boundary_search)
    runs = spec.runs()
    if boundary_search:  # the runs at both ends of the searched range
        runs = [replace(run, **{boundary_search.field: bound}) for run in runs
                for bound in boundary_search.bounds]
    run_problems = {p for run in runs for p in config.run_problems(run)}
    if run_problems:
        raise SpecError(sorted(run_problems), source)
    return spec


def plain(value: Any) -> Any:
    """A value from Python as TOML would give it: numpy scalars and arrays (anything with
    ``tolist``, pandas too) as Python numbers and lists, tuples as lists, a ``range`` as the
    range form, dicts and lists item by item; so ``K=np.int64(64)`` is the run of ``K=64``,
    with its id, and ``seed=range(1, 9)`` writes the directory of ``seed={"range": [1, 9]}``."""
    if isinstance(value, range):
        return {"range": [value.start, value.stop, *([value.step] if value.step != 1 else [])]}
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def parse(text: str, scale: str = "default", source: str = "sweep",
          overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Parse and validate a sweep file's text; raise SpecError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError([f"not valid TOML: {err}"], source) from None
    return _build(raw, text, scale, source, plain(overrides))


def from_dict(mapping: dict, scale: str = "default",
              overrides: dict[str, Any] | None = None, source: str = "sweep") -> SweepSpec:
    """Validate a sweep given as a dict exactly as its TOML file would be (same messages).

    ``overrides`` maps field → value: a single value fixes the field, a list (a tuple, a numpy
    array, a ``range``) or a range dict (``{"range": [1, 21]}``) makes it an axis of every
    grid; numpy values count as the Python values they hold (``plain``). The spec's
    ``source_text`` is the mapping written as TOML, so results record (and re-parse) it like a
    file.
    """
    mapping, overrides = plain(mapping), plain(overrides)
    spec = _build(mapping, "", scale, source, overrides)  # validated, so it writes as TOML
    return replace(spec, source_text=_with_overrides(to_toml(mapping), overrides))


def load(path: str | Path, scale: str = "default",
         overrides: dict[str, Any] | None = None) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"no sweep file at {path}"], str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([f"not UTF-8 text: {err}"], str(path)) from None
    return parse(text, scale, str(path), overrides)


# ---------------------------------------------------------------------------------------------
# Overrides as TOML text, and reading them from the command line


def _with_overrides(text: str, overrides: dict[str, Any] | None) -> str:
    """The effective sweep: ``text`` and, when there are overrides, an ``[[overrides]]`` table."""
    if not overrides:
        return text
    body = text.rstrip("\n") + "\n\n" if text.strip() else ""
    return f"{body}{OVERRIDES_HEADER}\n" + to_toml({"overrides": [overrides]})


_CLI_RANGE = re.compile(r"^(-?\d+):(-?\d+)(?::(-?\d+))?$")


def _cli_scalar(key: str, text: str) -> Any:
    """A TOML scalar; a string field takes the text as written (``group=23``, ``activation=relu``)
    unless quoted, and an unparsable value stays text for the field's type check to report."""
    field = FIELDS.get(key)
    if field and field.type is str and not text.startswith(('"', "'")):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def cli_override(text: str, grid: bool) -> tuple[str, Any]:
    """``FIELD=VALUE`` of ``--set`` (one value) or ``--grid`` (``a,b,c``; ``start:stop[:step]``;
    or a TOML list or range table such as ``{logspace = [1e-4, 1e-2, 5]}``) as (field, value)."""
    flag = "--grid" if grid else "--set"
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise SpecError([f"{flag} takes FIELD=VALUE, got {text!r}"], flag)
    if key not in FIELDS:
        raise SpecError([f"{flag}: unknown field {key!r}{_suggest(key, FIELDS)}"], flag)
    if not grid:
        if FIELDS[key].type is tuple and not value.startswith("["):  # steps: a,b,c
            return key, [_cli_scalar(key, item.strip()) for item in value.split(",")]
        parsed = _cli_scalar(key, value)
        if _is_axis(key, parsed) or (isinstance(parsed, str) and "," in value
                                     and FIELDS[key].type is not str):
            raise SpecError([f"--set {key} takes one value; use --grid for several"], flag)
        return key, parsed
    match = _CLI_RANGE.match(value)
    if match:
        return key, {"range": [int(g) for g in match.groups() if g is not None]}
    if value.startswith(("[", "{")):
        return key, _cli_scalar(key, value)
    return key, [_cli_scalar(key, item.strip()) for item in value.split(",")]
