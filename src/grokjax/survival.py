"""Times to an event known only up to an interval: log-normal accelerated-failure-time fits of
interval- and right-censored data (a grok step is known to its evaluation interval; a run that
ended first is still waiting). Plain numpy/scipy in, plain numbers out; why not lifelines:
``interval_censored_lognormal``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats


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


class _CensoredLikelihood:
    """The log-normal AFT log-likelihood of interval-censored times (see
    ``interval_censored_lognormal``) for any mean μ(params) of log T with its Jacobian, and its
    maximisation; the linear law and the threshold law below differ only in μ."""

    def __init__(self, lower, upper, mean: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]):
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.exact = self.lower == self.upper
        with np.errstate(divide="ignore"):
            self.log_lower, self.log_upper = np.log(self.lower), np.log(self.upper)
        self.mean = mean

    def negative_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """−log-likelihood and its gradient at theta = (mean parameters, log sigma). A mean of
        +inf (an event that never comes) gives a censored observation probability 1."""
        exact, log_sigma = self.exact, theta[-1]
        sigma = np.exp(log_sigma)
        mean, jacobian = self.mean(theta[:-1])
        with np.errstate(invalid="ignore"):
            z_low, z_high = (self.log_lower - mean) / sigma, (self.log_upper - mean) / sigma
        z_high = np.where(np.isposinf(self.upper), np.inf, z_high)  # inf − inf: still waiting
        z_exact = np.where(exact, z_high, 0.0)
        log_p = np.where(exact, -log_sigma - 0.5 * z_exact**2 - 0.5 * np.log(2 * np.pi)
                         - np.where(exact, self.log_upper, 0.0),
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
        gradient = np.concatenate([jacobian.T @ d_mean, [d_log_sigma.sum()]])
        return -log_p.sum(), -gradient

    def start_times(self) -> np.ndarray:
        """A time per observation to start from: exact, the geometric middle of an interval
        (half its upper bound when it starts at 0), or the lower bound of a censored one."""
        lower, upper = self.lower, self.upper
        middle = np.where(lower > 0, np.sqrt(lower * upper), upper / 2)
        times = np.where(np.isfinite(upper), np.where(self.exact, upper, middle), lower)
        return np.maximum(times, np.finfo(float).tiny)

    def maximise(self, theta0: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """(theta, covariance from the observed information, log-likelihood, converged); the
        Hessian by central differences of the analytic gradient."""
        result = optimize.minimize(self.negative_and_gradient, theta0, jac=True, method="BFGS",
                                   options={"gtol": 1e-8, "maxiter": 2000})
        theta = result.x
        step = 1e-5 * np.maximum(1.0, np.abs(theta))
        hessian = np.empty((len(theta), len(theta)))
        for j in range(len(theta)):
            shift = np.zeros_like(theta)
            shift[j] = step[j]
            hessian[:, j] = (self.negative_and_gradient(theta + shift)[1]
                             - self.negative_and_gradient(theta - shift)[1]) / (2 * step[j])
        try:
            covariance = np.linalg.inv((hessian + hessian.T) / 2)
        except np.linalg.LinAlgError:
            covariance = np.full_like(hessian, np.nan)
        converged = bool(result.success or np.abs(result.jac).max() < 1e-4)
        return theta, covariance, float(-result.fun), converged


def _wald(coef: np.ndarray, covariance: np.ndarray, level: float):
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(covariance))[:len(coef)]
    half = stats.norm.ppf(0.5 + level / 2) * se
    return se, coef - half, coef + half


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
    design = np.asarray(design, float)
    likelihood = _CensoredLikelihood(lower, upper, lambda coef: (design @ coef, design))
    log_times = np.log(likelihood.start_times())
    start, *_ = np.linalg.lstsq(design, log_times, rcond=None)
    residual_scale = np.std(log_times - design @ start) or 1.0
    theta, covariance, log_likelihood, converged = likelihood.maximise(
        np.concatenate([start, [np.log(residual_scale)]]))
    coef = theta[:-1]
    se, lo, hi = _wald(coef, covariance, level)
    return CensoredFit(coef, lo, hi, se, float(np.exp(theta[-1])), log_likelihood,
                       converged and bool(np.isfinite(se).all()),
                       int(np.isfinite(likelihood.upper).sum()),
                       int((~np.isfinite(likelihood.upper)).sum()))


@dataclass(frozen=True)
class ThresholdFit:
    """log T = design·coef − nu·log(x/θ_g − 1) + sigma·ε above each group's threshold θ_g; the
    event never comes at x ≤ θ_g. ``fit.coef`` ends with nu."""

    fit: CensoredFit
    threshold: np.ndarray  # θ_g, per group in ``groups`` order
    threshold_lo: np.ndarray
    threshold_hi: np.ndarray
    groups: np.ndarray


def threshold_censored_lognormal(lower, upper, design, x, group,
                                 level: float = 0.95) -> ThresholdFit:
    """Interval-censored log-normal times that diverge at a threshold of x, one per group:
    log T = design·coef − nu·log(x/θ_g − 1) + sigma·ε for x > θ_g, and T = ∞ for x ≤ θ_g (e.g.
    grokking time against the train fraction x, which diverges at the boundary θ_g of a group).

    Observations as in ``interval_censored_lognormal``: a censored one at x ≤ θ_g has
    probability 1, an event at x ≤ θ_g is impossible, so θ_g lies below the smallest x of the
    group's events (each θ_g is fitted as that bound times a logistic). Maximum likelihood over
    coef, nu, sigma and every θ_g jointly; Wald intervals from the observed information, each
    θ_g's on the logistic scale and mapped back (so it stays below the bound).
    """
    design, x = np.asarray(design, float), np.asarray(x, float)
    upper = np.asarray(upper, float)
    groups, index = np.unique(np.asarray(group), return_inverse=True)
    happened = np.isfinite(upper)
    cap = np.array([x[(index == g) & happened].min(initial=np.inf) for g in range(len(groups))])
    if not np.isfinite(cap).all():
        raise ValueError("every group needs an event (a finite upper bound) to bound its θ")
    params = design.shape[1]

    def mean(theta):
        coef, nu, logit = theta[:params], theta[params], theta[params + 1:]
        share = special.expit(logit)
        threshold = cap * share
        above = x > threshold[index]
        gap = np.where(above, x - threshold[index], 1.0)
        log_distance = np.where(above, np.log(gap / threshold[index]), 0.0)
        mu = np.where(above, design @ coef - nu * log_distance, np.inf)
        # d mu / d logit_g = nu·x·(1 − share)/(x − θ) for the group's observations above θ
        slope = np.where(above, nu * x * (1 - share[index]) / gap, 0.0)
        jacobian = np.concatenate([np.where(above[:, None], design, 0.0),
                                   -np.where(above, log_distance, 0.0)[:, None],
                                   slope[:, None] * (index[:, None] == np.arange(len(groups)))],
                                  axis=1)
        return mu, jacobian

    likelihood = _CensoredLikelihood(lower, upper, mean)
    # Start: each threshold a tenth below its bound, coef and nu by least squares on the events.
    logit0 = np.full(len(groups), special.logit(0.9))
    log_distance = np.log(x / (0.9 * cap[index]) - 1, where=x > 0.9 * cap[index],
                          out=np.zeros_like(x))
    events = happened & (x > 0.9 * cap[index])
    start_design = np.column_stack([design, -log_distance])[events]
    log_times = np.log(likelihood.start_times()[events])
    start, *_ = np.linalg.lstsq(start_design, log_times, rcond=None)
    residual_scale = np.std(log_times - start_design @ start) or 1.0
    theta, covariance, log_likelihood, converged = likelihood.maximise(
        np.concatenate([start, logit0, [np.log(residual_scale)]]))
    coef = theta[:params + 1]
    se, lo, hi = _wald(coef, covariance, level)
    logit = theta[params + 1:-1]
    with np.errstate(invalid="ignore"):
        logit_se = np.sqrt(np.diag(covariance))[params + 1:-1]
    half = stats.norm.ppf(0.5 + level / 2) * logit_se
    fit = CensoredFit(coef, lo, hi, se, float(np.exp(theta[-1])), log_likelihood,
                      converged and bool(np.isfinite(se).all() and np.isfinite(logit_se).all()),
                      int(happened.sum()), int((~happened).sum()))
    return ThresholdFit(fit, cap * special.expit(logit), cap * special.expit(logit - half),
                        cap * special.expit(logit + half), groups)
