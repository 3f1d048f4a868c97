"""Statistics primitives of the fits: Wilson intervals, OLS, weighted least squares, Firth's
penalised logistic regression and its midpoint's profile interval, censored log-normal fits and
random-effects regression. Plain numpy/scipy in, plain numbers out; nothing here knows
about runs tables."""

from __future__ import annotations

from collections.abc import Callable
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
                           level: float = 0.95, t_quantiles: bool = False):
    """Weighted least squares with known variances 1/weight: (coef, lo, hi, reduced chi²).

    The covariance is scaled by the reduced chi² when it exceeds 1 (Birge ratio), so scatter
    beyond the per-point errors — a law that does not quite hold — widens the interval instead
    of being ignored; the scale is then estimated from the residuals, so the interval uses the
    t distribution with the residual degrees of freedom instead of the normal. ``t_quantiles``
    uses t whatever the chi², for weights that hold an estimated variance."""
    dof = len(y) - design.shape[1]
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        nan = np.full(design.shape[1], np.nan)
        return nan, nan, nan, np.nan
    covariance = np.linalg.inv(design.T @ (weight[:, None] * design))
    coef = covariance @ design.T @ (weight * y)
    residual = y - design @ coef
    chi2_dof = float(weight @ residual**2 / dof)
    quantile = (stats.t.ppf(0.5 + level / 2, dof) if chi2_dof > 1 or t_quantiles
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
class Midpoint:
    """Where a logistic curve P(x) = σ((x − centre)/width) crosses one half, fitted to binomial
    counts: Firth's estimate and the profile-likelihood interval of the centre (−inf/+inf: the
    data do not close that end within ``reach`` of their range)."""

    centre: float
    lo: float
    hi: float
    width: float  # > 0 for a rising curve; ≤ 0 or NaN: no rising curve to cut
    converged: bool


_PROFILE_CENTRES, _REFINE_CENTRES = 61, 41
_PROFILE_WIDTHS = np.geomspace(1e-3, 10.0, 32)  # in units of the data's standardised spread


def _penalised_log_likelihood(u, n, k, centre, width):
    """Firth-penalised binomial log-likelihood of σ((u − centre)/width) at every (centre, width)
    pair broadcast over the last axis (cells); the penalty is ½ log det of the information of the
    (intercept, slope) parametrisation, as in ``firth_logistic``."""
    eta = (u - centre) / width
    tail = np.exp(-np.abs(eta))  # log σ(±η) and σ(η)σ(−η) from one exponential and one log
    log_both = -np.log1p(tail)
    log_likelihood = (k * (log_both - np.maximum(-eta, 0))
                      + (n - k) * (log_both - np.maximum(eta, 0))).sum(-1)
    weight = n * tail / (1 + tail) ** 2
    s0, s1, s2 = weight.sum(-1), (weight * u).sum(-1), (weight * u * u).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return log_likelihood + 0.5 * np.log(np.maximum(s0 * s2 - s1**2, 0.0))


def _profile_over_width(u, n, k, centres):
    """The penalised log-likelihood maximised over the width, for each centre: the grid's best
    width refined by a parabola through its neighbours in log width."""
    values = _penalised_log_likelihood(u, n, k, centres[:, None, None],
                                       _PROFILE_WIDTHS[None, :, None])  # (centres, widths)
    best = np.clip(np.argmax(values, axis=1), 1, len(_PROFILE_WIDTHS) - 2)
    rows = np.arange(len(centres))
    left, mid, right = (values[rows, best + d] for d in (-1, 0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        curvature = left - 2 * mid + right
        vertex = np.where(curvature < 0, mid - (right - left) ** 2 / (8 * curvature), mid)
    return np.where(np.isfinite(vertex), np.maximum(vertex, mid), mid)


def logistic_midpoint(x, n, k, level: float = 0.95, reach: float = 1.0) -> Midpoint:
    """The x at which P(success) = σ((x − centre)/width) is one half, from k successes of n per
    cell at x: Firth's penalised estimate, and the penalised profile-likelihood interval — every
    centre whose likelihood, maximised over the width, lies within χ²₁(level)/2 of the best.

    Chosen over a bootstrap of the cells (which cannot vary a 0/n or n/n cell and so collapses
    to the bracket of a sharp transition) and the Wald interval (symmetric where the likelihood
    is not) because it keeps its coverage from separated to shallow transitions with a few
    seeds per cell (tests/test_calibration.py); the penalty keeps the likelihood bounded when no
    cell is partial. The interval is searched within ``reach`` times the data's range beyond it.
    """
    x, n, k = (np.asarray(a, float) for a in (x, n, k))
    mean, spread = x.mean(), max(float(x.std()), 1e-12)
    u = (x - mean) / spread
    beta, converged = firth_logistic(np.stack([np.ones_like(u), u], axis=1), n, k[None])
    intercept, slope = beta[0]
    if not converged[0] or not slope > 0:
        return Midpoint(np.nan, np.nan, np.nan, spread / slope if slope else np.nan,
                        bool(converged[0]))
    centre = -intercept / slope
    best = float(_penalised_log_likelihood(u, n, k, centre, 1 / slope))
    cutoff = best - stats.chi2.ppf(level, 1) / 2
    span = max(float(np.ptp(u)), 1.0)
    centres = np.linspace(u.min() - reach * span, u.max() + reach * span, _PROFILE_CENTRES)
    inside = _profile_over_width(u, n, k, centres) >= cutoff
    ends = []
    for index, outward in ((int(np.argmax(inside)), -1), (len(inside) - 1 - int(np.argmax(
            inside[::-1])), 1)):
        if not inside.any() or index in (0, len(inside) - 1) and inside[index]:
            ends.append(outward * np.inf)
            continue
        # Refine the crossing between the last centre inside and the first outside.
        fine = np.linspace(centres[index], centres[index + outward], _REFINE_CENTRES)
        profile = _profile_over_width(u, n, k, fine) - cutoff
        last = int(np.argmax(profile < 0)) - 1  # the first outside, less one
        a, b = profile[last], profile[last + 1]
        ends.append(fine[last] + (fine[last + 1] - fine[last]) * a / (a - b))
    lo, hi = sorted(ends)
    return Midpoint(mean + spread * centre, mean + spread * min(lo, centre),
                    mean + spread * max(hi, centre), spread / slope, True)


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


# ---------------------------------------------------------------------------------------------
# Laws across groups: each group's value is known to its own standard error, and the groups
# scatter about any law by more than that (a law that holds only approximately). Both the fit and
# the comparison of candidate predictors model that scatter, so a difference within it reads as
# "cannot tell" instead of as a verdict.


def _tau_grid(y: np.ndarray) -> np.ndarray:
    """Between-point standard deviations to profile over: 0 and a log grid up to 3× the spread."""
    spread = max(float(np.ptp(y)), 1e-6)
    return np.concatenate([[0.0], np.geomspace(1e-3 * spread, 3 * spread, 100)])


def _profile(y: np.ndarray, se: np.ndarray, design: np.ndarray, taus: np.ndarray,
             restricted: bool) -> tuple[np.ndarray, np.ndarray]:
    """(Restricted) log-likelihood of y_i = design_i·β + u_i + e_i, u ~ N(0, τ²), e ~ N(0, se_i²),
    with β at its generalised least squares value for each τ: (replicates, taus) for y of shape
    (replicates, points), and the β (replicates, taus, params)."""
    variance = se**2 + taus[:, None] ** 2  # (taus, points)
    weight = 1 / variance
    weighted = weight[:, :, None] * design  # (taus, points, params)
    information = np.swapaxes(weighted, 1, 2) @ design
    inverse = np.linalg.inv(information)
    beta = np.einsum("tij,tbj->bti", inverse, y @ weighted)  # y @ weighted: (taus, b, params)
    residual = y[:, None, :] - beta @ design.T
    log_likelihood = -0.5 * (np.log(2 * np.pi * variance).sum(axis=1)
                             + (residual**2 * weight).sum(axis=2))
    if restricted:  # REML: integrate β out, which removes ML's downward bias of τ
        log_likelihood = log_likelihood - 0.5 * np.linalg.slogdet(information)[1]
    return log_likelihood, beta


@dataclass(frozen=True)
class RandomEffectsFit:
    """y = design·coef + u + e with u ~ N(0, tau²) between points and e ~ N(0, se²) within."""

    coef: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tau: float  # REML estimate of the scatter beyond the per-point errors
    log_likelihood: float  # maximum (not restricted) likelihood, τ profiled: compares designs
    dof: int


def random_effects_regression(y, se, design, level: float = 0.95) -> RandomEffectsFit | None:
    """Meta-regression of points known to their own standard errors ``se`` that scatter about
    the law by an unknown tau more (e.g. one boundary per group against a group property).

    tau is REML's; the coefficients are generalised least squares with variances se² + tau², and
    their interval is Knapp and Hartung's: the covariance scaled by the residual mean square
    (never below 1) with t quantiles on n − params degrees of freedom, which keeps its coverage
    with a handful of points where the normal interval with tau plugged in falls short
    (tests/test_stats.py). None when there are not more points than parameters.
    """
    y, se, design = (np.asarray(a, float) for a in (y, se, design))
    dof = len(y) - design.shape[1]
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    taus = _tau_grid(y)
    restricted, _ = _profile(y[None], se, design, taus, restricted=True)
    tau = float(taus[np.argmax(restricted[0])])
    coef, lo, hi, _ = weighted_least_squares(design, y, 1 / (se**2 + tau**2), level,
                                             t_quantiles=True)
    full, _ = _profile(y[None], se, design, taus, restricted=False)
    return RandomEffectsFit(coef, lo, hi, tau, float(full.max()), dof)


@dataclass(frozen=True)
class PredictorComparison:
    """Which of several candidate predictors x the data favour in y = a + b·x + u + e."""

    names: tuple[str, ...]
    log_likelihood: np.ndarray  # maximum likelihood of each candidate's law
    weights: np.ndarray  # Akaike weights
    p_values: np.ndarray  # P(a likelihood gap ≥ the observed one | that candidate is the truth)
    best: str  # the candidate of highest likelihood
    favoured: str | None  # best, when every rival's p-value is below alpha; None: cannot tell
    alpha: float

    @property
    def indistinct(self) -> tuple[str, ...]:
        """The rivals the data cannot tell from the best (p-value ≥ alpha)."""
        return tuple(name for name, p in zip(self.names, self.p_values, strict=True)
                     if name != self.best and not p < self.alpha)


def compare_predictors(y, se, predictors: dict[str, np.ndarray], alpha: float = 0.05,
                       n_boot: int = 400, seed: int = 0) -> PredictorComparison:
    """Compare laws y = a + b·x + u + e, one per candidate x in ``predictors`` (a vector, or a
    (points, k) array for a law in k variables), u ~ N(0, tau²) the scatter between points and
    e ~ N(0, se²) each point's own error.

    The candidates are ranked by Akaike's criterion (log-likelihood less the number of
    coefficients, the same for laws in one variable). The best is *favoured* only if its lead
    over every rival is larger than that rival, were it the truth, would produce by chance: a
    parametric bootstrap (Cox's test for non-nested laws; for nested ones, a likelihood-ratio
    test) draws ``n_boot`` data sets from each rival's fitted law (REML tau) with the same se,
    refits both, and the rival's p-value is the share of leads at least as large as the observed
    one. Otherwise the comparison says which rivals it cannot tell from the best. Identical
    predictors (or one an affine function of the other) always read as "cannot tell".
    """
    y, se = np.asarray(y, float), np.asarray(se, float)
    names = tuple(predictors)
    designs = {name: np.column_stack([np.ones_like(y), np.asarray(x, float)])
               for name, x in predictors.items()}
    taus = _tau_grid(y)

    def scores(name, samples):  # maximum log-likelihood less the coefficients (AIC / -2)
        log_likelihood = _profile(samples, se, designs[name], taus, restricted=False)[0]
        return log_likelihood.max(axis=1) - designs[name].shape[1]

    observed = np.array([scores(name, y[None])[0] for name in names])
    best = names[int(np.argmax(observed))]
    weights = np.exp(observed - observed.max())
    rng = np.random.default_rng(seed)
    p_values = np.full(len(names), np.nan)
    for index, rival in enumerate(names):
        if rival == best:
            continue
        restricted, beta = _profile(y[None], se, designs[rival], taus, restricted=True)
        at = int(np.argmax(restricted[0]))
        mean = designs[rival] @ beta[0, at]
        samples = mean + rng.normal(size=(n_boot, len(y))) * np.sqrt(se**2 + taus[at] ** 2)
        leads = scores(best, samples) - scores(rival, samples)
        lead = observed[names.index(best)] - observed[index]
        p_values[index] = (1 + np.sum(leads >= lead - 1e-9)) / (n_boot + 1)
    favoured = best if np.all(np.isnan(p_values) | (p_values < alpha)) else None
    log_likelihood = observed + np.array([designs[name].shape[1] for name in names])
    return PredictorComparison(names, log_likelihood, weights / weights.sum(), p_values, best,
                               favoured, alpha)
