"""Scaling-law fits on synthetic runs tables with planted laws (test_plot.py and
test_analyses.py reuse the tables)."""

import numpy as np
import pandas as pd
import pytest

from grokjax import groups
from grokjax.analysis.boundary import (
    LAW_B,
    LAW_C,
    REFERENCE_C,
    boundary_law,
    generalization_boundary,
)
from grokjax.analysis.collapse import collapse
from grokjax.analysis.core import as_float
from grokjax.analysis.dynamics import STAGE_METRICS, stages
from grokjax.analysis.generalization_map import generalization_map
from grokjax.analysis.grok_law import LAW_A, LAW_ETA, LAW_PRODUCT, grok_law
from grokjax.analysis.grokking_time import censored_quantiles, grokking_time
from grokjax.analysis.irrep import irrep_scaling
from grokjax.analysis.lr import lr_effect
from grokjax.analysis.wd import LAW_ETA_ZERO, LAW_WD_SLOPE, wd_speed
from grokjax.analysis.width import memorization_width
from grokjax.schema import GROKKED_COLUMN

ORDERS = (23, 41, 71, 97, 127)
PLANTED_C = 2.75  # p* = c ln M / M, i.e. b = 1 and g = 1 in p* = a M^-b (ln M)^g
PLANTED_WD_SLOPE = -1.0

# Every runs-table column, with the value a synthetic run gets unless a generator sets it.
DEFAULTS = {
    "sweep": "synthetic", "group_name": None, "group_abelian": True, "max_irrep_degree": 1,
    "num_ops": 2, "K": 512, "activation": "sqr", "loss": "mse", "optimizer": "adam", "lr": 5e-4,
    "weight_decay": 2e-4, "seed": 0, "critical_ratio_delta": np.nan, "steps": 3000,
    "eval_every": 10, "other_layers": 0, "ridge_lambda": np.nan,
    "top_layer_init_multiplier": 1.0, "output_multiplier": 1.0, "final_train_acc": 1.0,
    "final_train_loss": 1e-3, "final_test_loss": 0.5, "min_train_loss": 1e-3,
    "min_test_loss": 0.4, "step_train_acc_1": 100, "step_test_acc_050": pd.NA,
    "step_test_acc_090": pd.NA, "step_test_acc_095": pd.NA, "step_test_acc_099": pd.NA,
    "diverged": False, "diverged_step": pd.NA, "wall_seconds": 1.0,
}
DTYPES = {"sweep": "string", "run_id": "string", "group": "string", "group_name": "string",
          "step_train_acc_1": "Int64", "step_test_acc_050": "Int64", "step_test_acc_090": "Int64",
          "step_test_acc_095": "Int64", "step_test_acc_099": "Int64", "diverged_step": "Int64"}


def runs_table(M, train_fraction, generalized, **columns) -> pd.DataFrame:
    """A runs table with the real schema: given columns, derived split columns, defaults."""
    M = np.asarray(M)
    n_train = np.maximum(np.round(np.asarray(train_fraction) * M**2), 1).astype(np.int64)
    generalized = np.asarray(generalized, dtype=bool)
    frame = pd.DataFrame({"group": M.astype(str), "M": M.astype(np.int64),
                          "train_fraction": n_train / M**2, "n_train": n_train,
                          "n_test": M**2 - n_train, "test_size": 1 - n_train / M**2,
                          "c_eff": n_train / (M * np.log(M)), "generalized": generalized,
                          "final_test_acc": np.where(generalized, 1.0, 0.3),
                          "best_test_acc": np.where(generalized, 1.0, 0.4),
                          "best_train_acc": 1.0})
    for name, value in (DEFAULTS | columns).items():
        frame[name] = value
    frame["group_name"] = "Z_" + frame["group"]
    frame["run_id"] = [f"run{i:05d}" for i in range(len(frame))]
    return frame.astype(DTYPES)


def boundary_runs(rng, orders=ORDERS, c=PLANTED_C, width=0.2, seeds=12, n_p=7, span=0.8):
    """Planted boundary: P(generalized) = logistic((log p − log p*)/width), p* = c ln M / M, on a
    p grid spanning ±span around a centre jittered off p* (real grids are not centred on it)."""
    orders = np.asarray(orders)
    log_p_star = np.log(c * np.log(orders) / orders)
    centre = log_p_star + rng.uniform(-0.25, 0.25, len(orders))
    log_p = centre[:, None] + np.linspace(-span, span, n_p)  # (groups, p)
    shape = (len(orders), n_p, seeds)
    M = np.broadcast_to(orders[:, None, None], shape).ravel()
    p = np.broadcast_to(np.exp(log_p)[:, :, None], shape).ravel()
    p = np.round(p * M**2) / M**2  # the fraction a run really trains on
    logit = (np.log(p) - np.repeat(log_p_star, n_p * seeds)) / width
    generalized = rng.random(M.size) < 1 / (1 + np.exp(-logit))
    seed = np.tile(np.arange(seeds), len(orders) * n_p)
    return runs_table(M, p, generalized, seed=seed)


def wd_runs(rng, etas=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3), seeds=8, slope=PLANTED_WD_SLOPE,
            noise=0.25, steps=30_000, eval_every=10, optimizer="sgd"):
    """Planted grokking time t = 0.2·η^slope·lognormal(noise), seen at the eval cadence; runs
    that would need more than ``steps`` never reach the threshold; η = 0 never groks."""
    eta = np.repeat(np.array([0.0, *etas]), seeds)
    with np.errstate(divide="ignore"):
        t = 0.2 * eta**slope * np.exp(noise * rng.standard_normal(eta.size))
    t = np.ceil(t / eval_every) * eval_every
    reached = t <= steps
    step = pd.array(np.where(reached, t, 0).astype(np.int64), dtype="Int64")
    step[~reached] = pd.NA
    return runs_table(np.full(eta.size, 71), 0.4, reached, weight_decay=eta,
                      seed=np.tile(np.arange(seeds), len(etas) + 1), steps=steps,
                      steps_trained=steps, eval_every=eval_every, optimizer=optimizer,
                      **{GROKKED_COLUMN: step})


def width_runs(rng, order=23, widths=(8, 16, 32, 44, 64, 128, 256), n_trains=(60, 120, 240, 480),
               seeds=5):
    """Planted memorization width K_mem(n) = 2·sqrt(n) and generalization from K ≥ 2M − 2."""
    K = np.repeat(np.array(widths), len(n_trains) * seeds)
    n = np.tile(np.repeat(np.array(n_trains), seeds), len(widths))
    memorized = K >= 2 * np.sqrt(n) * np.exp(0.1 * rng.standard_normal(K.size))
    generalized = (K >= 2 * order - 2) & (n >= 240)
    return runs_table(np.full(K.size, order), n / order**2, generalized, K=K,
                      final_train_acc=np.where(memorized, 1.0, 0.8),
                      seed=np.tile(np.arange(seeds), len(widths) * len(n_trains)))


def lr_runs(rng, lrs=(5e-4, 1e-3, 2e-3, 5e-3), fractions=(0.2, 0.3), seeds=10):
    lr = np.repeat(np.array(lrs), len(fractions) * seeds)
    p = np.tile(np.repeat(np.array(fractions), seeds), len(lrs))
    generalized = rng.random(lr.size) < np.clip(1.5 - lr / 4e-3, 0, 1)
    return runs_table(np.full(lr.size, 71), p, generalized, lr=lr,
                      seed=np.tile(np.arange(seeds), len(lrs) * len(fractions)))


def tfwd_runs(rng, etas=(0.0, 1e-4, 1e-3), fractions=(0.1, 0.15, 0.2, 0.3, 0.45, 0.6), seeds=6,
              width=0.15):
    """One group (Z_71), train fraction × weight decay: a boundary p*(η) = 0.3·(1e-3/η)^0.2
    that moves down with η; η = 0 never generalizes. Generalized runs grokked at step 1000.
    test_size is 1 − the fraction asked for, as the engine records it."""
    shape = (len(etas), len(fractions), seeds)
    eta = np.broadcast_to(np.asarray(etas)[:, None, None], shape).ravel()
    p = np.broadcast_to(np.asarray(fractions)[None, :, None], shape).ravel()
    with np.errstate(divide="ignore"):
        log_p_star = np.log(0.3 * (1e-3 / eta) ** 0.2)
    generalized = rng.random(eta.size) < 1 / (1 + np.exp(-(np.log(p) - log_p_star) / width))
    step = pd.array(np.where(generalized, 1000, 0), dtype="Int64")
    step[~generalized] = pd.NA
    return runs_table(np.full(eta.size, 71), p, generalized, weight_decay=eta, test_size=1 - p,
                      seed=np.tile(np.arange(seeds), len(etas) * len(fractions)),
                      **{GROKKED_COLUMN: step})


def synthetic_curves(runs: pd.DataFrame, points: int = 40, diagnostics: bool = False):
    """Train accuracy rises by step ~100; test accuracy rises at the run's grokking step (or
    stays near chance when it never got there); with diagnostics, ‖G_F‖ decays and the
    frequency-dominated fraction rises with test accuracy."""
    steps = np.unique(np.geomspace(1, runs["steps"].max(), points).astype(np.int64))
    steps = np.concatenate([[0], steps])
    t_grok = as_float(runs[GROKKED_COLUMN])
    t_grok = np.where(np.isfinite(t_grok), t_grok, 1e12)[:, None]
    log_step = np.log(np.maximum(steps, 1))[None, :]
    train = np.broadcast_to(1 / (1 + np.exp(-(log_step - np.log(100)) / 0.3)),
                            (len(runs), len(steps)))
    test = 0.05 + 0.95 / (1 + np.exp(-(log_step - np.log(t_grok)) / 0.15))
    frame = pd.DataFrame({
        "run_id": np.repeat(runs["run_id"].to_numpy(object), len(steps)),
        "step": np.tile(steps, len(runs)),
        "train_loss": (1 - train).ravel(), "test_loss": (1 - test).ravel(),
        "train_acc": train.ravel(), "test_acc": test.ravel(),
    }).astype({"run_id": "string"})
    if diagnostics:
        frame = frame.assign(G_F_norm=np.exp(-frame["step"] / 500) + 0.1,
                             FtF_off_diag_ratio=0.06 - 0.05 * frame["test_acc"],
                             frequency_dominated_fraction=frame["test_acc"],
                             frequency_dominated_energy=frame["test_acc"])
    return frame


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ---------------------------------------------------------------------------------------------
# The issue bar: calibrated intervals on the boundary law


def test_boundary_law_intervals_cover_planted_values_in_50_draws():
    rng = np.random.default_rng(2025)
    draws = 50
    hits = {"c": 0, "b_g1": 0, "b_free": 0}
    group_hits = group_total = 0
    for _ in range(draws):
        runs = boundary_runs(rng)
        boundary = generalization_boundary(runs)
        law = boundary_law(boundary).table.iloc[0]
        hits["c"] += law.c_lo <= PLANTED_C <= law.c_hi
        hits["b_g1"] += law.b_g1_lo <= 1 <= law.b_g1_hi
        hits["b_free"] += law.b_free_lo <= 1 <= law.b_free_hi
        true_p_star = PLANTED_C * np.log(boundary.table.M) / boundary.table.M
        group_hits += ((boundary.table.p_star_lo <= true_p_star)
                       & (true_p_star <= boundary.table.p_star_hi)).sum()
        group_total += len(true_p_star)
    coverage = {name: float(hit / draws) for name, hit in hits.items()}
    print(f"coverage over {draws} draws: {coverage}; per-group p*: {group_hits / group_total:.3f}")
    assert all(value >= 0.9 for value in coverage.values()), coverage
    assert group_hits / group_total >= 0.85


def test_boundary_recovers_planted_p_star_per_group(rng):
    boundary = generalization_boundary(boundary_runs(rng, seeds=20))
    assert boundary.status == "ok" and boundary.n_runs == 5 * 7 * 20
    table = boundary.table
    assert list(table.M) == list(ORDERS) and (table.status == "ok").all()
    true_p_star = PLANTED_C * np.log(table.M) / table.M
    assert np.allclose(table.p_star, true_p_star, rtol=0.15)
    assert (table.p_star_lo < table.p_star).all() and (table.p_star < table.p_star_hi).all()
    assert set(boundary.detail.columns) >= {"train_fraction", "n", "n_generalized", "fraction",
                                            "fraction_lo", "fraction_hi"}


def test_boundary_law_reports_c_b_and_method(rng):
    law = boundary_law(generalization_boundary(boundary_runs(rng, seeds=20)))
    row = law.table.iloc[0]
    assert law.status == "ok" and row.n_groups == 5 and row.c_reference == REFERENCE_C
    assert row.c_lo < row.c < row.c_hi and abs(row.c - PLANTED_C) < 0.3
    assert row.b_g1_lo < row.b_g1 < row.b_g1_hi and abs(row.b_g1 - 1) < 0.3
    assert np.isfinite([row.b_free, row.g_free, row.a_free]).all()
    assert "g fixed at 1" in law.method
    laws = law.laws.set_index("law")
    assert laws.loc[LAW_C, "predicted"] == REFERENCE_C
    assert laws.loc[LAW_C, "contains"] == (row.c_lo <= REFERENCE_C
                                                             <= row.c_hi)
    assert laws.loc[LAW_B, "value"] == row.b_g1


# ---------------------------------------------------------------------------------------------
# Degenerate inputs: a status and a message, never a crash or an invented number


def _boundary_row(runs):
    result = generalization_boundary(runs)
    return result, result.table.iloc[0]


@pytest.mark.parametrize("generalized, status, bound", [(True, "all generalized", "p* <"),
                                                        (False, "none generalized", "p* >")])
def test_boundary_all_or_none_generalized(generalized, status, bound):
    p = np.repeat([0.1, 0.2, 0.3], 4)
    result, row = _boundary_row(runs_table(np.full(12, 41), p, np.full(12, generalized)))
    assert result.status == "insufficient" and row.status == status and bound in row.message
    assert np.isnan([row.p_star, row.p_star_lo, row.p_star_hi]).all()
    law = boundary_law(result)
    assert law.status == "insufficient" and np.isnan(law.table.c.iloc[0])
    assert "needs ≥ 3 groups" in law.table.message.iloc[0]


def test_boundary_one_seed_per_cell_and_single_p():
    """One seed per cell is a fit like any other: here it cannot close the interval."""
    _, row = _boundary_row(runs_table(np.full(3, 41), [0.1, 0.2, 0.3], [False, True, True]))
    assert row.status == "separated" and 0.1 < row.p_star < 0.2
    assert row.p_star_lo == 0 and row.p_star_hi == np.inf
    assert "open below and above" in row.message
    _, row = _boundary_row(runs_table(np.full(6, 41), 0.2, [False, True] * 3))
    assert row.status == "single p" and np.isnan(row.p_star)


def test_boundary_keeps_a_single_seed_cell(rng):
    runs = boundary_runs(rng, orders=(41,), seeds=8)
    lonely = runs[runs.train_fraction == runs.train_fraction.max()].index[1:]
    result, row = _boundary_row(runs.drop(index=lonely))
    assert row.status == "ok" and row.n_p == 7 and row.n_runs == 49 and row.min_seeds == 1


def test_boundary_separated_is_fitted_with_a_finite_interval_inside_the_bracket():
    """No partial cell: Firth's penalty keeps the fit finite; the profile interval lies between
    the cells (a p* at a cell would have made that cell partial)."""
    p = np.repeat([0.1, 0.2, 0.3, 0.4], 5)
    _, row = _boundary_row(runs_table(np.full(20, 41), p, p >= 0.3))
    assert row.status == "separated" and "no partial cell" in row.message
    assert 0.2 <= row.p_star_lo < row.p_star < row.p_star_hi <= 0.3


def test_boundary_that_falls_again_is_the_first_rise():
    """A_5 in the irrep search: none at p=0.2, all at 0.45 and 0.71, none at 0.96 (2000 steps
    are too few there). No resampling varies all-or-nothing cells, so a fit over all of them
    would claim a zero-width interval: the boundary is the first rise, the fall is left out."""
    p = np.repeat([0.2, 0.45, 0.71, 0.96], 4)
    _, row = _boundary_row(runs_table(np.full(16, 60), p, (p > 0.3) & (p < 0.9)))
    assert row.status == "separated" and "p ≥ 0.96 left out" in row.message
    assert 0.15 < row.p_star_lo < row.p_star < row.p_star_hi < 0.45
    only_falls = p < 0.3  # all generalize below, none above: no rise in the range
    _, row = _boundary_row(runs_table(np.full(16, 60), p, only_falls))
    assert row.status == "not monotone" and np.isnan(row.p_star)


def test_boundary_decreasing_and_outside_grid():
    p = np.repeat([0.1, 0.2, 0.3, 0.4], 5)
    falling = np.tile([1, 1, 1, 0, 0], 4).astype(bool) ^ (p >= 0.3)  # 3/5, 3/5, 2/5, 2/5
    _, row = _boundary_row(runs_table(np.full(20, 41), p, falling))
    assert row.status in ("not increasing", "outside grid") and np.isnan(row.p_star)
    barely = np.isin(np.arange(20), [19])  # one run generalized, at the largest p
    _, row = _boundary_row(runs_table(np.full(20, 41), p, barely))
    assert row.status == "outside grid" and "extend the grid" in row.message


def test_unfinished_and_diverged_runs_are_excluded_with_reasons(rng):
    runs = boundary_runs(rng, orders=(41,), seeds=8)
    runs.loc[0, "final_test_acc"] = np.nan
    runs.loc[1, ["diverged", "diverged_step"]] = [True, 250]
    result = generalization_boundary(runs)
    assert result.n_runs == len(runs) - 2
    reasons = dict(zip(result.excluded.run_id, result.excluded.reason, strict=True))
    assert reasons == {"run00000": "unfinished: final_test_acc is NaN",
                       "run00001": "diverged at step 250"}


def test_optional_columns_are_not_required(rng):
    runs = boundary_runs(rng, orders=(23, 41, 71), seeds=8)
    slim = runs[["group", "M", "train_fraction", "generalized", "c_eff"]]
    assert generalization_boundary(slim).status == "ok"
    assert collapse(slim).status == "ok"


def test_boundary_law_with_three_groups_skips_free_form(rng):
    boundary = generalization_boundary(boundary_runs(rng, orders=(23, 71, 127)))
    row = boundary_law(boundary).table.iloc[0]
    assert row.status == "ok" and np.isfinite(row.c) and np.isfinite(row.b_g1)
    assert np.isnan(row.b_free) and "≥ 4 distinct M" in row.message


# ---------------------------------------------------------------------------------------------
# Weight decay, learning rate, collapse, width


def test_wd_speed_recovers_planted_slope(rng):
    result = wd_speed(wd_runs(rng))
    row = result.table.iloc[0]
    assert result.status == "ok" and row.b_lo <= PLANTED_WD_SLOPE <= row.b_hi
    assert abs(row.b - PLANTED_WD_SLOPE) < 0.15
    per_eta = result.detail.set_index("eta")
    assert list(per_eta.index) == [0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3]  # η = 0 kept, on its own
    assert per_eta.loc[0, "n_grokked"] == 0 and per_eta.loc[0, "fraction_hi"] > 0
    assert per_eta.n_not_within.sum() + per_eta.n_grokked.sum() == 48
    reasons = result.excluded.reason.value_counts()
    assert reasons["η = 0: log η undefined (counted in the η = 0 contrast)"] == 8


def test_wd_speed_laws_say_whether_the_ci_contains_the_prediction(rng):
    laws = wd_speed(wd_runs(rng)).laws.set_index("law")
    slope = laws.loc[LAW_WD_SLOPE]
    assert slope.contains and slope.verdict == "consistent: CI contains -1"
    assert slope.lo <= slope.value <= slope.hi and slope.predicted == -1
    never = laws.loc[LAW_ETA_ZERO]
    assert never.value == 0 and never.contains and never.n_runs == 8
    shallow = wd_speed(wd_runs(rng, slope=-0.7, noise=0.05)).laws.set_index("law")
    assert shallow.loc[LAW_WD_SLOPE, "verdict"] == "rejected: CI excludes -1"
    adam = wd_speed(wd_runs(rng, optimizer="adam")).laws.set_index("law").loc[LAW_WD_SLOPE]
    assert adam.verdict.startswith("not a test here: the prediction runs through the gradient")
    assert "optimizer = sgd" in adam.verdict and adam.assumes.startswith("optimizer adam")


def test_wd_speed_counts_runs_that_ran_out_of_steps_as_censored(rng):
    """A budget that cuts the slowest runs short: the censored fit keeps them (as later than
    their last step) and still covers the planted slope; the η = 0 law is 'within N steps'."""
    runs = wd_runs(rng, steps=2_000)
    result = wd_speed(runs)
    row = result.table.iloc[0]
    assert row.n_censored > 5 and row.n_runs == 40  # every η > 0 run is in the fit
    assert row.b_lo <= PLANTED_WD_SLOPE <= row.b_hi
    slowest = result.detail.set_index("eta").loc[1e-5]
    assert slowest.n_not_within > 0 and slowest.not_within == 2_000
    never = result.laws.set_index("law").loc[LAW_ETA_ZERO]
    assert never.assumes == "within 2000 steps"
    assert "never" not in " ".join(result.excluded.reason)


def test_wd_speed_gives_no_ci_where_one_line_passes_through_every_interval(rng):
    """Grok steps that fall on one line, each to its evaluation interval: the likelihood is flat
    along a ridge (σ → 0), so a Wald interval would be thousands wide; no CI is given instead."""
    runs = wd_runs(rng, etas=(1e-4, 2e-4, 4e-4, 8e-4), noise=0.0, slope=-1.0, eval_every=50)
    row = wd_speed(runs).table.iloc[0]
    assert row.status == "no CI" and np.isnan([row.b_lo, row.b_hi]).all()
    assert "evaluation interval" in row.message and np.isfinite(row.b)


def test_wd_speed_refuses_a_two_point_slope(rng):
    result = wd_speed(wd_runs(rng, etas=(1e-4, 1e-3)))
    row = result.table.iloc[0]
    assert row.status == "too few η" and np.isnan(row.b) and row.n_eta == 2
    assert "≥ 3 distinct η > 0, has 2 (0.0001, 0.001)" in row.message
    assert result.status == "partial"  # the η = 0 contrast stands without a slope
    assert list(result.laws.law) == [LAW_ETA_ZERO]


def test_wd_speed_where_nothing_grokked(rng):
    result = wd_speed(wd_runs(rng, steps=5))
    assert result.table.status.iloc[0] == "too few η" and "has 0 (none)" in result.message
    assert result.detail.n_not_within.sum() == 48
    no_zero = wd_speed(wd_runs(rng, steps=5).query("weight_decay > 0"))
    assert no_zero.status == "insufficient"


def test_lr_effect_wilson_intervals(rng):
    result = lr_effect(lr_runs(rng))
    table = result.table
    assert result.status == "ok" and len(table) == 8
    assert ((table.fraction_lo <= table.fraction) & (table.fraction <= table.fraction_hi)).all()


def test_collapse_bins_by_c_eff(rng):
    result = collapse(boundary_runs(rng))
    table = result.table
    assert result.status == "ok" and table.group.nunique() == 5
    assert table.n.sum() == result.n_runs == 5 * 7 * 12
    assert ((table.c_eff_bin_lo <= table.c_eff) & (table.c_eff <= table.c_eff_bin_hi)).all()


def test_memorization_width(rng):
    result = memorization_width(width_runs(rng))
    detail = result.detail.set_index("n_train")
    assert list(detail.K_predicted.unique()) == [44]
    # planted 2·sqrt(n) ≈ 15.5, 21.9, 31.0, 43.8 (±10% per run) on the grid 8, 16, 32, 44, 64
    assert list(detail.K_mem[:3]) == [16, 32, 32] and detail.K_mem[480] in (44, 64)
    assert detail.loc[240, "K_gen"] == 44 and np.isnan(detail.loc[60, "K_gen"])
    row = result.table.iloc[0]
    assert row.status == "ok" and row.n_points == 4 and row.slope_lo < 0.5 < row.slope_hi


def test_memorization_width_compares_with_theorem_3_for_the_group(rng):
    """Theorem 3's width is 2 Σ_k d_k⁴, not 2M − 2, for a non-abelian group: Z_5 ⋊ Z_4 (M =
    20, one irrep of degree 4) needs 518; the runs table's column is used when present."""
    runs = width_runs(rng, order=20).assign(group="semidirect:5:4:2")
    assert list(memorization_width(runs).detail.K_predicted.unique()) == [518]
    stated = runs.assign(theorem3_width=999)
    assert list(memorization_width(stated).detail.K_predicted.unique()) == [999]


@pytest.mark.parametrize("column, values, labels", [
    ("lr", (5e-4, 5e-3), {"lr=0.0005", "lr=0.005"}),
    # Variants the fits once pooled: their columns were missing from CONFIG_COLUMNS.
    ("embed_trainable", (False, True), {"embed_trainable=False", "embed_trainable=True"}),
    ("complex_weights", (False, True), {"complex_weights=False", "complex_weights=True"}),
    ("imag_init_scale", (0.0, 0.5), {"imag_init_scale=0", "imag_init_scale=0.5"}),
])
def test_conditions_split_fits(rng, column, values, labels):
    runs = pd.concat([boundary_runs(rng, orders=(23, 41, 71)).assign(**{column: value})
                      for value in values], ignore_index=True)
    boundary = generalization_boundary(runs)
    assert len(boundary.table) == 6 and set(boundary.table.condition) == labels
    assert len(boundary_law(boundary).table) == 2


def test_wd_speed_names_a_missing_grokking_column():
    lacking = wd_speed(pd.DataFrame({"weight_decay": [1e-4], "final_test_acc": [1.0]}))
    assert lacking.status == "unsupported" and GROKKED_COLUMN in lacking.message
    assert GROKKED_COLUMN == "step_test_acc_099"  # the same 0.99 as `generalized`


# ---------------------------------------------------------------------------------------------
# Stages over training, and the boundary constant against the largest irrep degree


def test_stages_median_band_and_stage_steps(rng):
    runs = wd_runs(rng, etas=(1e-4, 1e-3), seeds=5)
    runs["step_features_emerged"] = pd.array([pd.NA] * 5 + [300] * 5 + [80, 90, 90, 95, 400],
                                             dtype="Int64")
    curves = synthetic_curves(runs, diagnostics=True)
    result = stages(runs, curves)
    assert result.status == "ok" and result.n_runs == 15
    assert set(result.detail.metric) == set(STAGE_METRICS)
    last = curves[curves.step == curves.step.max()].merge(runs[["run_id", "weight_decay"]])
    at_end = result.detail.query("metric == 'test_acc' and step == @curves.step.max()")
    assert at_end["median"].tolist() == pytest.approx(
        last.groupby("weight_decay").test_acc.median().tolist())
    assert (at_end.q25 <= at_end["median"]).all() and (at_end["median"] <= at_end.q75).all()
    table = result.table.set_index("weight_decay")
    assert np.isnan(table.loc[0, "grokked step"]) and table.loc[0, "grokked runs"] == 0
    assert table.loc[1e-3, "features emerged step"] == 90  # the median of five runs
    assert table.loc[1e-3, "grokked step"] == runs[runs.weight_decay == 1e-3][
        GROKKED_COLUMN].median()
    assert stages(runs, None).status == "unsupported"


# The nine groups of sweeps/irrep.toml, whose largest complex degree d_k and real dimension
# d_R the boundary can tell apart (dihedral and dicyclic share their degrees).
IRREP_GROUPS = ("23", "dihedral20", "dicyclic20", "S3x3", "dihedral24", "dicyclic24", "S4",
                "semidirect:7:3:2", "SL2:3")


def irrep_runs(rng, variable="d_R", exponent=1.0, constant=0.5, specs=IRREP_GROUPS, seeds=12,
               **boundary):
    """Planted boundary constants c = constant·x^exponent, x the group's largest complex degree
    (``d_k``) or real dimension (``d_R``), on the real groups' irrep columns."""
    tables = []
    for spec in specs:
        group = groups.parse_group(spec)
        facts = group.irrep_facts
        x = facts.max_real_dim if variable == "d_R" else facts.max_degree
        table = boundary_runs(rng, orders=(group.order,), c=constant * x**exponent, seeds=seeds,
                              **boundary)
        tables.append(table.assign(
            group=spec, group_name=group.name, group_abelian=group.abelian,
            max_irrep_degree=facts.max_degree, max_real_irrep_dim=facts.max_real_dim,
            irreps=facts.description, theorem3_width=facts.theorem3_width, K=360))
    runs = pd.concat(tables, ignore_index=True)
    return runs.assign(run_id=[f"run{i:05d}" for i in range(len(runs))]).astype(
        DTYPES | {"irreps": "string"})


@pytest.mark.parametrize("truth", ["d_R", "d_k"])
def test_irrep_scaling_favours_the_planted_variable_and_shows_the_type_contrast(rng, truth):
    runs = irrep_runs(rng, truth)
    result = irrep_scaling(generalization_boundary(runs), runs)
    table = result.table.set_index("candidate")
    assert result.status == "ok" and table.loc["d_R", "n_groups"] == 9
    if truth == "d_R":
        assert (table["favoured"] == "d_R").all()
    else:  # the code's d_k/2 differs from d_k only at Z_23 (1, where d_k/2 is 1/2): a tie
        assert {table["best"].iloc[0], *table["indistinct"].iloc[0].split(", ")} >= {"d_k"}
        assert "d_R" not in table["indistinct"].iloc[0]
    assert table.loc[truth, "exponent_lo"] <= 1.0 <= table.loc[truth, "exponent_hi"]
    assert table.loc["d_R & d_k", "message"].startswith("d_k to d_R alone:")
    # dicyclic / dihedral: 2 under d_R, 1 under d_k (whose law row says so)
    laws = result.laws.set_index("law")
    for order in (20, 24):
        pair = laws.loc[f"c ratio, same complex degrees: dicyclic{order} / dihedral{order}"]
        assert pair["lo"] <= (2.0 if truth == "d_R" else 1.0) <= pair["hi"]
        assert pair["verdict"].startswith("rejected" if truth == "d_R" else "consistent")
    # Theorem 4 is sufficient: an exponent below 2 is no test of it
    assert laws.loc["exponent of d_R in c = p*·M/ln M", "verdict"].startswith("not a test here")
    assert "K ≥ Theorem 3's width for every group" in laws["assumes"].iloc[0]


def test_irrep_scaling_cannot_tell_groups_that_do_not_separate_the_variables(rng):
    """Groups whose d_k and d_R move together (all real irreps, plus Z_23 alone): the comparison
    of d_k with d_R cannot be decided by Z_23 alone within the scatter."""
    runs = irrep_runs(rng, "d_R", specs=("dihedral20", "dihedral24", "S4", "A4", "23"),
                      seeds=4, width=0.3)
    result = irrep_scaling(generalization_boundary(runs), runs)
    assert (result.table["favoured"] == "cannot tell").all()
    assert "d_k" in result.table["indistinct"].iloc[0] or result.table["best"].iloc[0] == "d_k"


def test_irrep_scaling_keeps_a_group_that_never_generalized_as_a_bound(rng):
    runs = irrep_runs(rng, "d_R")
    lost = runs[runs.group == "S4"].index
    runs.loc[lost, "generalized"] = False  # S4 never generalized on its grid
    result = irrep_scaling(generalization_boundary(runs), runs)
    assert result.table.iloc[0].n_groups == 8
    bound = result.detail.set_index("group").loc["S4"]
    largest_p = runs.loc[lost, "train_fraction"].max()
    assert bound.c_bound == pytest.approx(largest_p * 24 / np.log(24)) and np.isnan(bound.c)


def test_irrep_scaling_needs_three_groups(rng):
    runs = irrep_runs(rng, "d_R", specs=("dihedral24", "dicyclic24"), seeds=4)
    result = irrep_scaling(generalization_boundary(runs), runs)
    assert result.status == "insufficient" and "needs ≥ 3 groups" in result.message


# ---------------------------------------------------------------------------------------------
# One law for when a run groks


GROK_LAW = {"adam": (0.02, 0.7, 1.3, (3e-4, 1e-3, 3e-3), (0.003, 0.01)),  # A, a, ν, η, lr
            "sgd": (0.15, 1.0, 2.0, (1e-3, 3e-3), (0.5, 1.0, 2.0))}
GROK_THRESHOLDS = {23: 0.30, 24: 0.35}  # p* at unlimited steps per group order


def grok_law_runs(rng, seeds=3, steps=3000, eval_every=20, memorized=20):
    """Planted delays t_grok − t_mem = A·(lr·η)^-a·(p/p* − 1)^-ν·e^(0.3ε) per optimizer, with
    p from 10% below p* (never groks) to twice p*; seen at the eval cadence until ``steps``."""
    tables = []
    for optimizer, (A, a, nu, etas, lrs) in GROK_LAW.items():
        for order, threshold in GROK_THRESHOLDS.items():
            rel, eta, lr, seed = (v.ravel() for v in np.meshgrid(
                [-0.1, 0.05, 0.15, 0.3, 0.6, 1.0], etas, lrs, range(seeds), indexing="ij"))
            p = np.round(threshold * (1 + rel) * order**2) / order**2
            with np.errstate(invalid="ignore"):
                delay = np.where(p > threshold, A * (lr * eta) ** -a * (p / threshold - 1) ** -nu
                                 * np.exp(0.3 * rng.standard_normal(p.size)), np.inf)
            t_grok = memorized + np.ceil(delay / eval_every) * eval_every
            grokked = t_grok <= steps
            step = pd.array(np.where(grokked, t_grok, 0).astype(np.int64), dtype="Int64")
            step[~grokked] = pd.NA
            tables.append(runs_table(
                np.full(p.size, order), p, grokked, optimizer=optimizer, lr=lr,
                weight_decay=eta, seed=seed, steps=steps, eval_every=eval_every,
                steps_trained=np.where(grokked, np.minimum(t_grok + 100, steps), steps),
                step_train_acc_1=memorized, **{GROKKED_COLUMN: step}))
    runs = pd.concat(tables, ignore_index=True)
    return runs.assign(run_id=[f"run{i:05d}" for i in range(len(runs))]).astype(DTYPES)


def test_grok_law_recovers_each_optimizers_exponents_and_the_unlimited_boundary(rng):
    runs = grok_law_runs(rng)
    # 99% intervals: eight of them checked at once, each a single simulated sweep
    result = grok_law(runs, generalization_boundary(runs), level=0.99)
    assert result.status == "ok" and result.table["n_censored"].min() > 20
    table = result.table.set_index("optimizer")
    for optimizer, (_, a, nu, _, _) in GROK_LAW.items():
        row = table.loc[optimizer]
        assert row.a_lo <= a <= row.a_hi and row.nu_lo <= nu <= row.nu_hi, row
        assert row.eta_excess_lo <= 0 <= row.eta_excess_hi  # planted as a product
    boundaries = result.detail.drop_duplicates(["condition", "group"])
    for row in boundaries.itertuples():
        assert row.p_inf_lo <= GROK_THRESHOLDS[int(row.group)] <= row.p_inf_hi, row
        assert row.p_inf_hi < row.p_budget_law  # a finite budget's boundary lies above p*
    assert np.isfinite(result.detail["p_budget"]).all()  # each cell's boundary fit beside it
    verdicts = result.laws.set_index(["law", "condition"])["verdict"]
    assert verdicts[(LAW_A, "optimizer=sgd")].startswith("consistent")
    assert verdicts[(LAW_A, "optimizer=adam")].startswith("not a test here: adam normalises")
    assert verdicts[(LAW_PRODUCT, "optimizer=sgd")].startswith("consistent")
    assert verdicts[(LAW_ETA, "optimizer=sgd")].startswith("consistent")


def test_grok_law_says_what_it_lacks(rng):
    runs = grok_law_runs(rng)
    one_eta = runs[(runs.weight_decay == 1e-3) & (runs.lr.isin([0.01, 1.0]))]
    result = grok_law(one_eta)
    assert result.status == "insufficient" and "a needs ≥ 3" in result.message
    no_decay = runs.assign(weight_decay=0.0)
    assert grok_law(no_decay).excluded["reason"].str.startswith("η = 0").all()


# ---------------------------------------------------------------------------------------------
# Grokking time against the swept fields; generalization per train fraction and field


def test_censored_quartiles_count_runs_not_grokked_as_later_than_any():
    nan = np.nan
    assert censored_quantiles(np.array([10.0, 20.0, 30.0, 40.0])).tolist() == [17.5, 25.0, 32.5]
    assert censored_quantiles(np.array([10.0, 20.0, 30.0, nan])).tolist() == [17.5, 25.0, np.inf]
    assert censored_quantiles(np.array([10.0, 20.0, nan, nan])).tolist() == [17.5, np.inf, np.inf]
    assert censored_quantiles(np.array([nan, nan])).tolist() == [np.inf] * 3


def test_grokking_time_per_condition_with_runs_not_grokked_within_their_steps(rng):
    runs = wd_runs(rng, etas=(1e-5, 1e-4, 1e-3), seeds=8, steps=30_000)
    result = grokking_time(runs)
    assert result.status == "ok" and result.n_runs == len(runs)
    table = result.table.set_index("weight_decay")
    assert table.loc[0.0, "n_grokked"] == 0 and table.loc[0.0, "t_grok_median"] == np.inf
    assert table.loc[0.0, "not_within"] == 30_000  # the steps the censored runs were trained
    assert np.isnan(table.loc[1e-3, "not_within"]) and table.loc[1e-3, "n_grokked"] == 8
    grokked = runs[runs.weight_decay == 1e-3][GROKKED_COLUMN].astype(float)
    assert table.loc[1e-3, "t_grok_median"] == grokked.median()
    stopped = runs.assign(steps_trained=np.where(runs.weight_decay == 0, 5000, 30_000))
    assert grokking_time(stopped).table.set_index("weight_decay").loc[0.0, "not_within"] == 5000
    constant = grokking_time(runs[runs.weight_decay == 1e-3])
    assert constant.status == "unsupported" and "needs a numeric field to vary" in constant.message


def test_generalization_map_cells_and_when_the_group_alone_varies(rng):
    runs = tfwd_runs(rng)
    result = generalization_map(runs)
    assert result.status == "ok" and len(result.table) == 3 * 6
    cell = result.table.query("weight_decay == 0.001 and train_fraction > 0.59").iloc[0]
    chosen = runs[(runs.weight_decay == 1e-3) & (runs.train_fraction > 0.59)]
    assert cell.n == 6 and cell.n_generalized == chosen.generalized.sum()
    assert cell.condition == "weight_decay=0.001" and cell.group_name == "Z_71"
    groups = generalization_map(boundary_runs(rng, orders=(23, 41)))
    assert groups.status == "unsupported" and "phase diagram" in groups.message
