"""Do the boundary intervals cover what they claim? An oracle trainer with a known logistic
boundary, P(generalized) = σ((log p − log p*(M)) / s) with p*(M) = c·ln M / M, answers the runs
that the project's own search (``rounds``) plans, as ``sweeps/ratio.toml`` and
``sweeps/irrep.toml`` configure it, and of a fixed grid (the 576 runs ratio.toml used to be); the
project's own fits (``generalization_boundary``, ``boundary_law``) then estimate p* per group
and c and b across groups. Over 200 replicates per design and transition width s, the nominal
95% intervals must contain the truth in at least 93% of them, and must not be vacuous: a c 20%
off is excluded in most replicates. The oracle needs no JAX; the runs it "trains" stop at 40% of
their steps when they generalize, as the stop rule makes real runs do."""

import concurrent.futures
import functools
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokjax import groups, rounds, spec
from grokjax.analysis.boundary import boundary_law, generalization_boundary

SWEEPS = Path(__file__).parents[1] / "sweeps"
REPLICATES = 200
TRUE_C = 2.0  # inside both searches' bounds for every group of theirs
WIDTHS = (0.02, 0.05, 0.10)  # transition width s in log p
LEVEL = 0.95
BAR = 0.93
FIXED_GRID = f"""
[sweep]
name = "ratio-grid"

[fixed]
K = 256
steps = 3000
eval_every = 20

[[grid]]
group = ["23", "29", "37", "47", "59", "2x2x9", "5x2x2x2", "dihedral30", "dihedral42"]
critical_ratio_delta = {[round(float(d), 4) for d in np.linspace(-1.0, 1.25, 16)]}
seed = [1, 2, 3, 4]
"""
DESIGNS = {
    "fixed grid": lambda: spec.parse(FIXED_GRID),
    "ratio search": lambda: spec.load(SWEEPS / "ratio.toml"),
    "irrep search": lambda: spec.load(SWEEPS / "irrep.toml"),
}


def true_p_star(order) -> np.ndarray:
    return TRUE_C * np.log(order) / order


def oracle(planned: rounds.Round, width: float, rng: np.random.Generator) -> pd.DataFrame:
    """The runs table the sweep would write, as far as the boundary fits read it."""
    runs = [run for _, run in planned]
    order = np.array([groups.parse_group(run.config.group).order for run in runs])
    fraction = np.array([run.n_train for run in runs]) / order**2
    chance = 1 / (1 + np.exp(-(np.log(fraction) - np.log(true_p_star(order))) / width))
    generalized = rng.random(len(runs)) < chance
    steps = np.array([run.config.steps for run in runs])
    return pd.DataFrame({
        "run_id": [run.run_id for run in runs], "group": [run.config.group for run in runs],
        "M": order, "train_fraction": fraction, "generalized": generalized, "steps": steps,
        "steps_trained": np.where(generalized, (0.4 * steps).astype(int), steps)})


def replicate(sweep: spec.SweepSpec, width: float, seed: int):
    """One sweep through the oracle: its boundary and law tables and the run-steps it took."""
    rng = np.random.default_rng(seed)
    done, table, planned = [], pd.DataFrame(), rounds.first_round(sweep)
    while planned:
        done.append(planned)
        table = pd.concat([table, oracle(planned, width, rng)], ignore_index=True)
        planned = rounds.next_round(sweep, done, table)
    boundary = generalization_boundary(table, LEVEL)
    return boundary.table, boundary_law(boundary, LEVEL).table, int(table["steps_trained"].sum())


def tally(design: str, width: float, seeds: range) -> dict[str, object]:
    """Counts over the replicates ``seeds`` of one design and width."""
    sweep = DESIGNS[design]()
    counts = dict.fromkeys(("p_hits", "p_closed", "p_total", "c_hits", "b_hits", "c_inside",
                            "laws"), 0)
    run_steps = []
    for seed in seeds:
        boundary, law, steps = replicate(sweep, width, seed)
        closed = np.isfinite(boundary["p_star_lo"]) & np.isfinite(boundary["p_star_hi"])
        truth = true_p_star(boundary["M"].to_numpy(float))
        inside = (boundary["p_star_lo"] <= truth) & (truth <= boundary["p_star_hi"])
        law = law[law["status"] == "ok"]
        counts["p_hits"] += int(inside[closed].sum())
        counts["p_closed"] += int(closed.sum())
        counts["p_total"] += len(boundary)
        counts["c_hits"] += int(((law["c_lo"] <= TRUE_C) & (TRUE_C <= law["c_hi"])).sum())
        counts["b_hits"] += int(((law["b_g1_lo"] <= 1) & (1 <= law["b_g1_hi"])).sum())
        counts["c_inside"] += int(((0.8 * TRUE_C < law["c_lo"])
                                   & (law["c_hi"] < 1.2 * TRUE_C)).sum())
        counts["laws"] += len(law)
        run_steps.append(steps)
    return counts | {"run_steps": run_steps}


@functools.cache
def coverage() -> dict[tuple[str, float], dict[str, float]]:
    """For every design and width: the shares of replicates whose intervals contain the truth
    (p*: of the groups with a closed interval), whose c interval lies within 20% of the truth,
    and the median run-steps. The replicates run in parallel on every core (spawned processes:
    a forked JAX process may deadlock)."""
    settings = [(design, width) for design in DESIGNS for width in WIDTHS]
    chunks = [range(start, min(start + 25, REPLICATES)) for start in range(0, REPLICATES, 25)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
        futures = {setting: [pool.submit(tally, *setting, chunk) for chunk in chunks]
                   for setting in settings}
        results = {}
        for setting, parts in futures.items():
            counts = {key: sum((part.result()[key] for part in parts),
                               start=[] if key == "run_steps" else 0)
                      for key in parts[0].result()}
            results[setting] = {
                "p*": counts["p_hits"] / counts["p_closed"],
                "closed": counts["p_closed"] / counts["p_total"],
                "c": counts["c_hits"] / counts["laws"], "b": counts["b_hits"] / counts["laws"],
                "c_within_20%": counts["c_inside"] / counts["laws"],
                "laws": counts["laws"] / REPLICATES,
                "run_steps": float(np.median(counts["run_steps"]))}
    return results


@pytest.mark.calibration
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("design", DESIGNS)
def test_nominal_95_intervals_cover_the_planted_boundary(design, width):
    result = coverage()[design, width]
    print(design, width, result)
    assert result["p*"] >= BAR and result["c"] >= BAR and result["b"] >= BAR, result
    # Every replicate's law is fitted, and nearly every group's interval is closed.
    assert result["laws"] == (2 if design == "irrep search" else 1)
    assert result["closed"] >= 0.9 and result["c_within_20%"] >= 0.9, result
