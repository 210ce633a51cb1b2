"""The `SWA` optimizer: stochastic weight averaging around any Keras 3 optimizer."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
from keras import ops

# Two pieces Keras does not export. `in_stateless_scope` is the only way to know
# whether `apply` runs under `stateless_apply` (JAX `fit`, or a
# `LossScaleOptimizer` around this one). `backend.cond` is what `ops.cond`
# dispatches to, minus the `Operation` that `ops.cond` creates on every call:
# that operation's fresh name makes `torch.compile` recompile every step.
from keras.src import backend as keras_backend
from keras.src.backend.common.stateless_scope import in_stateless_scope

from kerasswa import _kernels, _validation
from kerasswa.averaging import Averaging, averaging_factors, check_averaging, serialize_averaging
from kerasswa.nontrainable import NonTrainableAverages

OptimizerLike = Union[keras.optimizers.Optimizer, str, dict]

# Modules whose optimizers follow the Keras 2 API, which this wrapper cannot drive.
_KERAS2_MODULES = (
    "tf_keras",
    "tensorflow.python.keras",
    "keras.optimizers.optimizer_v2",
    "keras.optimizers.legacy",
    "tensorflow_addons",
)

# Keyword arguments of `keras.optimizers.Optimizer` that only make sense on the
# optimizer that computes the update.
_INNER_ONLY_ARGUMENTS = (
    "weight_decay",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)


@keras.saving.register_keras_serializable(package="kerasswa", name="SWA")
class SWA(keras.optimizers.Optimizer):
    """Stochastic Weight Averaging (SWA) around another Keras optimizer.

    SWA (Izmailov et al., 2018, "Averaging Weights Leads to Wider Optima and
    Better Generalization") trains with an ordinary optimizer and keeps, beside
    the weights, the plain mean of the weights seen at regular points of the
    trajectory. The mean usually sits in a flatter region of the loss surface
    and generalizes better than the last iterate.

    Each call of `apply` first lets the inner optimizer update the weights.
    With `t` the number of updates applied through this optimizer before this
    one, the update is a *snapshot* when `t >= start_averaging` and
    `(t - start_averaging) % average_period == 0`: every average then moves
    to `avg + (w - avg) / (n + 1)`, where `n` counts the snapshots taken
    before, so the average is always the plain mean of the snapshots. Other
    updates do no averaging work. The training weights are never changed by
    the averaging: call `assign_average_vars` at the end of training, or
    evaluate the averaged model mid-training with `use_average_vars`.

    `t` counts the updates made through SWA (`update_count`), as
    tensorflow-addons did: an inner optimizer that trained before it was
    wrapped takes its first snapshot `start_averaging` updates after the
    wrapping, while its own step count, learning-rate schedule and bias
    corrections go on where they were (`iterations` is the inner
    optimizer's). An update that the inner optimizer skips (while it
    accumulates gradients) is not counted and is never a snapshot.

    Other averaging rules take the same snapshots (see
    `kerasswa.averaging`): with `averaging=d`, a float in (0, 1), an
    exponential moving average, where the first snapshot copies the weights
    and each later one gives `d * avg + (1 - d) * w` (PyTorch's
    `WeightAverage` started its buffer at zero, which biases the early
    average towards zero; copying the first snapshot needs no correction);
    `kerasswa.EMA(decay, ...)`, the same with a decay that warms up; and
    `kerasswa.PowerEMA(sigma_rel=...)`, the power-function EMA of EDM2. Each
    is a function of the number of snapshots, so with `average_period > 1`
    it describes the same profile over the snapshots.

    With `start_averaging=None` no snapshot is taken automatically: call
    `take_snapshot()` whenever one is wanted (at the end of each epoch, of
    each learning-rate cycle), or let `SWACallback(start_epoch=...)` do it.

    The rule, the arguments and `assign_average_vars` are those of
    `tfa.optimizers.SWA` from TensorFlow Addons, with these corrections:
    `assign_average_vars` before the first snapshot leaves the weights alone
    (and warns) instead of zeroing them, it skips non-trainable variables
    such as batch-norm statistics without a warning per variable, and `lr`
    and `decay` take effect instead of being ignored.

    Args:
        optimizer: The optimizer that computes the updates: a Keras 3
            `keras.optimizers.Optimizer` instance, the name of one (`"sgd"`,
            `"adam"`), or its config dict. An instance is used, not copied:
            `lr`, `learning_rate` and `decay` change its learning rate. An
            instance already built for other variables (another model) is
            refused when this optimizer is built: wrap a fresh one.
        start_averaging: Integer >= 0, or `None`. Number of updates before
            the first snapshot. Defaults to 0. `None` takes no snapshot
            automatically (`take_snapshot()` takes them).
        average_period: Integer >= 1. Number of updates between two
            snapshots. Defaults to 10.
        name: String or `None`. Name of the optimizer and prefix of its
            variables. `None` (the default) gives a name of its own, as
            Keras's optimizers get: `"swa"`, then `"swa_1"`, ..., so that
            two SWA optimizers in one model (a GAN's) have distinct
            variable paths and save.
        sequential_update: Boolean. If `True` (the default) a snapshot is
            taken of the weights after the update that triggers it; if
            `False`, of the weights before that update.
        averaging: `"mean"` (the default), the plain mean of the snapshots;
            a float in (0, 1), the decay of an exponential moving average
            over the same snapshots; `kerasswa.EMA(...)`, an exponential
            moving average whose decay warms up; or
            `kerasswa.PowerEMA(sigma_rel=...)`, the power-function EMA.
        clipnorm: Float > 0 or `None`. Clip each gradient to this norm
            before the inner optimizer sees it.
        clipvalue: Float > 0 or `None`. Clip each gradient element to
            `[-clipvalue, clipvalue]` before the inner optimizer sees it.
        global_clipnorm: Float > 0 or `None`. Clip all gradients together
            to this global norm. At most one of `clipnorm`, `clipvalue` and
            `global_clipnorm` may be set.
        decay: Float >= 0 or `None`. Keras 2's time-inverse learning-rate
            decay: the inner learning rate becomes
            `learning_rate / (1 + decay * iterations)`, stored as a
            `keras.optimizers.schedules.InverseTimeDecay`. `0` keeps the
            learning rate constant.
        lr: Deprecated alias of `learning_rate`, kept for code written for
            Keras 2 and tensorflow-addons.
        learning_rate: `None`, a float > 0, a
            `keras.optimizers.schedules.LearningRateSchedule` (called with
            the step), or a callable of no arguments that returns the rate
            (Keras calls it with none, at every use). If given, it replaces
            the inner optimizer's learning rate. A callable that needs an
            argument is refused: a rate that depends on the step is a
            `LearningRateSchedule`.

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import SWA
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> opt = SWA(keras.optimizers.SGD(0.05), start_averaging=5,
    ...           average_period=2)
    >>> model.compile(optimizer=opt, loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> _ = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    >>> opt.snapshot_count  # updates 5, 7, 9, ..., 15 of 16
    6
    >>> opt.assign_average_vars(model.variables)
    """

    def __init__(
        self,
        optimizer: OptimizerLike,
        start_averaging: Optional[int] = 0,
        average_period: int = 10,
        name: Optional[str] = None,
        sequential_update: bool = True,
        averaging: Averaging = "mean",
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        decay: Optional[float] = None,
        lr: Optional[float] = None,
        learning_rate: Any = None,
        **kwargs: Any,
    ) -> None:
        # Every argument is checked before anything is changed, so a refused
        # call leaves the caller's inner optimizer as it was.
        for argument in _INNER_ONLY_ARGUMENTS:
            if argument in kwargs:
                raise ValueError(
                    f"{type(self).__name__} does not take `{argument}`: set it "
                    f"on the inner optimizer instead. Received: {argument}="
                    f"{kwargs[argument]!r}"
                )
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s): "
                f"{', '.join(sorted(kwargs))}."
            )
        inner = _resolve_inner_optimizer(optimizer)
        start_averaging = _validation.check_optional_count(
            "start_averaging", start_averaging, minimum=0
        )
        average_period = _validation.check_count(
            "average_period", average_period, minimum=1
        )
        if name is not None:
            name = _validation.check_name("name", name)
        sequential_update = _validation.check_bool(
            "sequential_update", sequential_update
        )
        averaging = check_averaging(averaging)
        clipping = {
            arg: _validation.check_optional_number(arg, value, allow_zero=False)
            for arg, value in (
                ("clipnorm", clipnorm),
                ("clipvalue", clipvalue),
                ("global_clipnorm", global_clipnorm),
            )
        }
        given_clipping = {k: v for k, v in clipping.items() if v is not None}
        if len(given_clipping) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` "
                f"can be set. Received: {given_clipping}"
            )
        new_learning_rate = _new_learning_rate(inner, lr, learning_rate, decay)
        self._check_arguments(averaging=averaging)

        super().__init__(learning_rate=0.0, name=name, **clipping)
        self.inner_optimizer = inner
        self.start_averaging = start_averaging
        self.average_period = average_period
        self.sequential_update = sequential_update
        self.averaging = averaging
        # Empty until `SWACallback(average_non_trainable=True)` attaches the
        # model's non-trainable variables; saved with the optimizer.
        self._non_trainable_averages = NonTrainableAverages()
        if new_learning_rate is not None:
            inner.learning_rate = new_learning_rate
        # The last update count this optimizer wrote, with the tensor that
        # holds it: a step that finds that same tensor knows the count
        # without reading the device (see `_known_update_count`).
        self._written_update_count = None
        self._jitted_snapshot_values = None
        on_jax = keras.config.backend() == "jax"
        self._count_arrays = _CountArrays() if on_jax else None
        # Keras's LossScaleOptimizer changes its state inside `ops.cond`
        # branches, which on JAX leaks tracers: there it works only through
        # its own `stateless_apply`, which returns the new values. An inner
        # optimizer with a `stateless_apply` of its own is driven through it
        # on JAX.
        self._inner_is_stateless_only = on_jax and (
            type(inner).stateless_apply is not keras.optimizers.Optimizer.stateless_apply
        )

    def _check_arguments(self, **arguments: Any) -> None:
        """A hook for subclasses to refuse argument combinations before
        anything is built or changed."""

    # -- building --------------------------------------------------------

    def build(self, var_list: Sequence[keras.Variable]) -> None:
        """Creates one average per variable of `var_list`, then builds the
        inner optimizer on the same list unless it is built already (an inner
        optimizer that has trained keeps its state). An inner optimizer built
        for other variables is refused."""
        if self.built:
            return
        var_list = list(var_list)
        _check_inner_is_free(self.inner_optimizer, var_list)
        super().build(var_list)
        self._snapshot_count = self.add_variable(
            shape=(),
            dtype="int",
            initializer="zeros",
            aggregation="only_first_replica",
            name="snapshot_count",
        )
        # Variables overwritten with their gradient (float8 scaling factors)
        # are not weights and get no average. The attribute itself, not the
        # private method newer Keras optimizers wrap it in (Keras 3.8 lacks
        # it); raw tf.Variables have no such attribute.
        self._averages = [
            None
            if getattr(variable, "overwrite_with_gradient", False)
            else self.add_variable_from_reference(variable, name="swa_average")
            for variable in var_list
        ]
        self._build_moments(var_list)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)

    def _build_moments(self, var_list: List[keras.Variable]) -> None:
        """A hook for subclasses that keep more per-variable state."""

    @property
    def variables(self) -> list:
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        """The inner optimizer's step count, which drives its learning-rate
        schedule (see `update_count` for the updates made through SWA)."""
        return _wrapped(self.inner_optimizer).iterations

    @property
    def update_count(self) -> int:
        """Number of updates applied through this optimizer: the `t` of the
        averaging rule (0 before the optimizer is built). Read it outside
        compiled functions."""
        if not self.built:
            return 0
        return int(ops.convert_to_numpy(self._iterations))

    @property
    def average_variables(self) -> list:
        """The averages: one variable per variable the optimizer was built
        with, in the same order (`model.trainable_variables` under `fit`),
        `None` for variables that have no average. Empty before `build`."""
        return list(self._averages) if self.built else []

    @property
    def snapshot_count(self) -> int:
        """Number of snapshots averaged so far (0 before the optimizer is
        built). Read it outside compiled functions."""
        if not self.built:
            return 0
        return int(ops.convert_to_numpy(self._snapshot_count))

    # -- the training step ------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    f"{type(self).__name__} is not built yet: pass "
                    "`trainable_variables` to the first `apply` call, or call "
                    "`optimizer.build(variables)`."
                )
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        # Everything that can be refused is refused here, before the inner
        # optimizer changes a variable.
        _check_update(self, grads, trainable_variables)
        if not grads:
            return
        grads = self._clip_gradients(grads)

        eager_count = self._known_update_count(grads)
        if eager_count is not None:
            self._apply_eagerly(grads, trainable_variables, eager_count)
            return

        step = ops.copy(self._iterations)
        if self.sequential_update:
            inner_before = ops.copy(self.iterations)
            self._apply_inner(grads, trainable_variables)
            # The inner optimizer may skip the update (gradient accumulation);
            # only a real update counts.
            updated = ops.greater(self.iterations, inner_before)
            if self.start_averaging is not None:
                self._snapshot_if(ops.logical_and(self._is_due(step), updated))
        else:
            updated = self._inner_updates_now()
            if self.start_averaging is not None:
                self._snapshot_if(ops.logical_and(self._is_due(step), updated))
            self._apply_inner(grads, trainable_variables)
        self._iterations.assign_add(ops.cast(updated, self._iterations.dtype))

    def apply_gradients(self, grads_and_vars):
        grads, trainable_variables = zip(*grads_and_vars)
        self.apply(grads, trainable_variables)
        return self.iterations

    def _is_due(self, step):
        """Whether update `step` (a counter tensor) is a snapshot."""
        start = ops.convert_to_tensor(self.start_averaging, step.dtype)
        period = ops.convert_to_tensor(self.average_period, step.dtype)
        return ops.logical_and(
            ops.greater_equal(step, start),
            ops.equal(ops.mod(step - start, period), 0),
        )

    def _is_due_now(self, step: int) -> bool:
        """`_is_due` in Python, for a step known on the host."""
        return (
            self.start_averaging is not None
            and step >= self.start_averaging
            and (step - self.start_averaging) % self.average_period == 0
        )

    def _inner_always_updates(self) -> bool:
        """Whether every `apply` of the inner optimizer is an update, as for
        every Keras optimizer that does not accumulate gradients."""
        inner = self.inner_optimizer
        return not getattr(inner, "gradient_accumulation_steps", None) and not (
            isinstance(inner, keras.optimizers.LossScaleOptimizer)
        )

    def _inner_updates_now(self):
        """Whether the coming inner `apply` changes the weights (it does not
        while it only accumulates gradients)."""
        steps = getattr(self.inner_optimizer, "gradient_accumulation_steps", None)
        if not steps:
            return ops.convert_to_tensor(True)
        raw_steps = self.inner_optimizer._iterations
        return ops.equal(ops.mod(raw_steps + 1, steps), 0)

    def _known_update_count(self, grads: list) -> Optional[int]:
        """`t` as a Python int when this step runs eagerly, else `None`.

        Eager steps decide in Python and skip the per-step graph of the
        decision. The count is read from the device, except when the counter
        still holds the tensor this optimizer wrote last step: then it is
        known without a read, which on JAX (`jit_compile=False`) would wait
        for the whole queued step to finish.

        On JAX a step is traced when its gradients are, even if the counter
        is not: a `LossScaleOptimizer` around this one (which `compile` adds
        under `mixed_float16`) calls it inside the branch of a `cond` with
        the optimizer's state as concrete arrays.
        """
        if _needs_tf_merge_call():
            return None
        if self._count_arrays is not None and _holds_jax_tracer(grads):
            return None
        value = self._iterations.value
        written = self._written_update_count
        if written is not None and _same_tensor(written[0], value):
            return written[1]
        if _is_traced(value):
            return None
        return int(ops.convert_to_numpy(value))

    def _apply_eagerly(self, grads, trainable_variables, step: int) -> None:
        always = self._inner_always_updates()
        if self.sequential_update:
            if always:
                self._apply_inner(grads, trainable_variables)
                updated = True
            else:
                before = int(self.iterations)
                self._apply_inner(grads, trainable_variables)
                updated = int(self.iterations) > before
            if updated and self._is_due_now(step):
                self._take_snapshot_in_place()
        else:
            updated = always or bool(self._inner_updates_now())
            if updated and self._is_due_now(step):
                self._take_snapshot_in_place()
            self._apply_inner(grads, trainable_variables)
        if updated:
            count = step + 1
            if self._count_arrays is not None:
                count = self._count_arrays.get(count, self._iterations.value.dtype)
            self._iterations.assign(count)
            # Past Keras's attribute tracking (`Optimizer.__setattr__`), which
            # would walk this tuple on every step: it holds no variable.
            object.__setattr__(
                self, "_written_update_count", (_tensor_key(self._iterations.value), step + 1)
            )

    def _apply_inner(self, grads: list, trainable_variables: list) -> None:
        """The inner optimizer's update, through its `stateless_apply` where
        its `apply` cannot run (see `_inner_is_stateless_only`)."""
        inner = self.inner_optimizer
        if not self._inner_is_stateless_only:
            inner.apply(grads, trainable_variables)
            return
        # `stateless_apply` takes a gradient for each variable it was built
        # with; those left out of this update get none.
        given = {inner._var_key(v): g for v, g in zip(trainable_variables, grads)}
        weights = list(_wrapped(inner)._trainable_variables)
        state = inner.variables
        new_weights, new_state = inner.stateless_apply(
            [_kernels.read(v) for v in state],
            [given.get(inner._var_key(w)) for w in weights],
            [_kernels.read(w) for w in weights],
        )
        for variable, value in zip(weights + state, list(new_weights) + list(new_state)):
            variable.assign(value)

    # -- snapshots -------------------------------------------------------

    def take_snapshot(self) -> None:
        """Takes a snapshot of the current weights now.

        The weights join the average as one more snapshot, exactly as an
        automatic snapshot would. Use it with `start_averaging=None` to
        decide when to average: at the end of an epoch, of a learning-rate
        cycle, or from a callback (`SWACallback(start_epoch=...)` does it at
        epoch ends). It works between `fit` calls and from callbacks, on
        every backend. Once `SWACallback(average_non_trainable=True)` has
        attached the model's non-trainable variables, they join their
        averages too.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWA
        >>> w = keras.Variable(np.array([1.0, 1.0], "float32"))
        >>> opt = SWA(keras.optimizers.SGD(1.0), start_averaging=None)
        >>> grad = keras.ops.full((2,), 0.1)
        >>> opt.apply([grad], [w]); opt.take_snapshot()  # w = 0.9
        >>> opt.apply([grad], [w]); opt.apply([grad], [w])
        >>> opt.take_snapshot()                           # w = 0.7
        >>> opt.snapshot_count
        2
        >>> print(keras.ops.convert_to_numpy(opt.average_variables[0]).round(4))
        [0.8 0.8]
        """
        if not self.built:
            raise ValueError(
                f"`take_snapshot` needs a built optimizer: {self.name!r} has "
                "no weights yet. Call it after training has started (or after "
                "`optimizer.build(model.trainable_variables)`)."
            )
        statistics = self._non_trainable_averages
        # Before: one the running `fit` still owes them is of the weights of
        # before this snapshot.
        statistics.catch_up()
        self._take_snapshot_in_place()
        statistics.take_manual_snapshot()

    def _non_trainable_rules(self) -> list:
        """The rules of the averages of the non-trainable variables: the
        weights' one."""
        return [self.averaging]

    def _snapshot_if(self, take):
        if _needs_tf_merge_call():
            # tf.distribute cannot assign mirrored variables inside a `cond`
            # in replica context; as Keras's LossScaleOptimizer does, take the
            # decision in cross-replica context.
            import tensorflow as tf

            tf.distribute.get_replica_context().merge_call(
                self._cross_replica_snapshot_if, args=(take,)
            )
        elif in_stateless_scope() or keras.config.backend() == "jax":
            # Under JAX tracing a branch must not assign: both branches
            # return values, assigned after the `cond`. (XLA gives this
            # conditional no copies: JAX donates the state.)
            # A new function per call, not the bound method: JAX 0.4.30
            # caches a branch's trace by the function, and an equal bound
            # method brings back the state tracers of an earlier trace (a
            # retrace for a smaller last batch fails).
            state = self._snapshot_state()
            values = keras_backend.cond(
                take,
                lambda: self._snapshot_values(),
                lambda: [_kernels.read(v) for v in state],
            )
            for variable, value in zip(state, values):
                variable.assign(value)
        else:
            self._snapshot_in_graph_if(take)

    def _cross_replica_snapshot_if(self, strategy, take):
        # Every replica computed the same decision from the same counter.
        take = strategy.experimental_local_results(take)[0]
        keras_backend.cond(take, self._take_snapshot_in_place, lambda: None)

    def _snapshot_in_graph_if(self, take):
        """A snapshot if `take`, in a TensorFlow graph (or under XLA), where
        a step without one touches no average.

        A loop of zero or one trip rather than a `cond`: XLA gives a
        conditional's result buffers of its own, so the branch without a
        snapshot would copy every average on every step (8 bytes a parameter,
        seen in the optimized HLO), where a loop updates its state in place
        (tests/python/test_compiled_step.py counts the copies).
        """
        import tensorflow as tf

        # Plain Python, as a `cond` branch is: not rewritten by AutoGraph.
        @tf.autograph.experimental.do_not_convert
        def snapshot(trip):
            self._take_snapshot_in_place()
            return (trip + 1,)

        trips = tf.cast(take, "int32")
        tf.while_loop(
            lambda trip: trip < trips, snapshot, (tf.constant(0),), maximum_iterations=1
        )

    def _take_snapshot_in_place(self) -> None:
        """One snapshot, written into the optimizer's variables."""
        if keras.config.backend() == "jax":
            # Functional arrays: one compiled pass computes every new value
            # (eagerly, `jax.jit` fuses what would be one dispatch per op).
            state = self._snapshot_state()
            if _is_traced(self._snapshot_count.value):
                values = self._snapshot_values()
            else:
                values = self._jitted_values()(
                    [_kernels.read(v) for v in state],
                    [_kernels.read(w) for w in self._trainable_variables],
                )
            for variable, value in zip(state, values):
                variable.assign(value)
            return
        count = self._snapshot_count.value
        weights, averages = self._averaged_weights()
        factors = self._factors(count, averages)
        _kernels.blend_(averages, weights, factors)
        self._update_moments_in_place(weights, factors, count)
        self._snapshot_count.assign(count + 1)

    def _jitted_values(self) -> Callable:
        if self._jitted_snapshot_values is None:
            import jax

            self._jitted_snapshot_values = jax.jit(self._snapshot_values_of)
        return self._jitted_snapshot_values

    def _snapshot_values_of(self, state_values: list, weight_values: list) -> list:
        """`_snapshot_values` as a pure function of the values of
        `_snapshot_state()` and of the trainable variables (for `jax.jit`)."""
        mapping = list(zip(self._snapshot_state(), state_values)) + list(
            zip(self._trainable_variables, weight_values)
        )
        with keras.StatelessScope(state_mapping=mapping):
            return self._snapshot_values()

    def _snapshot_state(self) -> list:
        """The variables a snapshot writes, in the order of
        `_snapshot_values`."""
        return [self._snapshot_count] + [a for a in self._averages if a is not None]

    def _snapshot_values(self) -> list:
        """The values of `_snapshot_state()` after one more snapshot, as new
        tensors (the reference rule in `keras.ops`)."""
        count = _kernels.read(self._snapshot_count)
        weights, averages = self._averaged_weights()
        factors = self._factors(count, averages)
        new_averages = [
            _kernels.blended(_kernels.read(average), ops.cast(_kernels.read(weight), average.dtype), factor)
            for average, weight, factor in zip(averages, weights, factors)
        ]
        moments = self._moment_values(weights, new_averages, factors, count)
        return [count + 1] + new_averages + moments

    def _averaged_weights(self):
        """The weights that have an average, and their averages."""
        pairs = [
            (weight, average)
            for weight, average in zip(self._trainable_variables, self._averages)
            if average is not None
        ]
        return [w for w, _ in pairs], [a for _, a in pairs]

    def _factors(self, count, averages, averaging: Optional[Averaging] = None) -> list:
        """The blend factor of the snapshot that follows `count` snapshots
        for each of `averages` (one tensor per dtype), by the rule
        `averaging` (this optimizer's by default): the one place where a
        snapshot asks its rule how much it counts."""
        return averaging_factors(self.averaging if averaging is None else averaging, count, averages)

    def _update_moments_in_place(self, weights, factors, count) -> None:
        """A hook for subclasses: update their state after the averages."""

    def _moment_values(self, weights, new_averages, factors, count) -> list:
        """A hook for subclasses: the new values of their state, in the
        order they add to `_snapshot_state()`."""
        return []

    # -- using the averages ----------------------------------------------

    def assign_average_vars(self, var_list: Sequence[keras.Variable]) -> None:
        """Overwrites each variable of `var_list` with its average.

        Call it once training is over. Non-trainable variables (batch-norm
        statistics, counters) have no average and are left as they are, so
        `model.variables` may be passed whole. Before the first snapshot
        there is nothing to assign: the weights are left alone and a warning
        says so.

        Args:
            var_list: The model's variables (`model.variables` or
                `model.trainable_variables`), Keras variables or, on
                TensorFlow, raw `tf.Variable`s.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWA
        >>> w = keras.Variable(np.array([1.0, 1.0], "float32"))
        >>> opt = SWA(keras.optimizers.SGD(1.0), average_period=1)
        >>> for _ in range(3):
        ...     opt.apply([keras.ops.full((2,), 0.1)], [w])
        >>> print(keras.ops.convert_to_numpy(w).round(4))  # training weights
        [0.7 0.7]
        >>> opt.assign_average_vars([w])
        >>> print(keras.ops.convert_to_numpy(w).round(4))  # mean of 0.9, 0.8, 0.7
        [0.8 0.8]
        """
        for variable, average in self._averaged_pairs(
            var_list, "assign_average_vars"
        ):
            # A copy, so that on JAX the two variables never share a buffer.
            variable.assign(ops.copy(average.value))

    def swap_average_vars(self, var_list: Sequence[keras.Variable]) -> None:
        """Exchanges each variable of `var_list` with its average.

        After one call the model holds the averaged weights and the optimizer
        keeps the training weights in their place; a second call restores
        both. Do not train while swapped. `use_average_vars` does the pair of
        calls around a block.

        Args:
            var_list: The model's variables, as for `assign_average_vars`.
        """
        for variable, average in self._averaged_pairs(
            var_list, "swap_average_vars"
        ):
            training_value = ops.copy(_kernels.read(variable))
            variable.assign(ops.copy(average.value))
            average.assign(training_value)

    @contextlib.contextmanager
    def use_average_vars(
        self, var_list: Sequence[keras.Variable]
    ) -> Iterator[None]:
        """Context manager: the averaged weights inside, the training weights
        back afterwards (even if the block raises).

        Use it to evaluate the SWA model in the middle of training without
        disturbing the training run.

        Args:
            var_list: The model's variables, as for `assign_average_vars`.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWA
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> opt = SWA("sgd", average_period=1)
        >>> model.compile(optimizer=opt, loss="mse")
        >>> x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
        >>> _ = model.fit(x, y, epochs=3, verbose=0)
        >>> before = model.get_weights()
        >>> with opt.use_average_vars(model.variables):
        ...     swa_loss = model.evaluate(x, y, verbose=0)
        >>> all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        True
        """
        var_list = _as_var_list(var_list)
        pairs = self._averaged_pairs(var_list, "use_average_vars")
        training = [ops.copy(_kernels.read(variable)) for variable, _ in pairs]
        # On JAX, a Keras `predict` or `evaluate` that fails part-way leaves
        # the model's variables without a value (its trainer empties them
        # while it runs). JAX arrays are immutable, so holding the values of
        # before costs no copy and lets such variables be put back.
        held = (
            [(variable, variable.value) for variable in var_list]
            if keras.backend.backend() == "jax"
            else []
        )
        for variable, average in pairs:
            variable.assign(ops.copy(average.value))
        try:
            yield
        finally:
            for variable, value in held:
                if getattr(variable, "_value", value) is None:
                    variable.assign(value)
            for (variable, _), value in zip(pairs, training):
                variable.assign(value)

    def _averaged_pairs(self, var_list, caller):
        """`(variable, average)` for the variables of `var_list` that have an
        average; validates the list first, so nothing is half done."""
        pairs = [
            (variable, self._averages[index])
            for variable, index in self._trainable_indices(var_list, caller)
            if self._averages[index] is not None
        ]
        if self.snapshot_count == 0:
            if self.start_averaging is None:
                when = "take one with `take_snapshot()`"
            else:
                when = (
                    f"the first comes at update {self.start_averaging}, "
                    f"{self.update_count} updates so far"
                )
            warnings.warn(
                f"`{caller}` did nothing: no snapshot has been taken yet "
                f"({when}). The weights are unchanged.",
                stacklevel=4,
            )
            return []
        return pairs

    def _trainable_indices(self, var_list, caller):
        """`(variable, index)` for the trainable variables of `var_list`, the
        index being the variable's position in the list this optimizer was
        built with. Non-trainable variables are skipped; unknown trainable
        ones refused."""
        var_list = _as_var_list(var_list)
        found = []
        for variable in var_list if self.built else []:
            if not getattr(variable, "trainable", False):
                continue
            key = self._var_key(variable)
            if key not in self._trainable_variables_indices:
                raise ValueError(
                    f"`{caller}` was given the trainable variable "
                    f"{_variable_name(variable)!r}, which this optimizer was "
                    "not built with. Pass the variables of the model this "
                    "optimizer trains."
                )
            found.append((variable, self._trainable_variables_indices[key]))
        return found

    # -- Keras plumbing ----------------------------------------------------

    def set_weights(self, weights: Sequence) -> None:
        """Sets the whole state of the optimizer from a list of values.

        `weights` holds one value (an array or tensor) per variable of
        `variables`, in that order: this optimizer's own (the update count,
        the snapshot count, the averages) and then the inner optimizer's (its
        step count, learning rate, moments). Given the values of another
        optimizer's `variables`, built alike, it makes this one continue
        exactly where that one is. A list of another length, or a value of
        another shape, is refused before any variable changes.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWA
        >>> w = keras.Variable(np.ones(2, "float32"))
        >>> trained = SWA(keras.optimizers.Adam(0.1), average_period=1)
        >>> trained.apply([keras.ops.ones(2)], [w])
        >>> copy = SWA(keras.optimizers.Adam(0.1), average_period=1)
        >>> copy.build([w])
        >>> copy.set_weights([keras.ops.convert_to_numpy(v) for v in trained.variables])
        >>> copy.update_count, int(copy.iterations), copy.snapshot_count
        (1, 1, 1)
        """
        if not self.built:
            raise ValueError(
                f"`set_weights` needs a built optimizer: {self.name!r} has no "
                "variables yet. Call `optimizer.build(trainable_variables)` "
                "first."
            )
        variables = self.variables
        weights = list(weights)
        if len(weights) != len(variables):
            own = len(self._variables)
            raise ValueError(
                f"`set_weights` needs one value per variable of "
                f"`{self.name}.variables`: {len(variables)} ({own} of "
                f"{type(self).__name__} and {len(variables) - own} of its "
                f"inner optimizer {self.inner_optimizer.name!r}, in that "
                f"order). Received {len(weights)} values. No variable was "
                "changed."
            )
        for variable, weight in zip(variables, weights):
            shape = tuple(np.shape(weight))
            if shape != tuple(variable.shape):
                raise ValueError(
                    f"`set_weights` got a value of shape {shape} for the "
                    f"variable {_variable_name(variable)!r}, of shape "
                    f"{tuple(variable.shape)}. No variable was changed."
                )
        for variable, weight in zip(variables, weights):
            variable.assign(weight)

    def exclude_from_weight_decay(
        self,
        var_list: Optional[Sequence[keras.Variable]] = None,
        var_names: Optional[Sequence[str]] = None,
    ) -> None:
        """Excludes variables from the weight decay of the inner optimizer.

        SWA applies no weight decay of its own: the optimizer that computes
        the updates does (through a `LossScaleOptimizer` between them), and
        this passes the exclusion on to it, with Keras's meaning. As for any
        Keras optimizer, call it before the optimizer is built.

        Args:
            var_list: The variables to exclude, or `None`.
            var_names: Strings, or `None`: a variable whose name contains
                any of them is excluded (`["bias"]` excludes the biases).

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWA
        >>> kernel = keras.Variable(np.full(2, 2.0, "float32"), name="kernel")
        >>> bias = keras.Variable(np.full(2, 2.0, "float32"), name="bias")
        >>> opt = SWA(keras.optimizers.SGD(1.0, weight_decay=0.004))
        >>> opt.exclude_from_weight_decay(var_names=["bias"])
        >>> opt.apply([keras.ops.zeros(2), keras.ops.zeros(2)], [kernel, bias])
        >>> print(keras.ops.convert_to_numpy(kernel))  # 2 - 2 * 0.004 * 1.0
        [1.992 1.992]
        >>> print(keras.ops.convert_to_numpy(bias))
        [2. 2.]
        """
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before "
                f"the optimizer is built, and {self.name!r} is built."
            )
        target = self.inner_optimizer
        while isinstance(getattr(target, "inner_optimizer", None), keras.optimizers.Optimizer):
            target = target.inner_optimizer
        target.exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            "start_averaging": self.start_averaging,
            "average_period": self.average_period,
            "sequential_update": self.sequential_update,
            "averaging": serialize_averaging(self.averaging),
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "SWA":
        config = dict(config)
        inner = config.pop("optimizer", None)
        try:
            if isinstance(inner, dict):
                inner = keras.saving.deserialize_keras_object(
                    inner, custom_objects=custom_objects
                )
            return cls(inner, **config)
        except (TypeError, ValueError) as error:
            # A ValueError, because Keras's loader replaces a TypeError from
            # `from_config` with a generic message that hides this one.
            raise ValueError(
                f"Cannot restore a kerasswa.{cls.__name__} optimizer from its "
                f"saved config: {error}"
            ) from error


class _CountArrays:
    """JAX arrays of consecutive update counts, made a block at a time.

    A count written as a Python int becomes a new device array, which costs
    a step about 0.2 ms of CPU while XLA's threads hold the cores (JAX with
    `jit_compile=False`, bench/snapshot.py): more than all the rest of
    SWA's work on a step without a snapshot. Iterating over one array of the
    next `BLOCK` counts makes them for a few microseconds each.
    """

    BLOCK = 1024

    def __init__(self) -> None:
        self._first = 0
        self._arrays: list = []

    def get(self, count: int, dtype):
        """A JAX array of `dtype` that holds `count`."""
        index = count - self._first
        if not (
            0 <= index < len(self._arrays)
            and self._arrays[index].dtype == dtype
            # A jitted step that donates the optimizer's state frees it.
            and not self._arrays[index].is_deleted()
        ):
            import jax

            self._first, index = count, 0
            self._arrays = list(jax.device_put(np.arange(count, count + self.BLOCK, dtype=dtype)))
        return self._arrays[index]


def _keras_version() -> Tuple[int, int]:
    """Keras's (major, minor) version, for the few places where its
    behaviour changed between the versions kerasswa supports."""
    major, minor = keras.version().split(".")[:2]
    return int(major), int(minor)


def _find_swa(model, kind: type = SWA, user: str = "SWACallback") -> SWA:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{user} needs a model compiled with a kerasswa.{kind.__name__} "
            f"optimizer. Received: model={model!r} (of type "
            f"{type(model).__name__}), not a Keras model"
        )
    optimizer = getattr(model, "optimizer", None)
    # `compile` wraps the optimizer in a LossScaleOptimizer under mixed_float16.
    inner = getattr(optimizer, "inner_optimizer", None)
    for candidate in (optimizer, inner):
        if isinstance(candidate, kind):
            return candidate
    raise TypeError(
        f"{user} needs a model compiled with a kerasswa.{kind.__name__} "
        f"optimizer. Received: model={model.name!r}, whose optimizer is "
        f"{optimizer!r}"
    )


def _check_update(optimizer: SWA, grads: list, trainable_variables: list) -> None:
    """Refuses an update that the inner optimizer would half apply."""
    if len(grads) != len(trainable_variables):
        raise ValueError(
            f"{type(optimizer).__name__} got {len(grads)} gradients for "
            f"{len(trainable_variables)} variables; give one gradient per "
            "variable."
        )
    optimizer._check_variables_are_known(trainable_variables)
    for grad, variable in zip(grads, trainable_variables):
        grad_shape = getattr(grad, "shape", None)
        if grad is None or grad_shape is None or grad_shape == variable.shape or _is_sparse(grad):
            continue
        known = [d for d in tuple(grad_shape) if d is not None]
        if len(known) == len(tuple(grad_shape)) and tuple(grad_shape) != tuple(variable.shape):
            raise ValueError(
                f"The gradient of {_variable_name(variable)!r} has shape "
                f"{tuple(grad_shape)}, but the variable has shape "
                f"{tuple(variable.shape)}. No variable was changed."
            )


def _wrapped(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that `LossScaleOptimizer`s (if any) wrap: the one that
    holds the weights' list and counts the updates. Later Keras versions
    answer both from the loss-scale optimizer too; Keras 3.8's records no
    variables and has an `iterations` of its own that no update advances."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _check_inner_is_free(inner: keras.optimizers.Optimizer, var_list: list) -> None:
    """Refuses an inner optimizer that was built for other variables: Keras
    would raise "Unknown variable" on TensorFlow and PyTorch, and on JAX
    leave the model untrained without a word."""
    if not inner.built:
        return
    known = inner._trainable_variables_indices
    strangers = [v for v in var_list if inner._var_key(v) not in known]
    if strangers:
        raise ValueError(
            f"The inner optimizer {inner.name!r} "
            f"({type(inner).__name__}) was already built for other "
            f"variables (another model): it does not know "
            f"{_variable_name(strangers[0])!r}. An optimizer keeps per-variable "
            "state, so it cannot train a second model. Wrap a fresh one for "
            "each model, e.g. "
            f"`SWA({type(inner).__name__}.from_config(inner.get_config()))`."
        )


def _is_variable(value) -> bool:
    """A `keras.Variable`, or a raw `tf.Variable` (which has no common base)."""
    return isinstance(value, keras.Variable) or all(
        hasattr(value, attribute) for attribute in ("assign", "trainable", "shape", "dtype")
    )


def _as_var_list(var_list) -> list:
    """`var_list` as a list of variables; anything else is refused."""
    def refuse(what=""):
        shown = repr(var_list)
        if len(shown) > 100:
            shown = shown[:80] + "..."
        return TypeError(
            "`var_list` must be a list of variables, such as "
            f"`model.variables`. Received: var_list={shown}{what}"
        )

    if (
        _is_variable(var_list)
        or isinstance(var_list, (str, bytes, dict))
        or not hasattr(var_list, "__iter__")
    ):
        raise refuse()
    try:
        items = list(var_list)
    except TypeError:
        raise refuse() from None
    strangers = [item for item in items if not _is_variable(item)]
    if strangers:
        raise refuse(f", which holds {strangers[0]!r} (of type {type(strangers[0]).__name__})")
    return items


@contextlib.contextmanager
def _restored(variables) -> Iterator[None]:
    """The variables' values as they were before the block, even on error."""
    variables = list(variables)
    saved = [ops.copy(_kernels.read(v)) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def _is_sparse(grad) -> bool:
    return type(grad).__name__ in ("IndexedSlices", "SparseTensor", "BCOO")


def _variable_name(variable) -> str:
    return getattr(variable, "path", None) or getattr(variable, "name", repr(variable))


def _tensor_key(value):
    """What identifies a tensor's current contents without reading them: the
    tensor itself for immutable JAX arrays, the tensor and its version
    counter for PyTorch's in-place tensors; `None` elsewhere."""
    backend = keras.config.backend()
    if backend == "jax":
        return (value,)
    if backend == "torch":
        return (value, value._version)
    return None


def _same_tensor(key, value) -> bool:
    if key is None:
        return False
    current = _tensor_key(value)
    return (
        current is not None
        and current[0] is key[0]
        and current[1:] == key[1:]
    )


def _holds_jax_tracer(values) -> bool:
    """Whether any of `values` is a JAX tracer: what every eager JAX step
    checks, 0.05 microsecond a value here (0.5 for mlp-3M's 8 gradients)."""
    global _JAX_TRACER
    if _JAX_TRACER is None:
        import jax

        _JAX_TRACER = jax.core.Tracer
    tracer = _JAX_TRACER
    for value in values:
        if isinstance(value, tracer):
            return True
    return False


_JAX_TRACER = None


def _is_traced(value) -> bool:
    """Whether `value` is symbolic: a JAX tracer, or a tensor of a
    TensorFlow graph (`tf.function`)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if backend == "jax":
        import jax

        return isinstance(value, jax.core.Tracer)
    return False


def _needs_tf_merge_call() -> bool:
    """Whether this runs in a tf.distribute replica context whose strategy
    synchronizes variable updates through `merge_call`."""
    if keras.config.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return (
        tf.distribute.has_strategy()
        and not tf.distribute.in_cross_replica_context()
        and not tf.__internal__.distribute.strategy_supports_no_merge_call()
    )


def _resolve_inner_optimizer(optimizer: Any) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, SWA):
        raise TypeError(
            "`optimizer` is already an SWA optimizer; wrap the optimizer "
            f"that computes the updates instead. Received: optimizer={optimizer!r}"
        )
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, (str, dict)):
        try:
            resolved = keras.optimizers.get(optimizer)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "`optimizer` must name a Keras optimizer (such as 'sgd' or "
                f"'adam') or be its config. Received: optimizer={optimizer!r} "
                f"({error})"
            ) from None
        if isinstance(resolved, SWA):
            return _resolve_inner_optimizer(resolved)
        return resolved
    module = type(optimizer).__module__ or ""
    if module.startswith(_KERAS2_MODULES):
        raise TypeError(
            "`optimizer` is a Keras 2 optimizer "
            f"({module}.{type(optimizer).__name__}); kerasswa needs a Keras 3 "
            "optimizer such as keras.optimizers.SGD(...) (in R, keras3's "
            f"optimizer_sgd()). Received: optimizer={optimizer!r}"
        )
    raise TypeError(
        "`optimizer` must be a Keras 3 optimizer instance, its name or its "
        f"config dict. Received: optimizer={optimizer!r} (of type "
        f"{type(optimizer).__name__})"
    )


def _new_learning_rate(inner, lr, learning_rate, decay):
    """The learning rate (float, schedule or callable) to give the inner
    optimizer, or `None` to leave it alone. Checks everything and changes
    nothing."""
    if lr is not None and learning_rate is not None:
        raise ValueError(
            "Give `learning_rate` or its deprecated alias `lr`, not both. "
            f"Received: lr={lr!r}, learning_rate={learning_rate!r}"
        )
    argument = "lr" if lr is not None else "learning_rate"
    rate = _validation.check_learning_rate(
        argument, lr if lr is not None else learning_rate
    )
    decay = _validation.check_optional_number("decay", decay, allow_zero=True)
    if rate is None and not decay:
        return None
    is_float = rate is None or isinstance(rate, float)
    if decay and not is_float:
        raise ValueError(
            "`decay` applies to a constant learning rate, and "
            f"`{argument}` is a schedule: put the decay into the schedule "
            f"instead. Received: {argument}={rate!r}, decay={decay!r}"
        )
    # A float learning rate lives in a variable; a schedule or a callable on
    # the inner optimizer would be silently replaced by a float, so refuse.
    if is_float and not isinstance(inner.learning_rate, keras.Variable):
        raise ValueError(
            f"`{argument if rate is not None else 'decay'}` cannot be applied: "
            f"the inner optimizer {inner.name!r} already follows a "
            "learning-rate schedule. Put the schedule you want on the inner "
            "optimizer instead, or pass a schedule as `learning_rate`."
        )
    if lr is not None:
        # Only once the value is known to be used.
        warnings.warn(
            "`lr` is deprecated; use `learning_rate`.",
            DeprecationWarning,
            stacklevel=4,
        )
    if not decay:
        return rate
    if rate is None:
        rate = float(ops.convert_to_numpy(inner.learning_rate))
    return keras.optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=rate, decay_steps=1, decay_rate=decay
    )
