"""Small sweep files shared by the tests (tiny shapes: every compile and run takes seconds)."""

from pathlib import Path

TINY_SWEEP = """
[sweep]
name = "tiny"

[fixed]
group = "7"
K = 16
lr = 0.01
test_size = 0.4
steps = 40
eval_every = 5

[grid]
weight_decay = [0.0, 1e-3, 1e-2]
seed = [0, 1, 2]
"""


def write_sweep(directory: Path, text: str = TINY_SWEEP, name: str = "tiny.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def parquet_bytes(table) -> bytes:
    """A pyarrow Table as the bytes of one Parquet file (what a part holds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
