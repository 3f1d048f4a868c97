"""Exports of a results directory's tables to other tools' formats."""

from __future__ import annotations

import os

import pandas as pd

from grokjax.config import FIELDS
from grokjax.errors import StorageError
from grokjax.schema import GROKKED_COLUMN, RUN_CONFIG_DTYPES
from grokjax.storage import Location

# A run's split is named by the first of these that varies: the others follow from it.
SPLIT_NAMES = ("critical_ratio_delta", "train_fraction", "test_size")
GROKKING_STEP_TAG = "grokking_step"  # the run's step_test_acc_099, an HParams metric


def _varies(runs: pd.DataFrame, column: str) -> bool:
    return column in runs and runs[column].nunique(dropna=False) > 1


def run_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's name in TensorBoard: its values of the config fields that vary across
    ``runs``, e.g. ``weight_decay=0.001,seed=3`` (the seed last; a split by the first of
    SPLIT_NAMES that varies), with any character outside letters, digits and ``.,_=+-`` as
    ``_``. A name two runs would share gets ``,run_id=...``; with nothing varying, the run id."""
    split = [name for name in SPLIT_NAMES if _varies(runs, name)][:1]
    fields = [name for name in FIELDS if _varies(runs, name) and name != "seed"
              and (name in split or name not in SPLIT_NAMES)] + ["seed"] * _varies(runs, "seed")
    ids = runs["run_id"].astype(str)
    if not fields:
        return ids
    names = pd.Series([",".join(f"{name}={value:g}" if isinstance(value, float)
                                else f"{name}={value}" for name, value in zip(fields, row,
                                                                              strict=True))
                       for row in runs[fields].itertuples(index=False)], index=runs.index)
    names = names.str.replace(r"[^A-Za-z0-9.,_=+-]", "_", regex=True)
    return names.where(~names.duplicated(keep=False), names + ",run_id=" + ids)


def export_tensorboard(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: str | os.PathLike) -> int:
    """Write each run as a TensorBoard run ``out_dir/<name>/``, named by its varying config
    (``run_names``): every curve column as a scalar at each evaluated step (NaN, "not
    measured", skipped), the config columns that vary across the runs as hparams (the HParams
    tab; constant ones would only clutter it), with the curve columns, ``grokking_step`` (the
    first step with test accuracy ≥ 0.99, absent where the run had not grokked) and
    ``generalized`` (1 or 0) as its metrics, and the run's whole ``runs`` row as a text table.
    Returns the number of runs written. ``out_dir`` is a local directory."""
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams
    except ImportError as err:
        raise ImportError("the TensorBoard export needs tensorboardX: pip install "
                          "'grokjax[tensorboard]'") from err
    if not Location(out_dir).is_local:
        raise StorageError(f"{out_dir}: the TensorBoard export writes a local directory; write "
                           "it locally, then copy it (TensorBoard reads gs:// and s3:// itself)")
    tags = [column for column in curves.columns if column not in ("run_id", "step")]
    metrics = dict.fromkeys([*tags, GROKKING_STEP_TAG, "generalized"])  # names only
    varying = [name for name in RUN_CONFIG_DTYPES if _varies(runs, name)]
    curves_by_run = dict(tuple(curves.groupby("run_id", sort=False)))
    for (_, run), name in zip(runs.iterrows(), run_names(runs), strict=True):
        row = {column: _python_value(value) for column, value in run.items()}
        with SummaryWriter(logdir=os.path.join(out_dir, name)) as writer:
            config = {column: row[column] for column in varying if row[column] is not None}
            for summary in hparams(config, metrics):
                writer.file_writer.add_summary(summary)
            writer.add_text("run", _markdown_table(row))
            run_curves = curves_by_run.get(row["run_id"], curves.iloc[:0])
            for step, values in zip(run_curves["step"], run_curves[tags].itertuples(index=False),
                                    strict=True):
                for tag, value in zip(tags, values, strict=True):
                    if not pd.isna(value):
                        writer.add_scalar(tag, float(value), int(step))
            last = int(run_curves["step"].max()) if len(run_curves) else 0
            if row.get(GROKKED_COLUMN) is not None:
                writer.add_scalar(GROKKING_STEP_TAG, float(row[GROKKED_COLUMN]), last)
            if row.get("generalized") is not None:
                writer.add_scalar("generalized", float(row["generalized"]), last)
    return len(runs)


def _python_value(value: object) -> object:
    """A plain bool/int/float/str (tensorboardX ignores numpy scalars), None for <NA>."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _markdown_table(row: dict[str, object]) -> str:
    lines = ["| column | value |", "|---|---|"]
    lines += [f"| {name} | {'<NA>' if value is None else value} |" for name, value in row.items()]
    return "\n".join(lines)
