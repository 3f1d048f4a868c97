"""Statistics primitives of the fits: Wilson intervals, OLS, weighted least squares and Firth's
penalised logistic regression. Plain numpy/scipy in, plain numbers out; nothing here knows
about runs tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

MIN_DISTINCT_X = 3  # a line through two points fits exactly: no test of the form, no honest CI
_MAX_NEWTON_STEP = 2.0  # keeps Newton from overshooting while a replicate is near separation


def wilson_interval(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion k/n (sensible at 0/n and n/n)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        denom = 1 + z**2 / n
        centre = (phat + z**2 / (2 * n)) / denom
        half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / denom
    # min/max: rounding must not put k/n itself outside its interval at 0/n or n/n
    lo, hi = np.minimum(centre - half, phat), np.maximum(centre + half, phat)
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)


@dataclass(frozen=True)
class Line:
    """y = intercept + slope·x with a confidence interval on the slope."""

    slope: float
    slope_lo: float
    slope_hi: float
    slope_se: float
    intercept: float
    n_points: int
    n_distinct_x: int

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.slope))


def ols(x, y, level: float = 0.95) -> Line:
    """Ordinary least squares (scipy.stats.linregress) with a t-based CI on the slope; NaN
    unless x takes at least MIN_DISTINCT_X distinct values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    distinct = int(np.unique(x).size)
    if distinct < MIN_DISTINCT_X:
        return Line(np.nan, np.nan, np.nan, np.nan, np.nan, len(x), distinct)
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 2) * fit.stderr
    return Line(fit.slope, fit.slope - half, fit.slope + half, fit.stderr, fit.intercept,
                len(x), distinct)


def weighted_least_squares(design: np.ndarray, y: np.ndarray, weight: np.ndarray,
                           level: float = 0.95):
    """Weighted least squares with known variances 1/weight: (coef, lo, hi, reduced chi²).

    The covariance is scaled by the reduced chi² when it exceeds 1 (Birge ratio), so scatter
    beyond the per-point errors — a law that does not quite hold — widens the interval instead
    of being ignored; the scale is then estimated from the residuals, so the interval uses the
    t distribution with the residual degrees of freedom instead of the normal."""
    dof = len(y) - design.shape[1]
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        nan = np.full(design.shape[1], np.nan)
        return nan, nan, nan, np.nan
    covariance = np.linalg.inv(design.T @ (weight[:, None] * design))
    coef = covariance @ design.T @ (weight * y)
    residual = y - design @ coef
    chi2_dof = float(weight @ residual**2 / dof)
    quantile = (stats.t.ppf(0.5 + level / 2, dof) if chi2_dof > 1
                else stats.norm.ppf(0.5 + level / 2))
    half = quantile * np.sqrt(np.diag(covariance) * max(1.0, chi2_dof))
    return coef, coef - half, coef + half, chi2_dof


def firth_logistic(design: np.ndarray, n: np.ndarray, k: np.ndarray, max_iter: int = 200,
                   tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Firth-penalised logistic regression of k successes out of n trials per row of ``design``,
    for many replicates at once.

    design: (cells, params); n: (cells,); k: (replicates, cells). Returns the coefficients
    (replicates, params) and whether each replicate converged. Firth's penalty (the Jeffreys
    prior) keeps the estimates finite under (quasi-)separation, where the maximum-likelihood
    slope runs off to infinity, and removes the MLE's first-order small-sample bias. Matches
    R's ``logistf`` (tests/test_stats.py).
    """
    k = np.atleast_2d(np.asarray(k, dtype=float))
    n = np.asarray(n, dtype=float)
    beta = np.zeros((k.shape[0], design.shape[1]))
    step = np.full_like(beta, np.inf)
    for _ in range(max_iter):
        prob = special.expit(beta @ design.T)  # (replicates, cells)
        weight = n * prob * (1 - prob)
        information = np.einsum("rc,ci,cj->rij", weight, design, design)
        try:
            inverse = np.linalg.inv(information)
        except np.linalg.LinAlgError:
            break
        # diagonal of the hat matrix W^1/2 X (X'WX)^-1 X' W^1/2
        hat = weight * np.einsum("ci,rij,cj->rc", design, inverse, design)
        score = (k - n * prob + hat * (0.5 - prob)) @ design
        step = np.einsum("rij,rj->ri", inverse, score)
        largest = np.abs(step).max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = step * np.minimum(1.0, _MAX_NEWTON_STEP / largest)
        beta = beta + step
        if np.nanmax(np.abs(step), initial=0.0) < tol:
            break
    return beta, np.isfinite(beta).all(axis=1) & (np.abs(step).max(axis=1) < tol)


@dataclass(frozen=True)
class CensoredFit:
    """A log-normal accelerated-failure-time fit: log T = design·coef + sigma·ε, ε ~ N(0, 1)."""

    coef: np.ndarray  # (params,)
    lo: np.ndarray  # Wald interval at the requested level, from the observed information
    hi: np.ndarray
    se: np.ndarray
    sigma: float
    log_likelihood: float
    converged: bool
    n_events: int  # observations with a finite upper bound (the event happened by then)
    n_censored: int  # right-censored: still waiting at their lower bound


def _log_interval_probability(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """log(Φ(high) − Φ(low)) for low < high, accurate in either tail."""
    upper_tail = low > 0  # both in the upper tail: Φ(high) − Φ(low) = Φ(−low) − Φ(−high)
    a = np.where(upper_tail, -high, low)
    b = np.where(upper_tail, -low, high)
    log_b, log_a = special.log_ndtr(b), special.log_ndtr(a)
    with np.errstate(divide="ignore"):
        return log_b + np.log1p(-np.exp(log_a - log_b))


def interval_censored_lognormal(lower: np.ndarray, upper: np.ndarray, design: np.ndarray,
                                level: float = 0.95) -> CensoredFit:
    """Maximum likelihood of a log-normal AFT model for event times known only to intervals.

    Observation i happened in (lower_i, upper_i]: ``upper`` = inf for a right-censored one
    (still waiting when observed last), ``lower`` = 0 for one that had happened by its first
    look, ``lower == upper`` for an exact time. Each contributes log P(lower < T ≤ upper) (its
    density when exact), so an event seen at an evaluation counts as "between the previous
    evaluation and this one" and a run that ended first as "later than its last step", never as
    a failure. The interval on each coefficient is Wald's, from the observed information (the
    Hessian of the log-likelihood at the optimum, by central differences of the analytic
    gradient).

    This is what lifelines' ``LogNormalAFTFitter.fit_interval_censoring`` fits; it is written
    here on scipy because lifelines pins pandas < 3, which would downgrade every user's pandas.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    design = np.asarray(design, float)
    exact = lower == upper
    with np.errstate(divide="ignore"):
        log_lower, log_upper = np.log(lower), np.log(upper)
    params = design.shape[1]

    def negative_log_likelihood_and_gradient(theta):
        coef, log_sigma = theta[:params], theta[params]
        sigma = np.exp(log_sigma)
        mean = design @ coef
        z_low, z_high = (log_lower - mean) / sigma, (log_upper - mean) / sigma
        z_exact = np.where(exact, z_high, 0.0)
        log_p = np.where(exact, -log_sigma - 0.5 * z_exact**2 - 0.5 * np.log(2 * np.pi)
                         - np.where(exact, log_upper, 0.0),
                         _log_interval_probability(np.where(exact, -1.0, z_low),
                                                   np.where(exact, 1.0, z_high)))
        # d log P / d mean and d log P / d log sigma; φ(z)/P in log space, z·φ(z) → 0 at ±∞
        log_density = stats.norm.logpdf
        ratio_high = np.exp(log_density(z_high) - log_p)
        ratio_low = np.exp(log_density(z_low) - log_p)
        z_phi = (np.where(np.isfinite(z_high), z_high, 0.0) * ratio_high
                 - np.where(np.isfinite(z_low), z_low, 0.0) * ratio_low)
        d_mean = np.where(exact, z_exact / sigma, -(ratio_high - ratio_low) / sigma)
        d_log_sigma = np.where(exact, z_exact**2 - 1.0, -z_phi)
        gradient = np.concatenate([design.T @ d_mean, [d_log_sigma.sum()]])
        return -log_p.sum(), -gradient

    start_times = np.where(np.isfinite(upper), np.where(exact, upper,
                                                        np.sqrt(np.maximum(lower, 1e-300) * upper)),
                           lower)
    start_times = np.maximum(start_times, np.finfo(float).tiny)
    start, *_ = np.linalg.lstsq(design, np.log(start_times), rcond=None)
    residual_scale = np.std(np.log(start_times) - design @ start) or 1.0
    theta0 = np.concatenate([start, [np.log(residual_scale)]])
    result = optimize.minimize(negative_log_likelihood_and_gradient, theta0, jac=True,
                               method="BFGS", options={"gtol": 1e-8, "maxiter": 1000})
    theta = result.x
    step = 1e-5 * np.maximum(1.0, np.abs(theta))
    hessian = np.empty((len(theta), len(theta)))
    for j in range(len(theta)):
        shift = np.zeros_like(theta)
        shift[j] = step[j]
        hessian[:, j] = (negative_log_likelihood_and_gradient(theta + shift)[1]
                         - negative_log_likelihood_and_gradient(theta - shift)[1]) / (2 * step[j])
    hessian = (hessian + hessian.T) / 2
    try:
        covariance = np.linalg.inv(hessian)
        se = np.sqrt(np.diag(covariance))[:params]
    except np.linalg.LinAlgError:
        se = np.full(params, np.nan)
    half = stats.norm.ppf(0.5 + level / 2) * se
    coef = theta[:params]
    converged = bool(result.success or np.abs(result.jac).max() < 1e-4) and np.isfinite(se).all()
    return CensoredFit(coef, coef - half, coef + half, se, float(np.exp(theta[params])),
                       float(-result.fun), converged, int(np.isfinite(upper).sum()),
                       int((~np.isfinite(upper)).sum()))
