"""The pure training function: full-batch steps in ``lax.scan``, metrics every ``eval_every`` steps.

``make_train(static, onehot)`` closes over everything that changes shapes or code (a bucket's
static config, and how the first layer is computed: ``onehot`` on a TPU, see model.first_layer)
and returns pure functions of arrays only:

    train(hparams, split, key, task) -> Outputs     # one run; vmap it over the run axis

Hyperparameters (``HParams``) and the split (``Split``) are arrays, so new values never
recompile. The engine calls ``segment`` on a batch of *slots*: each call first starts the runs
its ``fresh`` flags mark (their state initialised in the same compiled program), then advances
every slot by a fixed number of evaluations. ``train`` composes the same pieces for one run.

Semantics follow the paper's code: metrics of step s are measured on the weights *before*
update s, on the whole train and test sets; the last curve point (step = steps) is measured on
the final weights. A run is *done* at the evaluation where it reaches ``steps``, where its stop
rule (``Static.stop``) is met, or at the first evaluation after an update turned non-finite
(that evaluation's metrics are NaN: nothing after a divergence is measured). A done run's state
no longer changes; the other runs of a batch are unaffected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokjax import config, diagnostics, model
from grokjax.optim import OPTIMIZERS
from grokjax.stop import StopRule


@dataclass(frozen=True)
class Static:
    """A bucket: the fields that change shapes or code. Hashable; one compilation each.

    Every ``static`` field of config.FIELDS under its own name, except group (as ``order``) and
    K (as ``width``); ``ridge`` and ``fourier`` are derived (see sweep.plan_runs)."""

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
    embed_trainable: bool = False
    complex_weights: bool = False
    diagnostics: bool = False  # Li2 diagnostics at every evaluation, features at the end
    fourier: bool = False  # the group is Z_M, so hidden nodes have a Fourier spectrum
    precision: str = "highest"  # of the model's matmuls (model.PRECISIONS); diagnostics: highest
    keep_weights: str = "none"  # the dtype the host stores kept parameters in (weights.py)
    keep_weights_every: int = 0  # also keep them every this-many-th evaluation
    keep_weights_at: tuple[int, ...] = ()  # ... and at these steps
    stop: StopRule | None = None  # end a run early once its answer is decided

    @property
    def num_evals(self) -> int:
        return self.steps // self.eval_every

    @property
    def snapshot_evals(self) -> tuple[int, ...]:
        """The evaluations (indices 0..num_evals) whose parameters a run keeps besides its
        last ones, which the host reads from the state of a finished run."""
        every = (range(0, self.num_evals + 1, self.keep_weights_every)
                 if self.keep_weights_every else ())
        at = (step // self.eval_every for step in self.keep_weights_at)
        return tuple(sorted({*every, *at}))


# Per-run float32 scalars (leading run axis when batched): config's ``hparam`` fields, so a new
# per-run hyperparameter reaches the compiled function from its declaration alone.
HParams = NamedTuple("HParams", [(name, jax.Array) for name in config.HPARAM_FIELDS])


class Split(NamedTuple):
    """A run's train set as its own arrays, gathered from the table on the host (``split_for``):
    a gather by row index inside the program costs an accelerator whole memory tiles per row."""

    train_inputs: jax.Array  # (n_pad, num_ops) int32 operands of the train rows, then padding
    train_labels: jax.Array  # (n_pad,) int32
    is_train: jax.Array  # (N,) bool; the complement is the test set


class Task(NamedTuple):
    """The full operation table, shared by every run of a bucket."""

    inputs: jax.Array  # (N, num_ops) int32
    labels: jax.Array  # (N,) int32


def split_for(task: Task, train_idx: np.ndarray, pad_to: int) -> Split:
    """A run's Split (numpy) from its train rows ``train_idx`` of the table, padded to ``pad_to``
    rows with the table's row 0 (padding is masked out of the loss, so any row would do)."""
    rows = np.zeros(pad_to, np.int32)
    rows[:len(train_idx)] = train_idx
    is_train = np.zeros(len(task.labels), bool)
    is_train[train_idx] = True
    return Split(np.asarray(task.inputs)[rows], np.asarray(task.labels)[rows], is_train)


class State(NamedTuple):
    params: model.Params
    opt_state: Any
    step: jax.Array  # int32, updates applied so far
    diverged_step: jax.Array  # int32, the update that went non-finite, or -1
    done: jax.Array  # bool: finished, stopped or diverged; the state no longer changes
    stopped_step: jax.Array  # int32, the step where the stop rule ended the run, or -1
    held_since: jax.Array  # int32, first evaluation of the stop rule's current streak, or -1
    previous_params: model.Params | None = None  # at the last evaluation (diagnostics only)


# Evaluation metrics by name: train_loss, test_loss, train_acc, test_acc, and with diagnostics
# the scalars of diagnostics.training_diagnostics / weight_diagnostics and Fourier summaries.
Metrics = dict[str, jax.Array]


class Snapshots(NamedTuple):
    """The parameters of a segment's evaluations in ``Static.snapshot_evals``, in order."""

    step: jax.Array  # (S,) int32, the evaluated step of each, -1 for an unused entry
    params: model.Params  # each (S, ...)


class Outputs(NamedTuple):
    metrics: Metrics  # each (num_evals + 1,): steps 0, eval_every, ..., steps; "step" is -1
    state: State  # at the evaluations after a run is done (stopped or diverged early)
    snapshots: Snapshots | None = None  # with Static.snapshot_evals


class TrainFunctions(NamedTuple):
    init: Any  # (hparams, key) -> State
    init_from_params: Any  # (params, hparams) -> State
    # (state, hparams, split, key, fresh, task, num_evals) -> (State, Metrics of (num_evals,),
    # Snapshots or None), the metrics with a "step" entry: the evaluated step, or -1 where the
    # slot was idle
    segment: Any
    evaluate: Any  # (state, hparams, split, task) -> Metrics
    step: Any  # (state, hparams, split, task) -> State, one optimizer step
    features: Any  # (state, hparams, split, task) -> per-node arrays (K,) (diagnostics only)
    train: Any  # (hparams, split, key, task) -> Outputs


def ridge_top_layer(features: jax.Array, targets: jax.Array, ridge_lambda: jax.Array,
                    precision: str = "highest") -> jax.Array:
    """(FᵀF + λI)⁻¹FᵀY by SVD of F, as the code computes it (stable in float32)."""
    u, s, vt = jnp.linalg.svd(features, full_matrices=False)
    projected = model.matmul(u.T, targets, precision)
    return model.matmul(vt.T, (s / (s * s + ridge_lambda))[:, None] * projected, precision)


def over_runs(fn, runs_per_batch: int | None):
    """``fn(*per_run, shared)`` along the leading run axis of ``per_run``; ``shared`` is common.

    ``None`` vmaps every run into each operation, which GPUs and TPUs need to stay busy. An
    integer loops over the runs, that many at a time: on a CPU one run's working set then stays
    in cache through a whole segment (2-3x the throughput of a full vmap here), and with 1 every
    run executes the same code whatever the grid size, so results never depend on batching.
    """
    if runs_per_batch is None:
        return lambda *args: jax.vmap(fn, in_axes=(0,) * (len(args) - 1) + (None,))(*args)

    def mapped(*args):
        *per_run, shared = args
        return jax.lax.map(lambda xs: fn(*xs, shared), tuple(per_run),
                           batch_size=runs_per_batch if runs_per_batch > 1 else None)

    return mapped


def _train_rows_present(split: Split) -> jax.Array:
    """Which of the padded train rows (n_pad,) are real: the first n_train."""
    return jnp.arange(split.train_labels.shape[0]) < split.is_train.sum()


def _missing(dtype) -> jax.Array:
    """The value of a metric that was not measured: NaN, or -1 for integer metrics."""
    return jnp.array(jnp.nan if jnp.issubdtype(dtype, jnp.floating) else -1, dtype)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train(static: Static, onehot: bool = False) -> TrainFunctions:
    """The bucket's training functions. ``onehot`` (a TPU's layout) indexes by one-hot
    arithmetic instead of gathers: the first layer as the matmul x·W (model.first_layer) and
    each row's target logit as a masked sum (model.per_sample_loss); the same numbers up to
    float32 summation order."""
    order, precision = static.order, static.precision

    def optimizer(hparams: HParams) -> optax.GradientTransformation:
        return OPTIMIZERS[static.optimizer](hparams.lr, hparams.weight_decay, static.steps)

    def init_from_params(params: model.Params, hparams: HParams) -> State:
        return State(params, optimizer(hparams).init(params), jnp.int32(0), jnp.int32(-1),
                     jnp.bool_(False), jnp.int32(-1), jnp.int32(-1),
                     params if static.diagnostics else None)

    def init(hparams: HParams, key: jax.Array) -> State:
        params = model.init_params(
            key, static.num_ops, order, static.width, static.other_layers,
            hparams.top_layer_init_multiplier, embed_trainable=static.embed_trainable,
            complex_weights=static.complex_weights, imag_init_scale=hparams.imag_init_scale,
        )
        return init_from_params(params, hparams)

    def train_loss(params, hparams: HParams, split: Split):
        present = _train_rows_present(split)
        labels = split.train_labels
        features = model.top_features(
            params, model.hidden(params, split.train_inputs, order, precision, onehot),
            static.activation, precision)
        V = params["V"]
        if static.ridge:
            targets = jax.nn.one_hot(labels, order) - 1.0 / order
            solved = ridge_top_layer(jnp.where(present[:, None], features, 0.0),
                                     jnp.where(present[:, None], targets, 0.0),
                                     hparams.ridge_lambda, precision)
            V = jax.lax.stop_gradient(solved)
            # Forward with the solved V; its gradient is taken at that point, as in the code.
            params = {**params, "V": params["V"] + jax.lax.stop_gradient(V - params["V"])}
        logits = model.readout(params, features, hparams.output_multiplier, precision)
        return model.mean_loss(static.loss, logits, labels, present, onehot), V

    def step(state: State, hparams: HParams, split: Split, task: Task) -> State:
        """One optimizer step; ``task`` only keeps the engine's calling convention (per-run
        arrays, then the shared table): the train rows come with the split."""
        (loss, V), grads = jax.value_and_grad(train_loss, has_aux=True)(
            state.params, hparams, split)
        params = {**state.params, "V": V}  # the ridge overwrite (a no-op without ridge)
        updates, opt_state = optimizer(hparams).update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        healthy = state.diverged_step < 0
        finite = jnp.isfinite(loss) & _all_finite(new_params)
        keep = healthy & finite
        frozen = jax.tree.map(lambda new, old: jnp.where(keep, new, old),
                              (new_params, opt_state), (state.params, state.opt_state))
        diverged_step = jnp.where(healthy & ~finite, state.step, state.diverged_step)
        return state._replace(params=frozen[0], opt_state=frozen[1], step=state.step + 1,
                              diverged_step=diverged_step)

    def train_features(params, split: Split):
        """σ(XW) of the train rows (n_pad, K), the real part, and which rows are real."""
        present = _train_rows_present(split)
        hidden = model.hidden(params, split.train_inputs, order, "highest", onehot)
        return jnp.real(model.ACTIVATIONS[static.activation](hidden)), present

    def diagnostic_metrics(state: State, split: Split) -> Metrics:
        params = state.params
        W, V = (jnp.real(w) for w in model.weights(params))
        F, present = train_features(params, split)
        out = diagnostics.training_diagnostics(F, V, split.train_labels, present, order)
        if static.other_layers:  # F·V is not the output: the reference logs NaN too
            out |= {"dF_norm": jnp.float32(jnp.nan), "G_F_norm": jnp.float32(jnp.nan)}
        out |= diagnostics.weight_diagnostics(params, state.previous_params)
        if static.fourier:
            return out | diagnostics.fourier_summary(W, order, static.num_ops)
        return out | {"active_node_fraction":
                      jnp.mean(diagnostics.active_nodes(W).astype(jnp.float32))}

    def evaluate(state: State, hparams: HParams, split: Split, task: Task) -> Metrics:
        logits = model.forward(state.params, task.inputs, order, static.activation,
                               hparams.output_multiplier, precision, onehot)
        correct = jnp.argmax(logits, axis=-1) == task.labels
        is_test = ~split.is_train
        metrics = {
            "train_loss": model.mean_loss(static.loss, logits, task.labels, split.is_train,
                                          onehot),
            "test_loss": model.mean_loss(static.loss, logits, task.labels, is_test, onehot),
            "train_acc": jnp.sum(split.is_train & correct) / split.is_train.sum(),
            "test_acc": jnp.sum(is_test & correct) / is_test.sum(),
        }
        return metrics | (diagnostic_metrics(state, split) if static.diagnostics else {})

    def features(state: State, hparams: HParams, split: Split, task: Task) -> dict:
        """Per hidden node (K,) at the end of a run: energy 𝓔(ŵ) on the train set and on the
        full table, and for Z_M the Fourier statistics of diagnostics.node_fourier_stats."""
        W = jnp.real(model.weights(state.params)[0])
        everything = jnp.ones(task.labels.shape, bool)
        present = _train_rows_present(split)
        out = {
            "energy_train": diagnostics.node_energy(
                W, split.train_inputs, split.train_labels, present, order, static.activation),
            "energy_full": diagnostics.node_energy(W, task.inputs, task.labels, everything,
                                                   order, static.activation),
            "norm": jnp.sqrt(jnp.sum(W * W, axis=0)),
            "active": diagnostics.active_nodes(W),
        }
        if static.fourier:
            out |= diagnostics.node_fourier_stats(W, order, static.num_ops)
            power = diagnostics.pooled_power(W, order, static.num_ops)  # (⌊M/2⌋ + 1, K)
            out |= {f"power_{k:02d}": power[k] for k in range(power.shape[0])}
        return out

    def evaluate_and_decide(state: State, hparams: HParams, split: Split, task: Task):
        """One evaluation of a live run: its metrics, and whether the run is done after it."""
        metrics = evaluate(state, hparams, split, task)
        diverged = state.diverged_step >= 0
        metrics = jax.tree.map(lambda m: jnp.where(diverged, _missing(m.dtype), m), metrics)
        finished = state.step >= static.steps
        stopped, held_since = jnp.bool_(False), state.held_since
        if static.stop is not None:
            holds = static.stop.satisfied(metrics)
            held_since = jnp.where(holds, jnp.where(held_since < 0, state.step, held_since), -1)
            stopped = holds & (state.step - held_since >= static.stop.hold) & ~finished
        state = state._replace(done=diverged | finished | stopped, held_since=held_since,
                               stopped_step=jnp.where(stopped, state.step, -1))
        return state, metrics | {"step": state.step}

    def snapshot_buffer(params: model.Params, num_evals: int) -> Snapshots | None:
        """Room for the most kept evaluations one segment can hold: a run starts at a segment
        boundary, so its evaluation i falls in segment i // num_evals."""
        per_segment = Counter(i // num_evals for i in static.snapshot_evals)
        size = max(per_segment.values(), default=0)
        if not size:
            return None
        return Snapshots(jnp.full(size, -1, jnp.int32),
                         jax.tree.map(lambda p: jnp.zeros((size, *p.shape), p.dtype), params))

    def keep(snapshots: Snapshots, state: State) -> Snapshots:
        """Record the parameters just evaluated if their evaluation is kept (not a diverged
        run's: its parameters are frozen at the last finite ones)."""
        kept = jnp.zeros(static.num_evals + 1, bool).at[jnp.array(static.snapshot_evals)].set(True)
        take = kept[state.step // static.eval_every] & (state.diverged_step < 0)
        index = jnp.sum(snapshots.step >= 0)

        def write(snapshots: Snapshots) -> Snapshots:
            return Snapshots(snapshots.step.at[index].set(state.step), jax.tree.map(
                lambda buffer, p: buffer.at[index].set(p), snapshots.params, state.params))

        return jax.lax.cond(take, write, lambda s: s, snapshots)

    def segment(state, hparams, split, key, fresh, task, num_evals: int):
        state = jax.lax.cond(fresh, lambda s: init(hparams, key), lambda s: s, state)

        def live(carry):
            state, snapshots = carry
            state, metrics = evaluate_and_decide(state, hparams, split, task)
            if snapshots is not None:
                snapshots = keep(snapshots, state)
            if static.diagnostics:
                state = state._replace(previous_params=state.params)
            state = jax.lax.cond(state.done, lambda s: s, lambda s: jax.lax.fori_loop(
                0, static.eval_every, lambda _, s: step(s, hparams, split, task), s), state)
            return (state, snapshots), metrics

        def idle(carry):
            shapes = jax.eval_shape(live, carry)[1]
            return carry, jax.tree.map(lambda m: jnp.full(m.shape, _missing(m.dtype)), shapes)

        (state, snapshots), metrics = jax.lax.scan(
            lambda carry, _: jax.lax.cond(carry[0].done, idle, live, carry),
            (state, snapshot_buffer(state.params, num_evals)), None, length=num_evals)
        return state, metrics, snapshots

    def train(hparams: HParams, split: Split, key: jax.Array, task: Task) -> Outputs:
        state, metrics, snapshots = segment(init(hparams, key), hparams, split, key,
                                            jnp.bool_(False), task, static.num_evals + 1)
        return Outputs(metrics, state, snapshots)

    return TrainFunctions(init, init_from_params, segment, evaluate, step, features, train)
