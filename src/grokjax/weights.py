"""The weights table: a run's parameters at chosen steps, as Parquet rows, one row group per run.

    weights/weights-<part>.parquet     (the part's name is that of its runs and curves parts)
      run_id  string      step   int64          name  string (W, V, U, E, W_imag, V_imag)
      dtype   string      shape  list<int64>    data  large_binary (the array, little-endian)

Parameters are in the paper layout of ``grokjax.model`` (W: num_ops·M × K, V: K × M, U: L × K × K,
E: M × M); ``grokjax.export`` turns them into the paper code's PyTorch ``state_dict``. A part is
one file written and verified like the other tables, and a run is one row group, so a reader of
one run (``grokjax.Results.weights``) fetches that row group alone, from a bucket too.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pyarrow as pa

STORED_DTYPES = ("float32", "bfloat16")
_NUMPY = {"float32": np.dtype("<f4"), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
SCHEMA = pa.schema([("run_id", pa.string()), ("step", pa.int64()), ("name", pa.string()),
                    ("dtype", pa.string()), ("shape", pa.list_(pa.int64())),
                    ("data", pa.large_binary())])
Kept = dict[int, dict[str, np.ndarray]]  # step -> parameter name -> array


def encode(run_id: str, kept: Kept, dtype: str) -> pa.Table:
    """One run's kept parameters as rows of the weights table, steps in order, in ``dtype``
    (bfloat16 rounds to nearest even)."""
    rows = [(step, name, np.ascontiguousarray(array, dtype=np.float32).astype(_NUMPY[dtype]))
            for step in sorted(kept) for name, array in sorted(kept[step].items())]
    return pa.table({
        "run_id": [run_id] * len(rows),
        "step": [step for step, _, _ in rows],
        "name": [name for _, name, _ in rows],
        "dtype": [dtype] * len(rows),
        "shape": [list(array.shape) for _, _, array in rows],
        "data": [array.tobytes() for _, _, array in rows],
    }, schema=SCHEMA)


def decode(rows: pa.Table) -> Kept:
    """Rows of one run back as {step: {name: float32 array}} (bfloat16 widened, exactly)."""
    kept: Kept = {}
    columns = rows.select(["step", "name", "dtype", "shape", "data"]).to_pydict()
    for step, name, dtype, shape, data in zip(*columns.values(), strict=True):
        array = np.frombuffer(data, _NUMPY[dtype]).reshape(shape).astype(np.float32)
        kept.setdefault(step, {})[name] = array
    return kept
