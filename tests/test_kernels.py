"""The fused first layer (grokjax.kernels) against today's XLA path.

On CPU the Pallas kernels run in interpret mode; on a GPU the same tests run the compiled Triton
kernels. Tolerances: the kernel does the reference's float32 operations in the same order (rows
summed in operand order, σ and its autodiff derivative, the same scatter-add), so interpret mode
is bit-identical here; rtol 2e-6 (about 16 ulp) leaves room only for a GPU's own exp/logistic and
fused multiply-adds. Gradients get rtol 1e-5: a GPU's scatter-add sums a row's few contributions
in any order.
"""


from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax import dataset, groups, kernels, model, spec

RTOL, ATOL = 2e-6, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-6

# (order M, num_ops, n, K, block_n, block_k): partial tiles in n and K, several tiles each way,
# three operands, and the default tile clamped to a small K.
SHAPES = [
    (5, 2, 19, 40, 8, 16),
    (7, 3, 37, 48, 16, 32),
    (23, 2, 100, 64, kernels.BLOCK_N, kernels.BLOCK_K),
]
SHAPE_IDS = ["M5-ops2-partial", "M7-ops3-partial", "M23-default-tiles"]


def problem(order, num_ops, n, width, runs=None, seed=0):
    """W, operand indices and a cotangent-like weight C, with a leading run axis if ``runs``."""
    lead = () if runs is None else (runs,)
    kw, ki, kc = jax.random.split(jax.random.key(seed), 3)
    W = jax.random.normal(kw, (*lead, num_ops * order, width), jnp.float32)
    inputs = jax.random.randint(ki, (*lead, n, num_ops), 0, order, jnp.int32)
    weight = jax.random.normal(kc, (*lead, n, width), jnp.float32)
    return W, inputs, weight


def kernel_fn(order, activation, block_n=kernels.BLOCK_N, block_k=kernels.BLOCK_K):
    return lambda W, inputs: kernels.fused_hidden(W, inputs, order, activation,
                                                  block_n=block_n, block_k=block_k)


def reference_fn(order, activation):
    return lambda W, inputs: kernels.reference_hidden(W, inputs, order, activation)


def weighted_sum(hidden_fn):
    """A scalar loss whose gradient wrt the hidden layer is the (non-uniform) weight."""
    return lambda W, inputs, weight: jnp.sum(hidden_fn(W, inputs) * weight)


@pytest.mark.parametrize("activation", list(model.ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_matches_reference(shape, activation):
    order, num_ops, n, width, block_n, block_k = shape
    W, inputs, _ = problem(order, num_ops, n, width)
    got = jax.jit(kernel_fn(order, activation, block_n, block_k))(W, inputs)
    assert got.shape == (n, width)
    np.testing.assert_allclose(got, reference_fn(order, activation)(W, inputs),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", list(model.ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gradient_matches_reference(shape, activation):
    order, num_ops, n, width, block_n, block_k = shape
    W, inputs, weight = problem(order, num_ops, n, width)
    grad = jax.jit(jax.grad(weighted_sum(kernel_fn(order, activation, block_n, block_k))))
    expected = jax.grad(weighted_sum(reference_fn(order, activation)))(W, inputs, weight)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(grad(W, inputs, weight), expected,
                               rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("shared_inputs", [False, True], ids=["per-run-rows", "shared-rows"])
def test_vmap_over_runs(shared_inputs):
    """The engine vmaps runs (each with its own train rows) into one call on a GPU."""
    order, activation = 7, "relusqr"
    W, inputs, weight = problem(order, 2, 29, 24, runs=3)
    in_axes = (0, None, 0) if shared_inputs else (0, 0, 0)
    inputs = inputs[0] if shared_inputs else inputs

    def grad(hidden_fn):
        return jax.jit(jax.vmap(jax.grad(weighted_sum(hidden_fn)), in_axes))(W, inputs, weight)

    np.testing.assert_allclose(grad(kernel_fn(order, activation, 8, 16)),
                               grad(reference_fn(order, activation)),
                               rtol=GRAD_RTOL, atol=GRAD_ATOL)
    hidden = jax.jit(jax.vmap(kernel_fn(order, activation, 8, 16), in_axes[:2]))(W, inputs)
    expected = jax.vmap(reference_fn(order, activation), in_axes[:2])(W, inputs)
    np.testing.assert_allclose(hidden, expected, rtol=RTOL, atol=ATOL)


def test_jit_equals_eager():
    order, activation = 5, "silu"
    W, inputs, _ = problem(order, 3, 21, 40)
    fused = jax.jit(kernels.fused_hidden, static_argnames=("order", "activation", "block_k"))
    jitted = fused(W, inputs, order=order, activation=activation, block_k=16)
    eager = kernels.fused_hidden(W, inputs, order, activation, block_k=16)
    np.testing.assert_array_equal(jitted, eager)
    np.testing.assert_allclose(jitted, reference_fn(order, activation)(W, inputs),
                               rtol=RTOL, atol=ATOL)


def test_lowers_to_triton_for_cuda():
    """Without a GPU, lowering for CUDA still runs Pallas's Triton lowering of both kernels
    (shapes, gathers, masked loads and stores); only Triton's own compilation is left unchecked."""
    order, num_ops, n, width = 23, 3, 476, 256
    W, inputs, weight = problem(order, num_ops, n, width)
    step = jax.jit(jax.vmap(jax.value_and_grad(weighted_sum(
        lambda W, inputs: kernels.fused_hidden(W, inputs, order, "silu", interpret=False)))))
    batched = [jnp.stack([x, x]) for x in (W, inputs, weight)]
    text = step.trace(*batched).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 2  # the forward and the backward kernel


def test_block_sizes_must_be_powers_of_2():
    W, inputs, _ = problem(5, 2, 40, 64)
    with pytest.raises(ValueError, match="powers of 2"):
        kernels.fused_hidden(W, inputs, 5, "sqr", block_n=24)




def test_a_sweep_field_trains_through_the_kernel_with_the_same_curves():
    """first_layer = "pallas" (interpreted on CPU) trains the same run as the XLA path."""
    from grokjax.train import HParams, Split, Static, Task, make_train

    table = dataset.operation_table(groups.parse_group("7"), 2)
    train_idx, _ = dataset.split(49, 0.4, 1)
    is_train = np.zeros(49, bool)
    is_train[train_idx] = True
    args = (HParams(*(jnp.float32(v) for v in (0.01, 1e-3, 0.0, 1.0, 1.0, 0.0))),
            Split(jnp.asarray(train_idx), jnp.asarray(is_train)), jax.random.PRNGKey(1),
            Task(*map(jnp.asarray, table)))
    static = Static(order=7, num_ops=2, width=16, activation="relusqr", loss="mse",
                    optimizer="adam", steps=20, eval_every=5)
    curves = [jax.jit(make_train(replace(static, first_layer=path)).train)(*args).metrics
              for path in ("xla", "pallas")]
    for name in ("train_loss", "test_loss", "train_acc"):
        np.testing.assert_allclose(curves[1][name], curves[0][name], rtol=2e-6, atol=1e-7)


def test_the_kernel_needs_one_hot_operands_and_real_weights():
    from helpers import TINY_SWEEP


    text = TINY_SWEEP.replace("[fixed]", '[fixed]\nfirst_layer = "pallas"\nembed_trainable = true')
    with pytest.raises(spec.SpecError, match="first_layer = 'pallas' fuses one-hot operands"):
        spec.parse(text)
