"""Adaptive boundary search (a sweep file's ``[search]`` table): spend runs where p* is open.

    [search]
    field = "critical_ratio_delta"   # or "train_fraction": the axis searched, per condition
    bounds = [-1.0, 1.25]            # its range; round 1 tries `points` values spread over it
    points = 4
    seeds = 4                        # seeds 1..4 at every value tried (or a list of seeds)
    ci_width = 0.02                  # stop a condition once its 95% CI of p* is this narrow
    max_run_steps = 600000           # and the whole search within this many run-steps

A *condition* is one run of the grid without the searched field and the seed (e.g. one group).
This module parses and validates the table; the policy that picks each round's values is
``grokjax.rounds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grokjax import dataset, groups

FIELDS = ("critical_ratio_delta", "train_fraction")
KEYS = ("field", "bounds", "points", "seeds", "ci_width", "max_runs", "max_run_steps",
        "max_rounds", "new_points", "resolution")


@dataclass(frozen=True)
class Search:
    field: str
    bounds: tuple[float, float]
    seeds: tuple[int, ...]
    points: int = 4
    ci_width: float | None = None
    max_runs: int | None = None
    max_run_steps: int | None = None
    max_rounds: int = 8
    new_points: int = 2
    resolution: int = 96

    @property
    def text(self) -> str:
        goals = [text for value, text in (
            (self.ci_width, f"95% CI of p* narrower than {self.ci_width}"),
            (self.max_runs, f"at most {self.max_runs} runs"),
            (self.max_run_steps, f"at most {self.max_run_steps} run-steps")) if value is not None]
        return (f"{self.field} in [{self.bounds[0]:g}, {self.bounds[1]:g}], {self.points} values"
                f" x {len(self.seeds)} seeds in round 1, then {self.new_points} per open "
                f"condition per round until {' or '.join(goals)} (≤ {self.max_rounds} rounds)")

    def lattice(self) -> np.ndarray:
        return np.linspace(*self.bounds, self.resolution + 1)


def _whole(value, low: int, high: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def parse(table: object, axes: set[str]) -> tuple[Search | None, list[str]]:
    """A ``[search]`` table → (search, problems); ``axes`` are the fields the sweep sets."""
    if not isinstance(table, dict):
        return None, [f"[search] must be a table with keys {', '.join(KEYS)}, got {table!r}"]
    problems = [f"[search]: unknown key {key!r}; valid keys: {', '.join(KEYS)}"
                for key in table if key not in KEYS]
    field = table.get("field")
    if field not in FIELDS:
        problems.append(f"[search] field = {field!r}: choose one of {', '.join(FIELDS)}")
    problems += [f"[search] searches {key!r}, so the grid and [fixed] must not set it"
                 for key in ("seed", field, *(f for f in ("test_size", "train_fraction",
                                                          "critical_ratio_delta") if f != field))
                 if key in axes]
    bounds = table.get("bounds")
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool)
                       and math.isfinite(b) for b in bounds) or bounds[0] >= bounds[1]):
        problems.append(f"[search] bounds = {bounds!r} must be [low, high] with low < high")
    elif field == "train_fraction" and not 0 < bounds[0] < bounds[1] < 1:
        problems.append(f"[search] train_fraction bounds {bounds!r} must lie in (0, 1)")
    seeds = table.get("seeds", 4)
    if _whole(seeds, 1, 1000):
        seeds = list(range(1, seeds + 1))
    if (not isinstance(seeds, list) or not seeds or not all(_whole(s, 0, 2**32 - 1) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        problems.append(f"[search] seeds = {table.get('seeds')!r} must be a count (1..1000) or "
                        "a list of distinct seeds")
    for key, low, high in (("points", 2, 100), ("max_rounds", 1, 100), ("new_points", 1, 20),
                           ("resolution", 4, 10_000), ("max_runs", 1, 10_000_000),
                           ("max_run_steps", 1, 10**15)):
        if key in table and not _whole(table[key], low, high):
            problems.append(f"[search] {key} = {table[key]!r} must be a whole number in "
                            f"[{low}, {high}]")
    width = table.get("ci_width")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int | float)
                              or not 0 < width < 1):
        problems.append(f"[search] ci_width = {width!r} must be a number in (0, 1)")
    if width is None and "max_runs" not in table and "max_run_steps" not in table:
        problems.append("[search] needs a goal: ci_width (target 95% CI width of p*) and/or "
                        "a budget, max_runs or max_run_steps")
    if problems:
        return None, problems
    options = {k: table[k] for k in ("points", "max_rounds", "new_points", "resolution",
                                     "max_runs", "max_run_steps", "ci_width") if k in table}
    return Search(field, (float(bounds[0]), float(bounds[1])), tuple(seeds), **options), []


def train_fraction(search: Search, config, value: float) -> float:
    """The train fraction a value of the searched field gives ``config``'s group."""
    if search.field == "train_fraction":
        return value
    order = groups.parse_group(config.group).order
    return 1.0 - dataset.critical_ratio_test_size(order, value, config.critical_ratio_multiplier)
