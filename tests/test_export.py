"""The TensorBoard export, read back from its event files."""

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_SWEEP

import grokjax
from grokjax import cli
from grokjax.export import TensorBoardExport, export_tensorboard, run_names
from grokjax.spec import tomllib  # tomli on Python 3.10
from grokjax.storage import StorageError

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2",
                                reason="the export needs tensorboardX: pip install -e '.[dev]'")
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData  # noqa: E402

RUNS = pd.DataFrame({
    "sweep": pd.array(["wd", "wd"], dtype="string"),
    "run_id": pd.array(["a0", "b1"], dtype="string"),
    "group": pd.array(["23", "23"], dtype="string"),
    "K": pd.array([16, 16], dtype="int64"),
    "weight_decay": [0.0, 1e-3],
    "ridge_lambda": [np.nan, np.nan],
    "diagnostics": [False, False],
    "final_test_acc": [0.5, 1.0],
    "step_test_acc_099": pd.array([None, 20], dtype="Int64"),
    "generalized": [False, True],
})
CURVES = pd.DataFrame({
    "run_id": pd.array(["a0", "a0", "b1", "b1", "b1"], dtype="string"),
    "step": pd.array([0, 10, 0, 10, 20], dtype="int64"),
    "train_loss": [1.0, 0.5, 1.0, 0.25, 0.125],
    "test_acc": [0.0, 0.5, 0.0, np.nan, 1.0],
})


def read_events(run_dir: Path) -> list:
    """The Event protos of a run's one event file."""
    (path,) = run_dir.glob("events.out.tfevents.*")
    return read_event_file(path)


def read_event_file(path: Path) -> list:
    """The Event protos of an event file (TFRecord: length, its CRC, data, data CRC)."""
    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return events


def values(events: list) -> list:
    return [(event.step, value) for event in events for value in event.summary.value]


def hparams_of(summaries: list, tag: str):
    (value,) = [value for _, value in summaries if value.tag == tag]
    return HParamsPluginData.FromString(value.metadata.plugin_data.content)


def test_each_run_becomes_a_tensorboard_run_named_by_its_varying_config(tmp_path):
    assert export_tensorboard(RUNS, CURVES, tmp_path) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["weight_decay=0",
                                                                "weight_decay=0.001"]
    summaries = values(read_events(tmp_path / "weight_decay=0.001"))
    scalars = {(value.tag, step): value.simple_value for step, value in summaries
               if value.metadata.plugin_data.plugin_name != "hparams" and value.HasField(
                   "simple_value")}
    assert scalars == {("train_loss", 0): 1.0, ("train_loss", 10): 0.25,
                       ("train_loss", 20): 0.125, ("test_acc", 0): 0.0, ("test_acc", 20): 1.0,
                       ("grokking_step", 20): 20.0, ("generalized", 20): 1.0}
    config = hparams_of(summaries, "_hparams_/session_start_info").session_start_info.hparams
    assert dict(config) == {"weight_decay": config["weight_decay"]}  # K, group: constant
    assert config["weight_decay"].number_value == 1e-3
    metrics = hparams_of(summaries, "_hparams_/experiment").experiment.metric_infos
    assert [metric.name.tag for metric in metrics] == ["train_loss", "test_acc",
                                                       "grokking_step", "generalized"]
    (text,) = [value for _, value in summaries if value.tag.startswith("run")]
    table = text.tensor.string_val[0].decode()
    assert "| final_test_acc | 1.0 |" in table and "| step_test_acc_099 | 20 |" in table
    not_grokked = {value.tag for _, value in values(read_events(tmp_path / "weight_decay=0"))}
    assert "generalized" in not_grokked and "grokking_step" not in not_grokked


def test_run_names_are_unique_and_safe_for_a_file_system():
    runs = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "group": ["2x3", "2x3", "S4", "S4"],
                         "train_fraction": [0.25, 0.5, 0.25, 0.25],
                         "test_size": [0.75, 0.5, 0.75, 0.75], "seed": [1, 1, 1, 1],
                         "lr": [0.01, 0.01, 0.01, 0.010000001]})
    assert run_names(runs).tolist() == [
        "group=2x3,lr=0.01,train_fraction=0.25", "group=2x3,lr=0.01,train_fraction=0.5",
        "group=S4,lr=0.01,train_fraction=0.25,run_id=c",
        "group=S4,lr=0.01,train_fraction=0.25,run_id=d"]  # %g hides lr's difference
    odd = run_names(runs.assign(group=["expr:x*y mod 5", "7"] * 2))
    assert odd[1] == "group=7,lr=0.01,train_fraction=0.5"
    assert odd[0] == "group=expr_x_y_mod_5,lr=0.01,train_fraction=0.25,run_id=a"
    assert run_names(runs.iloc[:1]).tolist() == ["a"]  # nothing varies


def test_a_run_in_flight_is_named_as_in_the_whole_sweep(tmp_path):
    """Its name comes from the fields that vary among the runs the sweep plans, not among the
    few runs seen so far (alone, a0 would be named by its run id)."""
    exporter = TensorBoardExport(tmp_path, planned=RUNS[["run_id", "K", "weight_decay"]])
    live = CURVES[CURVES["run_id"] == "a0"].merge(RUNS[["run_id", "K", "weight_decay"]])
    assert exporter.update(RUNS.iloc[:0], None, live) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["weight_decay=0"]
    assert exporter.update(RUNS, CURVES) == 2  # a0's runs row, b1 whole
    assert sorted(path.name for path in tmp_path.iterdir()) == ["weight_decay=0",
                                                                "weight_decay=0.001"]


def test_a_url_destination_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="writes a local directory"):
        export_tensorboard(RUNS, CURVES, "gs://bucket/tensorboard")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_tensorboard_writes_every_run_of_a_sweep(tmp_path, capsys):
    res = grokjax.run(tomllib.loads(TINY_SWEEP), results=tmp_path / "results", progress=False,
                      K=8, seed=[0, 1], weight_decay=0.0)
    out = tmp_path / "tensorboard"
    assert cli.main(["export", "tensorboard", str(res.directory), str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 2 runs to {out}")
    assert sorted(path.name for path in out.iterdir()) == ["seed=0", "seed=1"]
    run_id = res.runs.run_id.iloc[0]
    scalars = {(value.tag, step): value.simple_value
               for step, value in values(read_events(out / f"seed={res.runs.seed.iloc[0]}"))
               if value.tag in ("test_acc", "train_loss")}
    curves = res.curves[res.curves.run_id == run_id]
    assert len(scalars) == 2 * len(curves)
    assert all(scalars["test_acc", step] == np.float32(acc)
               for step, acc in zip(curves.step, curves.test_acc, strict=True))
    assert cli.main(["export", "tensorboard", str(res.directory), "gs://bucket/tb"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: export: ") and "writes a local directory" in err
    assert err.count("\n") == 1


def test_cli_export_of_a_missing_directory_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["export", "tensorboard", str(tmp_path / "nothing"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results: ") and "does not exist" in err and err.count("\n") == 1
