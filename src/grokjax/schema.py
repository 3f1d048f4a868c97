"""The tables' columns and dtypes, the metric names, and the grokking threshold.

A results directory holds three tables, each a directory of Parquet parts that pandas, polars
and duckdb read as one table (results/README.md documents every column):

    runs/      one row per run            pandas.read_parquet("results/<sweep>/runs")
    curves/    one row per (run, evaluated step)
    features/  one row per (run, hidden node), sweeps with diagnostics

This is the only place the threshold 0.99 lives: a run *generalized* when its final test
accuracy reaches it, and its grokking step t_grok is the first evaluated step at which test
accuracy reaches it (``GROKKED_COLUMN``).
"""

from __future__ import annotations

from grokjax import config

SCHEMA_VERSION = 2
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")  # measured at every evaluation
GENERALIZED_TEST_ACC = 0.99
TEST_ACC_THRESHOLDS = {"050": 0.5, "090": 0.9, "095": 0.95, "099": GENERALIZED_TEST_ACC}
GROKKED_COLUMN = f"step_test_acc_{round(GENERALIZED_TEST_ACC * 100):03d}"
GROKKED_TEXT = f"test accuracy ≥ {GENERALIZED_TEST_ACC:g}"  # what reaching t_grok means
MEMORIZED_COLUMN = "step_train_acc_1"  # t_mem: the first evaluated step with train accuracy 1
GENERALIZED_TEXT = f"final test acc ≥ {GENERALIZED_TEST_ACC:g}"  # what "generalized" means
# Features have emerged once half of W's energy sits in frequency-dominated nodes
# (diagnostics.fourier_summary's frequency_dominated_energy; step_features_emerged).
FEATURES_EMERGED_ENERGY = 0.5

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
