"""Which irreps set the data a group needs: the boundary constant c = p*·M / ln M of each group
against candidate irrep variables, compared by a test that says "cannot tell" when the
difference lies within the scatter between groups.

The candidates (each a property of the group's irreps, from the runs table's group columns):

- ``d_k``, the largest complex degree: Theorem 4 as written (n ≳ d_k² M log(M/δ)).
- ``d_R``, the largest real dimension (d for a real irrep, 2d for a complex pair or a
  quaternionic one): what real weights see. Theorem 2's energy M/(8 d_k) (real) and M/(16 d_k)
  (complex pair) are both M/(8 d_R), and the stability margin in Theorem 4's proof scales with it.
- ``d_T``, type-weighted: 2d for a complex pair, d for a real or a quaternionic irrep (Theorem 2
  read with a self-conjugate quaternionic irrep as a real one; Theorem 2 does not cover that type).
- ``code``, the paper code's constant: d_k/2 for its non-abelian groups, 1 for Z_M.
- ``W3/M``, a sum over irreps: Theorem 3's width 2 Σ_{k≠0} d_k⁴ per group element.

Theorem 4 is a sufficient condition with unspecified constants and no lower bound: an exponent
below 2 does not contradict it (verdict "not a test here"), only one above 2 would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy import stats as distributions

from grokjax import stats
from grokjax.analysis.boundary import finite_p_star
from grokjax.analysis.core import (
    Analysis,
    FitResult,
    law_row,
    laws_frame,
    overall,
    precheck,
)
from grokjax.analysis.figures import PlotSkipped, fit_panels, fixed_ticks, interval_text, panels
from grokjax.analysis.markdown import markdown_table

THEOREM4_EXPONENT = 2.0  # n ≳ d² M log(M/δ)
CODE_EXPONENT = 1.0  # the paper's code: critical ratio × d_k/2 (1 for Z_M)
SUFFICIENT = ("Theorem 4 is a sufficient condition (constants unspecified, no lower bound): an"
              " exponent below 2 does not contradict it")
LAW_DK = "exponent of d_k in c = p*·M/ln M"
LAW_DR = "exponent of d_R in c = p*·M/ln M"
LAW_CODE = "exponent of the code's d_k/2 in c"
LAW_TYPE = "c ratio, same complex degrees"
GROUP_COLUMNS = ("M", "group_abelian", "max_irrep_degree", "max_real_irrep_dim", "irreps",
                 "theorem3_width", "K")
LINE_STYLES = ("-", "--", ":", "-.")  # per condition (step budget), solid for the longest
C_TICKS = (0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30)  # c on a log axis
_IRREP = re.compile(r"(\d+)([RCH])×(\d+)")  # an entry of the runs table's `irreps`: "2H×3"


def _degrees(irreps: str) -> str:
    """The complex degrees with their multiplicities, whatever their types: "1×4, 2×5"."""
    counts: dict[int, int] = {}
    for d, _, n in _IRREP.findall(irreps):
        counts[int(d)] = counts.get(int(d), 0) + int(n)
    return ", ".join(f"{d}×{n}" for d, n in sorted(counts.items()))


def _type_weighted(irreps: str) -> float:
    """Largest of 2d over complex irreps and d over real and quaternionic ones."""
    return max(int(d) * (2 if kind == "C" else 1) for d, kind, _ in _IRREP.findall(irreps))


@dataclass(frozen=True)
class Candidate:
    name: str
    meaning: str
    value: Callable[[pd.DataFrame], pd.Series]  # from the group columns of the runs table


CANDIDATES = (
    Candidate("d_k", "largest complex degree (Theorem 4 as written)",
              lambda g: g["max_irrep_degree"].astype(float)),
    Candidate("d_R", "largest real dimension: d real, 2d complex or quaternionic (Theorem 2's"
                     " E* = M/(8 d_R))", lambda g: g["max_real_irrep_dim"].astype(float)),
    Candidate("d_T", "type-weighted: 2d complex, d real or quaternionic",
              lambda g: g["irreps"].map(_type_weighted).astype(float)),
    Candidate("code", "the paper code's d_k/2, 1 for Z_M",
              lambda g: np.where(g["group_abelian"], 1.0, g["max_irrep_degree"] / 2)),
    Candidate("W3/M", "Σ over irreps: Theorem 3's width per element, 2Σd_k⁴/M",
              lambda g: g["theorem3_width"] / g["M"]),
)
JOINT = ("d_R", "d_k")  # the law in both: does the degree matter at a given real dimension?


def irrep_scaling(boundary: FitResult, runs: pd.DataFrame, level: float = 0.95,
                  n_boot: int = 400, seed: int = 0) -> FitResult:
    """Which irrep variable x sets the boundary constant c = p*·M / ln M, and how?

    Per condition (e.g. per step budget), every candidate's law log c = a + e·log x is fitted
    across the groups with an estimated p* by a random-effects meta-regression (each group's
    log c known to the standard error of its profile interval, plus a scatter tau between
    groups; REML tau, Knapp–Hartung interval on e). The candidates are compared by maximum
    likelihood; the best is *favoured* only if a parametric bootstrap under each rival's fitted
    law makes the observed likelihood gap unlikely (p < 0.05), otherwise the comparison reads
    "cannot tell". Groups of
    one order with the same complex degrees (dihedral / dicyclic) are compared directly: their
    ratio of c, which d_k predicts to be 1. A group that never generalized bounds c from below.
    """
    name = "irrep_scaling"
    early = precheck(name, runs, ("group", *GROUP_COLUMNS))
    if early:
        return early
    table = boundary.table
    facts = runs.drop_duplicates("group").set_index("group")  # K too, unless it is a condition
    facts = facts[[c for c in GROUP_COLUMNS if c not in table]]
    groups = table.join(facts, on="group").assign(condition=table.get("condition", ""))
    for candidate in CANDIDATES:
        groups[candidate.name] = candidate.value(groups)
    to_c = groups["M"] / np.log(groups["M"])
    never = groups["status"] == "none generalized"
    largest_p = boundary.detail.groupby("group")["train_fraction"].max()
    groups = groups.assign(
        c=groups["p_star"] * to_c, c_lo=groups["p_star_lo"] * to_c,
        c_hi=groups["p_star_hi"] * to_c, log_c_se=groups["log_p_star_se"],
        c_bound=np.where(never, groups["group"].map(largest_p) * to_c, np.nan),
        below_width=groups["K"] < groups["theorem3_width"])
    finite = finite_p_star(groups)
    rows, laws = [], []
    for condition, cell in groups.groupby("condition", sort=False):
        fitted = cell[finite[cell.index]]
        rows += _compare(condition, fitted, level, n_boot, seed)
        laws += _laws(condition, fitted, rows, _same_degree_contrasts(fitted, level))
    result = pd.DataFrame(rows)
    per_condition = result.groupby("condition", sort=False).agg(
        status=("status", lambda s: "ok" if (s == "ok").any() else s.iloc[0]),
        message=("message", "first")).reset_index()
    status, message = overall(per_condition)
    method = (f"c = p*·M/ln M per group from the boundary fit; per candidate x, log c = a +"
              f" e·log x + u + ε with u ~ N(0, tau²) between groups and ε ~ N(0, se²) from each"
              f" group's profile interval (random-effects meta-regression: REML tau, {level:.0%}"
              f" Knapp–Hartung interval on e); candidates compared by maximum likelihood, the best"
              f" favoured only if a parametric bootstrap ({n_boot} draws) from each rival's law"
              f" gives p < 0.05 for the observed gap, else 'cannot tell'")
    return FitResult(name, status, message, result, groups, int(
        result.drop_duplicates("condition")["n_runs"].sum()), boundary.excluded, method,
        laws_frame(laws))


def _compare(condition: str, fitted: pd.DataFrame, level: float, n_boot: int,
             seed: int) -> list[dict[str, object]]:
    """One row per candidate: its law's exponent, constant and likelihood, and the decision."""
    base = {"condition": condition, "n_groups": len(fitted), "n_runs": int(fitted["n_runs"].sum()),
            "groups": ", ".join(fitted["group"])}
    y, se = np.log(fitted["c"].to_numpy()), fitted["log_c_se"].to_numpy()
    usable = [c for c in CANDIDATES if fitted[c.name].nunique() >= 2]
    if len(fitted) < 3 or len(usable) < 2:
        message = (f"needs ≥ 3 groups with an estimated p*, has {len(fitted)}" if len(fitted) < 3
                   else "fewer than two candidates vary over these groups: nothing to compare")
        return [base | {"candidate": c.name, "meaning": c.meaning, "status": "too few groups",
                        "message": message} for c in CANDIDATES]
    comparison = stats.compare_predictors(
        y, se, {c.name: np.log(fitted[c.name].to_numpy()) for c in usable}, n_boot=n_boot,
        seed=seed)
    decision = {"best": comparison.best, "favoured": comparison.favoured or "cannot tell",
                "indistinct": ", ".join(comparison.indistinct)}
    rows = []
    for candidate in CANDIDATES:
        row = base | decision | {"candidate": candidate.name, "meaning": candidate.meaning,
                                 "n_values": int(fitted[candidate.name].nunique())}
        if candidate not in usable:
            rows.append(row | {"status": "one value", "message": f"{candidate.name} takes one"
                               " value over these groups: no exponent, not compared"})
            continue
        x = np.log(fitted[candidate.name].to_numpy())
        fit = stats.random_effects_regression(y, se, np.stack([np.ones_like(x), x], 1), level)
        index = comparison.names.index(candidate.name)
        rows.append(row | {
            "exponent": fit.coef[1], "exponent_lo": fit.lo[1], "exponent_hi": fit.hi[1],
            "constant": np.exp(fit.coef[0]), "tau": fit.tau,
            "log_likelihood": comparison.log_likelihood[index],
            "weight": comparison.weights[index], "p_value": comparison.p_values[index],
            "status": "ok", "message": "" if row["n_values"] >= stats.MIN_DISTINCT_X else
            f"{row['n_values']} distinct values: the exponent compares them, the form is untested"})
    joint = _joint_law(y, se, fitted, level, n_boot, seed)
    return rows + ([base | decision | joint] if joint else [])


def _joint_law(y, se, fitted: pd.DataFrame, level: float, n_boot: int,
               seed: int) -> dict[str, object] | None:
    """c ∝ d_R^α·d_k^β, and whether each variable adds to the other: a likelihood-ratio test
    by parametric bootstrap under the law in one variable (the comparison of nested laws).
    None when d_R and d_k are collinear over these groups (one determines the other)."""
    columns = np.log(fitted[list(JOINT)].to_numpy(float))
    design = np.column_stack([np.ones_like(y), columns])
    if len(y) < 4 or np.linalg.matrix_rank(design) < 3:
        return None
    fit = stats.random_effects_regression(y, se, design, level)
    both = " & ".join(JOINT)
    adds = []
    for kept, added in (JOINT, JOINT[::-1]):
        nested = stats.compare_predictors(
            y, se, {kept: columns[:, JOINT.index(kept)], both: columns}, n_boot=n_boot,
            seed=seed)
        verdict = ("adds" if nested.favoured == both else "cannot tell whether it adds")
        p_value = nested.p_values[0] if nested.best == both else np.nan
        adds.append(f"{added} to {kept} alone: {verdict}"
                    + (f" (bootstrap p = {p_value:.3g})" if np.isfinite(p_value) else ""))
    return {"candidate": both, "meaning": f"both: c ∝ {JOINT[0]}^α·{JOINT[1]}^β",
            "n_values": len(fitted), "exponent": fit.coef[1], "exponent_lo": fit.lo[1],
            "exponent_hi": fit.hi[1], "exponent_2": fit.coef[2], "exponent_2_lo": fit.lo[2],
            "exponent_2_hi": fit.hi[2], "constant": np.exp(fit.coef[0]), "tau": fit.tau,
            "log_likelihood": fit.log_likelihood, "status": "ok", "message": "; ".join(adds)}


def _same_degree_contrasts(fitted: pd.DataFrame, level: float) -> list[dict[str, object]]:
    """Pairs of groups of one order with the same complex degrees (e.g. dihedral24 and
    dicyclic24): the ratio of their c with its CI, the larger d_R over the smaller."""
    z = distributions.norm.ppf(0.5 + level / 2)
    pairs = []
    for _, same in fitted.assign(degrees=fitted["irreps"].map(_degrees)).groupby(["M", "degrees"]):
        same = same.sort_values(["d_R", "group"])
        for first, second in zip(same.iloc[:-1].itertuples(), same.iloc[1:].itertuples(),
                                 strict=True):
            log_ratio = np.log(second.c / first.c)
            half = z * np.hypot(first.log_c_se, second.log_c_se)
            pairs.append({"pair": f"{second.group} / {first.group}", "ratio": np.exp(log_ratio),
                          "lo": np.exp(log_ratio - half), "hi": np.exp(log_ratio + half),
                          "n_runs": int(first.n_runs + second.n_runs)})
    return pairs


def _assumes(condition: str, fitted: pd.DataFrame) -> str:
    narrow = fitted.loc[fitted["below_width"], "group"].tolist()
    width = ("K below Theorem 3's width for " + ", ".join(narrow) if narrow
             else "K ≥ Theorem 3's width for every group")
    return f"boundaries at {condition or 'one budget'}; {width}"


def _laws(condition: str, fitted: pd.DataFrame, rows: list[dict[str, object]],
          contrasts: list[dict[str, object]]) -> list[dict[str, object]]:
    laws = []
    assumes = _assumes(condition, fitted)
    estimated = {row["candidate"]: row for row in rows if row["condition"] == condition
                 and row["status"] == "ok" and row["n_values"] >= stats.MIN_DISTINCT_X}
    for name, law in (("d_k", LAW_DK), ("d_R", LAW_DR)):
        if name not in estimated:
            continue
        row = estimated[name]
        below = row["exponent_hi"] < THEOREM4_EXPONENT
        laws.append(law_row(law, condition, row["exponent"], row["exponent_lo"],
                            row["exponent_hi"], THEOREM4_EXPONENT,
                            f"Theorem 4: n ≳ {name}² M log M (sufficient)", row["n_runs"],
                            assumes=assumes, not_a_test=SUFFICIENT if below else ""))
    if "code" in estimated:
        row = estimated["code"]
        laws.append(law_row(LAW_CODE, condition, row["exponent"], row["exponent_lo"],
                            row["exponent_hi"], CODE_EXPONENT,
                            "paper code: critical ratio × d_k/2 (1 for Z_M)", row["n_runs"],
                            assumes=assumes))
    for pair in contrasts:
        laws.append(law_row(f"{LAW_TYPE}: {pair['pair']}", condition, pair["ratio"], pair["lo"],
                            pair["hi"], 1.0, "equal under d_k (Theorem 4 as written), d_T, code",
                            pair["n_runs"], assumes=assumes))
    return laws


def _exponent_text(row: pd.Series) -> str:
    """"e [lo, hi]", or for the law in both variables "d_R: α [lo, hi]; d_k: β [lo, hi]"."""
    if not np.isfinite(row.get("exponent", np.nan)):
        return "—"
    text = interval_text(row["exponent"], row["exponent_lo"], row["exponent_hi"])
    if np.isfinite(row.get("exponent_2", np.nan)):
        second = interval_text(row["exponent_2"], row["exponent_2_lo"], row["exponent_2_hi"])
        text = f"{JOINT[0]}: {text}; {JOINT[1]}: {second}"
    return text


def _joint_text(rows: pd.DataFrame) -> str:
    joint = rows[rows["candidate"] == " & ".join(JOINT)]
    if joint.empty:
        return ""
    return f"; c ∝ d_R^α·d_k^β: {_exponent_text(joint.iloc[0])}"


def _decision_text(rows: pd.DataFrame) -> str:
    row = rows.iloc[0]
    if row["favoured"] != "cannot tell":
        rivals = rows[rows["candidate"] != row["best"]].dropna(subset=["p_value"])
        worst = rivals["p_value"].max()
        return (f"the data favour **{row['best']}** (every rival's bootstrap p ≤ {worst:.3g})")
    return (f"**cannot tell** {row['best']} (highest likelihood) from {row['indistinct']}"
            f" (bootstrap p ≥ 0.05)")


def plot_irrep_scaling(irrep: FitResult) -> Figure:
    """One panel per candidate: c = p*·M/ln M of each group (95% CI) against the candidate
    (log-log; groups at one value side by side), filled markers at the longest step budget and
    hollow ones at the others, with each budget's fitted law; the last panel shows the
    same-degree contrasts (dicyclic / dihedral) against the ratio d_R's law predicts."""
    groups, conditions = fit_panels(irrep, "irrep-scaling", "detail")
    if len(conditions) > len(LINE_STYLES):
        raise PlotSkipped(f"{len(conditions)} conditions would need a line style each (limit"
                          f" {len(LINE_STYLES)}); plot a subset of the runs (--where)")
    table = irrep.table
    figure, axes = panels([c.name for c in CANDIDATES] + ["same order, same complex degrees"],
                          width=5.4, height=4.3)
    names = list(groups.sort_values(["M", "group"])["group"].unique())
    colour = {g: colormaps["tab10"](i % 10) for i, g in enumerate(names)}
    dodge = {g: np.exp(0.03 * (i - (len(names) - 1) / 2)) for i, g in enumerate(names)}
    styles = dict(zip(reversed(conditions), LINE_STYLES, strict=False))
    longest = conditions[-1]
    for ax, candidate in zip(axes, CANDIDATES, strict=False):
        for condition in conditions:
            rows = groups[(groups["condition"] == condition) & np.isfinite(groups["c"])]
            filled = condition == longest
            for group, value, c, lo, hi in zip(rows["group"], rows[candidate.name], rows["c"],
                                               rows["c_lo"], rows["c_hi"], strict=True):
                ax.errorbar(value * dodge[group], c, yerr=[[c - lo], [hi - c]], fmt="o", ms=6,
                            capsize=2, color=colour[group],
                            mfc=colour[group] if filled else "white")
            fit = table[(table["condition"] == condition) & (table["candidate"] == candidate.name)]
            if len(fit) and fit.iloc[0]["status"] == "ok":
                fit = fit.iloc[0]
                x = np.geomspace(rows[candidate.name].min() * 0.85,
                                 rows[candidate.name].max() * 1.15, 20)
                ax.plot(x, fit["constant"] * x ** fit["exponent"], color="black",
                        ls=styles[condition], lw=1,
                        label=f"{condition or 'fit'}: e = "
                              f"{interval_text(fit.exponent, fit.exponent_lo, fit.exponent_hi)}"
                              f", weight {fit.weight:.2g}")
        # room above the points for the legend, and plain ticks on the narrow log axis
        low, high = groups["c_lo"].min() / 1.1, groups["c_hi"].max() * 1.7
        ax.set(xscale="log", yscale="log", xlabel=f"{candidate.name} (log scale)",
               ylabel="c = p*·M / ln M (log)", ylim=(low, high))
        ticks = [t for t in C_TICKS if low <= t <= high]
        fixed_ticks(ax.yaxis, ticks, [f"{t:g}" for t in ticks])
        values = sorted(groups[candidate.name].unique())
        if len(values) <= 5:  # a few values: tick exactly those
            fixed_ticks(ax.xaxis, values, [f"{v:g}" for v in values])
        ax.set_title(f"{candidate.name}: {candidate.meaning}", fontsize=8, wrap=True)
        ax.legend(fontsize=7, loc="upper left")
    _plot_contrasts(axes[-1], irrep, conditions)
    handles = [axes[0].plot([], [], "o", color=colour[g], label=g)[0] for g in names]
    if len(conditions) > 1:
        handles += [axes[0].plot([], [], "o", color="black", mfc=fill, label=text)[0]
                    for fill, text in (("black", f"filled: {longest}"),
                                       ("white", "hollow: shorter budget"))]
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, title="group")
    verdicts = "\n".join(f"{c or 'all'}: {_decision_text(rows)}".replace("**", "")
                          + _joint_text(rows) for c, rows in table.groupby("condition", sort=False))
    figure.suptitle(f"Which irreps set the data a group needs?\n{verdicts}", fontsize=10)
    return figure


def _plot_contrasts(ax, irrep: FitResult, conditions: list[str]) -> None:
    laws = irrep.laws[irrep.laws["law"].str.startswith(LAW_TYPE)]
    if laws.empty:
        ax.text(0.5, 0.5, "no pair of one order\nwith the same complex degrees", ha="center",
                va="center", transform=ax.transAxes)
        return
    pairs = list(dict.fromkeys(laws["law"].str.removeprefix(f"{LAW_TYPE}: ")))
    d_r = irrep.detail.drop_duplicates("group").set_index("group")["d_R"]
    d_r_ratio = {pair: d_r[pair.split(" / ")[0]] / d_r[pair.split(" / ")[1]] for pair in pairs}
    width = 0.8 / len(conditions)
    for offset, condition in enumerate(conditions):
        rows = laws[laws["condition"] == condition]
        shift = (offset - (len(conditions) - 1) / 2) * width
        x = [pairs.index(law.removeprefix(f"{LAW_TYPE}: ")) + shift for law in rows["law"]]
        ax.errorbar(x, rows["value"], yerr=[rows["value"] - rows["lo"], rows["hi"] - rows["value"]],
                    fmt="s", capsize=3, color=f"C{offset}", label=f"{condition or 'ratio'}")
        law = irrep.table[(irrep.table["condition"] == condition)
                          & (irrep.table["candidate"] == "d_R") & (irrep.table["status"] == "ok")]
        if len(law):
            predicted = [d_r_ratio[pair] ** law.iloc[0]["exponent"] for pair in pairs]
            ax.plot(np.arange(len(pairs)) + shift, predicted, "_", ms=18, mew=2,
                    color=f"C{offset}",
                    label=f"{condition + ': ' if condition else ''}d_R's law, (d_R ratio)^e")
    ax.axhline(1.0, color="grey", ls="--", label="d_k, d_T, code: 1")
    ax.set_xticks(range(len(pairs)), [p.replace(" / ", "\n/ ") for p in pairs], fontsize=8)
    ax.set(ylabel="ratio of c (95% CI)", xlim=(-0.6, len(pairs) - 0.4),
           ylim=(min(0.8, laws["lo"].min() / 1.1), laws["hi"].max() * 1.5))
    ax.legend(fontsize=7, loc="upper center", ncol=2)


def irrep_section(result: FitResult, level: float) -> list[str]:
    lines = [markdown_table(result.detail, {
        "condition": "condition", "group": "group", "M": "M", "irreps": "irreps",
        "K": "K", "theorem3_width": "Theorem 3 width", "d_k": "d_k", "d_R": "d_R",
        "d_T": "d_T", "code": "code", "W3/M": "W3/M",
        "c": f"c = p*·M/ln M [{level:.0%} CI]", "c_bound": "c lower bound (never generalized)",
        "status": "boundary status"}, intervals=("c",)), ""]
    for condition, rows in result.table.groupby("condition", sort=False):
        heading = f"**{condition}**: " if condition else ""
        if (rows["status"] == "too few groups").all():
            lines += [f"- {heading}{rows.iloc[0]['message']}", ""]
            continue
        lines += [f"- {heading}{_decision_text(rows)}.", "", markdown_table(
            rows.assign(exponent_text=[_exponent_text(row) for _, row in rows.iterrows()]), {
                "candidate": "candidate", "meaning": "meaning", "n_values": "values",
                "exponent_text": f"exponent e [{level:.0%} CI]", "constant": "c at x = 1",
                "tau": "scatter tau (log c)", "log_likelihood": "log-likelihood",
                "weight": "Akaike weight", "p_value": "bootstrap p vs best",
                "message": "note"}), ""]
    contrasts = result.laws[result.laws["law"].str.startswith(LAW_TYPE)]
    if len(contrasts):
        lines += ["Same order, same complex degrees, different types (d_k predicts a ratio of 1;"
                  " d_R predicts (d_R ratio)^e):", "", markdown_table(
                      contrasts.assign(pair=contrasts["law"].str.removeprefix(f"{LAW_TYPE}: "),
                                       value_lo=contrasts["lo"], value_hi=contrasts["hi"]),
                      {"condition": "condition", "pair": "pair", "value": "ratio of c",
                       "verdict": "verdict (ratio 1?)", "n_runs": "runs"}, intervals=("value",)),
                  ""]
    lines.append(
        "The paper code's constant d_k/2 (1 for Z_M) equals d_R/2 on Z_M, whose irreps are"
        " complex (d_R = 2), and on groups whose largest irreps are real; it is half of d_R/2"
        " where the largest irrep is complex or quaternionic (column `code` against `d_R`). Its"
        " special case of 1 for Z_M is what d_R gives, not what d_k/2 = 1/2 would.")
    return lines


ANALYSES = (
    Analysis("irrep_scaling", "Which irreps set the data a group needs",
             lambda i: irrep_scaling(i.fits["generalization_boundary"], i.runs, i.level,
                                     seed=i.seed),
             irrep_section, {"irrep_scaling": lambda r, *_: plot_irrep_scaling(r)},
             varies=("train_fraction", "max_irrep_degree"), builds_on="generalization_boundary"),
)
