"""A fused first layer for accelerators: σ(Σ_j W[j·M + inputs[:, j]]) as Pallas kernels.

``fused_hidden`` equals ``reference_hidden`` (the model's gather-and-sum, then σ) but never
writes the pre-activation h (n, K) to memory: the forward kernel gathers W's rows straight from
the int32 operand indices, sums them and applies σ in registers, one (block_n, block_k) tile
per program; the backward kernel recomputes h the same way and writes g ⊙ σ'(h), which XLA
scatter-adds into W's rows (the transpose of the gather). The only residuals kept for the
backward pass are W and the indices, not an (n, K) array.

The scatter stays in XLA because every Pallas form of it is worse here: Triton's atomic adds
make dW depend on scheduling (and interpret mode cannot check them), and a one-hot matmul per
tile costs M times the FLOPs with M (23, 71, 127...) breaking Triton's power-of-2 shapes. The
XLA scatter is the one the reference's autodiff emits, so dW is summed as it is today.

The kernels are written for Triton (vector-indexed gathers, masked loads and stores for the
partial tiles at the edges) and compile on GPUs only; elsewhere Pallas runs them in interpret
mode, which is what the CPU tests check. They were not tried with Mosaic, so TPUs keep XLA.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from grokjax import model

# A tile of 32 rows × 128 columns is 16 float32 values per thread for each live tile at 8 warps,
# so h, g and the result stay in registers; 128 float32 columns are 512 contiguous bytes per
# gathered row of W (coalesced loads). The sweeps' large K (256 to 2048) are multiples of 128;
# other K waste the masked part of the last column tile (K = 192 computes 256 columns).
BLOCK_N = 32
BLOCK_K = 128
NUM_WARPS = 8


def reference_hidden(W: jax.Array, inputs: jax.Array, order: int, activation: str) -> jax.Array:
    """σ(x·W) as the model computes it today (XLA gather, sum, then σ).  (n, K)"""
    return model.ACTIVATIONS[activation](model.first_layer(W, inputs, order))


def fused_hidden(
    W: jax.Array, inputs: jax.Array, order: int, activation: str, *,
    interpret: bool | None = None, block_n: int = BLOCK_N, block_k: int = BLOCK_K,
) -> jax.Array:
    """σ(Σ_j W[j·M + inputs[:, j]]) (n, K) for float32 W (num_ops·M, K) and int32 inputs
    (n, num_ops), with its gradient wrt W; equals ``reference_hidden``.

    ``interpret=None`` compiles the kernels on a GPU and interprets them on any other backend.
    Block sizes must be powers of 2 (Triton's tiles); they shrink to fit small n and K.
    """
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    n, width = inputs.shape[0], W.shape[1]
    tile = (min(block_n, pl.next_power_of_2(n)), min(block_k, pl.next_power_of_2(width)))
    if any(b & (b - 1) for b in tile):
        raise ValueError(f"block sizes must be powers of 2, got {block_n}, {block_k}")
    return _fused(W, inputs, order, activation, interpret, tile)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _fused(W, inputs, order, activation, interpret, tile):
    return _call(_forward_kernel, W, inputs, None, order, activation, interpret, tile)


def _fused_forward(W, inputs, order, activation, interpret, tile):
    return _fused(W, inputs, order, activation, interpret, tile), (W, inputs)


def _fused_backward(order, activation, interpret, tile, residuals, g):
    W, inputs = residuals
    dh = _call(_backward_kernel, W, inputs, g, order, activation, interpret, tile)
    rows = inputs + order * jnp.arange(inputs.shape[1], dtype=inputs.dtype)
    # The transpose of the gather, as autodiff of model.first_layer produces it.
    return jnp.zeros_like(W).at[rows].add(dh[:, None, :]), None


_fused.defvjp(_fused_forward, _fused_backward)


def _call(kernel, W, inputs, g, order, activation, interpret, tile):
    """Run ``kernel`` over the (n, K) output in tiles: inputs are padded to whole tiles (row
    index 0, W columns of zeros), so every gather reads inside the arrays; the output and ``g``
    are read and written with masks at the edges instead, which copies nothing of size n·K."""
    (n, num_ops), width = inputs.shape, W.shape[1]
    block_n, block_k = tile
    grid = (pl.cdiv(n, block_n), pl.cdiv(width, block_k))
    inputs = jnp.pad(inputs, ((0, grid[0] * block_n - n), (0, 0)))
    W = jnp.pad(W, ((0, 0), (0, grid[1] * block_k - width)))
    tile_spec = pl.BlockSpec(tile, lambda i, j: (i, j))
    in_specs = [pl.BlockSpec((W.shape[0], block_k), lambda i, j: (0, j)),
                pl.BlockSpec((block_n, num_ops), lambda i, j: (i, 0))]
    operands = [W, inputs]
    if g is not None:
        in_specs.append(tile_spec)
        operands.append(g)
    body = functools.partial(kernel, order=order, activation=activation, shape=(n, width))
    return pl.pallas_call(
        body, grid=grid, in_specs=in_specs, out_specs=tile_spec,
        out_shape=jax.ShapeDtypeStruct((n, width), W.dtype), interpret=interpret,
        compiler_params=plgpu.CompilerParams(num_warps=NUM_WARPS),
    )(*operands)


def _hidden_tile(w_ref, idx_ref, order):
    """This tile's pre-activation: W's rows gathered by operand index and summed in operand
    order, the order of model.first_layer's sum."""
    h = None
    for j in range(idx_ref.shape[1]):
        part = w_ref[idx_ref[:, j] + j * order, :]
        h = part if h is None else h + part
    return h


def _edge_mask(shape, tile):
    """True on the tile's entries that lie inside the (n, K) output."""
    rows = pl.program_id(0) * tile[0] + jnp.arange(tile[0])
    cols = pl.program_id(1) * tile[1] + jnp.arange(tile[1])
    return (rows < shape[0])[:, None] & (cols < shape[1])[None, :]


def _forward_kernel(w_ref, idx_ref, out_ref, *, order, activation, shape):
    h = _hidden_tile(w_ref, idx_ref, order)
    plgpu.store(out_ref, model.ACTIVATIONS[activation](h), mask=_edge_mask(shape, h.shape))


def _backward_kernel(w_ref, idx_ref, g_ref, out_ref, *, order, activation, shape):
    h = _hidden_tile(w_ref, idx_ref, order)  # recomputed: cheaper than storing and reading h
    mask = _edge_mask(shape, h.shape)
    _, act_vjp = jax.vjp(model.ACTIVATIONS[activation], h)
    (dh,) = act_vjp(plgpu.load(g_ref, mask=mask, other=0.0))
    plgpu.store(out_ref, dh, mask=mask)
