"""The pure training function: vmapped == alone, no recompiles, divergence isolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax import dataset, groups, model, train
from grokjax.optim import OPTIMIZERS
from grokjax.train import HParams, Split, Static, Task, make_train

STATIC = Static(order=7, num_ops=2, width=16, activation="sqr", loss="mse", optimizer="adam",
                steps=30, eval_every=5)


def task_for(static: Static) -> Task:
    return Task(*map(jnp.asarray, dataset.operation_table(groups.parse_group(str(static.order)),
                                                       static.num_ops)))


def split_for(num_rows: int, test_size: float, seed: int, pad_to: int) -> Split:
    """A split of STATIC's table (num_rows = 49), padded to ``pad_to`` train rows."""
    train_idx, _ = dataset.split(num_rows, test_size, seed)
    return jax.tree.map(jnp.asarray, train.split_for(task_for(STATIC), train_idx, pad_to))


def hparams(lr=0.01, wd=1e-3, ridge=0.0, top=1.0, out=1.0, imag=0.0) -> HParams:
    return HParams(*(jnp.float32(v) for v in (lr, wd, ridge, top, out, imag)))


def stack(items):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *items)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "muon"])
def test_vmapped_grid_equals_each_run_alone(optimizer):
    static = Static(**{**STATIC.__dict__, "optimizer": optimizer})
    fns = make_train(static)
    task = task_for(static)
    # Different seeds, learning rates, weight decays and train fractions in one batch; the padded
    # train-row length is the largest n_train, so the smaller splits carry padding.
    settings = [(0, 0.01, 0.0, 0.3), (1, 0.005, 1e-3, 0.5), (2, 0.02, 1e-2, 0.7)]
    pad = max(dataset.split_sizes(49, ts)[0] for *_, ts in settings)
    hps = [hparams(lr=lr, wd=wd) for _, lr, wd, _ in settings]
    splits = [split_for(49, ts, seed, pad) for seed, *_, ts in settings]
    keys = [jax.random.PRNGKey(seed) for seed, *_ in settings]
    batched = jax.jit(jax.vmap(fns.train, in_axes=(0, 0, 0, None)))(
        stack(hps), stack(splits), stack(keys), task)
    for i in range(len(settings)):
        alone = jax.jit(fns.train)(hps[i], splits[i], keys[i], task)
        for name, curve in alone.metrics.items():
            np.testing.assert_allclose(batched.metrics[name][i], curve, rtol=2e-6,
                                       atol=1e-7, err_msg=f"run {i} {name}")


@pytest.mark.parametrize("loss", ["mse", "nll"])
def test_the_tpu_layout_is_the_same_model_up_to_float32_rounding(loss):
    """make_train(onehot=True), the TPU's layout (one-hot matmul first layer, masked-sum target
    logit), vmapped as a TPU runs it but here on CPU: the first evaluation equals the CPU
    layout's bitwise (each output sums the same entries of W), and later ones differ by float32
    rounding only, since dW is summed in another order than the gather's scatter-add."""
    static = Static(**{**STATIC.__dict__, "loss": loss})
    task = task_for(static)
    settings = [(0, 0.01, 0.0, 0.3), (1, 0.005, 1e-3, 0.5)]
    pad = max(dataset.split_sizes(49, ts)[0] for *_, ts in settings)
    hps = stack([hparams(lr=lr, wd=wd) for _, lr, wd, _ in settings])
    splits = stack([split_for(49, ts, seed, pad) for seed, *_, ts in settings])
    keys = stack([jax.random.PRNGKey(seed) for seed, *_ in settings])
    tpu, cpu = (jax.jit(jax.vmap(make_train(static, onehot).train, in_axes=(0, 0, 0, None)))(
        hps, splits, keys, task).metrics for onehot in (True, False))
    for name, curve in cpu.items():
        np.testing.assert_array_equal(tpu[name][:, 0], curve[:, 0], err_msg=name)
        np.testing.assert_allclose(tpu[name], curve, rtol=1e-4, atol=1e-6, err_msg=name)


def test_unpadded_split_equals_padded():
    """Padding the train rows (to batch runs of different n_train) does not change a run."""
    fns = make_train(STATIC)
    task = task_for(STATIC)
    n_train = dataset.split_sizes(49, 0.5)[0]
    tight, padded = split_for(49, 0.5, 3, n_train), split_for(49, 0.5, 3, n_train + 11)
    run = jax.jit(fns.train)
    a = run(hparams(), tight, jax.random.PRNGKey(3), task).metrics
    b = run(hparams(), padded, jax.random.PRNGKey(3), task).metrics
    for x, y in zip(a.values(), b.values(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_new_hyperparameter_values_do_not_recompile():
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(kwargs)

    fns = make_train(STATIC)
    task = task_for(STATIC)
    split = split_for(49, 0.5, 0, 35)
    train = jax.jit(fns.train)
    train(hparams(lr=0.01, wd=0.0), split, jax.random.PRNGKey(0), task)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for lr, wd, out in [(0.02, 1e-3, 2.0), (0.005, 5e-4, 0.5)]:
            other_split = split_for(49, 0.3, 7, 35)
            train(hparams(lr=lr, wd=wd, out=out), other_split, jax.random.PRNGKey(9), task)
        assert compiles == []
        # Control: a new shape (a longer padded train set) does compile, so the listener works.
        train(hparams(), split_for(49, 0.5, 0, 36), jax.random.PRNGKey(0), task)
        assert compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_diverging_run_is_isolated_and_frozen():
    fns = make_train(STATIC)
    task = task_for(STATIC)
    split = split_for(49, 0.5, 0, 25)
    key = jax.random.PRNGKey(0)
    batch = jax.jit(jax.vmap(fns.train, in_axes=(0, None, None, None)))
    sane = batch(stack([hparams(lr=0.01), hparams(lr=0.02)]), split, key, task)
    mixed = batch(stack([hparams(lr=0.01), hparams(lr=1e30)]), split, key, task)
    np.testing.assert_array_equal(mixed.metrics["train_loss"][0], sane.metrics["train_loss"][0])
    diverged_step = int(mixed.state.diverged_step[1])
    assert 0 <= diverged_step < STATIC.steps
    assert int(mixed.state.diverged_step[0]) == -1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(mixed.state.params))
    # Nothing after a divergence is measured: the first evaluation after it is NaN and ends the
    # run (its later points are idle, step -1).
    first_after = diverged_step // STATIC.eval_every + 1
    assert np.isnan(mixed.metrics["train_loss"][1][first_after:]).all()
    assert bool(mixed.state.done[1]) and int(mixed.metrics["step"][1][first_after]) == \
        first_after * STATIC.eval_every
    assert (np.asarray(mixed.metrics["step"][1][first_after + 1:]) == -1).all()


def test_ridge_top_layer_solves_least_squares():
    """The ridge solution equals (FᵀF + λI)⁻¹FᵀY from the normal equations (float64 check)."""
    from grokjax.train import ridge_top_layer

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 12)).astype(np.float32)
    targets = rng.normal(size=(40, 5)).astype(np.float32)
    lam = 0.3
    expected = np.linalg.solve(features.T.astype(np.float64) @ features + lam * np.eye(12),
                               features.T.astype(np.float64) @ targets)
    np.testing.assert_allclose(ridge_top_layer(features, targets, lam), expected, rtol=1e-4,
                               atol=1e-5)


def run_variant(**changes):
    hp_changes = {k: changes.pop(k) for k in ("imag",) if k in changes}
    static = Static(**{**STATIC.__dict__, "steps": 40, **changes})
    split = split_for(49, 0.3, 0, 35)
    return jax.jit(make_train(static).train)(hparams(**hp_changes), split,
                                             jax.random.PRNGKey(0), task_for(static))


@pytest.mark.parametrize("field, names", [
    ("activation", list(model.ACTIVATIONS)),
    ("loss", list(model.LOSSES)),
    ("optimizer", list(OPTIMIZERS)),
])
def test_every_listed_name_trains(field, names):
    """Each activation, loss and optimizer that `grokjax list` offers lowers its training loss."""
    for name in names:
        curves = run_variant(**{field: name}).metrics
        assert np.isfinite(curves["train_loss"]).all(), name
        assert curves["train_loss"][-1] < curves["train_loss"][0], name


def test_centred_loss_is_the_papers_eqn_1_per_sample():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=10)
    member = np.arange(10) < 8
    residual = np.eye(7)[labels[:8]] - logits[:8]
    centred = residual - residual.mean(axis=0)
    expected = 0.5 * np.sum(centred**2) / 8
    got = model.mean_loss("centred", jnp.asarray(logits), jnp.asarray(labels),
                          jnp.asarray(member))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_complex_weights_with_the_codes_real_cast_stay_real():
    """Casting real weights to complex (imag_init_scale = 0, as the paper's code does) leaves the
    imaginary parts at exactly zero, so training equals the real model; a non-zero imaginary
    init gives a genuinely different trajectory (paper-notes §6.3)."""
    real = run_variant()
    cast = run_variant(complex_weights=True)
    assert not np.any(cast.state.params["W_imag"]) and not np.any(cast.state.params["V_imag"])
    np.testing.assert_allclose(cast.metrics["train_loss"], real.metrics["train_loss"], rtol=1e-5)
    genuine = run_variant(complex_weights=True, imag=1.0)
    assert np.any(genuine.state.params["W_imag"])
    assert not np.allclose(genuine.metrics["train_loss"], real.metrics["train_loss"], rtol=1e-3)


def test_trainable_embedding_starts_as_the_one_hot_model_and_moves():
    frozen, trained = run_variant(), run_variant(embed_trainable=True)
    assert frozen.metrics["train_loss"][0] == trained.metrics["train_loss"][0]
    assert not np.allclose(trained.state.params["E"], np.eye(7))


def test_tf32_on_cpu_is_float32_and_bf16_rounds_operands_but_keeps_float32_state():
    """``tf32`` is the backend's float32 default: on XLA:CPU that is full float32, so it equals
    ``highest`` bitwise here (on an NVIDIA GPU it would be TF32). ``bf16`` rounds each matmul's
    operands to bfloat16 (8 mantissa bits), so its numbers differ from the first evaluation on,
    yet early curves stay close; its parameters and optimizer moments remain float32."""
    highest, tf32 = run_variant(), run_variant(precision="tf32")
    for name, curve in highest.metrics.items():
        np.testing.assert_array_equal(tf32.metrics[name], curve, err_msg=name)
    for variant in ({}, {"other_layers": 1}, {"embed_trainable": True}):
        full, bf16 = run_variant(**variant), run_variant(precision="bf16", **variant)
        assert not np.array_equal(bf16.metrics["train_loss"], full.metrics["train_loss"])
        # bfloat16 keeps ~3 significant digits: losses agree to a few per cent early on.
        np.testing.assert_allclose(bf16.metrics["train_loss"][:3], full.metrics["train_loss"][:3],
                                   rtol=0.05, err_msg=str(variant))
        dtypes = {leaf.dtype for leaf in jax.tree.leaves((bf16.state.params,
                                                          bf16.state.opt_state))}
        assert jnp.bfloat16 not in dtypes, variant


def test_bf16_matmul_rounds_operands_and_accumulates_in_float32():
    a = jnp.asarray([[1.0 + 2.0**-10, 1.0]], jnp.float32)  # 1 + 2^-10 rounds to 1 in bf16
    b = jnp.ones((2, 1), jnp.float32) * 3.0
    assert model.matmul(a, b, "highest")[0, 0] == 3.0 * (2.0 + 2.0**-10)
    out = model.matmul(a, b, "bf16")
    assert out.dtype == jnp.float32 and out[0, 0] == 6.0
    # Accumulation in float32: a sum that bfloat16 could not hold (2^9 + 1) is exact.
    many = jnp.ones((1, 513), jnp.float32)
    assert model.matmul(many, jnp.ones((513, 1)), "bf16")[0, 0] == 513.0
