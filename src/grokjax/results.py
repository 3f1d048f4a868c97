"""Parquet tables: schema, run summaries, provenance, reading a sweep back.

A results directory holds three tables, each a directory of part files that pandas, polars and
duckdb read as one table (the protocol that writes and verifies them is ``grokjax.outdir``):

    runs/      one row per run            pandas.read_parquet("results/<sweep>/runs")
    curves/    one row per (run, evaluated step)
    features/  one row per (run, hidden node), sweeps with diagnostics

Every part of a sweep has the same columns, whatever its buckets mix (absent diagnostics are
null), so a reader never drops columns. See results/README.md for every column.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
import warnings
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from grokjax import config, outdir, storage

SCHEMA_VERSION = 2
METADATA_KEY = outdir.METADATA_KEY
GENERALIZED_TEST_ACC = 0.99  # a run "generalized" when its final test accuracy reaches this
TEST_ACC_THRESHOLDS = {"050": 0.5, "090": 0.9, "095": 0.95, "099": 0.99}
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")

RUN_CONFIG_DTYPES = config.COLUMN_DTYPES
RUN_SUMMARY_DTYPES = {
    **{f"final_{m}": "float64" for m in METRICS},
    "best_train_acc": "float64", "best_test_acc": "float64",
    "min_train_loss": "float64", "min_test_loss": "float64",
    "step_train_acc_1": "Int64",
    **{f"step_test_acc_{name}": "Int64" for name in TEST_ACC_THRESHOLDS},
    "generalized": "bool", "diverged": "bool", "diverged_step": "Int64",
    "stopped_step": "Int64", "steps_trained": "int64", "wall_seconds": "float64",
}
RUNS_DTYPES = {"sweep": "string", "run_id": "string", **RUN_CONFIG_DTYPES,
               **RUN_SUMMARY_DTYPES, "bucket": "string", "round": "int64"}
DIAGNOSTIC_SUMMARY_DTYPES = {
    "step_G_F_peak": "Int64", "step_features_emerged": "Int64",
    "final_frequency_dominated_fraction": "float64", "frequencies_covered": "Int64",
    "final_active_node_fraction": "float64", "mean_energy_train": "float64",
}
CURVES_DTYPES = {"run_id": "string", "step": "int64", **{m: "float64" for m in METRICS}}


def run_id(run) -> str:
    """A stable id: the hash of every config field (a dataclass), independent of grid order.

    Fields declared later (``in_id_at_default=False``) count only away from their default."""
    skipped = config.ID_OMITS_DEFAULT
    text = json.dumps({k: v for k, v in asdict(run).items()
                       if k not in skipped or v != skipped[k]}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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
        dominated = curves["frequency_dominated_fraction"]
        summary["step_features_emerged"] = _first_step(dominated >= 0.5, steps)
        summary["final_frequency_dominated_fraction"] = dominated[rows, last]
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
    import jax

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


def read_runs(directory: storage.Where) -> pd.DataFrame:
    """A sweep's runs table, from a local path or a gs:// or s3:// URL."""
    return outdir.read_table(directory, "runs")


def read_curves(directory: storage.Where) -> pd.DataFrame:
    return outdir.read_table(directory, "curves")


def read_features(directory: storage.Where) -> pd.DataFrame:
    return outdir.read_table(directory, "features")


def has_table(directory: storage.Where, table: str) -> bool:
    return bool(outdir.part_names(storage.Location(directory), table))


def read_metadata(path: storage.Where) -> dict[str, object]:
    """The provenance stored in one part file (or the first runs part of a directory)."""
    return outdir.read_metadata(path)
