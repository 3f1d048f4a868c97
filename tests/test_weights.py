"""Kept weights: declared like every field, written and verified as parts, resumed after
kill -9, read back to the bit, and loaded by the paper's PyTorch model."""

import subprocess

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pandas as pd
import pytest
from helpers import TINY_SWEEP, write_sweep
from test_scale import SUBPROCESS_TIMEOUT, check, cli_command, kill_when, subprocess_env

import grokjax
from grokjax import cli, config, dataset, groups, model, outdir, spec, storage, sweep

# 10 runs of Z_7 (40 steps, evaluated every 5): parameters kept at steps 0, 20 (every 4th
# evaluation), 5 and at the end; one run, a twin of a float32 one, in bfloat16.
WEIGHTS_SWEEP = TINY_SWEEP.replace('name = "tiny"', 'name = "weights"').replace(
    "[grid]", "keep_weights_every = 4\nkeep_weights_at = [5]\n\n[[grid]]\n"
              'keep_weights = ["float32"]') + """
[[grid]]
keep_weights = ["bfloat16"]
weight_decay = [1e-3]
seed = [1]
"""


def problems(text: str) -> str:
    with pytest.raises(spec.SpecError) as err:
        spec.parse(text)
    return str(err.value)


@pytest.mark.parametrize("old, new, expected", [
    ('keep_weights = ["float32"]', 'keep_weights = ["bf16"]',
     "keep_weights = 'bf16' is not available; did you mean 'bfloat16'? choose one of none, "
     "float32, bfloat16"),
    ("keep_weights_at = [5]", "keep_weights_at = [7]",
     "keep_weights_at: [7] are not evaluated steps; use multiples of eval_every = 5 up to "
     "steps = 40"),
    ("keep_weights_at = [5]", "keep_weights_at = [50]",
     "keep_weights_at: [50] are not evaluated steps"),
    ("keep_weights_at = [5]", "keep_weights_at = [-5]", "keep_weights_at = [-5] must be >= 0"),
    ("keep_weights_at = [5]", "keep_weights_at = 5",
     "keep_weights_at must be a list of integers, got 5"),
    ("keep_weights_every = 4", "keep_weigths_every = 4",
     "unknown key 'keep_weigths_every'; did you mean 'keep_weights_every'?"),
    ('keep_weights = ["float32"]', 'keep_weights = ["none"]',
     "they need keep_weights = 'float32' or 'bfloat16'"),
])
def test_bad_weight_fields_are_reported_before_any_compute(old, new, expected):
    assert expected in problems(WEIGHTS_SWEEP.replace(old, new))


def test_run_ids_change_only_when_weights_are_kept():
    default = config.RunConfig()
    assert config.run_id(default) == "a74be6fadc715493"  # as before the fields existed
    kept = config.RunConfig(keep_weights="float32")
    assert config.run_id(kept) != config.run_id(default)
    # A list of steps is a set: its order and repeats change nothing.
    assert config.RunConfig(keep_weights="float32", keep_weights_at=[20, 0, 20]) == \
        config.RunConfig(keep_weights="float32", keep_weights_at=(0, 20))


def test_steps_to_keep_from_the_command_line(tmp_path):
    path = write_sweep(tmp_path, TINY_SWEEP)
    args = cli.build_parser().parse_args(["plan", str(path), "--set", "keep_weights=float32",
                                          "--set", "keep_weights_at=20,0"])
    loaded = cli.load_spec(args)
    assert loaded.fixed["keep_weights_at"] == (0, 20)
    assert loaded.output_name == "tiny+keep_weights-float32+keep_weights_at-20,0"
    assert spec.parse(loaded.source_text).runs() == loaded.runs()  # _sweep.toml re-parses


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "weights"
    sweep.run_sweep(spec.parse(WEIGHTS_SWEEP), out_dir=out, progress=False)
    return grokjax.load(out)


def test_weights_are_kept_at_the_chosen_steps_and_the_end(kept):
    assert kept.manifest["runs"] == 10
    table = pd.read_parquet(kept.directory / "weights")  # one table, as the others
    assert set(table["run_id"]) == set(kept.runs["run_id"])
    for run_id in kept.runs["run_id"]:
        assert kept.weight_steps(run_id) == [0, 5, 20, 40]
        params = kept.weights(run_id)
        assert {name: a.shape for name, a in params.items()} == {"W": (14, 16), "V": (16, 7)}
        assert all(a.dtype == np.float32 for a in params.values())
    assert list(kept.runs["keep_weights_at"].unique()) == ["5"]
    with pytest.raises(spec.SpecError, match=r"kept its weights at steps \[0, 5, 20, 40\], not "
                                             r"at 10"):
        kept.weights(kept.runs["run_id"].iloc[0], step=10)


def test_step_zero_is_the_initialisation(kept):
    run = kept.runs.iloc[0]
    init = model.init_params(jax.random.PRNGKey(int(run["seed"])), 2, 7, 16, 0, jnp.float32(1.0))
    for name, array in kept.weights(run["run_id"], step=0).items():
        np.testing.assert_array_equal(array, np.asarray(init[name]))


def test_the_kept_weights_give_the_curves_to_the_bit(kept):
    """The training's own evaluation of the stored parameters reproduces the curves at every
    kept step exactly; the logits of Results.model give its accuracies and, a loss computed
    apart, its losses up to the last bit."""
    curves = kept.curves.set_index(["run_id", "step"])
    inputs, labels = dataset.operation_table(groups.parse_group("7"), 2)
    for _, run in kept.runs[kept.runs["keep_weights"] == "float32"].iterrows():
        for step in kept.weight_steps(run["run_id"]):
            measured = curves.loc[(run["run_id"], step)]
            again = kept.evaluate(run["run_id"], step)
            for metric in ("train_loss", "test_loss", "train_acc", "test_acc"):
                assert again[metric] == np.float32(measured[metric]), (run["run_id"], step)
        train_rows, _ = dataset.split(49, run["test_size"], int(run["seed"]))
        is_train = np.zeros(49, bool)
        is_train[train_rows] = True
        logits = kept.model(run["run_id"])(inputs)
        final = curves.loc[(run["run_id"], 40)]
        loss = model.mean_loss("mse", jnp.asarray(logits), jnp.asarray(labels), is_train)
        np.testing.assert_allclose(float(loss), final["train_loss"], rtol=1e-6)
        correct = logits.argmax(axis=1) == labels
        assert correct[is_train].mean() == final["train_acc"]


def test_bfloat16_weights_are_the_float32_ones_rounded(kept):
    runs = kept.runs[(kept.runs["weight_decay"] == 1e-3) & (kept.runs["seed"] == 1)]
    twin = dict(zip(runs["keep_weights"], runs["run_id"], strict=True))
    for step in (0, 20, 40):
        full, half = (kept.weights(twin[k], step) for k in ("float32", "bfloat16"))
        for name in full:
            np.testing.assert_array_equal(
                half[name], full[name].astype(ml_dtypes.bfloat16).astype(np.float32))
    table = pd.read_parquet(kept.directory / "weights")
    stored = table["data"].map(len).groupby(table["run_id"]).sum()
    assert stored[twin["float32"]] == 2 * stored[twin["bfloat16"]]


def test_a_run_without_weights_says_how_to_keep_them(tmp_path):
    res = grokjax.run(spec.tomllib.loads(TINY_SWEEP), results=tmp_path, progress=False, seed=0,
                      weight_decay=0.0)
    with pytest.raises(spec.SpecError, match="kept no weights.*keep_weights = 'float32'"):
        res.weights(res.runs["run_id"].iloc[0])


# The resume sweep of test_scale, its final parameters kept: runs long enough to kill mid-way.
RESUME_WEIGHTS = TINY_SWEEP.replace('name = "tiny"', 'name = "resume"').replace(
    "steps = 40\neval_every = 5", 'steps = 8000\neval_every = 200\nkeep_weights = "float32"'
).replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 3, 4, 5, 6, 7]")


def test_weights_survive_kill_9_without_duplicates_or_losses(tmp_path):
    path = write_sweep(tmp_path, RESUME_WEIGHTS)
    out = tmp_path / "killed"
    command = cli_command("sweep", str(path), "--out", str(out), "--no-progress")
    kill_when(command, subprocess_env(), lambda: outdir.part_names(out, "runs"))
    first = outdir.part_names(out, "runs")[0]
    before = len(outdir.read_table(out, "runs"))
    assert 1 <= before < 24
    # The kill may also leave a weights part without its runs part; and a damaged weights part
    # must not be trusted: its whole part is set aside and its runs trained again.
    damaged = outdir.part_path(out, "weights", first)
    damaged.write_bytes(damaged.read_bytes()[:-100])
    stdout = check(subprocess.run(command, capture_output=True, text=True,
                                  timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    assert "runs trained" in stdout
    assert (out / outdir.DAMAGED_DIR / damaged.name).exists()
    res = grokjax.load(out)
    table = outdir.read_table(out, "weights")
    assert len(res.runs) == 24 and res.runs["run_id"].is_unique
    names = table.groupby("run_id")["name"].apply(sorted)  # W and V of each run, once
    assert sorted(names.index) == sorted(res.runs["run_id"])
    assert all(kept == ["V", "W"] for kept in names)
    curves = res.curves.set_index(["run_id", "step"])
    for _, run in res.runs.iterrows():
        step = int(run["steps_trained"])
        assert res.weight_steps(run["run_id"]) == [step]
        assert res.evaluate(run["run_id"])["train_loss"] == np.float32(
            curves.loc[(run["run_id"], step), "train_loss"])


# One run of each variant whose parameters the paper's network names differently.
TORCH_SWEEP = """
[fixed]
group = "7"
K = 8
steps = 20
eval_every = 10
keep_weights = "float32"
lr = 0.02

[[grid]]
other_layers = [0, 1]

[[grid]]
embed_trainable = [true]
output_multiplier = [2.0]

[[grid]]
complex_weights = [true]
imag_init_scale = [0.5]
"""


def paper_network(constructor: dict):
    """The paper code's ModularAdditionNN, as its parameters and forward pass are described
    (paper-notes §1.3): a frozen identity (or trained) embedding of each operand, concatenated,
    W, σ, residual layers x ← σ(x + U x), V; complex weights on a complex embedding."""
    import torch
    from torch import nn

    class ModularAdditionNN(nn.Module):
        def __init__(self, M, num_of_ops, hidden_size, activation, embed_trainable,
                     other_layers, use_complex_weights):
            super().__init__()
            self.embedding = nn.Embedding(M, M).requires_grad_(embed_trainable)
            self.W = nn.Linear(num_of_ops * M, hidden_size, bias=False)
            self.other_layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size, bias=False)
                                              for _ in range(other_layers))
            self.V = nn.Linear(hidden_size, M, bias=False)
            if use_complex_weights:
                self.W.weight.data = self.W.weight.data.to(torch.cfloat)
                self.V.weight.data = self.V.weight.data.to(torch.cfloat)
            self.complex, self.num_of_ops = use_complex_weights, num_of_ops
            self.act = {"sqr": torch.square, "relu": torch.relu}[activation]

        def forward(self, x):
            x = torch.cat([self.embedding(x[:, i]) for i in range(self.num_of_ops)], dim=1)
            x = self.act(self.W(x.to(torch.cfloat) if self.complex else x))
            for layer in self.other_layers:
                x = self.act(x + layer(x))
            return self.V(x)

    return ModularAdditionNN(**constructor)


def test_the_paper_network_loads_the_exported_state_dict_and_gives_the_same_logits(tmp_path):
    torch = pytest.importorskip("torch", reason="the PyTorch export needs torch (pip install "
                                                "torch; not a dependency of grokjax)")
    res = grokjax.run(spec.tomllib.loads(TORCH_SWEEP), results=tmp_path / "results",
                      progress=False)
    out = tmp_path / "torch"
    assert cli.main(["export", "torch", str(res.directory), str(out)]) == 0
    inputs, _ = dataset.operation_table(groups.parse_group("7"), 2)
    for _, run in res.runs.iterrows():
        state = res.torch_state_dict(run["run_id"])
        assert state["W.weight"].shape == (8, 14) and state["V.weight"].shape == (7, 8)
        checkpoint = torch.load(out / run["run_id"] / "model00020.pt", weights_only=False)
        network = paper_network(checkpoint["constructor"])
        network.load_state_dict(checkpoint["model"])  # strict: every name and shape
        with torch.no_grad():
            output = network(torch.from_numpy(inputs).long()) * checkpoint["output_multiplier"]
        np.testing.assert_allclose(output.real.numpy(), res.model(run["run_id"])(inputs),
                                   rtol=1e-5, atol=1e-6)
        assert checkpoint["step"] == 20 and checkpoint["run"]["run_id"] == run["run_id"]
        for name, tensor in state.items():
            torch.testing.assert_close(checkpoint["model"][name], tensor, rtol=0, atol=0)


def test_weights_versions_and_overwrite_in_a_bucket(storage_root):
    """A bucket behaves as a local directory: weights read back by ranged reads, a grown sweep
    keeps its earlier version, --overwrite moves every object aside."""
    sweep_dict = spec.tomllib.loads(TINY_SWEEP)
    one = dict(seed=0, weight_decay=0.0, keep_weights="float32")
    first = grokjax.run(sweep_dict, results=storage_root, progress=False, **one)
    (run_id,) = first.runs["run_id"]
    final = first.curves[first.curves["run_id"] == run_id].iloc[-1]
    assert first.weight_steps(run_id) == [40]
    assert first.evaluate(run_id)["train_loss"] == np.float32(final["train_loss"])
    directory = str(first.directory)
    grown = grokjax.run({**sweep_dict, "fixed": {**sweep_dict["fixed"], "lr": 0.02}},
                        results=storage_root, progress=False, **one)
    assert str(grown.directory) == directory and list(grown.earlier["run_id"]) == [run_id]
    assert grown.weights(grown.runs["run_id"].iloc[0])["W"].shape == (14, 16)
    replaced = grokjax.run(sweep_dict, results=storage_root, progress=False, overwrite=True,
                           **one)
    assert list(replaced.runs["run_id"]) == [run_id] and replaced.earlier.empty
    (aside,) = storage.listdir(f"{directory}/_replaced")
    assert len(storage.listdir(f"{directory}/_replaced/{aside}/weights")) == 2
