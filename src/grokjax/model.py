"""The paper's network, in paper layout: one-hot operands → W → σ → (residual U_l layers) → V.

Params are a plain dict pytree: ``W`` (num_ops·M, K), ``V`` (K, M) and, with extra layers,
``U`` (L, K, K). The first layer is a gather-and-sum of W's rows, which equals the one-hot
matmul x·W exactly (adding the exact zeros of a one-hot product changes nothing in float32).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]

# Parity with the float32 reference needs full-precision matmuls on GPU/TPU (whose default for
# float32 is a reduced-precision pass); on CPU this is the default anyway.
PRECISION = jax.lax.Precision.HIGHEST

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sqr": jnp.square,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "relusqr": lambda h: jnp.square(jax.nn.relu(h)),
}


def init_params(
    key: jax.Array, num_ops: int, order: int, width: int, other_layers: int,
    top_layer_init_multiplier: jax.Array,
) -> Params:
    """PyTorch's default nn.Linear init, U(±1/√fan_in), then V scaled by the multiplier."""
    key_w, key_u, key_v = jax.random.split(key, 3)

    def uniform(k, shape, fan_in):
        bound = 1.0 / jnp.sqrt(jnp.float32(fan_in))
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    params = {
        "W": uniform(key_w, (num_ops * order, width), num_ops * order),
        "V": uniform(key_v, (width, order), width) * top_layer_init_multiplier,
    }
    if other_layers:
        params["U"] = uniform(key_u, (other_layers, width, width), width)
    return params


def first_layer(W: jax.Array, inputs: jax.Array, order: int) -> jax.Array:
    """x·W for concatenated one-hot operands: Σ_j W[j·M + inputs[:, j]].  (n, K)"""
    rows = inputs + order * jnp.arange(inputs.shape[1], dtype=inputs.dtype)
    return jnp.take(W, rows, axis=0).sum(axis=1)


def top_features(params: Params, hidden: jax.Array, activation: str) -> jax.Array:
    """The input to V: σ(h), then x ← σ(x + x·U_l) for each extra residual layer.  (n, K)"""
    act = ACTIVATIONS[activation]
    x = act(hidden)
    for layer in params.get("U", ()):
        x = act(x + jnp.matmul(x, layer, precision=PRECISION))
    return x


def readout(V: jax.Array, features: jax.Array, output_multiplier: jax.Array) -> jax.Array:
    return output_multiplier * jnp.matmul(features, V, precision=PRECISION)


def forward(
    params: Params, inputs: jax.Array, order: int, activation: str, output_multiplier: jax.Array
) -> jax.Array:
    """Logits (n, M) for operand rows ``inputs`` (n, num_ops)."""
    features = top_features(params, first_layer(params["W"], inputs, order), activation)
    return readout(params["V"], features, output_multiplier)


def per_sample_loss(loss: str, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The code's losses per sample (n,); averaging over samples gives the reference value.

    ``mse``: with ô = o − mean_c(o), Σ_c ô² − 2·ô_y + 1 − 1/M = ‖ô − (e_y − 1/M)‖².
    ``nll``: softmax cross-entropy.
    """
    target = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    if loss == "mse":
        order = logits.shape[-1]
        centred = logits - logits.mean(axis=-1, keepdims=True)
        target = target - logits.mean(axis=-1)
        return jnp.square(centred).sum(axis=-1) - 2.0 * target + 1.0 - 1.0 / order
    if loss == "nll":
        return jax.nn.logsumexp(logits, axis=-1) - target
    raise ValueError(f"unknown loss {loss!r}")


LOSSES = ("mse", "nll")
