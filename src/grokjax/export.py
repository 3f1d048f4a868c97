"""Exports of a results directory's tables to other tools' formats."""

from __future__ import annotations

import os

import pandas as pd

from grokjax.errors import StorageError
from grokjax.schema import RUN_CONFIG_DTYPES
from grokjax.storage import Location


def export_tensorboard(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: str | os.PathLike) -> int:
    """Write each run as a TensorBoard run ``out_dir/<run_id>/``: every curve column as a scalar
    at each evaluated step (NaN, "not measured", skipped), the run's configuration as hparams
    (TensorBoard's HParams tab, with the curve columns as its metrics), and its whole ``runs`` row
    as a text table. Returns the number of runs written. ``out_dir`` is a local directory."""
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
    curves_by_run = dict(tuple(curves.groupby("run_id", sort=False)))
    for _, run in runs.iterrows():
        row = {column: _python_value(value) for column, value in run.items()}
        with SummaryWriter(logdir=os.path.join(out_dir, row["run_id"])) as writer:
            config = {name: row[name] for name in RUN_CONFIG_DTYPES
                      if name in row and row[name] is not None}
            for summary in hparams(config, dict.fromkeys(tags)):  # metrics: their names only
                writer.file_writer.add_summary(summary)
            writer.add_text("run", _markdown_table(row))
            run_curves = curves_by_run.get(row["run_id"], curves.iloc[:0])
            for step, values in zip(run_curves["step"], run_curves[tags].itertuples(index=False),
                                    strict=True):
                for tag, value in zip(tags, values, strict=True):
                    if not pd.isna(value):
                        writer.add_scalar(tag, float(value), int(step))
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
