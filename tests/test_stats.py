"""Statistics primitives against published reference numbers and closed forms."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as distributions

from grokjax import stats

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
    fit = stats.interval_censored_lognormal(times, times, design)
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
        fit = stats.interval_censored_lognormal(lower, upper, design)
        censored_hits += fit.lo[1] <= -1.0 <= fit.hi[1]
        grokked = np.isfinite(upper)
        line = stats.ols(design[grokked, 1], np.log(upper[grokked]))
        naive_hits += line.slope_lo <= -1.0 <= line.slope_hi
    assert 0.92 <= censored_hits / replicates <= 0.98
    assert naive_hits / replicates < 0.5
