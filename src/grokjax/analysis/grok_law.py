"""One law for when a run groks: the delay between memorizing and grokking,

    t_grok − t_mem = A · (lr·η)^−a · (p/p* − 1)^−ν,

fitted per optimizer over groups, train fractions p, learning rates and weight decays η, with
each group's boundary p* a parameter: the train fraction below which the run never groks,
however long it trains. Grok steps are known to one evaluation interval and runs that end first
are right-censored (``survival.threshold_censored_lognormal``), never counted as failures. With
p* fitted, the law extrapolates the boundary to unlimited steps, and says where the boundary of
a finite step budget sits above it.

The paper proves no grokking-time law (§10); its §7 argues t ~ 1/η because weight decay sets
the size of the gradient that reaches the hidden layer (G_F ∝ η, Lemma 1), so at a fixed step
size plain gradient descent learns features at a rate ∝ lr·η. Adam divides the gradient's
scale out, so the argument does not carry over to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax import stats, survival
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    as_float,
    condition_labels,
    exclusions,
    law_row,
    laws_frame,
    overall,
    precheck,
    split_usable,
    varying_config,
)
from grokjax.analysis.figures import NotebookFigure, PlotSkipped, fit_panels, interval_text
from grokjax.analysis.markdown import markdown_table
from grokjax.schema import GROKKED_COLUMN, GROKKED_TEXT, MEMORIZED_COLUMN

PREDICTED_A = 1.0  # t ~ 1/η at a fixed step size (§7): features learn at a rate ∝ lr·η
LAW_A = "exponent a of lr·η in t_grok − t_mem"
LAW_ETA = "exponent a_η of η, lr's apart (free form)"
LAW_PRODUCT = "a_η − a_lr: η's exponent beyond lr's"
ADAM_LIKE = ("adam", "adamw")  # optimizers that normalise the gradient's scale away
AXES = ("group", "train_fraction", "lr", "weight_decay")  # what the law spans


def _delays(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run's delay T = t_grok − t_mem as an interval (lower, upper]: both steps are known
    to one evaluation, so T to ± one; a run that ended before grokking waits beyond its last
    step. The runs left out (with why): η = 0 or never memorized."""
    every = runs["eval_every"].to_numpy(float)
    memorized = as_float(runs[MEMORIZED_COLUMN])
    grokked = as_float(runs[GROKKED_COLUMN])
    delay = np.maximum(grokked - memorized, 0.0)
    frame = runs.assign(
        lr_eta=runs["lr"] * runs["weight_decay"], grokked=np.isfinite(grokked),
        lower=np.where(np.isfinite(grokked), np.maximum(delay - every, 0.0),
                       runs["steps_trained"].to_numpy(float) - memorized),
        upper=np.where(np.isfinite(grokked), delay + every, np.inf))
    no_decay = frame["weight_decay"] <= 0
    never = ~np.isfinite(memorized) & ~no_decay
    left_out = pd.concat([
        exclusions(frame[no_decay], "η = 0: log(lr·η) undefined"),
        exclusions(frame[never], "never memorized (train accuracy 1 not reached): t_grok −"
                                 " t_mem undefined")])
    return frame[~no_decay & ~never], left_out


def grok_law(runs: pd.DataFrame, boundary: FitResult | None = None,
              level: float = 0.95) -> FitResult:
    """Fit t_grok − t_mem = A·(lr·η)^−a·(p/p* − 1)^−ν per condition (e.g. per optimizer), with
    one p* per group, by interval-censored maximum likelihood (log-normal scatter); Wald
    intervals. A free form with separate exponents of lr and η gives a_η (§7: 1) and checks
    that they enter as the product (a_η − a_lr = 0). ``boundary`` (the generalization_boundary
    fit of the same runs) gives the boundary at the sweep's step budget for each (group, lr, η),
    set beside the law's p* and the law's own prediction of the finite-budget boundary:
    p*·(1 + (A·(lr·η)^−a / (steps − t_mem))^(1/ν)).
    """
    name = "grok_law"
    early = precheck(name, runs, (*AXES, "optimizer", GROKKED_COLUMN, MEMORIZED_COLUMN,
                                  "eval_every", "steps_trained", "steps"))
    if early:
        return early
    usable, excluded = split_usable(runs)
    frame, left_out = _delays(usable)
    excluded = pd.concat([excluded, left_out], ignore_index=True)
    if frame.empty:
        return FitResult(name, "insufficient", "no run with η > 0 that memorized",
                         excluded=excluded)
    conditions = varying_config(frame, exclude=AXES)
    # the boundary fit's p* per (condition columns, group) at the sweep's step budget
    finite_budget = boundary.table if boundary is not None and boundary.usable else None
    rows, details, laws = [], [], []
    for key, cell in (frame.groupby(conditions, sort=True) if conditions else [((), frame)]):
        key = key if isinstance(key, tuple) else (key,)
        label = condition_labels(cell.iloc[:1], conditions).iloc[0]
        row, detail = _fit_condition(cell, level)
        rows.append(dict(zip(conditions, key, strict=True)) | {"condition": label} | row)
        if detail is not None:
            details.append(_with_budget(detail.assign(condition=label), finite_budget, row))
        if row["status"] == "ok":
            optimizer = cell["optimizer"].iloc[0]
            adam_like = (f"{optimizer} normalises the gradient's scale, which the argument rests"
                         " on" if optimizer in ADAM_LIKE else "")
            assumes = "the law's form; grok steps interval-censored"
            laws += [law_row(LAW_A, label, row["a"], row["a_lo"], row["a_hi"], PREDICTED_A,
                             "t ~ 1/η at a fixed step size (§7; G_F ∝ η, Lemma 1)",
                             row["n_runs"], assumes=assumes, not_a_test=adam_like),
                     law_row(LAW_ETA, label, row["a_eta"], row["a_eta_lo"], row["a_eta_hi"],
                             PREDICTED_A, "t ~ 1/η (§7)", row["n_runs"], assumes=assumes,
                             not_a_test=adam_like),
                     law_row(LAW_PRODUCT, label, row["eta_excess"], row["eta_excess_lo"],
                             row["eta_excess_hi"], 0.0, "lr and η act as lr·η (§7)",
                             row["n_runs"], assumes=assumes, not_a_test=adam_like)]
    table = pd.DataFrame(rows)
    status, message = overall(table)
    method = (f"log(t_grok − t_mem) = log A − a·log(lr·η) − ν·log(p/p* − 1) + σ·ε, ε ~ N(0, 1),"
              f" one p* per group, by maximum likelihood with each delay known to ± one"
              f" evaluation interval and runs that ended first right-censored (a run at p ≤ p*"
              f" never groks); {level:.0%} Wald intervals from the observed information (p* on a"
              f" logistic scale below the group's smallest grokked p)")
    detail = pd.concat(details, ignore_index=True) if details else pd.DataFrame()
    used = int(table.loc[table["status"] == "ok", "n_runs"].sum())
    return FitResult(name, status, message, table, detail, used, excluded, method,
                     laws_frame(laws))


def _fit_condition(cell: pd.DataFrame, level: float) -> tuple[dict, pd.DataFrame | None]:
    base = {"n_runs": len(cell), "n_grokked": int(cell["grokked"].sum()),
            "n_groups": cell["group"].nunique()}
    grokked_groups = cell.loc[cell["grokked"], "group"].unique()
    cell = cell[cell["group"].isin(grokked_groups)]
    problems = []
    if cell["lr_eta"].nunique() < stats.MIN_DISTINCT_X:
        problems.append(f"lr·η takes {cell['lr_eta'].nunique()} values among the groups that"
                        f" grokked; a needs ≥ {stats.MIN_DISTINCT_X}")
    if cell.loc[cell["grokked"], "train_fraction"].nunique() < stats.MIN_DISTINCT_X:
        problems.append(f"grokked runs at fewer than {stats.MIN_DISTINCT_X} train fractions")
    if problems:
        return base | {"status": "insufficient", "message": "; ".join(problems)}, None
    log_lr, log_eta = np.log(cell["lr"].to_numpy()), np.log(cell["weight_decay"].to_numpy())

    def fitted(*columns):
        design = np.stack([np.ones_like(log_lr), *columns], 1)
        return survival.threshold_censored_lognormal(cell["lower"], cell["upper"], design,
                                                  cell["train_fraction"], cell["group"], level)

    fit = fitted(log_lr + log_eta)
    law = fit.fit
    # Free forms: log T = … − a_lr·log lr − a_η·log η, and the same on log(lr·η) and log η,
    # whose coefficient of log η is a_η − a_lr itself (the product form's test).
    free, product = fitted(log_lr, log_eta).fit, fitted(log_lr + log_eta, log_eta).fit
    row = base | {"n_runs": len(cell), "n_censored": law.n_censored, "A": np.exp(law.coef[0]),
                  "sigma": law.sigma, "status": "ok" if law.converged else "no convergence",
                  "message": "" if law.converged else "the likelihood did not converge"}
    for name, source, index in (("a", law, 1), ("a_lr", free, 1), ("a_eta", free, 2),
                                ("eta_excess", product, 2)):
        # log T falls with these exponents: each is minus its coefficient, bounds swapped
        row |= {name: -source.coef[index], f"{name}_lo": -source.hi[index],
                f"{name}_hi": -source.lo[index]}
    row |= {"nu": law.coef[2], "nu_lo": law.lo[2], "nu_hi": law.hi[2]}
    thresholds = pd.DataFrame({"group": fit.groups, "p_inf": fit.threshold,
                               "p_inf_lo": fit.threshold_lo, "p_inf_hi": fit.threshold_hi})
    columns = ["run_id", "group", "M", "train_fraction", "lr", "weight_decay", "lr_eta", "steps",
               MEMORIZED_COLUMN, "grokked", "lower", "upper"]
    return row, cell[columns].merge(thresholds, on="group")


def _with_budget(detail: pd.DataFrame, finite: pd.DataFrame | None, law: dict) -> pd.DataFrame:
    """Each run's row with its cell's boundary at the step budget (the boundary fit) and the
    law's prediction of it: half the runs grok by ``steps`` where the median delay equals the
    steps left after memorizing."""
    median_mem = detail.groupby(["group", "lr", "weight_decay"])[MEMORIZED_COLUMN].transform(
        "median").astype(float)
    left = detail["steps"] - median_mem
    delay = law["A"] * detail["lr_eta"] ** -law["a"]
    detail = detail.assign(p_budget_law=detail["p_inf"] * (1 + (delay / left) ** (1 / law["nu"])))
    if finite is None:
        return detail
    keys = [c for c in ("group", "lr", "weight_decay", "optimizer") if c in finite]
    finite = finite[[*keys, "p_star", "p_star_lo", "p_star_hi", "status"]].rename(
        columns={"p_star": "p_budget", "p_star_lo": "p_budget_lo", "p_star_hi": "p_budget_hi",
                 "status": "budget_status"})
    merge_keys = [k for k in keys if k in detail]
    return detail.merge(finite.drop(columns=[k for k in keys if k not in detail]),
                        on=merge_keys, how="left")


def _cells(detail: pd.DataFrame) -> pd.DataFrame:
    """One row per (condition, group, lr, η): the boundaries beside each other."""
    columns = ["condition", "group", "lr", "weight_decay", "lr_eta", "steps", "p_inf",
               "p_inf_lo", "p_inf_hi", "p_budget_law", "p_budget", "p_budget_lo",
               "p_budget_hi", "budget_status"]
    cells = detail[[c for c in columns if c in detail]].drop_duplicates(
        ["condition", "group", "lr", "weight_decay"])
    return cells.sort_values(["condition", "group", "lr_eta"], ignore_index=True)


def plot_grok_law(result: FitResult) -> Figure:
    """Per condition (row): the delay t_grok − t_mem against p/p* − 1 with the lr·η factor
    divided out (left) and against lr·η with the p factor divided out (middle), grokked runs as
    dots and runs that ended first as triangles at their last step (the delay is longer); the
    law as a line. Right: each group's boundary at unlimited steps (the law's p*, band) and at
    the sweep's step budget (the boundary fit per lr·η, and the law's prediction of it)."""
    detail, labels = fit_panels(result, "grok-law", "detail")
    if len(labels) > 4:
        raise PlotSkipped(f"{len(labels)} conditions would need a row each (limit 4)")
    table = result.table.set_index("condition")
    figure = NotebookFigure(figsize=(17, 4.8 * len(labels)), layout="constrained")
    axes = figure.subplots(len(labels), 3, squeeze=False)
    groups = sorted(detail["group"].unique())
    colour = {g: colormaps["tab10"](i % 10) for i, g in enumerate(groups)}
    for (left, middle, right), label in zip(axes, labels, strict=True):
        law = table.loc[label]
        runs = detail[detail["condition"] == label]
        distance = runs["train_fraction"] / runs["p_inf"] - 1
        above = distance > 0
        delay = np.where(runs["grokked"], np.sqrt(np.maximum(runs["lower"], 1.0) * runs["upper"]),
                         np.maximum(runs["lower"], 1.0))
        for ax, x, scale, slope, what in (
                (left, distance, runs["lr_eta"] ** law["a"], -law["nu"],
                 "p/p* − 1 (p* of the law, log)"),
                (middle, runs["lr_eta"], np.where(above, distance, np.nan) ** law["nu"],
                 -law["a"], "lr·η (log)")):
            for group in groups:
                mine = (runs["group"] == group).to_numpy() & above.to_numpy()
                for grokked, marker in ((True, "o"), (False, "^")):
                    pick = mine & (runs["grokked"].to_numpy() == grokked)
                    ax.scatter(np.asarray(x)[pick], (delay * scale)[pick], marker=marker, s=16,
                               color=colour[group], alpha=0.7, facecolors=None if grokked
                               else "none", label=group if grokked else None)
            grid = np.geomspace(np.nanmin(np.asarray(x)[above]), np.nanmax(np.asarray(x)[above]),
                                30)
            ax.plot(grid, law["A"] * grid**slope, color="black",
                    label=f"law, slope {slope:.2f}")
            ax.set(xscale="log", yscale="log", xlabel=what)
        left.set_ylabel(f"(t_grok − t_mem) · (lr·η)^a\n(t_grok: {GROKKED_TEXT})")
        middle.set_ylabel("(t_grok − t_mem) · (p/p* − 1)^ν")
        left.set_title(f"{label}: ν = {interval_text(law.nu, law.nu_lo, law.nu_hi)}",
                       fontsize=10)
        middle.set_title(f"{label}: a = {interval_text(law.a, law.a_lo, law.a_hi)}",
                         fontsize=10)
        left.legend(fontsize=7, loc="lower left", title="▲ ended first", title_fontsize=7)
        _plot_boundaries(right, _cells(runs), colour)
        budget = int(runs["steps"].max())
        right.set_title(f"{label}: boundary at unlimited steps and at {budget} steps",
                        fontsize=10)
    figure.suptitle("When does a run grok? t_grok − t_mem = A·(lr·η)^−a·(p/p* − 1)^−ν")
    return figure


def _plot_boundaries(ax, cells: pd.DataFrame, colour: dict) -> None:
    for group, mine in cells.groupby("group"):
        x = mine["lr_eta"].to_numpy()
        first = mine.iloc[0]
        ax.axhspan(first["p_inf_lo"], first["p_inf_hi"], color=colour[group], alpha=0.15)
        unlimited = interval_text(first.p_inf, first.p_inf_lo, first.p_inf_hi)
        ax.axhline(first["p_inf"], color=colour[group], lw=1,
                   label=f"{group}: p* = {unlimited} (unlimited)")
        ax.plot(x, mine["p_budget_law"], color=colour[group], ls="--")
        if "p_budget" in mine:
            ax.errorbar(x, mine["p_budget"], yerr=[mine["p_budget"] - mine["p_budget_lo"],
                                                   mine["p_budget_hi"] - mine["p_budget"]],
                        fmt="s", color=colour[group], capsize=2, ms=4)
    ax.plot([], [], "k--", label="law's boundary at the budget")
    ax.errorbar([], [], fmt="s", color="black", label="boundary fit at the budget (95% CI)")
    ax.set(xscale="log", xlabel="lr·η (log)", ylabel="train fraction p")
    ax.legend(fontsize=7)


def grok_law_section(result: FitResult, level: float) -> list[str]:
    lines = [markdown_table(result.table, {
        "condition": "condition", "n_runs": "runs", "n_grokked": "grokked",
        "n_censored": "ended first", "A": "A", "a": f"a [{level:.0%} CI]",
        "nu": f"ν [{level:.0%} CI]", "sigma": "σ (log)", "a_lr": "free form: a_lr",
        "a_eta": "free form: a_η", "eta_excess": "a_η − a_lr", "status": "status",
        "message": "note"}, intervals=("a", "nu", "a_lr", "a_eta", "eta_excess")), ""]
    if not result.detail.empty:
        lines += ["Each group's boundary at unlimited steps (the law's p*) and at the sweep's"
                  " step budget: fitted by the boundary analysis per lr·η, and predicted by the"
                  " law.", "", markdown_table(_cells(result.detail).assign(
                      shift=lambda c: c.get("p_budget", np.nan) / c["p_inf"] - 1), {
                      "condition": "condition", "group": "group", "lr": "lr",
                      "weight_decay": "η", "steps": "steps",
                      "p_inf": f"p* unlimited [{level:.0%} CI]",
                      "p_budget": f"p* at the budget [{level:.0%} CI]",
                      "budget_status": "budget fit", "p_budget_law": "law at the budget",
                      "shift": "budget / unlimited − 1"}, intervals=("p_inf", "p_budget"))]
    return lines


ANALYSES = (
    Analysis("grok_law", "When a run groks: t_grok − t_mem against lr·η and p/p* − 1",
             lambda i: grok_law(i.runs, i.fits.get("generalization_boundary"), i.level),
             grok_law_section, {"grok_law": lambda r, *_: plot_grok_law(r)},
             varies=("train_fraction", "weight_decay")),
)
