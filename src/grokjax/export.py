"""Exports of a results directory's tables to other tools' formats."""

from __future__ import annotations

import importlib
import os

import numpy as np
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
    return TensorBoardExport(out_dir).update(runs, curves)


class TensorBoardExport:
    """A results directory as TensorBoard runs (``export_tensorboard``), written as it grows:
    each ``update`` adds the points not written yet, of finished runs and of runs in flight (in
    a new event file per run and update, which TensorBoard reads as one run). A run's name and
    hparams are those of the config fields that vary among ``planned`` (the config columns of
    the runs a sweep plans, ``tables.planned_config``) and the runs seen so far, fixed when it
    is first written. ``out_dir`` is local."""

    def __init__(self, out_dir: str | os.PathLike, planned: pd.DataFrame | None = None):
        what = "the TensorBoard export"
        summary = _needs("tensorboardX.summary", what, "'grokjax[tensorboard]'")
        _local(out_dir, what, " (TensorBoard reads gs:// and s3:// itself)")
        self.out_dir, self.hparams = out_dir, summary.hparams
        self.writer = _needs("tensorboardX", what, "'grokjax[tensorboard]'").SummaryWriter
        self.known = planned  # the config columns of every run planned or seen
        self.names: dict[str, str] = {}  # run id -> its TensorBoard run
        self.last_step: dict[str, int] = {}  # run id -> the last step written
        self.finished: set[str] = set()  # runs whose runs row is written
        self.updates: dict[str, int] = {}  # run id -> event files written

    def update(self, runs: pd.DataFrame, curves: pd.DataFrame | None,
               live: pd.DataFrame | None = None) -> int:
        """Write what is new: ``runs`` and ``curves`` of finished runs, ``live`` (curves with
        each run's config, ``grokjax.Results.live``) of runs in flight. Returns the number of
        runs written to."""
        rows = [(row, True) for _, row in runs.iterrows()]
        frames = [] if curves is None else [curves]
        configs = [runs]
        if live is not None and len(live):
            rows += [(row, False) for _, row in live.drop_duplicates("run_id").iterrows()
                     if row["run_id"] not in set(runs["run_id"])]
            frames.append(live[[c for c in live if c not in RUN_CONFIG_DTYPES and c != "round"]])
            configs.append(live.drop_duplicates("run_id"))
        known = pd.concat([frame[[c for c in frame if c == "run_id" or c in RUN_CONFIG_DTYPES]]
                           for frame in [self.known, *configs] if frame is not None],
                          ignore_index=True).drop_duplicates("run_id", ignore_index=True)
        self.known = known
        names = dict(zip(known["run_id"], run_names(known), strict=True))
        varying = [name for name in RUN_CONFIG_DTYPES if _varies(known, name)]
        curves = pd.concat(frames) if frames else pd.DataFrame(columns=["run_id", "step"])
        tags = [column for column in curves.columns if column not in ("run_id", "step")]
        metrics = dict.fromkeys([*tags, GROKKING_STEP_TAG, "generalized"])  # names only
        curves_by_run = dict(tuple(curves.groupby("run_id", sort=False)))
        written = 0
        for run, finished in rows:
            run_id = run["run_id"]
            points = curves_by_run.get(run_id, curves.iloc[:0])
            points = points[points["step"] > self.last_step.get(run_id, -1)]
            if points.empty and (not finished or run_id in self.finished):
                continue
            row = {column: _python_value(value) for column, value in run.items()}
            first = run_id not in self.names
            name = self.names.setdefault(run_id, names[run_id])
            if len(points):
                self.last_step[run_id] = int(points["step"].max())
            # Event files are named by the second they open in: a suffix keeps each update's.
            updates = self.updates[run_id] = self.updates.get(run_id, 0) + 1
            with self.writer(logdir=os.path.join(self.out_dir, name),
                             filename_suffix=f".{updates}") as writer:
                if first:
                    config = {column: row[column] for column in varying
                              if row.get(column) is not None}
                    for summary in self.hparams(config, metrics):
                        writer.file_writer.add_summary(summary)
                for step, values in zip(points["step"], points[tags].itertuples(index=False),
                                        strict=True):
                    for tag, value in zip(tags, values, strict=True):
                        if not pd.isna(value):
                            writer.add_scalar(tag, float(value), int(step))
                if finished:
                    writer.add_text("run", _markdown_table(row))
                    last = max(self.last_step.get(run_id, 0), 0)
                    if row.get(GROKKED_COLUMN) is not None:
                        writer.add_scalar(GROKKING_STEP_TAG, float(row[GROKKED_COLUMN]), last)
                    if row.get("generalized") is not None:
                        writer.add_scalar("generalized", float(row["generalized"]), last)
                    self.finished.add(run_id)
            written += 1
        return written

def torch_state_dict(params: dict[str, np.ndarray], order: int) -> dict:
    """Parameters in the paper layout of ``grokjax.model`` as the ``state_dict`` of the paper
    code's ``ModularAdditionNN`` (``nn.Linear`` stores x·W as ``W.weight`` = Wᵀ): its
    ``embedding.weight`` (M × M: the trained E, else the frozen identity), ``W.weight``
    (K × num_ops·M), ``other_layers.{i}.weight`` (K × K), ``V.weight`` (M × K); complex weights
    as the code's complex tensors. Needs torch."""
    torch = _needs("torch", "the PyTorch export", "torch (or 'grokjax[torch]')")

    def weight(name: str) -> torch.Tensor:
        real = torch.from_numpy(np.ascontiguousarray(params[name].T))
        if f"{name}_imag" not in params:
            return real
        return torch.complex(real, torch.from_numpy(np.ascontiguousarray(
            params[f"{name}_imag"].T)))

    embedding = params.get("E", np.eye(order, dtype=np.float32))
    state = {"embedding.weight": torch.from_numpy(np.ascontiguousarray(embedding)),
             "W.weight": weight("W")}
    for i, layer in enumerate(params.get("U", ())):
        state[f"other_layers.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(layer.T))
    return state | {"V.weight": weight("V")}


def paper_constructor(run: dict[str, object]) -> dict[str, object]:
    """The arguments of the paper code's ``ModularAdditionNN(...)`` for a run (its runs row):
    build the network with them, then ``load_state_dict``. The output multiplier is not one:
    the code multiplies the network's output by it."""
    return {"M": run["M"], "num_of_ops": run["num_ops"], "hidden_size": run["K"],
            "activation": run["activation"], "embed_trainable": run["embed_trainable"],
            "other_layers": run["other_layers"], "use_complex_weights": run["complex_weights"]}


def export_torch(results, out_dir: str | os.PathLike) -> int:
    """Every kept step of every run of ``results`` (a ``grokjax.Results``) that kept weights, as
    ``out_dir/<run_id>/model<step>.pt``: a checkpoint like the paper code's, ``{"model":
    state_dict, "constructor": ModularAdditionNN's arguments, "output_multiplier": ...,
    "step": ..., "run": its runs row}``. Returns the number of files written; ``out_dir`` is a
    local directory."""
    torch = _needs("torch", "the PyTorch export", "torch (or 'grokjax[torch]')")
    _local(out_dir, "the PyTorch export")
    runs = results.runs
    keeping = runs[runs["keep_weights"] != "none"] if "keep_weights" in runs else runs.iloc[:0]
    written = 0
    for _, run in keeping.iterrows():
        row = {column: _python_value(value) for column, value in run.items()}
        os.makedirs(os.path.join(out_dir, row["run_id"]), exist_ok=True)
        for step in results.weight_steps(row["run_id"]):
            torch.save({"model": torch_state_dict(results.weights(row["run_id"], step), row["M"]),
                        "constructor": paper_constructor(row),
                        "output_multiplier": row["output_multiplier"], "step": step, "run": row},
                       os.path.join(out_dir, row["run_id"], f"model{step:05d}.pt"))
            written += 1
    return written


def _needs(module: str, what: str, install: str):
    """The module ``what`` needs, or an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} needs {module.split('.')[0]}: pip install {install}") from err


def _local(out_dir: str | os.PathLike, what: str, note: str = "") -> None:
    if not Location(out_dir).is_local:
        raise StorageError(f"{out_dir}: {what} writes a local directory; write it locally, "
                           f"then copy it{note}")


def _python_value(value: object) -> object:
    """A plain bool/int/float/str (tensorboardX ignores numpy scalars), None for <NA>."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _markdown_table(row: dict[str, object]) -> str:
    lines = ["| column | value |", "|---|---|"]
    lines += [f"| {name} | {'<NA>' if value is None else value} |" for name, value in row.items()]
    return "\n".join(lines)
