"""The learning rate near the boundary: generalized fraction per learning rate at each train
fraction (the paper's semi-grokking, Figs 6-7)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from grokjax.analysis.core import (
    Analysis,
    FitResult,
    condition_labels,
    precheck,
    split_usable,
    varying_config,
    with_wilson,
)
from grokjax.analysis.figures import fit_panels, panels
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GENERALIZED_TEXT


def lr_effect(runs: pd.DataFrame, level: float = 0.95) -> FitResult:
    """Generalized fraction vs learning rate at each fixed train_fraction (Wilson CIs)."""
    name = "lr_effect"
    early = precheck(name, runs, ("lr", "train_fraction", "generalized"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    if usable["lr"].nunique() < 2:
        return FitResult(name, "insufficient", "needs ≥ 2 learning rates", excluded=excluded)
    conditions = varying_config(usable, exclude=("lr", "train_fraction"))
    keys = [*conditions, "train_fraction", "lr"]
    cells = (usable.assign(generalized=usable["generalized"].astype(bool))
             .groupby(keys, dropna=False, sort=True)
             .agg(n=("generalized", "size"), n_generalized=("generalized", "sum"))
             .reset_index())
    cells = with_wilson(cells, level).assign(condition=condition_labels(cells, conditions))
    method = f"Wilson {level:.0%} intervals on each cell's generalized fraction"
    return FitResult(name, "ok", "", cells, pd.DataFrame(), len(usable), excluded, method)


def plot_lr_effect(lr: FitResult) -> Figure:
    """Generalized fraction vs learning rate, one line per train fraction (Wilson 95% CI)."""
    table, labels = fit_panels(lr, "learning-rate")
    figure, axes = panels(labels, width=6.0, height=4.4)
    for ax, label in zip(axes, labels, strict=True):
        panel = table[table["condition"] == label]
        for index, (fraction, cells) in enumerate(panel.groupby("train_fraction")):
            dodge = 1.03**index  # side by side, so overlapping intervals stay readable
            ax.errorbar(cells["lr"] * dodge, cells["fraction"],
                        yerr=[cells["fraction"] - cells["fraction_lo"],
                              cells["fraction_hi"] - cells["fraction"]],
                        marker="o", ms=4, capsize=2, label=f"p = {fraction:.3g}")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="learning rate (log scale)",
               ylabel=f"fraction generalized ({GENERALIZED_TEXT})")
        ax.legend(fontsize=8, title="train fraction", title_fontsize=8)
    figure.suptitle("Generalized fraction vs learning rate (Wilson 95% CI)")
    return figure


def lr_section(result: FitResult, level: float) -> list[str]:
    return [markdown_table(result.table, {
        "condition": "condition", "train_fraction": "train fraction", "lr": "lr", "n": "runs",
        "n_generalized": "generalized", "fraction": f"fraction [{level:.0%} Wilson CI]"},
        intervals=("fraction",))]


ANALYSES = (
    Analysis("lr_effect", "Learning rate near the boundary",
             lambda i: lr_effect(i.runs, level=i.level), lr_section,
             {"lr_effect": lambda r, *_: plot_lr_effect(r)}, varies=("lr",)),
)
