"""The `SWA` optimizer: stochastic weight averaging around any Keras 3 optimizer."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator, Optional, Sequence, Union

import keras
from keras import ops

# Two pieces Keras does not export. `in_stateless_scope` is the only way to know
# whether `apply` runs under `stateless_apply` (JAX `fit`, or a
# `LossScaleOptimizer` around this one). `backend.cond` is what `ops.cond`
# dispatches to, minus the `Operation` that `ops.cond` creates on every call:
# that operation's fresh name makes `torch.compile` recompile every step.
from keras.src import backend as keras_backend
from keras.src.backend.common.stateless_scope import in_stateless_scope

from kerasswa import _validation

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
    With `t` the number of updates applied before this one, the update is a
    *snapshot* when `t >= start_averaging` and
    `(t - start_averaging) % average_period == 0`: every average then moves
    to `avg + (w - avg) / (n + 1)`, where `n` counts the snapshots taken
    before, so the average is always the plain mean of the snapshots. Other
    updates do no averaging work. The training weights are never changed by
    the averaging: call `assign_average_vars` at the end of training, or
    evaluate the averaged model mid-training with `use_average_vars`.

    The rule, the arguments and `assign_average_vars` are those of
    `tfa.optimizers.SWA` from TensorFlow Addons, with three corrections:
    `assign_average_vars` before the first snapshot leaves the weights alone
    (and warns) instead of zeroing them, it skips non-trainable variables
    such as batch-norm statistics instead of failing, and `lr` and `decay`
    take effect instead of being ignored.

    Args:
        optimizer: The optimizer that computes the updates: a Keras 3
            `keras.optimizers.Optimizer` instance, the name of one (`"sgd"`,
            `"adam"`), or its config dict. An instance is used, not copied:
            `lr`, `learning_rate` and `decay` change its learning rate.
        start_averaging: Integer >= 0. Number of updates before the first
            snapshot. Defaults to 0.
        average_period: Integer >= 1. Number of updates between two
            snapshots. Defaults to 10.
        name: String. Name of the optimizer and prefix of its variables.
        sequential_update: Boolean. If `True` (the default) a snapshot is
            taken of the weights after the update that triggers it; if
            `False`, of the weights before that update.
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
        learning_rate: Float > 0 or `None`. If given, replaces the inner
            optimizer's learning rate.

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
        start_averaging: int = 0,
        average_period: int = 10,
        name: str = "SWA",
        sequential_update: bool = True,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        decay: Optional[float] = None,
        lr: Optional[float] = None,
        learning_rate: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        # Every argument is checked before anything is changed, so a refused
        # call leaves the caller's inner optimizer as it was.
        for argument in _INNER_ONLY_ARGUMENTS:
            if argument in kwargs:
                raise ValueError(
                    f"SWA does not take `{argument}`: set it on the inner "
                    f"optimizer instead. Received: {argument}="
                    f"{kwargs[argument]!r}"
                )
        if kwargs:
            raise TypeError(
                "SWA got unexpected keyword argument(s): "
                f"{', '.join(sorted(kwargs))}."
            )
        inner = _resolve_inner_optimizer(optimizer)
        start_averaging = _validation.check_count(
            "start_averaging", start_averaging, minimum=0
        )
        average_period = _validation.check_count(
            "average_period", average_period, minimum=1
        )
        name = _validation.check_name("name", name)
        sequential_update = _validation.check_bool(
            "sequential_update", sequential_update
        )
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

        super().__init__(learning_rate=0.0, name=name, **clipping)
        self.inner_optimizer = inner
        self.start_averaging = start_averaging
        self.average_period = average_period
        self.sequential_update = sequential_update
        if new_learning_rate is not None:
            inner.learning_rate = new_learning_rate

    def build(self, var_list: Sequence[keras.Variable]) -> None:
        """Creates one average per variable of `var_list`, then builds the
        inner optimizer on the same list unless it is built already."""
        if self.built:
            return
        var_list = list(var_list)
        super().build(var_list)
        self._snapshot_count = self.add_variable(
            shape=(),
            dtype="int",
            initializer="zeros",
            aggregation="only_first_replica",
            name="snapshot_count",
        )
        # Variables overwritten with their gradient (float8 scaling factors)
        # are not weights and get no average.
        self._averages = [
            None
            if self._overwrite_variable_with_gradient(variable)
            else self.add_variable_from_reference(variable, name="swa_average")
            for variable in var_list
        ]
        # An inner optimizer that has already trained keeps its state.
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)

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
        return self.inner_optimizer.iterations

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

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "SWA is not built yet: pass `trainable_variables` to the "
                    "first `apply` call, or call `optimizer.build(variables)`."
                )
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        grads = self._clip_gradients(list(grads))
        # A copy, because on TensorFlow eager a plain read can alias the
        # counter and show its value after the update.
        step = ops.copy(self.inner_optimizer.iterations)
        due = ops.logical_and(
            ops.greater_equal(step, self.start_averaging),
            ops.equal(
                ops.mod(step - self.start_averaging, self.average_period), 0
            ),
        )
        if self.sequential_update:
            self.inner_optimizer.apply(grads, trainable_variables)
            # The inner optimizer may skip the update (gradient accumulation,
            # a loss-scale optimizer meeting non-finite gradients); only a
            # real update is a snapshot.
            updated = ops.greater(self.inner_optimizer.iterations, step)
            self._snapshot_if(ops.logical_and(due, updated))
        else:
            self._snapshot_if(ops.logical_and(due, self._inner_updates_now()))
            self.inner_optimizer.apply(grads, trainable_variables)

    def apply_gradients(self, grads_and_vars):
        grads, trainable_variables = zip(*grads_and_vars)
        self.apply(grads, trainable_variables)
        return self.iterations

    def _inner_updates_now(self):
        """Whether the coming inner `apply` changes the weights (it does not
        while it only accumulates gradients)."""
        steps = getattr(self.inner_optimizer, "gradient_accumulation_steps", None)
        if not steps:
            return ops.convert_to_tensor(True)
        raw_steps = self.inner_optimizer._iterations
        return ops.equal(ops.mod(raw_steps + 1, steps), 0)

    def _snapshot_if(self, take):
        if _needs_tf_merge_call():
            # tf.distribute cannot assign mirrored variables inside a `cond`
            # in replica context; as Keras's LossScaleOptimizer does, take the
            # decision in cross-replica context.
            import tensorflow as tf

            tf.distribute.get_replica_context().merge_call(
                self._cross_replica_snapshot_if, args=(take,)
            )
            return
        decided = _concrete_bool(take)
        if decided is not None:
            # Eager: decide in Python. (JAX's `cond` would trace and compile
            # both branches again on every eager call.)
            if decided:
                self._assign_snapshot(*self._snapshot_values())
        elif in_stateless_scope() or keras.config.backend() == "jax":
            # Under JAX tracing a branch must not assign: both branches
            # return values, assigned after the `cond`.
            count, averages = keras_backend.cond(
                take, self._snapshot_values, self._current_values
            )
            self._assign_snapshot(count, averages)
        else:
            self._snapshot_in_graph_if(take)

    def _cross_replica_snapshot_if(self, strategy, take):
        # Every replica computed the same decision from the same counter.
        self._snapshot_in_graph_if(strategy.experimental_local_results(take)[0])

    def _snapshot_in_graph_if(self, take):
        # A TensorFlow graph: stateful branches, so that steps without a
        # snapshot touch no average.
        keras_backend.cond(
            take,
            lambda: self._assign_snapshot(*self._snapshot_values()),
            lambda: None,
        )

    def _snapshot_values(self):
        new_count = self._snapshot_count.value + 1
        # `n + 1` once per dtype, not once per variable.
        divisors = {}
        averages = []
        for weight, average in zip(self._trainable_variables, self._averages):
            if average is None:
                averages.append(None)
                continue
            if average.dtype not in divisors:
                divisors[average.dtype] = ops.cast(new_count, average.dtype)
            averages.append(
                _running_mean(
                    average.value,
                    ops.cast(weight.value, average.dtype),
                    divisors[average.dtype],
                )
            )
        return new_count, averages

    def _current_values(self):
        return self._snapshot_count.value, [
            None if average is None else average.value
            for average in self._averages
        ]

    def _assign_snapshot(self, count, averages):
        for average, value in zip(self._averages, averages):
            if average is not None:
                average.assign(value)
        self._snapshot_count.assign(count)

    def assign_average_vars(self, var_list: Sequence[keras.Variable]) -> None:
        """Overwrites each variable of `var_list` with its average.

        Call it once training is over. Non-trainable variables (batch-norm
        statistics, counters) have no average and are left as they are, so
        `model.variables` may be passed whole. Before the first snapshot
        there is nothing to assign: the weights are left alone and a warning
        says so.

        Args:
            var_list: The model's variables (`model.variables` or
                `model.trainable_variables`).

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
            variable.assign(ops.copy(average))

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
            training_value = ops.copy(variable)
            variable.assign(average)
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
        var_list = list(var_list)
        self.swap_average_vars(var_list)
        try:
            yield
        finally:
            self.swap_average_vars(var_list)

    def _averaged_pairs(self, var_list, caller):
        """Yields `(variable, average)` for the variables of `var_list` that
        have an average; validates the list first, so nothing is half done."""
        if isinstance(var_list, keras.Variable) or not hasattr(var_list, "__iter__"):
            raise TypeError(
                f"`var_list` must be a list of variables, such as "
                f"`model.variables`. Received: var_list={var_list!r}"
            )
        pairs = []
        for variable in var_list if self.built else []:
            if not getattr(variable, "trainable", False):
                continue
            key = self._var_key(variable)
            if key not in self._trainable_variables_indices:
                raise ValueError(
                    f"`{caller}` was given the trainable variable "
                    f"{getattr(variable, 'path', variable.name)!r}, which this "
                    "optimizer was not built with. Pass the variables of the "
                    "model this optimizer trains."
                )
            average = self._averages[self._trainable_variables_indices[key]]
            if average is not None:
                pairs.append((variable, average))
        if self.snapshot_count == 0:
            warnings.warn(
                f"`{caller}` did nothing: no snapshot has been taken yet "
                f"({int(ops.convert_to_numpy(self.iterations))} updates so "
                f"far, the first snapshot comes at update "
                f"{self.start_averaging}). The weights are unchanged.",
                stacklevel=3,
            )
            return []
        return pairs

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
                f"Cannot restore a kerasswa.SWA optimizer from its saved "
                f"config: {error}"
            ) from error


def _running_mean(mean, value, count):
    """The mean of `count` values, from the mean of the first `count - 1`
    and the last one: the update of every SWA average."""
    return mean + (value - mean) / count


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


def _concrete_bool(value) -> Optional[bool]:
    """`value` as a Python bool, or `None` while it is being traced (JAX
    tracers and TensorFlow graph tensors refuse `bool()` with a TypeError)."""
    try:
        return bool(value)
    except TypeError:
        return None


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
    """The learning rate (float or schedule) to give the inner optimizer, or
    `None` to leave it alone. Checks everything and changes nothing."""
    if lr is not None and learning_rate is not None:
        raise ValueError(
            "Give `learning_rate` or its deprecated alias `lr`, not both. "
            f"Received: lr={lr!r}, learning_rate={learning_rate!r}"
        )
    argument = "lr" if lr is not None else "learning_rate"
    rate = _validation.check_optional_number(
        argument, lr if lr is not None else learning_rate, allow_zero=False
    )
    decay = _validation.check_optional_number("decay", decay, allow_zero=True)
    if rate is None and not decay:
        return None
    # A float learning rate lives in a variable; a schedule or a callable
    # would be silently replaced, so refuse instead.
    if not isinstance(inner.learning_rate, keras.Variable):
        raise ValueError(
            f"`{argument if rate is not None else 'decay'}` cannot be applied: "
            f"the inner optimizer {inner.name!r} already follows a "
            "learning-rate schedule. Put the schedule you want on the inner "
            "optimizer instead."
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
