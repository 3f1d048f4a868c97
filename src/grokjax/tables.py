"""Finished runs → the rows of the runs, curves and features tables, and their provenance.

Every part of a sweep has the same columns, whatever its buckets mix (absent diagnostics are
null), so a reader never drops columns; the columns and dtypes are ``grokjax.schema``'s.
"""

from __future__ import annotations

import platform
import subprocess
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from grokjax import config, engine, plan, rounds, weights
from grokjax.engine import FinishedRun
from grokjax.groups import Group
from grokjax.outdir import Part
from grokjax.plan import Bucket, PlannedRun
from grokjax.schema import (
    CURVES_DTYPES,
    DIAGNOSTIC_SUMMARY_DTYPES,
    FEATURES_EMERGED_ENERGY,
    GENERALIZED_TEST_ACC,
    METRICS,
    RUN_CONFIG_DTYPES,
    RUNS_DTYPES,
    SCHEMA_VERSION,
    TEST_ACC_THRESHOLDS,
)
from grokjax.spec import SweepSpec
from grokjax.train import make_train, over_runs


@dataclass(frozen=True)
class Schema:
    """The columns every part of a sweep shares, whatever its buckets mix."""

    curve_columns: tuple[str, ...]
    feature_dtypes: dict[str, str] | None  # None: no features table
    diagnostics: bool


def schema_of(buckets: list[Bucket]) -> Schema:
    curves, features = dict.fromkeys(METRICS), {}
    for bucket in buckets:
        if not bucket.static.diagnostics:
            continue
        fns = make_train(bucket.static)
        hparams, split, keys, _, task = engine.abstract_inputs(bucket, 1)
        args = (jax.eval_shape(jax.vmap(fns.init), hparams, keys), hparams, split, task)
        curves |= dict.fromkeys(jax.eval_shape(over_runs(fns.evaluate, None), *args))
        features |= {name: feature_dtype(np.empty(0, shape.dtype)) for name, shape
                     in jax.eval_shape(over_runs(fns.features, None), *args).items()}
    diagnostics = any(b.static.diagnostics for b in buckets)
    return Schema(tuple(curves), features if diagnostics else None, diagnostics)


def config_columns(runs: list[PlannedRun], group: Group) -> pd.DataFrame:
    """The config columns of the runs table (``config.COLUMNS``) of runs of ``group``, and each
    run's round, with the runs table's dtypes."""
    return pd.DataFrame([
        {"run_id": run.run_id, "round": run.round, **config.column_values(
            run.config, config.Resolved(group, run.test_size, run.n_train, run.n_test))}
        for run in runs]).astype({"run_id": "string", "round": "int64"} | RUN_CONFIG_DTYPES)


def planned_config(spec: SweepSpec) -> pd.DataFrame:
    """The config columns of every run a sweep plans first (a search's first round)."""
    buckets = plan.plan_runs(spec, [run for _, run in rounds.first_round(spec)])
    return pd.concat([config_columns(list(bucket.runs), bucket.group) for bucket in buckets],
                     ignore_index=True)


def curve_arrays(planned: list[PlannedRun], curves: list[dict[str, np.ndarray]]
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-run curves (each metric (points,), with "step") as (runs, longest) arrays: the
    evaluated steps (-1 past a run's end) and each metric as float64, NaN past a run's end,
    accuracies as exact fractions."""
    steps = np.asarray(padded([c["step"] for c in curves]))
    steps = np.where(np.isnan(steps), -1, steps).astype(np.int64)
    values = {metric: padded([c[metric].astype(np.float64) for c in curves])
              for metric in curves[0] if metric != "step"}
    for split_name, n in (("train", "n_train"), ("test", "n_test")):
        sizes = np.asarray([getattr(run, n) for run in planned])[:, None]
        values[f"{split_name}_acc"] = exact_accuracy(values[f"{split_name}_acc"], sizes)
    return steps, values


def live_frame(bucket: Bucket, in_flight: list[tuple[PlannedRun, dict[str, np.ndarray]]],
               schema: Schema) -> pd.DataFrame:
    """The curves so far of runs in flight, each row with its run's config: the live view."""
    planned = [run for run, _ in in_flight]
    steps, curves = curve_arrays(planned, [c for _, c in in_flight])
    frame = curves_frame([run.run_id for run in planned], curves, steps,
                         list(schema.curve_columns))
    return frame.merge(config_columns(planned, bucket.group), on="run_id", how="left")


def part_tables(bucket: Bucket, finished: list[FinishedRun], sweep_name: str, schema: Schema,
                name: str) -> Part:
    """The runs, curves, (with diagnostics) features and (with keep_weights) weights of a batch
    of finished runs."""
    planned = [f.run for f in finished]
    run_ids = [run.run_id for run in planned]
    steps, curves = curve_arrays(planned, [f.curves for f in finished])
    last = (steps >= 0).sum(axis=1) - 1
    features = None
    if finished[0].features is not None:
        features = {k: np.stack([f.features[k] for f in finished]) for k in finished[0].features}
    diverged = np.asarray([f.diverged_step for f in finished])
    stopped = np.asarray([f.stopped_step for f in finished])
    summary = summarize(curves, steps, last, diverged, stopped)
    summary |= diagnostic_summary(curves, steps, last, features)
    runs = config_columns(planned, bucket.group).assign(
        **summary, wall_seconds=[f.seconds for f in finished], sweep=sweep_name,
        bucket=bucket.id)
    dtypes = RUNS_DTYPES | (DIAGNOSTIC_SUMMARY_DTYPES if schema.diagnostics else {})
    runs = runs.reindex(columns=list(dtypes)).astype(dtypes)
    feature_rows = None
    if schema.feature_dtypes is not None and features is not None:
        feature_rows = features_frame(run_ids, features, schema.feature_dtypes)
    weights_rows = None
    if bucket.static.keep_weights != "none":
        weights_rows = [weights.encode(f.run.run_id, f.weights, bucket.static.keep_weights)
                        for f in finished]
    return Part(name, runs, curves_frame(run_ids, curves, steps, list(schema.curve_columns)),
                feature_rows, weights_rows)


def exact_accuracy(acc: np.ndarray, n: np.ndarray) -> np.ndarray:
    """count/n from a float32 accuracy: float32 is exact to 1 part in 1e7, so rounding
    acc·n recovers the integer count and the table holds exact fractions."""
    return np.round(acc * n) / n


def _nullable_int(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    column = pd.array(values, dtype="Int64")
    column[~present] = pd.NA
    return column


def _first_step(reached: np.ndarray, steps: np.ndarray) -> pd.arrays.IntegerArray:
    """First step where ``reached`` (runs, points) holds; <NA> where it never does."""
    first = np.take_along_axis(steps, reached.argmax(axis=1)[:, None], axis=1)[:, 0]
    return _nullable_int(first, reached.any(axis=1))


def padded(values: list[np.ndarray]) -> np.ndarray:
    """Per-run 1-D arrays of different lengths as (runs, longest), NaN after each run's end."""
    out = np.full((len(values), max(len(v) for v in values)), np.nan)
    for i, v in enumerate(values):
        out[i, :len(v)] = v
    return out


def summarize(curves: dict[str, np.ndarray], steps: np.ndarray, last: np.ndarray,
              diverged_step: np.ndarray, stopped_step: np.ndarray) -> dict[str, object]:
    """Per-run summary columns from (runs, points) curves, NaN-padded after each run's last
    point (index ``last``); ``steps`` (runs, points) the evaluated steps.

    A diverged run's last point is NaN (nothing after a divergence is measured), so its final
    metrics are null; a stopped run's are those of its stop step.
    """
    rows = np.arange(len(last))
    summary = {f"final_{m}": curves[m][rows, last] for m in METRICS}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: null, as documented
        summary |= {
            "best_train_acc": np.nanmax(curves["train_acc"], axis=1),
            "best_test_acc": np.nanmax(curves["test_acc"], axis=1),
            "min_train_loss": np.nanmin(curves["train_loss"], axis=1),
            "min_test_loss": np.nanmin(curves["test_loss"], axis=1),
        }
    summary["step_train_acc_1"] = _first_step(curves["train_acc"] >= 1.0, steps)
    for name, threshold in TEST_ACC_THRESHOLDS.items():
        summary[f"step_test_acc_{name}"] = _first_step(curves["test_acc"] >= threshold, steps)
    diverged, stopped = diverged_step >= 0, stopped_step >= 0
    summary |= {
        "generalized": summary["final_test_acc"] >= GENERALIZED_TEST_ACC,
        "diverged": diverged,
        "diverged_step": _nullable_int(diverged_step, diverged),
        "stopped_step": _nullable_int(stopped_step, stopped),
        "steps_trained": steps[rows, last],
    }
    return summary


def curves_frame(run_ids: list[str], curves: dict[str, np.ndarray], steps: np.ndarray,
                 columns: list[str]) -> pd.DataFrame:
    """Long format from NaN-padded (runs, points) arrays: each run's measured points only, with
    ``columns`` (NaN where this bucket does not measure one), the core metrics first."""
    measured = steps >= 0
    frame = pd.DataFrame({
        "run_id": np.repeat(np.asarray(run_ids, dtype=object), measured.sum(axis=1)),
        "step": steps[measured],
        **{name: (curves[name][measured] if name in curves
                  else np.full(measured.sum(), np.nan)) for name in columns},
    })
    return frame.astype(CURVES_DTYPES | dict.fromkeys(columns, "float64"))


def features_frame(run_ids: list[str], features: dict[str, np.ndarray],
                   dtypes: dict[str, str]) -> pd.DataFrame:
    """One row per (run, hidden node) from (runs, K) arrays, in the sweep's feature columns
    (``dtypes``; null where this bucket has no such feature)."""
    num_runs, width = next(iter(features.values())).shape
    frame = pd.DataFrame({
        "run_id": np.repeat(np.asarray(run_ids, dtype=object), width),
        "node": np.tile(np.arange(width), num_runs),
        **{name: (features[name].reshape(-1) if name in features else pd.NA)
           for name in dtypes},
    })
    return frame.astype({"run_id": "string", "node": "int64"} | dtypes)


def feature_dtype(values: np.ndarray) -> str:
    if values.dtype == bool:
        return "boolean"
    return "Int64" if np.issubdtype(values.dtype, np.integer) else "float64"


def diagnostic_summary(curves: dict[str, np.ndarray], steps: np.ndarray, last: np.ndarray,
                       features: dict[str, np.ndarray] | None) -> dict[str, object]:
    """Stage times per run from the diagnostics curves (see results/README.md)."""
    if "G_F_norm" not in curves:
        return {}
    rows = np.arange(len(last))
    g_f = np.where(np.isfinite(curves["G_F_norm"]), curves["G_F_norm"], -np.inf)
    summary: dict[str, object] = {
        "step_G_F_peak": steps[rows, g_f.argmax(axis=1)],
        "final_active_node_fraction": curves["active_node_fraction"][rows, last],
    }
    if "frequency_dominated_fraction" in curves:
        summary["step_features_emerged"] = _first_step(
            curves["frequency_dominated_energy"] >= FEATURES_EMERGED_ENERGY, steps)
        summary["final_frequency_dominated_fraction"] = (
            curves["frequency_dominated_fraction"][rows, last])
        covered = curves["frequencies_covered"][rows, last]
        summary["frequencies_covered"] = _nullable_int(np.nan_to_num(covered, nan=-1).astype(
            np.int64), np.isfinite(covered))
    if features is not None:  # the mean over active nodes (inactive ones have no direction)
        active = features["active"].astype(bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a run without active nodes: NaN
            summary["mean_energy_train"] = np.nanmean(
                np.where(active, features["energy_train"], np.nan), axis=1)
    return summary


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(sweep_text: str, scale: str) -> dict[str, object]:
    """What produced a table: versions, hardware, code commit and the sweep file as written."""
    device = jax.devices()[0]
    return {
        "schema_version": SCHEMA_VERSION,
        "versions": {name: _package_version(name) for name in (
            "grokjax", "jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow")}
        | {"python": platform.python_version()},
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "git_commit": git_commit(Path(__file__).parent),
        "host": platform.node(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scale": scale,
        "sweep_toml": sweep_text,
    }
