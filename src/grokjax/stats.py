"""Statistics primitives of the fits: Wilson intervals, OLS, weighted least squares, Firth's
penalised logistic regression and its midpoint's profile interval, and random-effects
regression of points known to their own errors (censored times are ``survival``'s). Plain
numpy/scipy in, plain numbers out; nothing here knows about runs tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

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


_PROFILE_CENTRES, _REFINE_CENTRES = 61, 13
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
    # The grid holds the estimate itself, so a peak narrower than its step is not missed.
    centres = np.sort(np.append(np.linspace(u.min() - reach * span, u.max() + reach * span,
                                            _PROFILE_CENTRES), centre))
    inside = _profile_over_width(u, n, k, centres) >= cutoff
    inside[np.searchsorted(centres, centre)] = True
    first, last = int(np.argmax(inside)), len(inside) - 1 - int(np.argmax(inside[::-1]))
    # Refine each closed end on a fine grid between the last centre inside and the next outside
    # (both ends in one evaluation), then interpolate the crossing linearly.
    closed = [(index, outward) for index, outward in ((first, -1), (last, 1))
              if 0 <= index + outward < len(centres)]
    ends = {-1: -np.inf, 1: np.inf}
    fine = np.array([np.linspace(centres[index], centres[index + outward], _REFINE_CENTRES)
                     for index, outward in closed]).reshape(len(closed), _REFINE_CENTRES)
    profile = (_profile_over_width(u, n, k, fine.ravel()) - cutoff).reshape(fine.shape)
    for (_, outward), points, values in zip(closed, fine, profile, strict=True):
        step = max(int(np.argmax(values < 0)), 1)  # the first fine centre outside
        a, b = values[step - 1], values[step]
        ends[outward] = points[step - 1] + (points[step] - points[step - 1]) * a / (a - b)
    lo, hi = ends[-1], ends[1]
    return Midpoint(mean + spread * centre, mean + spread * min(lo, centre),
                    mean + spread * max(hi, centre), spread / slope, True)


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
