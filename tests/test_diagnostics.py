"""Diagnostics against brute-force float64 references, the parity files, and Theorems 2 and 5."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax import diagnostics as D
from grokjax import model

PARITY = Path(__file__).parent / "data" / "parity"
TRAINING_KEYS = {"dF_norm", "G_F_norm", "FtF_diag_avg", "FtF_off_diag_avg",
                 "FtF_off_diag_ratio", "FFt_dist_from_ideal"}

training = jax.jit(D.training_diagnostics, static_argnames="order")
fourier = jax.jit(D.node_fourier_stats, static_argnames=("order", "num_ops"))
energy = jax.jit(D.node_energy, static_argnames=("order", "activation"))


# --- float64 references, written from the definitions on the real rows only ----------------


def reference_training(F, V, labels, order):
    F, V = F.astype(np.float64), V.astype(np.float64)
    n, width = F.shape
    back = (np.eye(order)[labels] - 1.0 / order - F @ V) @ V.T
    centred = F - F.mean(axis=0)
    C = centred.T @ centred
    diag = np.abs(np.diag(C)).mean()
    off = (np.abs(C).sum() - np.abs(np.diag(C)).sum()) / (width * (width - 1))
    S = F @ F.T
    d, o = np.trace(S) / n, (S.sum() - np.trace(S)) / (n * (n - 1))
    ideal = (d - o) * np.eye(n) + o
    return {
        "dF_norm": np.linalg.norm(back),
        "G_F_norm": np.linalg.norm(back - back.mean(axis=0)),
        "FtF_diag_avg": diag, "FtF_off_diag_avg": off, "FtF_off_diag_ratio": off / diag,
        "FFt_dist_from_ideal": np.linalg.norm(ideal - S) / np.linalg.norm(S),
    }


def reference_energy(W, inputs, labels, order, activation):
    X = np.concatenate([np.eye(order)[inputs[:, j]] for j in range(inputs.shape[1])], axis=1)
    Y = np.eye(order)[labels]
    Y = Y - Y.mean(axis=0)
    unit = W.astype(np.float64) / np.linalg.norm(W.astype(np.float64), axis=0)
    return 0.5 * np.sum((Y.T @ activation(X @ unit)) ** 2, axis=0)


def reference_fourier(w, order, num_ops):
    """One node, with the full complex DFT and explicit k / M−k pooling."""
    blocks = w.astype(np.float64).reshape(num_ops, order)
    power = np.sum(np.abs(np.fft.fft(blocks, axis=1)) ** 2, axis=0)
    pooled = np.array([power[k] + (power[order - k] if 2 * k != order else 0.0)
                       for k in range(1, order // 2 + 1)])
    share = pooled / pooled.sum()
    nonzero = share[share > 0]
    stats = {
        "dominant_frequency": int(np.argmax(pooled)) + 1,
        "dominant_power_fraction": share.max(),
        "spectral_entropy": -np.sum(nonzero * np.log(nonzero)) / np.log(len(pooled)),
        "dc_fraction": power[0] / power.sum(),
        "memorization_top2": np.sort(w.astype(np.float64) ** 2)[-2:].sum() / np.sum(w**2.0),
    }
    if num_ops == 2:
        u, v = blocks
        reflected = u[(-np.arange(order)) % order]
        stats["symmetry"] = 1 - min(np.sum((v - s * reflected) ** 2) for s in (1, -1)) / (
            np.sum(u**2) + np.sum(v**2))
    return stats


# --- inputs ----------------------------------------------------------------------------------


def first_layer_features(rng, n, width, order, activation=np.square):
    """Features of a random first layer on random operand pairs: realistic magnitudes."""
    W = rng.uniform(-1, 1, (2 * order, width)) / np.sqrt(2 * order)
    a, b = rng.integers(0, order, n), rng.integers(0, order, n)
    return activation(W[a] + W[order + b]).astype(np.float32)


def padded(rng, F, labels, n_pad, order):
    """Rows n.. hold garbage (NaN, inf, huge values, out-of-range labels) and mask False."""
    n, width = F.shape
    garbage = rng.choice([np.nan, np.inf, -1e30, 7.0], size=(n_pad - n, width))
    F_pad = np.concatenate([F, garbage.astype(np.float32)])
    labels_pad = np.concatenate([labels, rng.integers(-3, 2 * order, n_pad - n)]).astype(np.int32)
    return F_pad, labels_pad, np.arange(n_pad) < n


def near_ideal_features(rng, n, width, noise, offset):
    """F = 1μᵀ + Q + noise with centred Q, QQᵀ = P1⊥ and μ ⟂ rows of Q: S ≈ (d−o)I + o·11ᵀ."""
    basis, _ = np.linalg.qr(rng.normal(size=(width, width)))
    rows = basis[:, 1:n + 1].T
    return (offset * basis[:, 0] + rows - rows.mean(axis=0)
            + noise * rng.normal(size=(n, width))).astype(np.float32)


def check_training(F, labels, order, n_pad, rng, rtol=1e-5):
    n, width = F.shape
    V = rng.normal(0, 1 / np.sqrt(width), (width, order)).astype(np.float32)
    F_pad, labels_pad, mask = padded(rng, F, labels, n_pad, order)
    got = training(jnp.asarray(F_pad), jnp.asarray(V), jnp.asarray(labels_pad),
                   jnp.asarray(mask), order=order)
    assert set(got) == TRAINING_KEYS
    for key, want in reference_training(F, V, labels, order).items():
        np.testing.assert_allclose(float(got[key]), want, rtol=rtol, err_msg=key)


# --- training diagnostics --------------------------------------------------------------------


@pytest.mark.parametrize(("n", "width", "n_pad"), [
    (120, 16, 150),  # n_pad > K + 1: the (K, K) route
    (20, 32, 30),  # n_pad ≤ K + 1: the (n_pad, n_pad) route
    (25, 32, 64),  # heavy padding, n − 1 < K < n_pad − 1: the (K, K) route with cancellation
])
@pytest.mark.parametrize("activation", [np.square, lambda h: np.maximum(h, 0.0)])
def test_training_diagnostics_match_float64_reference(n, width, n_pad, activation):
    rng = np.random.default_rng(n + width)
    order = 7
    F = first_layer_features(rng, n, width, order, activation)
    check_training(F, rng.integers(0, order, n), order, n_pad, rng)


@pytest.mark.parametrize(("n", "width", "n_pad", "noise", "offset"), [
    (20, 32, 20, 1e-3, 0.0),  # kernel within 0.7% of ideal
    (20, 32, 33, 1e-4, 1.0),  # within 0.02%, padded
    (20, 32, 33, 1e-3, 30.0),  # a dominant common row: within 0.005%
    (150, 8, 160, 0.0, 0.0),  # n − 1 > K: the (K, K) route, a dominant common row below
])
def test_ffT_distance_is_accurate_near_ideal(n, width, n_pad, noise, offset):
    rng = np.random.default_rng(3)
    if n - 1 > width:
        F = (rng.normal(size=(n, width)) + 300.0).astype(np.float32)
    else:
        F = near_ideal_features(rng, n, width, noise, offset)
    labels = rng.integers(0, 5, n)
    want = reference_training(F, np.zeros((width, 5), np.float32), labels, 5)
    assert want["FFt_dist_from_ideal"] < 1e-2  # the regime where a naive formula cancels
    check_training(F, labels, 5, n_pad, rng, rtol=1e-4)


@pytest.mark.parametrize("name", ["p01", "p02", "p03", "p04", "p05", "p06"])
def test_epoch0_diagnostics_equal_the_reference_code(name):
    """The reference's epoch-0 values from W0, V0 on the train split (padded here)."""
    z = np.load(PARITY / f"{name}.npz")
    cfg = json.loads(str(z["config_json"]))
    order, train = cfg["group_order"], z["train_idx"]
    inputs = jnp.asarray(z["inputs"][train])
    F = np.asarray(model.ACTIVATIONS[cfg["activation"]](
        model.first_layer(jnp.asarray(z["W0"]), inputs, order)))
    rng = np.random.default_rng(0)
    F_pad, labels, mask = padded(rng, F, z["labels"][train], len(train) + 9, order)
    got = training(jnp.asarray(F_pad), jnp.asarray(z["V0"]), jnp.asarray(labels),
                   jnp.asarray(mask), order=order)
    for key in ["dF_norm", "FtF_diag_avg", "FtF_off_diag_avg", "FFt_dist_from_ideal"]:
        np.testing.assert_allclose(float(got[key]), z[key][0], rtol=1e-5, err_msg=key)


def test_vmapped_training_diagnostics_equal_each_item():
    rng = np.random.default_rng(5)
    order, width, n_pad = 7, 16, 40
    items = []
    for n in (25, 32, 40):
        F, labels, mask = padded(rng, first_layer_features(rng, n, width, order),
                                 rng.integers(0, order, n), n_pad, order)
        V = rng.normal(0, 0.3, (width, order)).astype(np.float32)
        items.append(tuple(map(jnp.asarray, (F, V, labels, mask))))
    batched = jax.jit(jax.vmap(lambda *xs: D.training_diagnostics(*xs, order)))(
        *(jnp.stack(xs) for xs in zip(*items, strict=True)))
    for i, item in enumerate(items):
        for key, value in training(*item, order=order).items():
            np.testing.assert_allclose(batched[key][i], value, rtol=1e-5, err_msg=key)


# --- weights ---------------------------------------------------------------------------------


def test_weight_diagnostics():
    rng = np.random.default_rng(6)
    now = {"W": rng.normal(size=(14, 16)), "V": rng.normal(size=(16, 7))}
    # W: a typical single step (relative change 1e-4), 1 − cos ≈ 5e-9 is below float32's
    # epsilon; V: nearly reversed.
    prev = {"W": now["W"] + 1e-4 * rng.normal(size=(14, 16)),
            "V": -now["V"] + 0.1 * rng.normal(size=(16, 7))}
    now, prev = ({k: x.astype(np.float32) for k, x in p.items()} for p in (now, prev))
    got = jax.jit(D.weight_diagnostics)(now, prev)
    for k in ("W", "V"):
        x, y = now[k].astype(np.float64), prev[k].astype(np.float64)
        np.testing.assert_allclose(got[f"{k}_norm"], np.linalg.norm(x), rtol=1e-6)
        cos = np.sum(x * y) / np.linalg.norm(x) / np.linalg.norm(y)
        np.testing.assert_allclose(got[f"d{k}_cos_dist"], 1 - cos, rtol=1e-3)
    assert got["dW_cos_dist"] < 1e-7 and 1.9 < got["dV_cos_dist"] < 2
    zero = {"W": now["W"], "V": np.zeros_like(now["V"])}
    assert np.isnan(D.weight_diagnostics(zero, zero)["dV_cos_dist"])


# --- Fourier ---------------------------------------------------------------------------------


def theorem2_maxima(
    order: int, frequency: int | None = None, a: float = 1.0, b: float = 0.0, sign: int = 1
) -> tuple[np.ndarray, float]:
    """Theorem 2 / Corollary 2's local maximum of 𝓔 for σ(x) = x² on the full table of Z_M.

    Returns w* = [u; sign·Pu] / ‖·‖ (2M,) float64 with unit norm and its energy on all M² pairs:
    u_m = a·cos(kmω) + b·sin(kmω), ω = 2π/M, k = ``frequency`` in 1..⌊M/2⌋ ((a, b) ≠ 0), and
    for k = M/2 (even M; the default there, otherwise k = 1) u_m = (−1)^m. The energy is

        𝓔(w*) = M/4 for 0 < k < M/2 (a pair of complex irreps),  M/2 for k = M/2 (real irrep),

    independent of k, (a, b) and the sign. These are 4× the paper's M/16 and M/8: its proof
    (Eqn 21) writes S_ij = σ(u_i + v_j) as (u∘u)1ᵀ + 1(v∘v)ᵀ + uvᵀ, dropping the factor 2 of
    the cross term 2u_iv_j, so its constants hold for σ(x) = x²/2 (or ‖w‖² = ½) rather than for
    x² with ‖w‖ = 1. Derivation: on the full table (Ỹᵀσ(Xw))_c = 2[(u ⊛ v)_c − mean], so
    𝓔 = (2/M) Σ_{k≠0} |û_k|²|v̂_k|², maximised on the unit sphere by one conjugate pair with
    ‖u‖² = ‖v‖² = ½. Any v in u's frequency with ‖v‖ = ‖u‖ reaches the same 𝓔 (the phase of v
    is free; ±Pu is one choice), so these maxima are flat (Corollary 1).
    """
    k = (order // 2 if order % 2 == 0 else 1) if frequency is None else frequency
    if not 1 <= k <= order // 2:
        raise ValueError(f"frequency {k} outside 1..{order // 2}")
    m = np.arange(order)
    if 2 * k == order:
        u = np.where(m % 2 == 0, 1.0, -1.0)
    else:
        u = a * np.cos(2 * np.pi * k * m / order) + b * np.sin(2 * np.pi * k * m / order)
    w = np.concatenate([u, sign * u[(-m) % order]])
    return w / np.linalg.norm(w), order / 2 if 2 * k == order else order / 4


def fourier_node(order, k, a, b, sign):
    return theorem2_maxima(order, k, a, b, sign)[0]


@pytest.mark.parametrize("order", [11, 12])
def test_pure_frequency_nodes(order):
    nodes = [(k, a, b, s) for k in range(1, order // 2 + 1)
             for a, b in ((1.0, 0.0), (0.3, -1.2)) for s in (1, -1)]
    W = np.stack([fourier_node(order, *node) for node in nodes], axis=1)
    got = fourier(jnp.asarray(W, jnp.float32), order=order, num_ops=2)
    np.testing.assert_array_equal(got["dominant_frequency"], [k for k, *_ in nodes])
    np.testing.assert_allclose(got["dominant_power_fraction"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(got["spectral_entropy"], 0.0, atol=1e-4)
    np.testing.assert_allclose(got["symmetry"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(got["dc_fraction"], 0.0, atol=1e-6)
    assert np.all(np.asarray(got["memorization_top2"]) <= 4.0 / order + 1e-6)


@pytest.mark.parametrize("order", [11, 12])
def test_memorising_node(order):
    """Theorem 5's focused memorisation (e_g ⊕ e_h)/√2: flat spectrum, all mass on two entries."""
    W = np.zeros((2 * order, 3))
    for j, (g, h) in enumerate([(0, 0), (3, 5), (order - 1, 2)]):
        W[g, j] = W[order + h, j] = 1 / np.sqrt(2)
    got = fourier(jnp.asarray(W, jnp.float32), order=order, num_ops=2)
    np.testing.assert_allclose(got["memorization_top2"], 1.0, rtol=1e-6)
    assert np.all(np.asarray(got["spectral_entropy"]) > 0.98)
    assert np.all(np.asarray(got["dominant_power_fraction"]) < 2.5 / (order // 2))
    for j in range(3):
        want = reference_fourier(W[:, j], order, 2)
        np.testing.assert_allclose(got["spectral_entropy"][j], want["spectral_entropy"], 1e-5)
        np.testing.assert_allclose(got["symmetry"][j], want["symmetry"], atol=1e-6)


@pytest.mark.parametrize(("order", "num_ops"), [(13, 2), (10, 2), (7, 3)])
def test_fourier_stats_match_reference_on_random_nodes(order, num_ops):
    rng = np.random.default_rng(order)
    W = rng.normal(size=(num_ops * order, 12)) + 0.3
    W[:, 0] += 3 * np.tile(np.cos(4 * np.pi * np.arange(order) / order), num_ops)  # k = 2
    got = jax.tree.map(np.asarray, fourier(jnp.asarray(W, jnp.float32), order=order,
                                           num_ops=num_ops))
    for j in range(W.shape[1]):
        for key, want in reference_fourier(W[:, j], order, num_ops).items():
            np.testing.assert_allclose(got[key][j], want, rtol=1e-5, err_msg=key)
    if num_ops != 2:
        assert np.all(np.isnan(got["symmetry"]))


def test_vmapped_fourier_stats_equal_each_item():
    W = np.random.default_rng(4).normal(size=(2, 26, 5)).astype(np.float32)
    batched = jax.jit(jax.vmap(lambda w: D.node_fourier_stats(w, 13, 2)))(jnp.asarray(W))
    for i in range(2):
        for key, value in fourier(jnp.asarray(W[i]), order=13, num_ops=2).items():
            np.testing.assert_allclose(batched[key][i], value, rtol=1e-6, err_msg=key)


def test_frequency_coverage_summaries():
    order = 13
    nodes = [fourier_node(order, k, 1.0, 0.2, 1) for k in (1, 1, 4, 6)]
    rng = np.random.default_rng(8)
    nodes.append(0.3 * fourier_node(order, 5, 1.0, 0.0, -1) + 0.03 * rng.normal(size=2 * order))
    memo = np.zeros(2 * order)
    memo[[2, order + 7]] = 1.0
    W = jnp.asarray(np.stack([*nodes, memo, memo], axis=1), jnp.float32)
    dominated = jax.jit(D.frequency_dominated_fraction, static_argnums=(1, 2))
    covered = jax.jit(D.frequencies_covered, static_argnums=(1, 2))
    np.testing.assert_allclose(dominated(W, order, 2), 5 / 7)
    assert int(covered(W, order, 2)) == 4  # frequencies 1, 4, 5 and 6
    assert int(covered(W, order, 2, 1.1)) == 0
    shuffled = W[:, np.array([4, 5, 6, 4, 5, 6, 0])]  # frequencies 5 and 1
    batched = jax.vmap(lambda w: D.frequencies_covered(w, order, 2))(jnp.stack([W, shuffled]))
    np.testing.assert_array_equal(batched, [4, 2])
    assert float(dominated(W, order, 2, 0.0)) == 1.0


# --- energy (Theorem 1) and Theorem 2's maxima -----------------------------------------------


def full_table(order):
    a, b = np.divmod(np.arange(order * order), order)
    return np.stack([a, b], axis=1).astype(np.int32), ((a + b) % order).astype(np.int32)


def full_energy(W, order, activation="sqr"):
    inputs, labels = full_table(order)
    return np.asarray(energy(jnp.asarray(W, jnp.float32), jnp.asarray(inputs),
                             jnp.asarray(labels), jnp.ones(len(labels), bool), order=order,
                             activation=activation))


@pytest.mark.parametrize(("activation", "numpy_activation"),
                         [("sqr", np.square), ("relu", lambda h: np.maximum(h, 0.0))])
def test_node_energy_matches_reference_on_a_padded_subset(activation, numpy_activation):
    rng = np.random.default_rng(9)
    order, n, n_pad = 7, 30, 36
    inputs, labels = full_table(order)
    rows = rng.permutation(order * order)[:n]
    W = rng.normal(size=(2 * order, 10))
    pad_inputs = jnp.asarray(np.concatenate([inputs[rows], rng.integers(-5, 50, (n_pad - n, 2))]),
                             jnp.int32)
    pad_labels = jnp.asarray(np.concatenate([labels[rows], rng.integers(-5, 50, n_pad - n)]),
                             jnp.int32)
    got = energy(jnp.asarray(W, jnp.float32), pad_inputs, pad_labels, jnp.arange(n_pad) < n,
                 order=order, activation=activation)
    want = reference_energy(W, inputs[rows], labels[rows], order, numpy_activation)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    batched = jax.vmap(lambda w: D.node_energy(w, pad_inputs, pad_labels, np.arange(n_pad) < n,
                                               order, activation))(jnp.asarray([W, 2 * W[:, ::-1]]))
    np.testing.assert_allclose(batched, [got, got[::-1]], rtol=1e-5)


@pytest.mark.parametrize("order", [11, 23, 71])
def test_theorem2_odd_order_maxima(order):
    """Every frequency, several (a, b), both signs: 𝓔 = M/4 = 4·(the paper's M/16)."""
    maxima = [theorem2_maxima(order, k, a, b, s) for k in range(1, order // 2 + 1)
              for a, b in ((1.0, 0.0), (0.0, 2.0), (0.6, -0.8)) for s in (1, -1)]
    W = np.stack([w for w, _ in maxima], axis=1)
    got = full_energy(W, order)
    np.testing.assert_allclose(got, [e for _, e in maxima], rtol=2e-5)
    np.testing.assert_allclose(got, order / 4, rtol=2e-5)
    # The paper's constant is exact for σ(x) = x²/2, whose energy is a quarter of x²'s.
    inputs, labels = full_table(order)
    half_square = reference_energy(W[:, :4], inputs, labels, order, lambda h: h * h / 2)
    np.testing.assert_allclose(half_square, order / 16, rtol=1e-12)
    check_local_maximum(W[:, ::7], order)


@pytest.mark.parametrize("order", [10, 24])
def test_theorem2_even_order_maxima(order):
    """u ∝ (−1)^m: 𝓔 = M/2 (the paper's M/8, ×4); the other frequencies stay at M/4."""
    w, expected = theorem2_maxima(order)
    assert expected == order / 2
    alternating = np.where(np.arange(order) % 2, -1.0, 1.0)
    np.testing.assert_allclose(w[:order], alternating / np.sqrt(2 * order))
    others = [theorem2_maxima(order, k, 0.6, 0.8) for k in range(1, order // 2)]
    W = np.stack([w] + [v for v, _ in others], axis=1)
    got = full_energy(W, order)
    np.testing.assert_allclose(got, [expected] + [e for _, e in others], rtol=2e-5)
    np.testing.assert_allclose(got[1:], order / 4, rtol=2e-5)
    check_local_maximum(W[:, :3], order)


def check_local_maximum(maxima, order):
    """Random unit vectors lie below; perturbed maxima (on the sphere) do not rise above."""
    rng = np.random.default_rng(order)
    best = full_energy(maxima, order)
    assert full_energy(rng.normal(size=(2 * order, 40)), order).max() < 0.8 * best.min()
    for scale in (1e-2, 1e-1):
        steps = rng.normal(size=(*maxima.shape, 8))
        perturbed = maxima[:, :, None] + scale * steps / np.linalg.norm(steps, axis=0)
        got = full_energy(perturbed.reshape(2 * order, -1), order).reshape(-1, 8)
        assert np.all(got <= best[:, None] * (1 + 2e-6))
        assert np.all(got.min(axis=1) < best * (1 - scale**2 / 10))


def test_theorem2_energy_ignores_the_phase_of_v():
    """For x² the maximum is flat along the phase of v: symmetry < 1 at full energy."""
    order = 23
    u = theorem2_maxima(order, 3, 1.0, 0.0)[0][:order]
    shifted = np.roll(u[(-np.arange(order)) % order], 2)  # same frequency, another phase
    W = np.stack([np.concatenate([u, shifted])], axis=1)
    np.testing.assert_allclose(full_energy(W, order), order / 4, rtol=2e-5)
    assert fourier(jnp.asarray(W, jnp.float32), order=order, num_ops=2)["symmetry"][0] < 0.9


def test_fourier_summaries_count_active_nodes_only():
    """Nodes that weight decay shrank to ~0 have no meaningful direction and are not counted."""
    order, width = 11, 6
    m = np.arange(order)
    pure = [np.concatenate([np.cos(2 * np.pi * k * m / order)] * 2) for k in (1, 2, 3)]
    rng = np.random.default_rng(0)
    dead = [1e-6 * rng.normal(size=2 * order) for _ in range(width - 3)]
    W = jnp.asarray(np.stack(pure + dead, axis=1), jnp.float32)
    np.testing.assert_array_equal(D.active_nodes(W), [True] * 3 + [False] * 3)
    assert float(D.frequency_dominated_fraction(W, order, 2)) == 1.0
    assert int(D.frequencies_covered(W, order, 2)) == 3


def test_the_stage_measure_weighs_nodes_by_their_energy():
    """Three Fourier nodes of norm 2, three memorizing nodes of norm 1 and four single-frequency
    nodes that weight decay shrank to ~0: half the active nodes, 7 of 10 of all nodes (a shrunk
    node's direction counts too), and 12/15 of W's energy are frequency-dominated."""
    order = 11
    m = np.arange(order)
    fourier = [2 * fourier_node(order, k, 1.0, 0.0, 1) for k in (1, 2, 3)]
    memo = []
    for g in (0, 3, 5):
        node = np.zeros(2 * order)
        node[[g, order + (7 - g) % order]] = 1 / np.sqrt(2)
        memo.append(node)
    dead = [1e-6 * np.cos(2 * np.pi * 4 * np.concatenate([m, m]) / order) for _ in range(4)]
    W = jnp.asarray(np.stack(fourier + memo + dead, axis=1), jnp.float32)
    summary = D.fourier_summary(W, order, 2)
    np.testing.assert_allclose(summary["frequency_dominated_fraction"], 3 / 6, rtol=1e-6)
    np.testing.assert_allclose(summary["frequency_dominated_all"], 7 / 10, rtol=1e-6)
    np.testing.assert_allclose(summary["frequency_dominated_energy"], 12 / 15, rtol=1e-5)
