"""Diagnostics of the paper's 2-layer network: per-evaluation scalars and per-node analysis.

Paper layout throughout: W (num_ops·M, K), V (K, M); M is the group order. Training-set inputs
come padded to a static length n_pad: ``mask`` (n_pad,) is True on the n real rows, and every
function ignores whatever the padded rows hold (inf and NaN included). All functions are pure,
float32, free of Python control flow on traced values and of data-dependent shapes, so they can
be jitted and vmapped over runs; ``order``, ``num_ops`` and ``activation`` are static.

Per evaluation, inside the compiled training loop (the feature Grams cost O(n·K²), about
K/M training steps, so evaluate every few steps when K ≫ M):
  * ``training_diagnostics``: the reference code's feature diagnostics and ‖G_F‖;
  * ``weight_diagnostics``: weight norms and the cosine distance to the previous evaluation;
  * ``frequency_dominated_fraction``, ``frequencies_covered``: Fourier summaries of W's
    active nodes (``active_nodes``).
Per node, at the end of a run: ``node_fourier_stats``, ``node_energy``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import model

Array = jax.Array


def _dot(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=model.PRECISION)


def _sq_norm(x: Array, axis=None) -> Array:
    return jnp.sum(x * x, axis=axis)


def _masked(x: Array, mask: Array) -> Array:
    """Padded rows set to 0 with ``where``: a product would let NaN padding through."""
    return jnp.where(mask[:, None], x, 0.0)


def _centred(x: Array, mask: Array, n: Array) -> Array:
    """x minus its mean over the real rows (P1⊥x); padded rows 0."""
    x = _masked(x, mask)
    return _masked(x - x.sum(axis=0) / n, mask)


# --- per evaluation: the training forward pass ---------------------------------------------


def training_diagnostics(
    F: Array, V: Array, labels: Array, mask: Array, order: int
) -> dict[str, Array]:
    """Scalar diagnostics of the hidden features F = σ(XW) (n_pad, K) of the training rows.

    With n real rows, Y = onehot(labels) − 1/M (n, M), the current V (K, M), F̃ = P1⊥F the
    features centred over the real rows and P1⊥ = I − 11ᵀ/n:

    * ``dF_norm`` = ‖(Y − F·V)·Vᵀ‖_F, uncentred F: the reference code's proxy for ‖G_F‖.
    * ``G_F_norm`` = ‖P1⊥(Y − F·V)·Vᵀ‖_F: the paper's backpropagated gradient G_F (Eqn 2).
      (The −1/M in Y is removed by P1⊥, so this is the paper's Ỹ.)
    * ``FtF_diag_avg`` = mean_i |C_ii| and ``FtF_off_diag_avg`` = (Σ_ij |C_ij| − Σ_i |C_ii|) /
      (K(K−1)) for C = F̃ᵀF̃ (K, K); ``FtF_off_diag_ratio`` = off/diag (≈ 0: decorrelated nodes,
      Lemma 1's B ∝ I).
    * ``FFt_dist_from_ideal`` = ‖ideal − S‖_F / ‖S‖_F for the uncentred kernel S = F·Fᵀ (n, n),
      d = mean diag(S), o = mean of the off-diagonal entries (signed) and
      ideal = (d − o)·I + o·11ᵀ (Lemma 1: FFᵀ ≈ K(a−b)I + Kb·11ᵀ, i.e. P_η ∝ ηI).

    Y − F·V is the network's residual only without extra layers (the reference logs NaN for
    dF_norm when other_layers > 0); neither norm includes an output multiplier. The reference's
    FFt_diag_avg / FFt_off_diag_avg (|·| averages of the row-centred n×n kernel) have no Gram
    identity for their absolute values, so they would need the n×n matrix and are not computed.
    """
    F = _masked(F.astype(jnp.float32), mask)
    n = mask.sum().astype(jnp.float32)
    Y = _masked(jax.nn.one_hot(labels, order) - 1.0 / order, mask)
    back = _dot(Y - _dot(F, V), V.T)  # 0 on padded rows
    return {
        "dF_norm": jnp.sqrt(_sq_norm(back)),
        "G_F_norm": jnp.sqrt(_sq_norm(_centred(back, mask, n))),
        **_feature_kernel_stats(F, mask, n),
    }


def _feature_kernel_stats(F: Array, mask: Array, n: Array) -> dict[str, Array]:
    """FtF_* and FFt_dist_from_ideal of ``training_diagnostics`` from F (padding zeroed).

    FFt_dist_from_ideal without S. With μ the mean real row, F̃ = F − 1μᵀ and a = F̃μ:
    S = F̃F̃ᵀ + a1ᵀ + 1aᵀ + ‖μ‖²11ᵀ, d − o = α := ‖F̃‖²/(n−1) and o = ‖μ‖² − α/n, hence
    S − ideal = (F̃F̃ᵀ − αP1⊥) + a1ᵀ + 1aᵀ, whose two parts are orthogonal:

        ‖S − ideal‖² = ‖F̃F̃ᵀ − αP1⊥‖² + 2n‖a‖²
                     = ‖F̃ᵀF̃ − αI_K‖² + (n − 1 − K)α² + 2n‖a‖²   (trace identities),

    and ‖S‖² = ‖S − ideal‖² + ‖ideal‖² with ‖ideal‖² = n·d² + n(n−1)·o², because the ideal is
    the orthogonal projection of S on span{I, 11ᵀ}. The (K, K) form costs O(n_pad·K²) and has
    only non-negative terms when n − 1 ≥ K; it is used when n_pad > K + 1. Otherwise the
    (n_pad, n_pad) form, no larger than F·(K+1), has none of this cancellation whatever n.
    (With heavy padding, n − 1 < K < n_pad − 1, the (n−1−K)α² term cancels the kernel's null
    space: relative error ~1e-5 at a distance of 0.06, ~5e-4 at 0.007, against ~1e-7 for
    realistic features.) F is first scaled by a power of two (exact) so that squared Gram
    entries stay far from float32 overflow.
    """
    n_pad, width = F.shape
    peak = jnp.max(jnp.abs(F))
    scale = jnp.ldexp(jnp.float32(1.0), jnp.frexp(jnp.where(peak > 0, peak, 1.0))[1])
    G = F / scale
    mu = G.sum(axis=0) / n
    Gc = _masked(G - mu, mask)
    C = _dot(Gc.T, Gc)
    diag = jnp.diagonal(C)
    diag_avg = jnp.mean(jnp.abs(diag)) * scale**2
    off_avg = (jnp.sum(jnp.abs(C)) - jnp.sum(jnp.abs(diag))) / (width * (width - 1)) * scale**2

    alpha = jnp.sum(diag) / (n - 1)
    if n_pad <= width + 1:
        real = mask.astype(jnp.float32)
        centring = jnp.diag(real) - jnp.outer(real, real) / n  # P1⊥ on the real rows
        spread = _sq_norm(_dot(Gc, Gc.T) - alpha * centring)
    else:
        spread = _sq_norm(C - alpha * jnp.eye(width)) + (n - 1 - width) * alpha**2
    residual = jnp.maximum(spread + 2 * n * _sq_norm(_dot(Gc, mu)), 0.0)
    mu_sq = _sq_norm(mu)
    d, o = jnp.sum(diag) / n + mu_sq, mu_sq - alpha / n
    ideal = n * d * d + n * (n - 1) * o * o
    return {
        "FtF_diag_avg": diag_avg,
        "FtF_off_diag_avg": off_avg,
        "FtF_off_diag_ratio": off_avg / diag_avg,
        "FFt_dist_from_ideal": jnp.sqrt(residual / (residual + ideal)),
    }


# --- per evaluation: the weights ------------------------------------------------------------


def _cosine_distance(x: Array, y: Array) -> Array:
    """1 − cos(vec x, vec y), computed as ½‖x/‖x‖ − y/‖y‖‖²: no cancellation when x ≈ y."""
    diff = x / jnp.sqrt(_sq_norm(x)) - y / jnp.sqrt(_sq_norm(y))
    return 0.5 * _sq_norm(diff)


def weight_diagnostics(params: model.Params, previous_params: model.Params) -> dict[str, Array]:
    """Norms of the weights and how far their direction moved since the previous evaluation.

    * ``W_norm`` = ‖W‖_F and ``V_norm`` = ‖V‖_F of ``params``;
    * ``dW_cos_dist`` = 1 − cos(vec W_t, vec W_prev) and ``dV_cos_dist`` likewise, between the
      weights of two consecutive *evaluations* (``previous_params``), the paper's Fig. 3 "ΔW
      measured by cosine distance" read as the distance between consecutive weights (not
      between consecutive updates). Range [0, 2]; NaN when either matrix is exactly zero, e.g.
      V at a zero top-layer init (the direction is undefined).
    """
    return {
        "W_norm": jnp.sqrt(_sq_norm(params["W"])),
        "V_norm": jnp.sqrt(_sq_norm(params["V"])),
        "dW_cos_dist": _cosine_distance(params["W"], previous_params["W"]),
        "dV_cos_dist": _cosine_distance(params["V"], previous_params["V"]),
    }


# --- Fourier analysis of hidden nodes (cyclic groups Z_M) -----------------------------------


def pooled_power(W: Array, order: int, num_ops: int) -> Array:
    """DFT power of each node, pooled over conjugate frequencies and summed over operand blocks.

    For node j and operand block b, u = W[b·M:(b+1)·M, j] and û_k = Σ_m u_m e^{−2πikm/M}.
    Returns P (⌊M/2⌋+1, K) with P[k] = Σ_b (|û_k|² + |û_{M−k}|²) for 0 < k < M/2, and the
    self-conjugate k = 0 (DC) and k = M/2 (even M) counted once; Σ_k P[k] = M·‖w_j‖² (Parseval).
    Meaningful for Z_M only: the flat indices of a product group are not a cyclic order.
    """
    blocks = W.astype(jnp.float32).reshape(num_ops, order, W.shape[-1])
    spectrum = jnp.fft.rfft(blocks, axis=1)
    power = jnp.sum(jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2, axis=0)
    k = np.arange(order // 2 + 1)
    multiplicity = np.where((k == 0) | (2 * k == order), 1.0, 2.0).astype(np.float32)
    return power * multiplicity[:, None]


def node_fourier_stats(W: Array, order: int, num_ops: int) -> dict[str, Array]:
    """Per-node (K,) Fourier and memorisation statistics of W for the cyclic group Z_M.

    With P the pooled power of ``pooled_power`` and L = ⌊M/2⌋ non-DC pooled frequencies:

    * ``dominant_frequency`` (int32, 1..L): argmax_{k≥1} P[k] (the DC k = 0 is excluded);
    * ``dominant_power_fraction``: P[k*] / Σ_{k≥1} P[k], the share of non-DC power at it;
    * ``spectral_entropy``: −Σ_{k≥1} p_k ln p_k / ln L with p_k = P[k] / Σ_{k≥1} P[k], in
      [0, 1]: 0 for one frequency, 1 for a flat spectrum (0 when L = 1);
    * ``dc_fraction``: P[0] / Σ_k P[k], the share of all power in the constant component;
    * ``symmetry`` (num_ops = 2; NaN otherwise): how close w = [u; v] is to Theorem 2's
      [u; ±Pu], (Pu)_m = u_{(−m) mod M}: the best sign's 1 − ‖v − s·Pu‖²/(‖u‖² + ‖v‖²), which
      equals 2|⟨v, Pu⟩| / (‖u‖² + ‖v‖²) ∈ [0, 1] (1 iff v = ±Pu exactly). For σ = x² the
      energy does not force it: v's phase is free at a maximum (Corollary 1);
    * ``memorization_top2``: the sum of the two largest ŵ_i² of ŵ = w/‖w‖ over all num_ops·M
      entries, in [2/(num_ops·M), 1]: 1 for Theorem 5's focused memorisation
      (e_g ⊕ e_{g⁻¹h})/√2, at most 2/M for a pure-frequency node [u; ±Pu].

    A node with no non-DC power gets NaN fraction and entropy (its frequency is undefined).
    """
    power = pooled_power(W, order, num_ops)
    ac = power[1:]
    ac_total = ac.sum(axis=0)
    share = ac / ac_total
    num_freqs = order // 2
    entropy = -jnp.sum(jax.scipy.special.xlogy(share, share), axis=0)
    W = W.astype(jnp.float32)
    sq = jnp.square(W)
    return {
        "dominant_frequency": (jnp.argmax(ac, axis=0) + 1).astype(jnp.int32),
        "dominant_power_fraction": ac.max(axis=0) / ac_total,
        "spectral_entropy": entropy / (np.log(num_freqs) if num_freqs > 1 else 1.0),
        "dc_fraction": power[0] / power.sum(axis=0),
        "symmetry": _symmetry(W, order) if num_ops == 2 else jnp.full(W.shape[-1], jnp.nan),
        "memorization_top2": jax.lax.top_k(sq.T, 2)[0].sum(axis=-1) / sq.sum(axis=0),
    }


def _symmetry(W: Array, order: int) -> Array:
    """2|⟨v, Pu⟩| / (‖u‖² + ‖v‖²) per node, for w = [u; v]."""
    reflected = W[(-np.arange(order)) % order]  # (Pu)_m = u_{−m mod M}
    return 2 * jnp.abs(jnp.sum(W[order:] * reflected, axis=0)) / _sq_norm(W, axis=0)


ACTIVE_NORM_FRACTION = 0.01


def active_nodes(W: Array) -> Array:
    """Nodes (K,) whose weight norm is at least 1% of the largest node's.

    Weight decay shrinks the nodes a solution does not use towards zero (on Z_23 with K = 512,
    ~90% of them end below 1e-4 of the largest); their direction is then noise, so the Fourier
    summaries count the active nodes only.
    """
    norms = jnp.sqrt(_sq_norm(W.astype(jnp.float32), axis=0))
    return norms >= ACTIVE_NORM_FRACTION * norms.max()


def fourier_summary(W: Array, order: int, num_ops: int,
                    threshold: float = 0.5) -> dict[str, Array]:
    """The per-evaluation Fourier summaries of W, from one spectrum and one norm pass. A node is
    *frequency-dominated* when its ``dominant_power_fraction`` is ≥ ``threshold``.

    * ``frequency_dominated_fraction``: the fraction of the active nodes (``active_nodes``) that
      are frequency-dominated;
    * ``frequency_dominated_all``: the fraction of all K nodes that are;
    * ``frequency_dominated_energy``: the share of W's energy Σ_j ‖w_j‖² in the nodes that are:
      the stage measure. Counting active nodes only makes features "emerge" once weight decay
      has removed the others, well after the network generalized on them; counting all nodes
      keeps the shrinking memorization nodes in the denominator for ever; weighting each node
      by its energy counts the nodes the network's output is made of, as they form.
    * ``frequencies_covered`` (int32): the number of distinct dominant frequencies among the
      active frequency-dominated nodes; the maximum is ⌊M/2⌋, the local-maximum frequencies of
      Corollary 2 (coverage, Thm 3 / Thm 8);
    * ``active_node_fraction``: the fraction of nodes that are active.
    """
    stats = node_fourier_stats(W, order, num_ops)
    active = active_nodes(W)
    dominated = stats["dominant_power_fraction"] >= threshold
    counted = dominated & active
    energy = _sq_norm(W.astype(jnp.float32), axis=0)
    hit = stats["dominant_frequency"][:, None] == jnp.arange(1, order // 2 + 1)
    return {
        "frequency_dominated_fraction": jnp.sum(counted) / jnp.sum(active),
        "frequency_dominated_all": jnp.mean(dominated.astype(jnp.float32)),
        "frequency_dominated_energy": jnp.sum(jnp.where(dominated, energy, 0.0))
        / jnp.sum(energy),
        "frequencies_covered": jnp.sum(jnp.any(hit & counted[:, None], axis=0)).astype(jnp.int32),
        "active_node_fraction": jnp.mean(active.astype(jnp.float32)),
    }


def frequency_dominated_fraction(
    W: Array, order: int, num_ops: int, threshold: float = 0.5
) -> Array:
    """See ``fourier_summary``."""
    return fourier_summary(W, order, num_ops, threshold)["frequency_dominated_fraction"]


def frequencies_covered(W: Array, order: int, num_ops: int, threshold: float = 0.5) -> Array:
    """See ``fourier_summary``."""
    return fourier_summary(W, order, num_ops, threshold)["frequencies_covered"]


# --- energy (Theorem 1) and its local maxima (Theorem 2) ------------------------------------


def node_energy(
    W: Array, inputs: Array, labels: Array, mask: Array, order: int, activation: str
) -> Array:
    """Theorem 1's energy of every node on the real rows: (K,) 𝓔(ŵ_j) = ½‖Ỹᵀσ(X ŵ_j)‖².

    ŵ_j = w_j/‖w_j‖, X the concatenated one-hot ``inputs`` (n_pad, num_ops) (X·w is a gather
    and sum, as in the model), Ỹ = P1⊥·onehot(labels) centred over the real rows, σ =
    ``model.ACTIVATIONS[activation]``. Computed as ‖onehotᵀ·P1⊥σ(Xŵ_j)‖²/2 (P1⊥ is symmetric
    and idempotent), so only the features are centred. Memory O(n_pad·(K + M)).
    """
    unit = W / jnp.sqrt(_sq_norm(W, axis=0))
    hidden = model.first_layer(unit.astype(jnp.float32), inputs, order)
    n = mask.sum().astype(jnp.float32)
    features = _centred(model.ACTIVATIONS[activation](hidden), mask, n)
    per_class = _dot(_masked(jax.nn.one_hot(labels, order), mask).T, features)
    return 0.5 * _sq_norm(per_class, axis=0)

