"""Parquet tables: schema, run summaries, provenance, atomic part files, reading a sweep back.

Layout of ``results/<sweep>/`` (see results/README.md for every column):

    runs-<bucket>-<chunk>.parquet        one row per run     pandas.read_parquet("results/<sweep>")
    _curves/curves-<bucket>-<chunk>.parquet   one row per (run, evaluated step)
    _sweep.toml, _plan.json              the sweep as run, and its plan hash (resume or refuse)
    _process-<i>.json, _manifest.json    each process's share and timings; all chunks, provenance

Readers skip names that start with '_' or '.', so the directory itself reads as the runs table.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grokjax import config

SCHEMA_VERSION = 1
METADATA_KEY = b"grokjax"
CURVES_DIR = "_curves"
FEATURES_DIR = "_features"
TEMPORARY_SUFFIX = ".tmp"
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
    "wall_seconds": "float64",
}
RUNS_DTYPES = {"sweep": "string", "run_id": "string", **RUN_CONFIG_DTYPES,
               **RUN_SUMMARY_DTYPES, "bucket": "string", "chunk": "int64"}
DIAGNOSTIC_SUMMARY_DTYPES = {
    "step_G_F_peak": "int64", "step_features_emerged": "Int64",
    "final_frequency_dominated_fraction": "float64", "frequencies_covered": "int64",
    "final_active_node_fraction": "float64", "mean_energy_train": "float64",
}
CURVES_DTYPES = {"run_id": "string", "step": "int64", **{m: "float64" for m in METRICS}}


def run_id(config) -> str:
    """A stable id: the hash of every config field (a dataclass), independent of grid order."""
    text = json.dumps(asdict(config), sort_keys=True)
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
    """First step where ``reached`` (runs, evals) holds; <NA> where it never does."""
    return _nullable_int(steps[reached.argmax(axis=1)], reached.any(axis=1))


def summarize(curves: dict[str, np.ndarray], steps: np.ndarray,
              diverged_step: np.ndarray) -> dict[str, object]:
    """Per-run summary columns from (runs, evals) curves measured at ``steps``."""
    summary = {f"final_{m}": curves[m][:, -1] for m in METRICS}
    summary |= {
        "best_train_acc": curves["train_acc"].max(axis=1),
        "best_test_acc": curves["test_acc"].max(axis=1),
        "min_train_loss": np.nanmin(curves["train_loss"], axis=1),
        "min_test_loss": np.nanmin(curves["test_loss"], axis=1),
        "step_train_acc_1": _first_step(curves["train_acc"] >= 1.0, steps),
    }
    for name, threshold in TEST_ACC_THRESHOLDS.items():
        summary[f"step_test_acc_{name}"] = _first_step(curves["test_acc"] >= threshold, steps)
    diverged = diverged_step >= 0
    summary |= {
        "generalized": curves["test_acc"][:, -1] >= GENERALIZED_TEST_ACC,
        "diverged": diverged,
        "diverged_step": _nullable_int(diverged_step, diverged),
    }
    return summary


def curves_frame(run_ids: list[str], curves: dict[str, np.ndarray],
                 steps: np.ndarray) -> pd.DataFrame:
    """Long format: the core metrics, then any diagnostics curves (float64)."""
    num_runs, num_points = curves["train_loss"].shape
    names = [*METRICS, *(name for name in curves if name not in METRICS)]
    frame = pd.DataFrame({
        "run_id": np.repeat(np.asarray(run_ids, dtype=object), num_points),
        "step": np.tile(steps, num_runs),
        **{name: curves[name].reshape(-1).astype(np.float64) for name in names},
    })
    return frame.astype(CURVES_DTYPES)


def features_frame(run_ids: list[str], features: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per (run, hidden node) from (runs, K) arrays."""
    num_runs, width = next(iter(features.values())).shape
    frame = pd.DataFrame({
        "run_id": np.repeat(np.asarray(run_ids, dtype=object), width),
        "node": np.tile(np.arange(width), num_runs),
        **{name: values.reshape(-1) for name, values in features.items()},
    })
    def dtype(values: np.ndarray) -> str:
        if values.dtype == bool:
            return "bool"
        return "int64" if np.issubdtype(values.dtype, np.integer) else "float64"

    return frame.astype({"run_id": "string", "node": "int64"}
                        | {name: dtype(values) for name, values in features.items()})


def diagnostic_summary(curves: dict[str, np.ndarray], steps: np.ndarray,
                       features: dict[str, np.ndarray] | None) -> dict[str, object]:
    """Stage times per run from the diagnostics curves (see results/README.md)."""
    if "G_F_norm" not in curves:
        return {}
    g_f = np.where(np.isfinite(curves["G_F_norm"]), curves["G_F_norm"], -np.inf)
    summary: dict[str, object] = {"step_G_F_peak": steps[g_f.argmax(axis=1)]}
    if "frequency_dominated_fraction" in curves:
        dominated = curves["frequency_dominated_fraction"]
        summary["step_features_emerged"] = _first_step(dominated >= 0.5, steps)
        summary["final_frequency_dominated_fraction"] = dominated[:, -1]
        summary["frequencies_covered"] = curves["frequencies_covered"][:, -1].astype(np.int64)
    summary["final_active_node_fraction"] = curves["active_node_fraction"][:, -1]
    if features is not None:  # the mean over active nodes (inactive ones have no direction)
        active = features["active"].astype(bool)
        summary["mean_energy_train"] = np.nanmean(np.where(active, features["energy_train"],
                                                           np.nan), axis=1)
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


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before its rename: hidden from readers, unique per process."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_table(frame: pd.DataFrame, path: Path, metadata: dict[str, object]) -> None:
    """Write atomically: a hidden temporary name in the same directory, then rename."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def write_text(path: Path, text: str) -> None:
    """Write a small file atomically, so a concurrent reader sees the old or the new text."""
    temporary = temporary_path(path)
    temporary.write_text(text)
    os.replace(temporary, path)


def read_runs(directory: str | Path) -> pd.DataFrame:
    return pd.read_parquet(directory)


def read_curves(directory: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(directory) / CURVES_DIR)


def read_features(directory: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(directory) / FEATURES_DIR)


def read_metadata(path: str | Path) -> dict[str, object]:
    """The provenance stored in one part file (or the first runs part of a directory)."""
    path = Path(path)
    if path.is_dir():
        path = min(path.glob("runs-*.parquet"))
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])
