"""Exact parity with the paper's PyTorch code (vectors in tests/data/parity, see its README).

Tolerances (from the vectors' README, measured between two independent re-implementations):
losses rtol 1e-5 for epochs 0-19 (float32 summation-order noise is ~1e-6 relative there);
rtol 1e-4 / atol 1e-5 for epochs 20-49, where the dynamics have amplified that noise;
accuracies within one sample through epoch 49. Later epochs drift chaotically for the memorising
sqr/mse runs (p01, p04), so they get the per-run bounds the README reports.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax import dataset, groups
from grokjax.train import HParams, Static, Task, make_train, split_for

PARITY = Path(__file__).parent / "data" / "parity"
FILES = sorted(PARITY.glob("p*.npz"))
# Epochs >= 50, per run, as the README reports them: relative tolerance on losses (None: the run
# drifts chaotically and only its end state is compared) and the largest test-accuracy gap
# (the chaotic p01/p04 differ by a few test samples, up to 0.027 in the README's comparison;
# the others track within one sample).
LATE_RTOL = {"p01": None, "p02": 1e-4, "p03": 1e-5, "p04": None, "p05": 1e-5, "p06": 6e-4}
LATE_TEST_ACC_GAP = {"p01": 0.03, "p04": 0.03}
ACC_EPS = 1e-6  # accuracies are count/n computed in float32


def load(path):
    z = np.load(path)
    return z, json.loads(str(z["config_json"]))


def static_for(cfg, diagnostics: bool = False) -> Static:
    return Static(
        order=cfg["group_order"], num_ops=cfg["num_of_ops"], width=cfg["hidden_size"],
        activation=cfg["activation"], loss=cfg["loss_func"], optimizer=cfg["optim"],
        steps=cfg["num_epochs"], eval_every=1, other_layers=cfg["other_layers"],
        ridge=cfg["set_weight_reg"] is not None, diagnostics=diagnostics,
        fourier=diagnostics and cfg["M"].isdigit(),
    )


def run_reference(z, cfg, diagnostics: bool = False, onehot: bool = False):
    static = static_for(cfg, diagnostics)
    fns = make_train(static, onehot)
    hp = HParams(*(jnp.float32(v) for v in (
        cfg["learning_rate"], cfg["weight_decay"], cfg["set_weight_reg"] or 0.0,
        cfg["top_layer_init_multiplier"], cfg["output_multiplier"], 0.0)))
    task = Task(jnp.asarray(z["inputs"]), jnp.asarray(z["labels"]))
    split = split_for(task, z["train_idx"], len(z["train_idx"]))
    params = {"W": jnp.asarray(z["W0"]), "V": jnp.asarray(z["V0"])}
    if cfg["other_layers"]:
        params["U"] = jnp.asarray(z["U0"])

    @jax.jit
    def run(params, hp, split, task):
        state = fns.init_from_params(params, hp)
        return fns.segment(state, hp, split, jax.random.PRNGKey(0), False, task,
                           static.num_evals)

    state, metrics, _ = run(params, hp, split, task)
    return {k: np.asarray(v, np.float64) for k, v in metrics.items()}, state


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_dataset_and_split_match_reference(path):
    z, cfg = load(path)
    group = groups.parse_group(cfg["M"])
    table = dataset.operation_table(group, cfg["num_of_ops"])
    np.testing.assert_array_equal(table.inputs, z["inputs"])
    np.testing.assert_array_equal(table.labels, z["labels"])
    train_idx, test_idx = dataset.split(len(table.labels), cfg["test_size_used"], cfg["seed"])
    np.testing.assert_array_equal(train_idx, z["train_idx"])
    np.testing.assert_array_equal(test_idx, z["test_idx"])


@pytest.mark.parametrize("onehot", [False, True], ids=["gather", "tpu-onehot"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_curves_match_reference(path, onehot):
    """Both first layers: the gather (CPU, GPU) and the TPU's one-hot matmul, here on CPU, where
    it sums dW in another order than the gather's scatter-add (float32 rounding)."""
    z, cfg = load(path)
    curves, state = run_reference(z, cfg, onehot=onehot)
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(curves[key][:20], z[key][:20], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(curves[key][20:50], z[key][20:50], rtol=1e-4, atol=1e-5,
                                   err_msg=key)
        late = LATE_RTOL[path.stem]
        if late is not None:
            np.testing.assert_allclose(curves[key], z[key], rtol=late, atol=1e-6, err_msg=key)
    sizes = {"train_acc": len(z["train_idx"]), "test_acc": len(z["test_idx"])}
    for key, size in sizes.items():
        assert np.abs(curves[key][:50] - z[key][:50]).max() <= 1.0 / size + ACC_EPS, key
    late_gap = LATE_TEST_ACC_GAP.get(path.stem, 1.0 / sizes["test_acc"])
    assert np.abs(curves["test_acc"] - z["test_acc"]).max() <= late_gap + ACC_EPS
    # End state: same final train accuracy and same order of magnitude of test loss.
    assert abs(curves["train_acc"][-1] - z["train_acc"][-1]) < ACC_EPS
    ratio = curves["test_loss"][-1] / z["test_loss"][-1]
    assert 0.5 < ratio < 2.0
    assert int(state.diverged_step) == -1


DIAGNOSTICS = ("dF_norm", "FtF_diag_avg", "FtF_off_diag_avg", "FFt_dist_from_ideal")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_diagnostic_curves_match_reference(path):
    """The reference code's per-epoch diagnostics, over the first 50 epochs, within 1e-3."""
    z, cfg = load(path)
    curves, _ = run_reference(z, cfg, diagnostics=True)
    for key in DIAGNOSTICS:
        np.testing.assert_allclose(curves[key][:50], z[key][:50], rtol=1e-3, err_msg=key)
    # Diagnostics are measurements only: the trajectory is the one without them.
    plain, _ = run_reference(z, cfg)
    np.testing.assert_array_equal(curves["train_loss"], plain["train_loss"])
