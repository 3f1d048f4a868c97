"""The paper's network, in paper layout: one-hot operands → W → σ → (residual U_l layers) → V.

Params are a plain dict pytree: ``W`` (num_ops·M, K), ``V`` (K, M) and, with extra layers,
``U`` (L, K, K); variants add ``E`` (M, M, a trainable embedding) and ``W_imag``/``V_imag``
(complex weights). The first layer is a gather-and-sum of W's rows, which equals the one-hot
matmul x·W exactly (adding the exact zeros of a one-hot product changes nothing in float32); a
TPU computes it as that matmul (``onehot``), since its gathers read whole memory tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]

# A run's matmul precision (the ``precision`` field). ``highest``: full float32, which parity with
# the float32 reference needs on GPU/TPU (their float32 default is a reduced-precision pass).
# ``tf32``: the backend's float32 default: TF32 on NVIDIA GPUs, one bf16 pass on TPUs, and plain
# float32 on CPU (XLA:CPU has no reduced pass, so there it equals ``highest``). ``bf16``: operands
# rounded to bfloat16, products accumulated in float32; parameters and optimizer state stay
# float32. Complex operands have no bfloat16 type and keep ``tf32``'s treatment.
PRECISIONS = ("highest", "tf32", "bf16")
PRECISION = jax.lax.Precision.HIGHEST  # what measurements (diagnostics) always use
_LAX_PRECISION = {"highest": PRECISION, "tf32": jax.lax.Precision.DEFAULT,
                  "bf16": jax.lax.Precision.DEFAULT}  # bf16: for complex operands only


def _contract(op, a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
    if precision == "bf16" and not (jnp.iscomplexobj(a) or jnp.iscomplexobj(b)):
        return op(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                  preferred_element_type=jnp.float32)
    return op(a, b, precision=_LAX_PRECISION[precision])


def matmul(a: jax.Array, b: jax.Array, precision: str = "highest") -> jax.Array:
    """a·b at a run's ``precision`` (one of PRECISIONS)."""
    return _contract(jnp.matmul, a, b, precision)


def einsum(subscripts: str, a: jax.Array, b: jax.Array, precision: str = "highest") -> jax.Array:
    """A two-operand einsum at a run's ``precision``."""
    return _contract(partial(jnp.einsum, subscripts), a, b, precision)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sqr": jnp.square,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "relusqr": lambda h: jnp.square(jax.nn.relu(h)),
}


def init_params(
    key: jax.Array, num_ops: int, order: int, width: int, other_layers: int,
    top_layer_init_multiplier: jax.Array, *, embed_trainable: bool = False,
    complex_weights: bool = False, imag_init_scale: jax.Array = 0.0,
) -> Params:
    """PyTorch's default nn.Linear init, U(±1/√fan_in), then V scaled by the multiplier.

    Complex weights keep real and imaginary parts as separate real arrays (``W_imag``,
    ``V_imag``), so every optimizer treats them as torch does (as a real view). The paper's
    code casts real weights to complex, which leaves the imaginary parts at exactly zero for
    ever (paper-notes §6.3): ``imag_init_scale`` = 0 reproduces that; > 0 draws them from the
    same distribution times the scale, which makes the complex model genuinely complex.
    """
    key_w, key_u, key_v, key_wi, key_vi = jax.random.split(key, 5)

    def uniform(k, shape, fan_in):
        bound = 1.0 / jnp.sqrt(jnp.float32(fan_in))
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    d_in = num_ops * order
    params = {
        "W": uniform(key_w, (d_in, width), d_in),
        "V": uniform(key_v, (width, order), width) * top_layer_init_multiplier,
    }
    if other_layers:
        params["U"] = uniform(key_u, (other_layers, width, width), width)
    if complex_weights:
        params["W_imag"] = uniform(key_wi, (d_in, width), d_in) * imag_init_scale
        params["V_imag"] = (uniform(key_vi, (width, order), width) * imag_init_scale
                            * top_layer_init_multiplier)
    if embed_trainable:
        params["E"] = jnp.eye(order, dtype=jnp.float32)  # the code's frozen identity, unfrozen
    return params


def weights(params: Params) -> tuple[jax.Array, jax.Array]:
    """(W, V), complex when the params carry imaginary parts."""
    if "W_imag" not in params:
        return params["W"], params["V"]
    return (jax.lax.complex(params["W"], params["W_imag"]),
            jax.lax.complex(params["V"], params["V_imag"]))


def one_hot_operands(inputs: jax.Array, order: int) -> jax.Array:
    """The network's input x: the concatenated one-hot operands.  (n, num_ops·M) float32"""
    columns = inputs + order * jnp.arange(inputs.shape[1], dtype=inputs.dtype)
    every = jnp.arange(inputs.shape[1] * order, dtype=inputs.dtype)
    return jnp.any(columns[:, :, None] == every, axis=1).astype(jnp.float32)


def first_layer(W: jax.Array, inputs: jax.Array, order: int, onehot: bool = False) -> jax.Array:
    """x·W for concatenated one-hot operands: Σ_j W[j·M + inputs[:, j]], by gathering W's rows
    or (``onehot``) as the matmul itself at full float32 precision, where every output is the
    same few entries of W summed.  (n, K)"""
    if onehot:
        return matmul(one_hot_operands(inputs, order), W, "highest")
    rows = inputs + order * jnp.arange(inputs.shape[1], dtype=inputs.dtype)
    return jnp.take(W, rows, axis=0).sum(axis=1)


def hidden(params: Params, inputs: jax.Array, order: int, precision: str = "highest",
           onehot: bool = False) -> jax.Array:
    """The first layer's pre-activation (n, K); with a trainable embedding E the operands are
    embedded as rows of E (the identity at init) instead of one-hot vectors. Without E it is
    ``first_layer``, float32 whatever the precision (nothing to round in a one-hot operand)."""
    W, _ = weights(params)
    if "E" not in params:
        return first_layer(W, inputs, order, onehot)
    blocks = W.reshape(inputs.shape[1], order, -1)  # (num_ops, M, K)
    embedded = params["E"].astype(W.dtype)[inputs]  # (n, num_ops, M)
    return einsum("noi,oik->nk", embedded, blocks, precision)


def top_features(params: Params, hidden: jax.Array, activation: str,
                 precision: str = "highest") -> jax.Array:
    """The input to V: σ(h), then x ← σ(x + x·U_l) for each extra residual layer.  (n, K)"""
    act = ACTIVATIONS[activation]
    x = act(hidden)
    for layer in params.get("U", ()):
        x = act(x + matmul(x, layer, precision))
    return x


def readout(params: Params, features: jax.Array, output_multiplier: jax.Array,
            precision: str = "highest") -> jax.Array:
    """Logits β·x·V; for complex weights their real part, as the code's loss and accuracy use."""
    _, V = weights(params)
    return output_multiplier * jnp.real(matmul(features, V, precision))


def forward(
    params: Params, inputs: jax.Array, order: int, activation: str, output_multiplier: jax.Array,
    precision: str = "highest", onehot: bool = False,
) -> jax.Array:
    """Logits (n, M) for operand rows ``inputs`` (n, num_ops)."""
    features = top_features(params, hidden(params, inputs, order, precision, onehot), activation,
                            precision)
    return readout(params, features, output_multiplier, precision)


def mean_loss(loss: str, logits: jax.Array, labels: jax.Array, member: jax.Array,
              onehot: bool = False) -> jax.Array:
    """The loss averaged over the rows where ``member`` (n,) is True (``onehot``: see
    per_sample_loss).

    ``centred`` is the paper's Eqn (1), ½‖P1⊥(Y − Ŷ)‖², with P1⊥ centring over the member rows
    and divided by their number so that its scale (and the learning rate) compares with the
    code's losses.
    """
    count = member.sum()
    if loss == "centred":
        residual = jax.nn.one_hot(labels, logits.shape[-1]) - logits
        residual = jnp.where(member[:, None], residual, 0.0)
        centred = residual - residual.sum(axis=0) / count
        return 0.5 * jnp.sum(jnp.where(member[:, None], centred * centred, 0.0)) / count
    per_sample = per_sample_loss(loss, logits, labels, onehot)
    return jnp.sum(jnp.where(member, per_sample, 0.0)) / count


def per_sample_loss(loss: str, logits: jax.Array, labels: jax.Array,
                    onehot: bool = False) -> jax.Array:
    """The code's losses per sample (n,); averaging over samples gives the reference value.

    ``mse``: with ô = o − mean_c(o), Σ_c ô² − 2·ô_y + 1 − 1/M = ‖ô − (e_y − 1/M)‖².
    ``nll``: softmax cross-entropy.
    ``onehot`` picks each row's target logit by a masked sum instead of a gather: the same
    value (one term), which XLA:TPU reads without a gather (1.7 MB per run-step at M=23,
    n=264 for 1 KB of logits), but its gradient reaches the logits in another order, so the
    CPU and GPU keep the gather and their numbers.
    """
    if onehot:
        target = jnp.sum(jnp.where(labels[:, None] == jnp.arange(logits.shape[-1]), logits,
                                   0.0), axis=-1)
    else:
        target = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    if loss == "mse":
        order = logits.shape[-1]
        centred = logits - logits.mean(axis=-1, keepdims=True)
        target = target - logits.mean(axis=-1)
        return jnp.square(centred).sum(axis=-1) - 2.0 * target + 1.0 - 1.0 / order
    if loss == "nll":
        return jax.nn.logsumexp(logits, axis=-1) - target
    raise ValueError(f"unknown loss {loss!r}")


LOSSES = ("mse", "nll", "centred")
