"""The adaptive search's policy: which values of the searched field each round trains.

Round 1 trains every condition (a run of the grid without the searched field and the seed, e.g.
one group) at ``points`` values spread over ``bounds``. Each later round fits the boundary of
every condition whose CI is still wider than ``ci_width`` (the boundary analysis's Firth
logistic fit and its profile interval, ``analysis.boundary.generalization_boundary``) and adds
``new_points`` values there: the current estimate of p*, then the ends of its CI; or, while the
data only bracket p* (no partial cell yet, or no fit), values that cut the bracket into equal
parts in log p.
Each is snapped to a lattice of ``resolution`` steps over the bounds and is never a value
already tried. The search ends when every condition is narrow enough or out of candidates,
after ``max_rounds``, or when the next round would pass ``max_runs`` runs or ``max_run_steps``
run-steps (counting the finished runs' executed steps and the new runs at their full length, so
the budget holds whatever the stop rule saves); a round that does not fit whole goes to the
widest CIs first. Everything is a function of the sweep file and of the finished runs, so a
rerun (or another process) computes the same rounds.

This planner is fed by the analyses and sits above them; the settings it reads are
``grokjax.search``'s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pandas as pd

from grokjax import plan
from grokjax.analysis.boundary import generalization_boundary
from grokjax.plan import PlannedRun
from grokjax.search import Search, train_fraction
from grokjax.spec import SweepSpec

Round = list[tuple[int | None, PlannedRun]]  # (search condition, run); None for a fixed grid


def _runs_at(search: Search, condition, values) -> list:
    """The configs of one condition at lattice ``values``, every seed each."""
    return [replace(condition, **{search.field: float(v), "seed": seed})
            for v in values for seed in search.seeds]


def first_round(spec: SweepSpec) -> Round:
    """Round 1's runs, each with its search condition (None for a fixed grid): for a search,
    every condition at ``points`` values spread over the bounds."""
    if spec.search is None:
        return [(None, plan.planned_run(config)) for config in spec.runs()]
    search = spec.search
    lattice = search.lattice()
    picks = np.unique(np.round(np.linspace(0, search.resolution, search.points)).astype(int))
    return [(index, plan.planned_run(run)) for index, condition in enumerate(spec.runs())
            for run in _runs_at(search, condition, lattice[picks])]


@functools.lru_cache(maxsize=256)
def _lattice_fractions(search: Search, condition) -> tuple[np.ndarray, np.ndarray]:
    """The train fractions of a condition's lattice, ascending, and their lattice indices."""
    fractions = np.array([train_fraction(search, condition, v) for v in search.lattice()])
    order = np.argsort(fractions)
    return fractions[order], order


def _fraction_to_index(search: Search, condition, fraction: float) -> float:
    """The (fractional) lattice index of a train fraction, by interpolation on the lattice."""
    fractions, indices = _lattice_fractions(search, condition)
    return float(np.interp(fraction, fractions, indices))


def _candidates(row: pd.Series, cells: pd.DataFrame, count: int) -> list[float]:
    """Train fractions worth trying next, best first: the estimate and the ends of its CI; for a
    transition with no partial cell yet (or no fit), ``count`` values cutting the bracket of the
    cells into equal parts in log p, the middle ones first."""
    if row["status"] == "ok":
        return [v for v in (row["p_star"], row["p_star_lo"], row["p_star_hi"])
                if 0 < v < math.inf]
    fraction = cells["n_generalized"] / cells["n"]
    above = cells.loc[fraction >= 0.5, "train_fraction"]
    below = cells.loc[fraction < 0.5, "train_fraction"]
    if above.empty or below.empty or below[below < above.min()].empty:
        return []  # no transition inside the bounds: nothing to refine
    lo, hi = below[below < above.min()].max(), above.min()
    cuts = sorted(range(1, count + 1), key=lambda k: (abs(2 * k - count - 1), k))
    return [float(lo * (hi / lo) ** (k / (count + 1))) for k in cuts]


def _next_configs(search: Search, conditions: list, finished: pd.DataFrame, tried: list[set],
                  round_number: int) -> list[tuple[int, object]]:
    """The next round's (condition index, config) pairs.

    ``conditions`` are the configs of the grid without the searched field and seed, in plan
    order; ``finished`` is the runs table of every earlier round with a ``search_condition``
    column (the index of each run's condition); ``tried[i]`` the field values condition i has.
    """
    if round_number > search.max_rounds:
        return []
    lattice = search.lattice()
    open_conditions = []
    boundary = generalization_boundary(finished, within="search_condition")
    rows = boundary.table.set_index("search_condition")
    for index, condition in enumerate(conditions):
        if index not in rows.index:  # none of its runs is usable (all diverged)
            continue
        row = rows.loc[index]
        cells = boundary.detail[boundary.detail["search_condition"] == index]
        width = row["p_star_hi"] - row["p_star_lo"]
        if search.ci_width is not None and np.isfinite(width) and width <= search.ci_width:
            continue
        picks = []
        candidates = _candidates(row, cells, search.new_points)
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
        batch = _runs_at(search, conditions[index], picks)
        runs += len(batch)
        run_steps += sum(config.steps for config in batch)
        if (search.max_runs is not None and runs > search.max_runs
                or search.max_run_steps is not None and run_steps > search.max_run_steps):
            break
        configs += [(index, config) for config in batch]
    return configs


def next_round(spec: SweepSpec, rounds: list[Round], finished: pd.DataFrame) -> Round:
    """The next round of a search from the finished runs of ``rounds`` (the runs table);
    empty when the search is over (and always for a fixed grid)."""
    if spec.search is None:
        return []
    so_far = [pair for round_runs in rounds for pair in round_runs]
    condition_of = {run.run_id: index for index, run in so_far}
    # one row per run: a run two writers raced to commit is in two parts until verification
    finished = finished[finished["run_id"].isin(condition_of)].drop_duplicates("run_id")
    finished = finished.assign(search_condition=finished["run_id"].map(condition_of))
    conditions = spec.runs()  # the search's conditions: the grid without field and seed
    tried = [set() for _ in conditions]
    for index, run in so_far:
        tried[index].add(getattr(run.config, spec.search.field))
    number = len(rounds) + 1
    return [(index, plan.planned_run(config, number)) for index, config in
            _next_configs(spec.search, conditions, finished, tried, number)]
