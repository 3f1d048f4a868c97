"""Statistics primitives against published reference numbers and closed forms."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as distributions

from grokjax import stats, survival

# Heinze & Schemper (2002), the endometrial cancer data (79 patients; HG = high histology grade)
# as shipped with R's logistf. logistf(HG ~ NV + PI + EH) gives these Firth estimates.
ENDOMETRIAL = Path(__file__).parent / "data" / "endometrial.csv"
LOGISTF_ENDOMETRIAL = {"(Intercept)": 3.77455951, "NV": 2.92927330, "PI": -0.03475175,
                       "EH": -2.60416387}


def test_firth_matches_r_logistf_on_the_endometrial_data():
    data = pd.read_csv(ENDOMETRIAL)
    design = np.column_stack([np.ones(len(data)), data[["NV", "PI", "EH"]].to_numpy(float)])
    beta, converged = stats.firth_logistic(design, np.ones(len(data)), data["HG"].to_numpy())
    assert converged.all()
    # NV separates the data (every NV = 1 patient has HG = 1): the MLE of NV is infinite.
    assert data.loc[data.NV == 1, "HG"].all()
    np.testing.assert_allclose(beta[0], list(LOGISTF_ENDOMETRIAL.values()), rtol=1e-6)


def test_firth_on_a_two_by_two_table_adds_one_half_to_every_cell():
    """Firth's closed form for one binary covariate (Heinze & Schemper 2002), here with an
    empty cell, where maximum likelihood diverges."""
    design = np.array([[1.0, 0.0], [1.0, 1.0]])
    n, k = np.array([10, 10]), np.array([[0, 7]])
    beta, converged = stats.firth_logistic(design, n, k)
    assert converged.all()
    np.testing.assert_allclose(beta[0], [np.log(0.5 / 10.5),
                                         np.log(7.5 / 3.5) - np.log(0.5 / 10.5)], rtol=1e-7)


def test_firth_fits_replicates_independently():
    design = np.array([[1.0, 0.0], [1.0, 1.0]])
    one = stats.firth_logistic(design, np.array([10, 10]), np.array([[2, 7]]))[0]
    both = stats.firth_logistic(design, np.array([10, 10]), np.array([[0, 7], [2, 7]]))[0]
    np.testing.assert_allclose(both[1], one[0], rtol=1e-6)  # tol: the step size at stop


def test_wilson_textbook_values():
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = stats.wilson_interval(8, 8)
    assert hi == 1 and lo == pytest.approx(0.6756, abs=1e-4)


def test_ols_recovers_a_planted_slope_and_refuses_two_x_values():
    rng = np.random.default_rng(3)
    x = np.repeat(np.log([1e-5, 1e-4, 1e-3]), 20)
    y = 2.0 - 0.7 * x + 0.1 * rng.standard_normal(x.size)
    line = stats.ols(x, y)
    assert line.ok and line.slope_lo < -0.7 < line.slope_hi
    half = distributions.t.ppf(0.975, x.size - 2) * line.slope_se
    assert line.slope_hi - line.slope == pytest.approx(half)
    two = stats.ols(x[x > np.log(2e-5)], y[x > np.log(2e-5)])
    assert not two.ok and two.n_distinct_x == 2 and two.n_points == 40


def test_weighted_least_squares_widens_by_the_reduced_chi2():
    x = np.arange(5.0)
    design = np.stack([np.ones_like(x), x], 1)
    exact = 1 + 2 * x
    coef, lo, hi, chi2 = stats.weighted_least_squares(design, exact, np.ones(5))
    np.testing.assert_allclose(coef, [1, 2], atol=1e-12)
    assert chi2 == pytest.approx(0, abs=1e-20)
    assert hi[1] - coef[1] == pytest.approx(1.959964 * np.sqrt(0.1), rel=1e-6)  # var = 1/Σ(x-x̄)²
    scattered = exact + np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    coef, lo, hi, chi2 = stats.weighted_least_squares(design, scattered, np.ones(5))
    assert chi2 > 1
    se = np.sqrt(np.diag(np.linalg.inv(design.T @ design)) * chi2)
    np.testing.assert_allclose(hi - coef, distributions.t.ppf(0.975, 3) * se, rtol=1e-9)


def simulated_grok_times(rng, runs=40, slope=-1.0, scale=0.5, every=50, budget=800):
    """Grokking steps t = exp(3 + slope·log10 η + scale·ε), seen only at evaluations every
    ``every`` steps until ``budget``: (previous evaluation, first evaluation at or after t], or
    (budget, inf) for a run that ended first."""
    x = np.log10(rng.choice([1e-4, 3e-4, 1e-3, 3e-3], runs))
    seen = np.ceil(np.exp(3 + slope * x + scale * rng.normal(size=runs)) / every) * every
    lower = np.where(seen <= budget, seen - every, budget)
    upper = np.where(seen <= budget, seen, np.inf)
    return np.column_stack([np.ones(runs), x]), lower, upper


def test_censored_fit_of_exact_times_is_least_squares():
    """With every time exact, the log-normal AFT maximum likelihood is OLS of log t (and its σ
    the root mean square residual)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 0, 200)
    times = np.exp(2.0 - 0.8 * x + 0.3 * rng.normal(size=200))
    design = np.column_stack([np.ones_like(x), x])
    fit = survival.interval_censored_lognormal(times, times, design)
    ols, *_ = np.linalg.lstsq(design, np.log(times), rcond=None)
    np.testing.assert_allclose(fit.coef, ols, rtol=1e-6)
    np.testing.assert_allclose(fit.sigma, np.sqrt(np.mean((np.log(times) - design @ ols) ** 2)),
                               rtol=1e-6)
    assert fit.converged and fit.n_events == 200 and fit.n_censored == 0


def test_censored_fit_covers_the_slope_where_dropping_the_censored_runs_does_not():
    """300 simulated sweeps with ~30% of runs ending before they grok and grok steps known to
    50 steps: the 95% interval of the censored fit covers the true slope in 92-98% of them; OLS
    on the runs that grokked (what treating the others as failures amounts to) covers it in
    under half."""
    rng = np.random.default_rng(1)
    censored_hits = naive_hits = 0
    replicates = 300
    for _ in range(replicates):
        design, lower, upper = simulated_grok_times(rng)
        fit = survival.interval_censored_lognormal(lower, upper, design)
        censored_hits += fit.lo[1] <= -1.0 <= fit.hi[1]
        grokked = np.isfinite(upper)
        line = stats.ols(design[grokked, 1], np.log(upper[grokked]))
        naive_hits += line.slope_lo <= -1.0 <= line.slope_hi
    assert 0.92 <= censored_hits / replicates <= 0.98
    assert naive_hits / replicates < 0.5


# Laws across groups: nine groups with the largest complex degree d_k and real dimension d_R of
# sweeps/irrep.toml (Z_23, dihedral20, dicyclic20, S3x3, dihedral24, dicyclic24, S4, Z_7⋊Z_3,
# SL(2,3)): log c = 0.2 + log x + u + e, u ~ N(0, 0.1²) between groups, e ~ N(0, 0.08²) each.
LOG_DK = np.log([1, 2, 2, 2, 2, 2, 3, 3, 3.0])
LOG_DR = np.log([2, 2, 4, 4, 2, 4, 3, 6, 4.0])
GROUP_SE = 0.08


def law_across_groups(rng, log_x, tau=0.1):
    return 0.2 + log_x + tau * rng.normal(size=log_x.size) + GROUP_SE * rng.normal(size=log_x.size)


def test_random_effects_interval_covers_the_exponent_where_known_errors_alone_do_not():
    """Scatter between groups beyond their own errors: the Knapp–Hartung interval with REML tau
    covers the exponent in 92-99% of 400 simulated sweeps; the interval from the groups' errors
    alone (tau taken as 0, normal quantiles) in far fewer."""
    rng = np.random.default_rng(3)
    design = np.column_stack([np.ones(9), LOG_DR])
    se = np.full(9, GROUP_SE)
    hits = naive = 0
    for _ in range(400):
        y = law_across_groups(rng, LOG_DR, tau=0.15)
        fit = stats.random_effects_regression(y, se, design)
        hits += fit.lo[1] <= 1.0 <= fit.hi[1]
        covariance = np.linalg.inv(design.T @ design / GROUP_SE**2)
        coef = covariance @ design.T @ y / GROUP_SE**2
        naive += abs(coef[1] - 1.0) <= 1.96 * np.sqrt(covariance[1, 1])
    assert 0.92 <= hits / 400 <= 0.99
    assert naive / 400 < 0.8
    assert stats.random_effects_regression(y[:2], se[:2], design[:2]) is None  # nothing left


@pytest.mark.parametrize("truth", ["d_k", "d_R"])
def test_comparison_picks_the_true_variable_when_the_groups_separate_them(truth):
    rng = np.random.default_rng(4)
    candidates = {"d_k": LOG_DK, "d_R": LOG_DR}
    favoured = [stats.compare_predictors(law_across_groups(rng, candidates[truth]),
                                         np.full(9, GROUP_SE), candidates, n_boot=200,
                                         seed=r).favoured for r in range(60)]
    assert favoured.count(truth) >= 57


def test_comparison_cannot_tell_variables_the_groups_do_not_separate():
    """A rival that differs from the truth at one group by 5% in x: "cannot tell" in most
    sweeps, the rival favoured in at most 5%; a copy of the truth can never be told apart."""
    rng = np.random.default_rng(5)
    rival = LOG_DR.copy()
    rival[2] = np.log(3.8)
    favoured = []
    for r in range(60):
        y = law_across_groups(rng, LOG_DR)
        favoured.append(stats.compare_predictors(y, np.full(9, GROUP_SE),
                                                 {"truth": LOG_DR, "rival": rival}, n_boot=200,
                                                 seed=r).favoured)
    assert favoured.count(None) >= 51 and favoured.count("rival") <= 3
    same = stats.compare_predictors(y, np.full(9, GROUP_SE), {"a": LOG_DR, "b": 2 * LOG_DR + 1})
    assert same.favoured is None and same.indistinct == ("b",) and same.p_values[1] == 1.0


def simulated_threshold_sweep(rng, every=25, budget=2000):
    """Delays T = 0.5·(lr·η)^-1·(p/p* − 1)^-1·e^(0.3ε) for three groups (p* = 0.3, 0.45, 0.6),
    p from 10% below p* (never groks) to twice p*, three lr·η, three seeds; seen at evaluations
    every ``every`` steps until ``budget`` (censored after)."""
    thresholds = np.array([0.3, 0.45, 0.6])
    group, rel, lr_eta, _ = (a.ravel() for a in np.meshgrid(
        np.arange(3), [-0.1, 0.05, 0.15, 0.3, 0.6, 1.0], [3e-4, 1e-3, 3e-3], range(3),
        indexing="ij"))
    p = thresholds[group] * (1 + rel)
    with np.errstate(invalid="ignore"):
        delay = np.where(rel > 0, 0.5 / lr_eta * (p / thresholds[group] - 1) ** -1.0
                         * np.exp(0.3 * rng.normal(size=p.size)), np.inf)
    seen = np.ceil(delay / every) * every
    lower = np.where(seen <= budget, seen - every, budget)
    upper = np.where(seen <= budget, seen, np.inf)
    return np.column_stack([np.ones_like(p), np.log(lr_eta)]), p, group, lower, upper, thresholds


def test_threshold_fit_covers_the_exponents_and_each_threshold():
    """60 simulated sweeps with a third of the runs censored: the Wald intervals of the lr·η
    exponent, of ν and of every group's threshold cover the truth in ≥ 85% (nominal 95%)."""
    rng = np.random.default_rng(6)
    hits = np.zeros(5)
    for _ in range(60):
        design, p, group, lower, upper, thresholds = simulated_threshold_sweep(rng)
        fit = survival.threshold_censored_lognormal(lower, upper, design, p, group)
        assert fit.fit.converged and fit.fit.n_censored > 0.25 * p.size
        hits[:2] += (fit.fit.lo[1:] <= [-1.0, 1.0]) & ([-1.0, 1.0] <= fit.fit.hi[1:])
        hits[2:] += (fit.threshold_lo <= thresholds) & (thresholds <= fit.threshold_hi)
    assert (hits / 60 >= 0.85).all(), hits / 60
    # every threshold stays below the smallest p of its group's events
    for g in range(3):
        assert fit.threshold_hi[g] < p[(group == g) & np.isfinite(upper)].min()
