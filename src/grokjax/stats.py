"""Statistics primitives of the fits: Wilson intervals, OLS, weighted least squares and Firth's
penalised logistic regression. Plain numpy/scipy in, plain numbers out; nothing here knows
about runs tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import expit

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
        prob = expit(beta @ design.T)  # (replicates, cells)
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
