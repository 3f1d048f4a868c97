"""Adaptive boundary search (a sweep file's ``[search]`` table): spend runs where p* is open.

    [search]
    field = "critical_ratio_delta"   # or "train_fraction": the axis searched, per condition
    bounds = [-1.0, 1.25]            # its range; round 1 tries `points` values spread over it
    points = 4
    seeds = 4                        # seeds 1..4 at every value tried (or a list of seeds)
    ci_width = 0.02                  # stop a condition once its 95% CI of p* is this narrow
    max_run_steps = 600000           # and the whole search within this many run-steps

A *condition* is one run of the grid without the searched field and the seed (e.g. one group).
Round 1 trains every condition at ``points`` values spread over ``bounds``. Each later round fits
the boundary of every condition whose CI is still wider than ``ci_width`` (the Firth logistic fit
of ``fit.generalization_boundary``, bootstrap CI) and adds ``new_points`` values there: the current
estimate of p*, then the ends of its CI; or, while the data only bracket p* (a sharp or an
unfittable transition), values that cut the bracket into equal parts in log p. Each is snapped
to a lattice of ``resolution`` steps over the bounds and is never a value already tried. The
search ends when every condition is narrow enough or out of candidates, after ``max_rounds``,
or when the next round would pass ``max_runs`` runs or ``max_run_steps`` run-steps (counting
the finished runs' executed steps and the new runs at their full length, so the budget holds
whatever the stop rule saves); a round that does not fit whole goes to the widest CIs first.
Everything is a function of the sweep file and of the finished runs, so a rerun (or another
process) computes the same rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from grokjax import data, groups

FIELDS = ("critical_ratio_delta", "train_fraction")
KEYS = ("field", "bounds", "points", "seeds", "ci_width", "max_runs", "max_run_steps",
        "max_rounds", "new_points", "resolution")
BOOTSTRAP = 400  # replicates per boundary fit between rounds


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
    return 1.0 - data.critical_ratio_test_size(order, value, config.critical_ratio_multiplier)


def runs_at(search: Search, condition, values) -> list:
    """The configs of one condition at lattice ``values``, every seed each."""
    return [replace(condition, **{search.field: float(v), "seed": seed})
            for v in values for seed in search.seeds]


def first_round(search: Search, conditions: list) -> list[tuple[int, object]]:
    """(condition index, config) of round 1: ``points`` values spread over the bounds."""
    lattice = search.lattice()
    picks = np.unique(np.round(np.linspace(0, search.resolution, search.points)).astype(int))
    return [(index, run) for index, condition in enumerate(conditions)
            for run in runs_at(search, condition, lattice[picks])]


def _fraction_to_index(search: Search, condition, fraction: float) -> float:
    """The (fractional) lattice index of a train fraction, by interpolation on the lattice."""
    lattice = search.lattice()
    fractions = np.array([train_fraction(search, condition, v) for v in lattice])
    order = np.argsort(fractions)
    return float(np.interp(fraction, fractions[order], np.arange(len(lattice))[order]))


def _candidates(row: pd.Series, cells: pd.DataFrame, count: int) -> list[float]:
    """Train fractions worth trying next, best first: the estimate and the ends of its CI; for a
    bracket (a sharp or an unfittable transition), ``count`` values cutting it into equal parts
    in log p, the middle ones first."""
    if row["status"] == "ok":
        return [row["p_star"], row["p_star_lo"], row["p_star_hi"]]
    if row["status"] == "separated":
        lo, hi = row["p_star_lo"], row["p_star_hi"]
    else:
        fraction = cells["n_generalized"] / cells["n"]
        above = cells.loc[fraction >= 0.5, "train_fraction"]
        below = cells.loc[fraction < 0.5, "train_fraction"]
        if above.empty or below.empty or below[below < above.min()].empty:
            return []  # no transition inside the bounds: nothing to refine
        lo, hi = below[below < above.min()].max(), above.min()
    cuts = sorted(range(1, count + 1), key=lambda k: (abs(2 * k - count - 1), k))
    return [float(lo * (hi / lo) ** (k / (count + 1))) for k in cuts]


def next_round(search: Search, conditions: list, finished: pd.DataFrame, tried: list[set],
               round_number: int) -> tuple[list[tuple[int, object]], list[dict]]:
    """The next round's (condition index, config) pairs, and per condition its boundary now.

    ``conditions`` are the configs of the grid without the searched field and seed, in plan
    order; ``finished`` is the runs table of every earlier round with a ``search_condition``
    column (the index of each run's condition); ``tried[i]`` the field values condition i has.
    """
    from grokjax import fit  # the analysis side; imported only when a search runs

    if round_number > search.max_rounds:
        return [], []
    lattice = search.lattice()
    open_conditions = []
    status = []
    for index, condition in enumerate(conditions):
        mine = finished[finished["search_condition"] == index]
        boundary = fit.generalization_boundary(mine, n_boot=BOOTSTRAP, seed=index)
        row = boundary.table.iloc[0]
        width = row["p_star_hi"] - row["p_star_lo"]
        status.append({"condition": index, "status": row["status"], "p_star": row["p_star"],
                       "ci_width": width})
        if search.ci_width is not None and np.isfinite(width) and width <= search.ci_width:
            continue
        picks = []
        candidates = _candidates(row, boundary.detail, search.new_points)
        # Only values inside the interval (or bracket) the candidates span: once its
        # neighbours on the lattice are all tried, the condition is resolved at that resolution.
        span = sorted(_fraction_to_index(search, condition, f)
                      for f in (min(candidates, default=0), max(candidates, default=0)))
        for fraction in candidates:
            target = _fraction_to_index(search, condition, fraction)
            # the nearest untried lattice index (ties to the lower), never a value tried
            for index_ in sorted(range(len(lattice)), key=lambda i: (abs(i - target), i)):
                value = lattice[index_]
                if not span[0] - 1 < index_ < span[-1] + 1:
                    break
                if float(value) not in tried[index] and value not in picks:
                    picks.append(value)
                    break
            if len(picks) == search.new_points:
                break
        if picks:
            open_conditions.append((width if np.isfinite(width) else math.inf, index, picks))
    # The widest intervals first, so a run budget goes where the answer is least known.
    open_conditions.sort(key=lambda item: (-item[0], item[1]))
    configs = []
    runs, run_steps = len(finished), int(finished["steps_trained"].sum())
    for _, index, picks in open_conditions:
        batch = runs_at(search, conditions[index], picks)
        runs += len(batch)
        run_steps += sum(config.steps for config in batch)
        if (search.max_runs is not None and runs > search.max_runs
                or search.max_run_steps is not None and run_steps > search.max_run_steps):
            break
        configs += [(index, config) for config in batch]
    return configs, status
