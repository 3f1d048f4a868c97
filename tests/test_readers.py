"""A results directory written by storage reads the same in pandas, polars and duckdb.

Layout: <dir>/runs/runs-<part>.parquet, curves/..., features/..., with _*.json files and the
_tmp/ folder of temporaries at the top level only. They must stay there: polars and duckdb do
not skip hidden names the way pandas does, so a writer's temporary inside runs/ breaks them
(polars 2.1 refuses a directory holding '.runs-1.parquet.123.tmp'; a temporary ending in
'.parquet' breaks every polars and duckdb read, glob or directory).
"""

import pandas as pd
import pyarrow as pa
import pytest
from helpers import parquet_bytes

from grokjax import schema, spec, storage, sweep

pl = pytest.importorskip("polars", reason="the reader tests need polars: pip install -e '.[dev]'")
duckdb = pytest.importorskip("duckdb", reason="the reader tests need duckdb: pip install -e "
                                              "'.[dev]'")

RUN_IDS = ["a0", "a1", "b0", "b1", "c0"]
# Each table's columns, its pandas dtypes, and the names polars and duckdb give those types.
TABLES = {
    "runs": {
        "run_id": pd.array(RUN_IDS, dtype="string"),
        "seed": pd.array([0, 1, 0, 1, 0], dtype="int64"),
        "weight_decay": [0.0, 0.0, 1e-4, 1e-4, 1e-3],
        "generalized": [False, True, True, True, False],
        "step_test_acc_099": pd.array([None, 40, 30, 35, None], dtype="Int64"),
    },
    "curves": {
        "run_id": pd.array([r for r in RUN_IDS for _ in range(2)], dtype="string"),
        "step": pd.array([0, 10] * 5, dtype="int64"),
        "test_acc": [0.1, 0.5, 0.2, 1.0, 0.3, 1.0, 0.1, 0.99, 0.0, 0.25],
    },
    "features": {
        "run_id": pd.array([r for r in RUN_IDS for _ in range(3)], dtype="string"),
        "node": pd.array([0, 1, 2] * 5, dtype="int64"),
        "active": [True, False, True] * 5,
        "dominant_frequency": pd.array([1, 2, 3] * 5, dtype="int64"),
    },
}
PANDAS_TO_POLARS = {"string": pl.String, "int64": pl.Int64, "Int64": pl.Int64,
                    "float64": pl.Float64, "bool": pl.Boolean}
PANDAS_TO_DUCKDB = {"string": "VARCHAR", "int64": "BIGINT", "Int64": "BIGINT",
                    "float64": "DOUBLE", "bool": "BOOLEAN"}
ORDER = {"runs": ["run_id"], "curves": ["run_id", "step"], "features": ["run_id", "node"]}
PARTS = [slice(0, 2), slice(2, 3), slice(3, 5)]  # runs per part file


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> str:
    """A sweep directory of three parts per table, with the top-level files a sweep leaves,
    including a killed writer's partial temporary in _tmp/."""
    sweep = storage.Location(tmp_path_factory.mktemp("results") / "wd")
    for name in TABLES:
        frame = expected_frame(name)
        for index, part in enumerate(PARTS):
            rows = frame[frame["run_id"].isin(RUN_IDS[part])]
            storage.write_bytes(sweep.join(name, f"{name}-{index}.parquet"),
                                parquet_bytes(pa.Table.from_pandas(rows, preserve_index=False)),
                                temporary_dir=sweep.join("_tmp"))
    for name in ("_plan.json", "_process-0.json", "_manifest.json", "_lock-0.json"):
        storage.write_text(sweep.join(name), "{}", temporary_dir=sweep.join("_tmp"))
    storage.write_bytes(sweep.join("_tmp", ".runs-3.parquet.1.tmp"), b"PAR1 half a file")
    return str(sweep)


def expected_frame(name: str) -> pd.DataFrame:
    return pd.DataFrame(TABLES[name])


def expected_values(name: str) -> dict[str, list]:
    """The table as plain Python values, <NA> as None, in (run_id, ...) order."""
    frame = expected_frame(name).astype(object)
    return {column: [None if pd.isna(v) else v for v in frame[column]] for column in frame}


def dtypes(name: str) -> dict[str, str]:
    return {column: str(dtype) for column, dtype in expected_frame(name).dtypes.items()}


@pytest.mark.parametrize("name", TABLES)
def test_pandas_reads_each_table_directory(results_dir, name):
    frame = pd.read_parquet(f"{results_dir}/{name}").sort_values(ORDER[name], ignore_index=True)
    pd.testing.assert_frame_equal(frame, expected_frame(name))
    pd.testing.assert_frame_equal(
        storage.read_parquet_dir(f"{results_dir}/{name}").sort_values(ORDER[name],
                                                                      ignore_index=True),
        expected_frame(name))


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("pattern", ["{dir}/{name}/*.parquet", "{dir}/{name}"])
def test_polars_reads_each_table(results_dir, name, pattern):
    frame = pl.read_parquet(pattern.format(dir=results_dir, name=name)).sort(ORDER[name])
    assert frame.schema == {column: PANDAS_TO_POLARS[dtype]
                            for column, dtype in dtypes(name).items()}
    assert frame.to_dict(as_series=False) == expected_values(name)


@pytest.mark.parametrize("name", TABLES)
def test_duckdb_reads_each_table(results_dir, name):
    connection = duckdb.connect()
    glob = f"{results_dir}/{name}/*.parquet"
    relation = connection.read_parquet(glob)
    assert dict(zip(relation.columns, map(str, relation.types), strict=True)) == {
        column: PANDAS_TO_DUCKDB[dtype] for column, dtype in dtypes(name).items()}
    rows = connection.sql(f"SELECT * FROM read_parquet('{glob}') "
                          f"ORDER BY {', '.join(ORDER[name])}").fetchall()
    expected = expected_values(name)
    assert rows == list(zip(*expected.values(), strict=True))


PANDAS_TO_POLARS["boolean"], PANDAS_TO_DUCKDB["boolean"] = pl.Boolean, "BOOLEAN"


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory) -> str:
    """A real sweep whose grids mix diagnostics on and off, so every table has nulls."""
    import jax
    from helpers import TINY_SWEEP


    text = TINY_SWEEP.replace("[grid]", "[[grid]]") + (
        "\n[[grid]]\nweight_decay = [1e-3]\nseed = [5]\ndiagnostics = [true]\n")
    report = sweep.run_sweep(spec.parse(text), out_dir=tmp_path_factory.mktemp("e") / "tiny",
                             progress=False, devices=jax.local_devices()[:2])
    return str(report.out_dir)


@pytest.mark.parametrize("name", TABLES)
def test_every_reader_opens_every_table_of_a_real_sweep_with_its_documented_dtypes(
        engine_dir, name):
    frame = pd.read_parquet(f"{engine_dir}/{name}")
    documented = {"runs": schema.RUNS_DTYPES | schema.DIAGNOSTIC_SUMMARY_DTYPES,
                  "curves": schema.CURVES_DTYPES}.get(name)
    if documented is not None:
        assert {c: str(d) for c, d in frame.dtypes.items()} | documented == \
            {c: str(d) for c, d in frame.dtypes.items()}
    polars = pl.read_parquet(f"{engine_dir}/{name}/*.parquet")
    assert polars.shape == frame.shape
    assert polars.schema == {c: PANDAS_TO_POLARS[str(d)] for c, d in frame.dtypes.items()}
    connection = duckdb.connect()
    relation = connection.read_parquet(f"{engine_dir}/{name}/*.parquet")
    assert dict(zip(relation.columns, map(str, relation.types), strict=True)) == {
        c: PANDAS_TO_DUCKDB[str(d)] for c, d in frame.dtypes.items()}
    assert connection.sql(
        f"SELECT count(*) FROM read_parquet('{engine_dir}/{name}/*.parquet')").fetchall() == \
        [(len(frame),)]
