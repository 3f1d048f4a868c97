"""The pure training function: full-batch steps in ``lax.scan``, metrics every ``eval_every`` steps.

``make_train(static)`` closes over everything that changes shapes or code (a bucket's static
config) and returns pure functions of arrays only:

    train(hparams, split, key, task) -> Outputs     # one run; vmap it over the run axis

Hyperparameters (``HParams``) and the split (``Split``) are arrays, so new values never
recompile. The engine calls the pieces (``init``, ``segment``, ``evaluate``) so it can show
progress between segments; ``train`` composes the same pieces in one call.

Semantics follow the paper's code: metrics of step s are measured on the weights *before*
update s, on the whole train and test sets; the last curve point (step = steps) is measured on
the final weights. A run whose update turns non-finite is frozen at its last finite weights and
its ``diverged_step`` is set; the other runs of a batch are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from grokjax import model
from grokjax.optim import OPTIMIZERS


@dataclass(frozen=True)
class Static:
    """A bucket: the fields that change shapes or code. Hashable; one compilation each."""

    order: int  # |G|, the number of classes
    num_ops: int
    width: int  # K
    activation: str
    loss: str
    optimizer: str
    steps: int
    eval_every: int
    other_layers: int = 0
    ridge: bool = False  # V replaced by the ridge solution in every training forward pass

    @property
    def num_evals(self) -> int:
        return self.steps // self.eval_every


class HParams(NamedTuple):
    """Per-run float32 scalars (leading run axis when batched)."""

    lr: jax.Array
    weight_decay: jax.Array
    ridge_lambda: jax.Array
    top_layer_init_multiplier: jax.Array
    output_multiplier: jax.Array


class Split(NamedTuple):
    train_rows: jax.Array  # (n_pad,) int32 table rows of the train set, then padding
    is_train: jax.Array  # (N,) bool; the complement is the test set


class Task(NamedTuple):
    """The full operation table, shared by every run of a bucket."""

    inputs: jax.Array  # (N, num_ops) int32
    labels: jax.Array  # (N,) int32


class State(NamedTuple):
    params: model.Params
    opt_state: Any
    step: jax.Array  # int32, updates applied so far
    diverged_step: jax.Array  # int32, the update that went non-finite, or -1


class Metrics(NamedTuple):
    train_loss: jax.Array
    test_loss: jax.Array
    train_acc: jax.Array
    test_acc: jax.Array


class Outputs(NamedTuple):
    metrics: Metrics  # each (num_evals + 1,): steps 0, eval_every, ..., steps
    state: State


class TrainFunctions(NamedTuple):
    init: Any  # (hparams, key) -> State
    init_from_params: Any  # (params, hparams) -> State
    segment: Any  # (state, hparams, split, task, num_evals) -> (State, Metrics of (num_evals,))
    evaluate: Any  # (state, hparams, split, task) -> Metrics
    train: Any  # (hparams, split, key, task) -> Outputs


def ridge_top_layer(features: jax.Array, targets: jax.Array, ridge_lambda: jax.Array) -> jax.Array:
    """(FᵀF + λI)⁻¹FᵀY by SVD of F, as the code computes it (stable in float32)."""
    u, s, vt = jnp.linalg.svd(features, full_matrices=False)
    projected = jnp.matmul(u.T, targets, precision=model.PRECISION)
    return jnp.matmul(vt.T, (s / (s * s + ridge_lambda))[:, None] * projected,
                      precision=model.PRECISION)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train(static: Static) -> TrainFunctions:
    order = static.order

    def optimizer(hparams: HParams) -> optax.GradientTransformation:
        return OPTIMIZERS[static.optimizer](hparams.lr, hparams.weight_decay, static.steps)

    def init_from_params(params: model.Params, hparams: HParams) -> State:
        return State(params, optimizer(hparams).init(params), jnp.int32(0), jnp.int32(-1))

    def init(hparams: HParams, key: jax.Array) -> State:
        params = model.init_params(
            key, static.num_ops, order, static.width, static.other_layers,
            hparams.top_layer_init_multiplier,
        )
        return init_from_params(params, hparams)

    def train_loss(params, hparams: HParams, split: Split, task: Task):
        n_train = split.is_train.sum()
        weight = (jnp.arange(split.train_rows.shape[0]) < n_train) / n_train  # (n_pad,)
        labels = task.labels[split.train_rows]
        features = model.top_features(
            params, model.first_layer(params["W"], task.inputs[split.train_rows], order),
            static.activation,
        )
        V = params["V"]
        if static.ridge:
            present = (weight > 0)[:, None]
            targets = jax.nn.one_hot(labels, order) - 1.0 / order
            solved = ridge_top_layer(jnp.where(present, features, 0.0),
                                     jnp.where(present, targets, 0.0), hparams.ridge_lambda)
            V = jax.lax.stop_gradient(solved)
            # Forward with the solved V; its gradient is taken at that point, as in the code.
            params = {**params, "V": params["V"] + jax.lax.stop_gradient(V - params["V"])}
        logits = model.readout(params["V"], features, hparams.output_multiplier)
        loss = jnp.sum(weight * model.per_sample_loss(static.loss, logits, labels))
        return loss, V

    def step(state: State, hparams: HParams, split: Split, task: Task) -> State:
        (loss, V), grads = jax.value_and_grad(train_loss, has_aux=True)(
            state.params, hparams, split, task
        )
        params = {**state.params, "V": V}  # the ridge overwrite (a no-op without ridge)
        updates, opt_state = optimizer(hparams).update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        healthy = state.diverged_step < 0
        finite = jnp.isfinite(loss) & _all_finite(new_params)
        keep = healthy & finite
        frozen = jax.tree.map(lambda new, old: jnp.where(keep, new, old),
                              (new_params, opt_state), (state.params, state.opt_state))
        diverged_step = jnp.where(healthy & ~finite, state.step, state.diverged_step)
        return State(*frozen, state.step + 1, diverged_step)

    def evaluate(state: State, hparams: HParams, split: Split, task: Task) -> Metrics:
        logits = model.forward(state.params, task.inputs, order, static.activation,
                               hparams.output_multiplier)
        losses = model.per_sample_loss(static.loss, logits, task.labels)
        correct = jnp.argmax(logits, axis=-1) == task.labels
        is_test = ~split.is_train
        n_train, n_test = split.is_train.sum(), is_test.sum()
        return Metrics(
            jnp.sum(jnp.where(split.is_train, losses, 0.0)) / n_train,
            jnp.sum(jnp.where(is_test, losses, 0.0)) / n_test,
            jnp.sum(split.is_train & correct) / n_train,
            jnp.sum(is_test & correct) / n_test,
        )

    def segment(state, hparams, split, task, num_evals: int):
        def one_eval(state, _):
            metrics = evaluate(state, hparams, split, task)
            state = jax.lax.fori_loop(
                0, static.eval_every, lambda _, s: step(s, hparams, split, task), state
            )
            return state, metrics

        return jax.lax.scan(one_eval, state, None, length=num_evals)

    def train(hparams: HParams, split: Split, key: jax.Array, task: Task) -> Outputs:
        state, metrics = segment(init(hparams, key), hparams, split, task, static.num_evals)
        final = evaluate(state, hparams, split, task)
        curves = jax.tree.map(lambda m, f: jnp.concatenate([m, f[None]]), metrics, final)
        return Outputs(Metrics(*curves), state)

    return TrainFunctions(init, init_from_params, segment, evaluate, train)
