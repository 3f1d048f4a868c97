"""One declaration of a run: every field reaches the engine, the tables and the fits."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from grokjax import config, engine, plan, schema, spec, tables
from grokjax.analysis.core import varying_config
from grokjax.train import HParams, Static

BASE = {"group": "7", "K": 8, "steps": 10, "eval_every": 5}
# Two valid values of every field (with any field they need), so each can be a grid axis.
TWO_VALUES = {
    "group": (["7", "8"], {}),
    "num_ops": ([2, 3], {}),
    "K": ([8, 16], {}),
    "activation": (["sqr", "relu"], {}),
    "loss": (["mse", "nll"], {}),
    "optimizer": (["adam", "sgd"], {}),
    "precision": (["highest", "bf16"], {}),
    "lr": ([0.01, 0.02], {}),
    "weight_decay": ([0.0, 1e-3], {}),
    "seed": ([0, 1], {}),
    "test_size": ([0.3, 0.5], {}),
    "train_fraction": ([0.3, 0.5], {}),
    "critical_ratio_delta": ([0.0, 0.5], {}),
    "critical_ratio_multiplier": ([2.7482, 3.0], {"critical_ratio_delta": 0.0}),
    "steps": ([10, 20], {}),
    "eval_every": ([5, 10], {}),
    "other_layers": ([0, 1], {}),
    "ridge_lambda": ([1e-3, 1e-2], {}),
    "top_layer_init_multiplier": ([1.0, 2.0], {}),
    "output_multiplier": ([1.0, 2.0], {}),
    "embed_trainable": ([False, True], {}),
    "complex_weights": ([False, True], {}),
    "imag_init_scale": ([0.0, 0.5], {"complex_weights": True}),
    "diagnostics": ([False, True], {}),
    "keep_weights": (["none", "float32"], {}),
    "keep_weights_every": ([0, 1], {"keep_weights": "float32"}),
    "keep_weights_at": ([[5], [0, 10]], {"keep_weights": "bfloat16"}),
}


def test_two_values_cover_every_declared_field():
    assert set(TWO_VALUES) == set(config.FIELDS)


@pytest.mark.parametrize("name", list(config.FIELDS))
def test_every_field_reaches_the_engine_the_table_and_the_fits(name):
    values, needs = TWO_VALUES[name]
    field = config.FIELDS[name]
    sweep_spec = spec.from_dict({"fixed": {k: v for k, v in (BASE | needs).items() if k != name},
                                 "grid": {name: values}})
    buckets = plan.plan_runs(sweep_spec)
    # Engine: a static field splits buckets; an hparam field is a per-run array of the slots.
    assert len(buckets) == (2 if field.role == "static" else 1)
    if field.role == "hparam":
        (bucket,) = buckets
        slots = engine.Slots(bucket, len(bucket.runs))
        for slot, run in enumerate(bucket.runs):
            slots.fill(slot, run)
        assert len(set(getattr(slots.inputs()[0], name))) == 2
    # Table: its column (with the derived ones) holds both values, in the declared dtype.
    table = pd.concat([tables.config_columns(list(b.runs), b.group) for b in buckets],
                      ignore_index=True)
    assert list(table.columns) == ["run_id", "round", *config.COLUMN_DTYPES]
    table = table.astype(schema.RUN_CONFIG_DTYPES)
    assert table[name].nunique() == 2 and str(table[name].dtype) == field.dtype
    # Fits: a condition keeps the two apart; the others are pooled.
    assert (name in varying_config(table)) == field.condition


def test_engine_types_follow_the_declaration():
    assert HParams._fields == config.HPARAM_FIELDS
    renamed = {"group": "order", "K": "width"}
    derived = {"ridge", "fourier", "stop"}
    assert {f.name for f in dataclasses.fields(Static)} == {
        renamed.get(name, name) for name in config.STATIC_FIELDS} | derived


def test_slots_hold_hparams_as_float32_with_unset_as_zero():
    grid = spec.from_dict({"fixed": {"group": "7", "K": 8, "steps": 10, "eval_every": 5},
                           "grid": {"lr": [0.5, 0.01]}})
    (bucket,) = plan.plan_runs(grid)
    slots = engine.Slots(bucket, 2)
    for slot, run in enumerate(bucket.runs):
        slots.fill(slot, run)
    hparams = slots.inputs()[0]
    assert hparams._fields == config.HPARAM_FIELDS
    assert hparams.lr.dtype == np.float32 and list(hparams.lr) == [0.5, np.float32(0.01)]
    assert list(hparams.ridge_lambda) == [0.0, 0.0]


def test_run_id_is_the_same_for_int_and_float_values_and_unchanged_for_floats():
    assert (config.run_id(config.RunConfig(weight_decay=0))
            == config.run_id(config.RunConfig(weight_decay=0.0)))
    assert config.RunConfig(lr=1).lr == 1.0 and isinstance(config.RunConfig(lr=1).lr, float)
    # Ids written before the declaration moved to config.py.
    assert config.run_id(config.RunConfig()) == "a74be6fadc715493"
    assert config.run_id(config.RunConfig(group="7", weight_decay=1e-3, seed=2,
                                           ridge_lambda=1e-3)) == "48f9dd8fdcd39d73"


def test_a_field_added_later_changes_ids_only_away_from_its_default():
    base = {"fixed": {"group": "7", "K": 8, "steps": 10, "eval_every": 5, "ridge_lambda": 1e-3}}
    (old,) = plan.plan_runs(spec.from_dict(base))
    assert old.id == "234880fb"  # the bucket id before precision was declared
    assert config.run_id(config.RunConfig(precision="highest")) == "a74be6fadc715493"
    base["fixed"]["precision"] = "bf16"
    (new,) = plan.plan_runs(spec.from_dict(base))
    assert new.id != old.id and new.runs[0].run_id != old.runs[0].run_id


def test_range_text_reads_like_an_interval():
    fields = config.FIELDS
    assert fields["test_size"].range_text() == "in (0, 1)"
    assert fields["seed"].range_text() == "in [0, 4294967296)"
    assert fields["lr"].range_text() == "> 0"
    assert fields["weight_decay"].range_text() == ">= 0"
