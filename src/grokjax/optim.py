"""The paper code's optimizers as optax chains; lr and weight decay may be traced arrays.

Each builder is called inside the traced training function, so a change of lr or weight decay
changes array values only and never recompiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# MuonEnhanced's five Newton–Schulz steps, each with its own (a, b, c) (not Keller Jordan's).
NEWTON_SCHULZ_COEFFICIENTS = (
    (4.01, -9.22, 5.80),
    (3.49, -6.38, 3.23),
    (3.34, -6.21, 3.20),
    (3.64, -7.48, 4.43),
    (3.46, -5.35, 2.85),
)
MUON_MOMENTUM = 0.99
SGD_MOMENTUM = 0.9


def newton_schulz(matrix: jax.Array) -> jax.Array:
    """The code's NS5 orthogonalisation, in float32, on the orientation with fewer rows."""
    transpose = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if transpose else matrix
    x = x / (jnp.linalg.norm(x) + 1e-7)
    for a, b, c in NEWTON_SCHULZ_COEFFICIENTS:
        gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
        poly = b * gram + c * jnp.matmul(gram, gram, precision=jax.lax.Precision.HIGHEST)
        x = a * x + jnp.matmul(poly, x, precision=jax.lax.Precision.HIGHEST)
    return x.T if transpose else x


class _Empty(NamedTuple):
    pass


def orthogonalize() -> optax.GradientTransformation:
    """Replace each 2-D update by NS5 of itself."""
    return optax.GradientTransformation(
        lambda params: _Empty(),
        lambda updates, state, params=None: (jax.tree.map(newton_schulz, updates), state),
    )


def _one_minus_power(decay: float, count: jax.Array) -> jax.Array:
    """1 − decay^count, accurate in float32 as −expm1(count·ln decay).

    optax evaluates decay**count in float32, where 1 − 0.999^1 is off by 1.3e-5 relative; torch
    does it in double. That bias on every early Adam step is the largest float32 difference from
    the reference, so the Adam here corrects its moments with this form instead.
    """
    return -jnp.expm1(count.astype(jnp.float32) * jnp.float32(math.log(decay)))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """optax.scale_by_adam with the float32-accurate bias correction above."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        step_scale = 1.0 / _one_minus_power(b1, count)
        root_scale = jnp.sqrt(_one_minus_power(b2, count))
        updates = jax.tree.map(lambda m, v: step_scale * m / (jnp.sqrt(v) / root_scale + eps),
                               mu, nu)
        return updates, optax.ScaleByAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def adam_coupled(lr, weight_decay) -> optax.GradientTransformation:
    """torch.optim.Adam(weight_decay=wd): L2 added to the gradient before the moments."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        scale_by_adam(),
        optax.scale(-lr),
    )


def adamw(lr, weight_decay) -> optax.GradientTransformation:
    """torch.optim.AdamW: p ← p·(1 − lr·wd) beside the Adam step."""
    return optax.chain(
        scale_by_adam(),
        optax.add_decayed_weights(weight_decay),
        optax.scale(-lr),
    )


def sgd(lr, weight_decay) -> optax.GradientTransformation:
    """torch.optim.SGD(momentum=0.9, weight_decay=wd): coupled L2, buf₀ = g, no Nesterov."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=SGD_MOMENTUM, nesterov=False),
        optax.scale(-lr),
    )


def muon_enhanced(lr, weight_decay) -> optax.GradientTransformation:
    """The code's MuonEnhanced: p ← p(1 − lr·wd) − lr·NS5(m), m ← 0.99·m + 0.01·g."""
    return optax.chain(
        optax.ema(decay=MUON_MOMENTUM, debias=False),
        orthogonalize(),
        optax.add_decayed_weights(weight_decay),
        optax.scale(-lr),
    )


def muon(lr, weight_decay) -> optax.GradientTransformation:
    """The paper's `muon`: MuonEnhanced on the first layer W, coupled-L2 Adam on the rest."""
    return optax.multi_transform(
        {"muon": muon_enhanced(lr, weight_decay), "adam": adam_coupled(lr, weight_decay)},
        lambda params: {name: "muon" if name == "W" else "adam" for name in params},
    )


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": adam_coupled,
    "adamw": adamw,
    "sgd": sgd,
    "muon": muon,
}
