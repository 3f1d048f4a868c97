"""storage: the same behaviour on a local directory, gs:// (emulator) and s3:// (moto)."""

import importlib
import os
import select
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from helpers import parquet_bytes

from grokjax import storage
from grokjax.storage import Location, StorageError


def frame(first: int, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": pd.array([f"r{first + i}" for i in range(rows)], dtype="string"),
        "step": pd.array(range(first, first + rows), dtype="int64"),
        "loss": [0.5 * (first + i) for i in range(rows)],
        "generalized": [i % 2 == 0 for i in range(rows)],
        "step_test_acc_099": pd.array([first if i else None for i in range(rows)],
                                      dtype="Int64"),
    })


def table(data: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(data, preserve_index=False)


def test_location_keeps_paths_and_urls():
    assert str(Location("results/wd")) == "results/wd" and Location("results/wd").is_local
    bucket = Location("gs://bucket/grok/")
    assert (bucket.protocol, bucket.path, bucket.is_local) == ("gs", "bucket/grok", False)
    assert str(bucket.join("wd", "runs")) == "gs://bucket/grok/wd/runs"
    assert bucket.join("wd").name == "wd"
    assert Location("file:///tmp/x") == Location("/tmp/x")
    assert Location(Location("s3://b/x")) == Location("s3://b/x")
    assert len({Location("s3://b/x"), Location("s3://b/x/")}) == 1


def test_a_url_collapsed_by_pathlib_is_refused():
    with pytest.raises(StorageError, match="pass the URL as a str"):
        Location(Path("gs://bucket/grok"))


def test_an_unknown_protocol_is_refused():
    with pytest.raises(StorageError, match="nosuchproto"):
        storage.exists("nosuchproto://bucket/x")


def test_a_missing_cloud_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs now fails
    # fsspec keeps the classes it imported; forget gs:// so it imports gcsfs again
    monkeypatch.delitem(importlib.import_module("fsspec.registry")._registry, "gs",
                        raising=False)
    with pytest.raises(StorageError, match=r"needs gcsfs: pip install 'grokjax\[cloud\]'"):
        storage.exists("gs://bucket/x")


def test_write_and_read_round_trip(storage_root):
    plan = Location(storage_root).join("wd", "_plan.json")
    storage.write_text(plan, '{"plan_hash": "a"}')
    assert storage.read_text(plan) == '{"plan_hash": "a"}'
    storage.write_text(plan, '{"plan_hash": "b"}')  # replaced whole
    assert storage.read_text(plan) == '{"plan_hash": "b"}'
    blob = bytes(range(256)) * 1000
    storage.write_bytes(Location(storage_root).join("wd", "blob"), blob)
    assert storage.read_bytes(Location(storage_root).join("wd", "blob")) == blob


def test_reading_an_absent_file_raises(storage_root):
    with pytest.raises(FileNotFoundError):
        storage.read_text(Location(storage_root).join("wd", "_manifest.json"))


def test_listdir_exists_remove(storage_root):
    sweep = Location(storage_root).join("wd")
    assert storage.listdir(sweep) == [] and not storage.exists(sweep)
    for name in ("_plan.json", "runs/runs-0.parquet", "runs/runs-1.parquet"):
        storage.write_text(sweep.join(name), name)
    assert storage.listdir(sweep) == ["_plan.json", "runs"]
    assert storage.listdir(sweep.join("runs")) == ["runs-0.parquet", "runs-1.parquet"]
    assert storage.listdir(sweep.join("_plan.json")) == []  # a file has no entries
    assert storage.exists(sweep.join("runs")) and storage.exists(sweep.join("_plan.json"))
    storage.remove(sweep.join("runs", "runs-0.parquet"))
    storage.remove(sweep.join("runs", "runs-0.parquet"))  # already gone: nothing to do
    assert not storage.exists(sweep.join("runs", "runs-0.parquet"))
    assert storage.listdir(sweep.join("runs")) == ["runs-1.parquet"]
    storage.remove(sweep, recursive=True)
    storage.remove(sweep, recursive=True)
    assert storage.listdir(sweep) == [] and not storage.exists(sweep.join("_plan.json"))


def test_parquet_directory_round_trip(storage_root):
    runs = Location(storage_root).join("wd", "runs")
    parts = [frame(0), frame(3, rows=2)]
    for index, part in enumerate(parts):
        storage.write_bytes(runs.join(f"runs-{index}.parquet"), parquet_bytes(table(part)))
    storage.write_text(runs.join("_notes.parquet"), "not parquet")  # skipped, as pandas does
    storage.write_text(runs.join(".runs-9.parquet"), "not parquet")
    expected = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(storage.read_parquet_dir(runs), expected)
    filesystem, path = storage.pyarrow_filesystem(runs.join("runs-1.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(path, filesystem=filesystem), parts[1])


def test_reading_a_directory_without_parts_raises(storage_root):
    with pytest.raises(FileNotFoundError, match="no Parquet part files"):
        storage.read_parquet_dir(Location(storage_root).join("wd", "runs"))


def test_check_writable_accepts_and_leaves_nothing(storage_root):
    storage.check_writable(Location(storage_root).join("wd"))
    assert storage.listdir(Location(storage_root).join("wd")) == []


def refusal(where) -> str:
    with pytest.raises(StorageError) as refused:
        storage.check_writable(where)
    message = str(refused.value)
    assert "\n" not in message and f"cannot write to {where}" in message
    return message


def test_check_writable_refuses_a_missing_bucket(gcs_bucket, s3_bucket):
    assert "check the bucket name" in refusal("gs://no-such-bucket-here/grok")
    assert "check the bucket name" in refusal("s3://no-such-bucket-here/grok")


def test_check_writable_refuses_s3_without_credentials(s3_bucket, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to find either
    pytest.importorskip("s3fs").S3FileSystem.clear_instance_cache()  # built with credentials
    assert "AWS_ACCESS_KEY_ID" in refusal(f"{s3_bucket}/grok")


def test_check_writable_refuses_a_local_file_and_a_path_under_one(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert "choose a directory you can write" in refusal(str(tmp_path / "a-file"))
    # As root no permission bit stops a write; a parent that is a regular file always does.
    assert "NotADirectoryError" in refusal(str(tmp_path / "a-file" / "results"))


@pytest.mark.parametrize("bucket", ["gcs_bucket", "s3_bucket"])
def test_urls_never_become_local_paths(bucket, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = Location(request.getfixturevalue(bucket)).join("wd")
    storage.check_writable(sweep)
    storage.write_bytes(sweep.join("runs", "runs-0.parquet"), parquet_bytes(table(frame(0))))
    storage.write_text(sweep.join("_plan.json"), "{}")
    assert len(storage.read_parquet_dir(sweep.join("runs"))) == 3
    assert os.listdir(tmp_path) == []


def test_local_temporaries_go_to_the_given_directory(tmp_path):
    sweep = Location(tmp_path / "wd")
    storage.write_bytes(sweep.join("runs", "runs-0.parquet"), parquet_bytes(table(frame(0))),
                        temporary_dir=sweep.join("_tmp"))
    assert storage.listdir(sweep) == ["_tmp", "runs"]
    assert storage.listdir(sweep.join("runs")) == ["runs-0.parquet"]
    assert storage.listdir(sweep.join("_tmp")) == []


def test_a_local_write_fsyncs_the_file_then_its_directory(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda descriptor: synced.append(
        os.readlink(f"/proc/self/fd/{descriptor}")))
    storage.write_text(tmp_path / "runs" / "runs-0.parquet", "x")
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".runs-0.parquet.")  # before the rename
    assert synced[1] == str(tmp_path / "runs")


KILLED_WRITER = """
import os, sys, time
from grokjax import storage
def stall(descriptor):  # the data are written, not yet renamed: wait to be killed
    print("written", flush=True)
    time.sleep(60)
os.fsync = stall
storage.write_bytes(sys.argv[1], b"new" * 1_000_000)
"""


def test_a_killed_local_writer_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "runs-0.parquet"
    storage.write_bytes(target, b"old")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)],
                              stdout=subprocess.PIPE)
    try:
        assert select.select([writer.stdout], [], [], 60)[0], "the writer did not start"
        assert writer.stdout.readline() == b"written\n"
    finally:
        writer.kill()
        writer.wait(timeout=10)
        writer.stdout.close()
    assert target.read_bytes() == b"old"
    (partial,) = [path for path in tmp_path.iterdir() if path != target]
    assert partial.name.startswith(".runs-0.parquet.") and partial.suffix == ".tmp"


def test_s3_takes_its_endpoint_from_aws_endpoint_url_s3_too(s3_bucket, s3_server, monkeypatch):
    storage.write_text(Location(s3_bucket).join("_plan.json"), "{}")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()  # built with the old environment
    assert storage.read_text(Location(s3_bucket).join("_plan.json")) == "{}"
