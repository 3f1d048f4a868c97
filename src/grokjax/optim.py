"""The paper code's optimizers as optax chains; lr and weight decay may be traced arrays.

Each builder ``(lr, weight_decay, max_steps)`` is called inside the traced training function, so
a change of lr or weight decay changes array values only and never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
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


def orthogonalize() -> optax.GradientTransformation:
    """Replace each 2-D update by NS5 of itself."""
    return optax.stateless_with_tree_map(lambda update, _: newton_schulz(update))


def _bias_corrections(decay: float, max_steps: int) -> np.ndarray:
    """1 − decay^t for t = 0..max_steps, computed in float64 as torch does (t = 0 unused).

    optax evaluates decay**count in float32, where 1 − 0.999^1 is off by 1.3e-5 relative: the
    largest float32 difference from the reference. A float32 transcendental (expm1) inside the
    batched program would fix that but round differently in XLA's vectorised and scalar code
    paths, making a run depend on its batch size; a table lookup is exact and batch-independent.
    """
    table = 1.0 - decay ** np.arange(max_steps + 1, dtype=np.float64)
    table[0] = 1.0
    return table


def scale_by_adam(max_steps: int, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """optax.scale_by_adam with torch's float64 bias corrections (valid for max_steps steps)."""
    step_scales = np.float32(1.0 / _bias_corrections(b1, max_steps))
    # sqrt(v̂) = sqrt(v)·(1/√(1 − b2^t)): a multiply, because XLA rewrites a division by a
    # per-run scalar into this form in some programs and not others, which made results depend
    # on the batch shape in the last bit.
    inverse_root_scales = np.float32(1.0) / np.float32(np.sqrt(_bias_corrections(b2, max_steps)))

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        step_scale = jnp.asarray(step_scales)[jnp.minimum(count, max_steps)]
        inverse_root_scale = jnp.asarray(inverse_root_scales)[jnp.minimum(count, max_steps)]
        updates = jax.tree.map(
            lambda m, v: step_scale * m / (jnp.sqrt(v) * inverse_root_scale + eps), mu, nu)
        return updates, optax.ScaleByAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def adam_coupled(lr, weight_decay, max_steps: int) -> optax.GradientTransformation:
    """torch.optim.Adam(weight_decay=wd): L2 added to the gradient before the moments."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        scale_by_adam(max_steps),
        optax.scale(-lr),
    )


def adamw(lr, weight_decay, max_steps: int) -> optax.GradientTransformation:
    """torch.optim.AdamW: p ← p·(1 − lr·wd) beside the Adam step."""
    return optax.chain(
        scale_by_adam(max_steps),
        optax.add_decayed_weights(weight_decay),
        optax.scale(-lr),
    )


def sgd(lr, weight_decay, max_steps: int) -> optax.GradientTransformation:
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


def muon(lr, weight_decay, max_steps: int) -> optax.GradientTransformation:
    """The paper's `muon`: MuonEnhanced on the first layer W, coupled-L2 Adam on the rest."""
    return optax.multi_transform(
        {"muon": muon_enhanced(lr, weight_decay),
         "adam": adam_coupled(lr, weight_decay, max_steps)},
        lambda params: {name: "muon" if name == "W" else "adam" for name in params},
    )


def muon_optax(lr, weight_decay, max_steps: int) -> optax.GradientTransformation:
    """optax's standard Muon (Keller Jordan's NS coefficients, Nesterov momentum 0.95,
    decoupled decay) on W and the coupled-L2 Adam on the rest, to compare with ``muon``."""
    return optax.multi_transform(
        {"muon": optax.contrib.muon(lr, weight_decay=weight_decay),
         "adam": adam_coupled(lr, weight_decay, max_steps)},
        lambda params: {name: "muon" if name == "W" else "adam" for name in params},
    )


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": adam_coupled,
    "adamw": adamw,
    "sgd": sgd,
    "muon": muon,
    "muon_optax": muon_optax,
}
