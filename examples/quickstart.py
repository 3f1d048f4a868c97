# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # grokjax quickstart: a weight-decay sweep from Python
#
# A jupytext notebook (percent format): open it in Jupyter with jupytext installed, convert it
# with `jupytext --to notebook examples/quickstart.py`, or run it as a script
# (`python examples/quickstart.py`). It trains 12 small networks on addition mod 11 in about
# ten seconds on a laptop CPU and writes them to `results/quickstart/`.

# %%
import pandas as pd

import grokjax

# %% [markdown]
# A sweep is a dict shaped like a sweep file (`sweeps/*.toml`): fixed fields and a grid whose
# Cartesian product is trained. It is validated exactly as a file is; a bad value raises
# `grokjax.errors.SpecError` with the message the command line prints. Keyword arguments are the
# command line's `--set`/`--grid`: `grokjax.run(sweep, K=128)` fixes K, `seed={"range": [1, 9]}`
# makes seed an axis. A sweep name (`grokjax.run("wd")`) or a TOML path works too.

# %%
sweep = {
    "sweep": {"name": "quickstart"},
    "fixed": {"group": "11", "K": 64, "lr": 0.01, "train_fraction": 0.7,
              "steps": 500, "eval_every": 10},
    "grid": {"weight_decay": [0.0, 2e-3, 5e-3, 1e-2], "seed": [1, 2, 3]},
}
res = grokjax.run(sweep)  # rerunning resumes: finished runs are read back, not trained
res

# %% [markdown]
# `res.runs` has one row per run: its config and what happened (`results/README.md` documents
# every column). A run *generalized* when its final test accuracy is ≥ 0.99;
# `step_test_acc_099` is its grokking step.

# %%
res.runs[["weight_decay", "seed", "final_train_acc", "final_test_acc", "generalized",
          "step_test_acc_099"]].head()

# %%
by_wd = res.runs.groupby("weight_decay").agg(
    generalized_fraction=("generalized", "mean"),
    median_grok_step=("step_test_acc_099", "median"))
print(by_wd)  # stronger weight decay groks sooner; none without it

# %% [markdown]
# `res.summary()` is the table `grokjax summary` prints: per weight decay the runs, the
# `generalized_fraction` of them (a share) and the `grokked_runs` (a count). The curves table
# has one row per (run, evaluated step); `curves_with_config()` joins each run's varying
# config onto it.

# %%
res.summary()

# %%
curves = res.curves_with_config()
curves.groupby(["weight_decay", "step"])["test_acc"].median().unstack(0).iloc[::10]

# %% [markdown]
# `res.fit()` runs every analysis of `grokjax fit`; those the sweep cannot support say what
# they need. Here the weight-decay law (the paper predicts t_grok ∝ 1/η, a slope of −1).

# %%
fits = res.fit(n_boot=200)
for name, result in fits.items():
    if result.usable:
        print(f"== {name} ({result.n_runs} runs): {result.message}")
        print(result.table.to_string(float_format=lambda v: f"{v:.3g}"))
    else:
        print(f"-- {name}: {result.message}")

# %% [markdown]
# Figures come back as matplotlib Figures that Jupyter shows as images (no `%matplotlib
# inline` needed); the command line's `grokjax plot` saves them.

# %%
figures = res.figures(fits)
figures["wd_speed"].savefig("wd_speed.png")
figures["wd_speed"]

# %% [markdown]
# `res.where(...)` keeps the runs with the given config values, as a pandas filter would
# (`--where FIELD=VALUE` on the command line): its tables, fits and figures cover those runs.
# Here the grokking step against weight decay, for the two strongest; a run that had not
# grokked when its training ended is drawn as "not within N steps", not as a failure.
# `figures(by=FIELD)` chooses the field a figure draws as colours.

# %%
res.where(weight_decay=[5e-3, 1e-2]).figures()["grokking_time"]

# %% [markdown]
# A results directory, local or on `gs://` / `s3://`, reads back with `grokjax.load`, with its
# provenance (versions, device, git commit, the sweep as run).

# %%
again = grokjax.load("results/quickstart")
pd.testing.assert_frame_equal(again.runs, res.runs)
print(again.provenance["backend"], again.provenance["versions"]["jax"])
print(again.provenance["sweep_toml"])
