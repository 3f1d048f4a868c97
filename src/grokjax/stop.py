"""Stop rules: end a run once its answer is decided (a sweep file's ``[stop]`` table).

    [stop]
    when = "test_acc >= 0.99"     # one or more comparisons joined by "and"
    hold = 200                    # ... that held at every evaluation over this many steps

A rule is checked inside the compiled call at every evaluation, on the metrics of that
evaluation, so a run stops at the same step whatever ran beside it. The run's last curve point
is its stop step and its weights stay those of that step.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from dataclasses import dataclass

import jax.numpy as jnp

from grokjax.schema import METRICS

COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
KEYS = ("when", "hold")
MAX_HOLD = 10_000_000
_CONDITION = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class StopRule:
    conditions: tuple[tuple[str, str, float], ...]  # (metric, comparison, threshold), all hold
    hold: int = 0  # steps over which every evaluation must satisfy the conditions

    @property
    def text(self) -> str:
        when = " and ".join(f"{m} {c} {t:g}" for m, c, t in self.conditions)
        return f"{when}, held {self.hold} steps" if self.hold else when

    def satisfied(self, metrics: dict) -> jnp.ndarray:
        """Whether every condition holds for these (traced, scalar) metrics; NaN never does."""
        result = jnp.bool_(True)
        for metric, comparison, threshold in self.conditions:
            result &= COMPARISONS[comparison](metrics[metric], threshold)
        return result


def _condition(text: str) -> tuple[tuple[str, str, float] | None, list[str]]:
    match = _CONDITION.match(text)
    if not match:
        return None, [f"[stop] when: cannot read {text.strip()!r}; write e.g. "
                      "'test_acc >= 0.99' (a metric, one of >= > <= <, a number)"]
    metric, comparison, number = match.groups()
    problems = []
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(METRICS)}"
        problems.append(f"[stop] when: unknown metric {metric!r}; {hint}")
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        problems.append(f"[stop] when: threshold {number!r} must be a finite number")
    return (None if problems else (metric, comparison, threshold)), problems


def parse(table: object) -> tuple[StopRule | None, list[str]]:
    """A ``[stop]`` table → (rule, problems); every problem is reported, nothing raised."""
    if not isinstance(table, dict):
        return None, [f"[stop] must be a table with keys {', '.join(KEYS)}, got {table!r}"]
    problems = [f"[stop]: unknown key {key!r}; valid keys: {', '.join(KEYS)}"
                for key in table if key not in KEYS]
    when, hold = table.get("when"), table.get("hold", 0)
    conditions = []
    if not isinstance(when, str) or not when.strip():
        problems.append("[stop] needs when = \"<metric> <comparison> <number>\", e.g. "
                        "when = \"test_acc >= 0.99\"")
    else:
        for part in re.split(r"\band\b", when):
            condition, found = _condition(part)
            problems += found
            conditions.append(condition)
    if isinstance(hold, bool) or not isinstance(hold, int) or not 0 <= hold <= MAX_HOLD:
        problems.append(f"[stop] hold = {hold!r} must be a whole number of steps in "
                        f"[0, {MAX_HOLD}]")
    if problems:
        return None, problems
    return StopRule(tuple(conditions), hold), []
