"""A run's fields, each declared once; everything else derives from ``FIELDS`` and ``COLUMNS``.

A field's declaration gives its name, type, default, allowed values, its *role* and whether the
fits treat it as a *condition*:

- role ``static``: changes shapes or code, so it is part of a bucket's ``train.Static`` (one
  compilation per distinct value); ``hparam``: a per-run float32 array of ``train.HParams``
  (``train.HParams`` is generated from these); ``split``: decides a run's train/test split;
  ``seed``: the run's init key and split shuffle.
- condition: runs that differ in it are never pooled by a fit (``CONDITION_COLUMNS``); left out
  are the replicate axis (seed), the split inputs (the realised ``train_fraction`` stands for
  them) and fields that change only what is measured (eval_every, diagnostics).

``COLUMNS`` is the runs table's config part in table order: every field, plus the *derived*
columns computed from the resolved group and split. From these come ``RunConfig`` (the spec's
runs), the spec's per-field checks (``Field.problems``), the static and per-run field lists,
the table dtypes (``COLUMN_DTYPES``) and the fits' conditions. Adding a hyperparameter is one
``Field`` here plus its use in the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from grokjax import dataset, groups, weights
from grokjax.model import ACTIVATIONS, LOSSES, PRECISIONS
from grokjax.optim import OPTIMIZERS

ROLES = ("static", "hparam", "split", "seed")
# ``tuple``: a list of integers (e.g. steps), kept as a sorted tuple and recorded as text.
DTYPES = {int: "int64", float: "float64", str: "string", bool: "bool", tuple: "string"}
TYPE_WORDS = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
              tuple: "a list of integers"}
DEFAULT_TEST_SIZE = 0.5
# A run's operation table has M^num_ops rows; bounded so that a plan can always hold it (2^22
# rows = 16 MiB of int32 per operand). With groups.MAX_ORDER = 2048, every binary task fits.
MAX_TABLE_ROWS = 2**22


class Resolved(NamedTuple):
    """What a run's derived columns are computed from: its group and its realised split."""

    group: groups.Group
    test_size: float
    n_train: int
    n_test: int


def _number(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: type  # int, float, str or bool
    default: Any
    role: str  # one of ROLES
    doc: str
    condition: bool = True
    optional: bool = False  # None (the default) is allowed: the field is unset
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # a problem with the value, or None
    ge: float | None = None  # bounds, pydantic-style: value >= ge, > gt, <= le, < lt
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    hint: str = ""  # said after the value in a range error, e.g. "(hidden width)"
    # A field added after ids were first written leaves the id at its default (run_id),
    # so every run that existed before it keeps its id.
    in_id_at_default: bool = True
    # What the runs table records instead of the value as given (e.g. the resolved test size).
    recorded: Callable[[Any, Resolved], Any] | None = None

    @property
    def dtype(self) -> str:
        return DTYPES[self.type]

    def range_text(self) -> str:
        low = (f"[{_number(self.ge)}" if self.ge is not None else
               f"({_number(self.gt)}" if self.gt is not None else None)
        high = (f"{_number(self.le)}]" if self.le is not None else
                f"{_number(self.lt)})" if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        return ("<= " if high[-1] == "]" else "< ") + high[:-1] if high else ""

    def type_problem(self, value: Any) -> str | None:
        if self.type is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is tuple:
            ok = isinstance(value, list | tuple) and all(
                isinstance(item, int) and not isinstance(item, bool) for item in value)
        else:
            ok = isinstance(value, self.type)
        return None if ok else f"{self.name} must be {TYPE_WORDS[self.type]}, got {value!r}"

    def problems(self, value: Any) -> list[str]:
        """Everything wrong with one value of this field (its type, then its allowed values)."""
        problem = self.type_problem(value)
        if problem:
            return [problem]
        if self.choices and value not in self.choices:
            return [f"{self.name} = {value!r} is not available{did_you_mean(value, self.choices)}"
                    f" choose one of {', '.join(self.choices)}"]
        if self.check:
            problem = self.check(value)
            return [problem] if problem else []
        in_range = all((self.ge is None or item >= self.ge) and (self.gt is None or item > self.gt)
                       and (self.le is None or item <= self.le)
                       and (self.lt is None or item < self.lt)
                       for item in (value if self.type is tuple else [value]))
        hint = f" {self.hint}" if self.hint else ""
        return [] if in_range else [f"{self.name} = {value!r}{hint} must be {self.range_text()}"]

    def normalise(self, value: Any) -> Any:
        """An integer given for a float field as that float, so 0 and 0.0 are one run; a list
        as a sorted tuple without repeats, so the order it is written in changes nothing."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.type is tuple and isinstance(value, list | tuple):
            return tuple(sorted(set(value)))
        return value


def did_you_mean(word: Any, allowed) -> str:
    """'; did you mean 'x'?' for the allowed name closest to a misspelt ``word``, else ';'."""
    close = difflib.get_close_matches(str(word), list(allowed), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ";"


@dataclasses.dataclass(frozen=True)
class Derived:
    """A runs-table column computed from a run's config and its resolved group and split."""

    name: str
    dtype: str
    value: Callable[[Any, Resolved], Any]
    doc: str
    condition: bool = False


def _group_problem(spec: str) -> str | None:
    try:
        groups.parse_group(spec)
    except groups.GroupError as err:
        return f"group: {err}"
    return None


COLUMNS: tuple[Field | Derived, ...] = (
    Field("group", str, "23", "static", "the group or table, e.g. '23', 'dihedral14'",
          check=_group_problem),
    Derived("group_name", "string", lambda c, r: r.group.name, "the group in words"),
    Derived("M", "int64", lambda c, r: r.group.order, "|G|, the number of classes"),
    Derived("group_abelian", "bool", lambda c, r: r.group.abelian, "commutative"),
    Derived("max_irrep_degree", "int64", lambda c, r: r.group.max_irrep_degree,
            "largest irrep degree (0 for an expression table)"),
    Derived("max_real_irrep_dim", "int64",
            lambda c, r: r.group.irrep_facts.max_real_dim if r.group.is_group else 0,
            "largest real dimension d_R of an irrep (d, or 2d for complex and quaternionic)"),
    Derived("irreps", "string",
            lambda c, r: r.group.irrep_facts.description if r.group.is_group else "",
            "the irreps by degree and type (R real, C complex, H quaternionic) and count"),
    Derived("theorem3_width", "int64",
            lambda c, r: r.group.irrep_facts.theorem3_width if r.group.is_group else 0,
            "Theorem 3's sufficient width 2 Σ_k d_k⁴ (2M − 2 for an abelian group)"),
    Field("num_ops", int, 2, "static", "operands per example", ge=2, le=22),
    Field("K", int, 512, "static", "hidden width", ge=1, le=2**16, hint="(hidden width)"),
    Field("activation", str, "sqr", "static", "σ", choices=tuple(ACTIVATIONS)),
    Field("loss", str, "mse", "static", "training loss", choices=tuple(LOSSES)),
    Field("optimizer", str, "adam", "static", "optimizer family", choices=tuple(OPTIMIZERS)),
    Field("precision", str, "highest", "static", "matmul precision: float32, the backend's "
          "float32 default (TF32 on GPU) or bfloat16 operands", choices=PRECISIONS,
          in_id_at_default=False),
    Field("lr", float, 0.01, "hparam", "learning rate", gt=0),
    Field("weight_decay", float, 1e-4, "hparam", "weight decay η", ge=0),
    Field("seed", int, 0, "seed", "init key and split shuffle", condition=False, ge=0, lt=2**32),
    # Exactly one way to set the split; test_size is the default when none is given.
    Field("test_size", float, None, "split", f"test fraction (default {DEFAULT_TEST_SIZE})",
          condition=False, optional=True, gt=0, lt=1, recorded=lambda c, r: r.test_size),
    Field("train_fraction", float, None, "split", "train fraction (recorded as realised)",
          optional=True, gt=0, lt=1, recorded=lambda c, r: r.n_train / (r.n_train + r.n_test)),
    Field("critical_ratio_delta", float, None, "split",
          "train fraction (multiplier − δ)·ln M / M", condition=False, optional=True),
    Field("critical_ratio_multiplier", float, dataset.CRITICAL_RATIO_MULTIPLIER, "split",
          "the critical ratio's constant", condition=False, gt=0),
    Derived("n_train", "int64", lambda c, r: r.n_train, "train examples"),
    Derived("n_test", "int64", lambda c, r: r.n_test, "test examples"),
    Derived("c_eff", "float64", lambda c, r: r.n_train / (r.group.order * math.log(r.group.order)),
            "n_train / (M ln M)"),
    Field("steps", int, 1000, "static", "optimizer steps", ge=1, le=10_000_000),
    Field("eval_every", int, 10, "static", "steps between evaluations", condition=False, ge=1),
    Field("other_layers", int, 0, "static", "extra K x K hidden layers", ge=0, le=16),
    # The paper code's set_weight_reg; unset trains V by gradient. Its presence is static.
    Field("ridge_lambda", float, None, "hparam", "ridge top layer's λ", optional=True, gt=0,
          hint="(omit it to train V by gradient)"),
    Field("top_layer_init_multiplier", float, 1.0, "hparam", "scales V at init"),
    Field("output_multiplier", float, 1.0, "hparam", "scales the logits"),
    Field("embed_trainable", bool, False, "static", "train the one-hot embedding (identity at "
          "init)"),
    Field("complex_weights", bool, False, "static", "complex W and V; loss and accuracy on the "
          "real part"),
    Field("imag_init_scale", float, 0.0, "hparam", "imaginary init scale; 0 is the paper code's "
          "real cast", ge=0),
    Field("diagnostics", bool, False, "static", "Li2 diagnostics curves and the features table",
          condition=False),
    # What a run keeps of its parameters (the weights table); never changes its trajectory.
    Field("keep_weights", str, "none", "static", "keep the run's parameters at its end (and at "
          "the steps below) in the weights table, in this dtype",
          choices=("none", *weights.STORED_DTYPES), condition=False, in_id_at_default=False),
    Field("keep_weights_every", int, 0, "static", "also keep them at every this-many-th "
          "evaluation, step 0 included (0: at the end only)", condition=False, ge=0,
          in_id_at_default=False),
    Field("keep_weights_at", tuple, (), "static", "also keep them at these steps",
          condition=False, ge=0, in_id_at_default=False,
          recorded=lambda c, r: ",".join(map(str, c.keep_weights_at))),
)

FIELDS: dict[str, Field] = {c.name: c for c in COLUMNS if isinstance(c, Field)}
STATIC_FIELDS = tuple(name for name, f in FIELDS.items() if f.role == "static")
HPARAM_FIELDS = tuple(name for name, f in FIELDS.items() if f.role == "hparam")
SPLIT_FIELDS = ("test_size", "train_fraction", "critical_ratio_delta")  # set at most one
CHOICES = {name: f.choices for name, f in FIELDS.items() if f.choices}
COLUMN_DTYPES = {c.name: c.dtype for c in COLUMNS}
CONDITION_COLUMNS = tuple(c.name for c in COLUMNS if c.condition)
# Fields a run id leaves out at these (their default) values.
ID_OMITS_DEFAULT = {name: f.default for name, f in FIELDS.items() if not f.in_id_at_default}
assert all(f.role in ROLES for f in FIELDS.values())


def _resolved_test_size(self, order: int) -> float:
    if self.train_fraction is not None:
        return 1.0 - self.train_fraction
    if self.critical_ratio_delta is not None:
        return dataset.critical_ratio_test_size(
            order, self.critical_ratio_delta, self.critical_ratio_multiplier)
    return self.test_size if self.test_size is not None else DEFAULT_TEST_SIZE


def _normalise_fields(self) -> None:
    for name, f in FIELDS.items():
        object.__setattr__(self, name, f.normalise(getattr(self, name)))


RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [(name, f.type | None if f.optional else f.type, dataclasses.field(default=f.default))
     for name, f in FIELDS.items()],
    frozen=True,
    namespace={"__doc__": "Every setting of one run (see config.FIELDS).",
               "__module__": __name__, "__post_init__": _normalise_fields,
               "resolved_test_size": _resolved_test_size},
)


def resolve(run: RunConfig) -> Resolved:
    group = groups.parse_group(run.group)
    test_size = run.resolved_test_size(group.order)
    return Resolved(group, test_size, *dataset.split_sizes(group.order**run.num_ops, test_size))


def column_values(run: RunConfig, resolved: Resolved) -> dict[str, Any]:
    """One run's config columns of the runs table (an unset optional field as NaN)."""
    values = {}
    for column in COLUMNS:
        if isinstance(column, Derived):
            values[column.name] = column.value(run, resolved)
        elif column.recorded:
            values[column.name] = column.recorded(run, resolved)
        else:
            value = getattr(run, column.name)
            values[column.name] = math.nan if value is None else value
    return values


def from_columns(values: Mapping[str, Any]) -> RunConfig:
    """A run's config from its row of the runs table (``column_values`` backwards): its split
    as the realised ``test_size``, which gives the same split; columns that a table of older
    grokjax lacks at their defaults."""
    fields = {}
    for name, f in FIELDS.items():
        value = values.get(name, f.default)
        if f.type is tuple:
            value = tuple(int(step) for step in str(value).split(",") if step)
        elif f.optional and (value is None or isinstance(value, float) and math.isnan(value)):
            value = None
        elif value is not None:
            value = f.type(value)  # numpy and pandas scalars as plain values
        fields[name] = value
    return RunConfig(**fields | dict.fromkeys(SPLIT_FIELDS) | {"test_size": fields["test_size"]})


def run_id(run: RunConfig) -> str:
    """A stable id: the hash of every config field, independent of grid order.

    Fields declared later (``in_id_at_default=False``) count only away from their default."""
    text = json.dumps({k: v for k, v in dataclasses.asdict(run).items()
                       if k not in ID_OMITS_DEFAULT or v != ID_OMITS_DEFAULT[k]}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def run_problems(run: RunConfig) -> list[str]:
    """What is wrong with a run's combination of fields (each field alone is valid)."""
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
    if (run.keep_weights_every or run.keep_weights_at) and run.keep_weights == "none":
        problems.append("keep_weights_every and keep_weights_at choose more steps at which to "
                        "keep the parameters: they need keep_weights = 'float32' or 'bfloat16'")
    unevaluated = [step for step in run.keep_weights_at
                   if step % run.eval_every or step > run.steps]
    if unevaluated:
        problems.append(f"keep_weights_at: {unevaluated} are not evaluated steps; use multiples "
                        f"of eval_every = {run.eval_every} up to steps = {run.steps}")
    if run.ridge_lambda is not None and run.loss != "mse":
        problems.append("ridge_lambda (the ridge top layer) needs loss = 'mse', as in the paper's "
                        f"code; got loss = {run.loss!r}")
    if not problems:
        group = groups.parse_group(run.group)
        if not group.is_group and run.num_ops != 2:
            problems.append(f"group {run.group!r} is an expression of x and y, so num_ops must "
                            f"be 2; got {run.num_ops}")
        rows = group.order**run.num_ops
        if rows > MAX_TABLE_ROWS:
            return problems + [f"group {run.group!r} with num_ops = {run.num_ops} has a table of "
                               f"{rows} rows, above the limit {MAX_TABLE_ROWS}"]
        n_train, n_test = dataset.split_sizes(rows, run.resolved_test_size(group.order))
        if n_train < 1 or n_test < 1:
            problems.append(f"group {run.group!r} with this split leaves n_train = {n_train}, "
                            f"n_test = {n_test}; both must be >= 1 (change the split)")
    return problems
