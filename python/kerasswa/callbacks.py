"""`SWACallback`: finishes a `fit` the SWA way, and scores the average as it goes."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator, Optional

import keras
from keras import ops

from kerasswa import _kernels, _validation
from kerasswa.batchnorm import _inputs_of, _is_array_data, _shown, _update_bn, check_data
from kerasswa.swa import SWA, _find_swa, _keras_version, _restored


# The attribute of the SWA optimizer where a finished `fit` leaves the training
# values that the averages replaced, for the next `fit` to resume from. On the
# optimizer rather than the callback, so that a new callback finds them too.
_KEPT_TRAINING_VALUES = "_kerasswa_training_values"


class SWACallback(keras.callbacks.Callback):
    """Ends training with the averaged weights, batch norm included.

    At the end of `fit` (or after epoch `finish_after_epoch`, which then
    stops training) the callback assigns the SWA averages to the model and
    makes its batch-norm statistics match them: recomputed with `update_bn`
    over `bn_data`, or, with `average_non_trainable=True`, replaced by their
    own averages over the same snapshots (PyTorch's `use_buffers=True`).

    `average_non_trainable=True` averages every non-trainable float variable
    of the model (batch-norm moving means and variances) at each snapshot of
    the weights, by the optimizer's rule: the `n`-th snapshot of the
    statistics blends with the factor of the `n`-th snapshot of the weights,
    so they get the same mean, EMA or power EMA (with `PostHocEMA`, one per
    profile, saved by `save_profiles` and rebuilt by `posthoc_ema`).
    Integer and boolean non-trainable variables (counters, random-seed
    states) are copied at each snapshot instead, and end at their value of
    the last one. The optimizer keeps these averages (see
    `kerasswa.nontrainable`), so `model.save()`, `save_weights()`,
    `ModelCheckpoint` and `BackupAndRestore` save them, and a run resumed
    from such a file ends exactly where an uninterrupted run ends.
    `take_snapshot()` (and so `start_epoch`) takes their snapshot too.

    The training step is the same with or without them. The callback works
    out in Python which batches end with a snapshot (from the optimizer's
    counts, read once when training starts, gradient accumulation included)
    and reads the statistics after those batches only: on JAX the other
    batches cause no `jax_state_sync`. An optimizer that may skip an update
    (a `LossScaleOptimizer`, inside SWA or put around it by `compile` under
    `mixed_float16`) makes the snapshots unknowable in advance: then the
    callback reads the snapshot count after every batch, a scalar that waits
    for the step to finish (on JAX read from `fit`'s state, with no sync),
    which costs little on a CPU but keeps the host from running ahead of an
    accelerator; and `sequential_update=False`, whose statistics would be
    those of before a step known to be a snapshot only after it, is
    refused. So is `steps_per_execution > 1`, whose batches run out of the
    callback's sight.

    Given `validation_data`, it also scores the averaged model at the end of
    every epoch and logs the results with the prefix `val_swa_` (e.g.
    `val_swa_loss`; NaN before the first snapshot). Training is not
    disturbed: the training weights and statistics are put back afterwards.

    With `start_epoch=e` the callback also decides when to average, as most
    Keras users think of SWA ("average the last 10 of 150 epochs"): it takes
    a snapshot (`SWA.take_snapshot()`) at the end of epochs `e`, `e + 1`,
    ..., counted from 1 as the progress bar shows (with `initial_epoch`, as
    `fit` numbers them). The optimizer must then take no automatic
    snapshots: build it with `start_averaging=None`.

    Several `fit` calls in a row continue one trajectory: when a later `fit`
    with an `SWACallback` (this one or a new one) starts, the training
    weights and statistics replaced at the end of the previous one are put
    back (a copy of them is kept on the optimizer in between), and the
    optimizer's averages carry on. So `fit(epochs=5)` twice ends where
    `fit(epochs=10)` ends. A model saved in between holds the averaged
    weights; a `fit` without the callback trains on from them.

    Args:
        bn_data: Inputs for `update_bn` (arrays, a `tf.data.Dataset`, a
            `PyDataset`, an iterable of batches), usually the training
            inputs. `None` leaves the statistics as they are.
        bn_batch_size: Batch size for array `bn_data`. Defaults to 32.
        bn_steps: Number of batches of `bn_data` to use; `None` for all.
        validation_data: A tuple (or list) `(x, y)` or `(x, y,
            sample_weight)` to score the averaged model on at each epoch
            end; `None` to skip that.
        validation_batch_size: Batch size for `validation_data`.
        finish_after_epoch: Integer >= 1 or `None`: finish after this epoch
            (counted from 1, as the progress bar shows) and stop training;
            `None` finishes at the end of `fit`.
        average_non_trainable: Boolean. Average the model's non-trainable
            float variables (batch-norm statistics) at each snapshot, by the
            optimizer's rule, and copy its integer and boolean ones, instead
            of recomputing the statistics (see above). Costs one more copy of
            those variables per average (per profile for `PostHocEMA`), saved
            with the optimizer. Needs `steps_per_execution=1`. Excludes
            `bn_data`.
        verbose: 0 or 1: progress of the batch-norm refresh.
        start_epoch: Integer >= 1 or `None`. Take a snapshot at the end of
            this epoch and of every later one (needs an optimizer built with
            `start_averaging=None`); `None` leaves the snapshots to the
            optimizer.

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import SWA, SWACallback
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
    ...                          keras.layers.BatchNormalization(),
    ...                          keras.layers.Dense(1)])
    >>> model.compile(optimizer=SWA("sgd", start_averaging=8, average_period=2),
    ...               loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> history = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
    ...                     callbacks=[SWACallback(bn_data=x,
    ...                                            validation_data=(x, y))])
    >>> np.isnan(history.history["val_swa_loss"]).tolist()  # first snapshot in epoch 2
    [True, False, False]

    The statistics averaged instead, by an EMA as the weights are:

    >>> from kerasswa import EMA
    >>> model = keras.Sequential([keras.Input((4,)),
    ...                          keras.layers.BatchNormalization(),
    ...                          keras.layers.Dense(1)])
    >>> model.compile(optimizer=SWA("sgd", average_period=1,
    ...                             averaging=EMA(0.9)), loss="mse")
    >>> _ = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
    ...               callbacks=[SWACallback(average_non_trainable=True)])
    >>> model.optimizer.snapshot_count
    16
    """

    def __init__(
        self,
        bn_data: Any = None,
        bn_batch_size: int = 32,
        bn_steps: Optional[int] = None,
        validation_data: Any = None,
        validation_batch_size: Optional[int] = None,
        finish_after_epoch: Optional[int] = None,
        average_non_trainable: bool = False,
        verbose: int = 0,
        start_epoch: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.average_non_trainable = _validation.check_bool(
            "average_non_trainable", average_non_trainable
        )
        if bn_data is not None and self.average_non_trainable:
            raise ValueError(
                "Give `bn_data` (recompute the batch-norm statistics) or "
                "`average_non_trainable=True` (average them), not both."
            )
        if bn_data is not None:
            check_data("bn_data", bn_data, finite=True)
        if validation_data is not None:
            _check_validation_data(validation_data)
        self.bn_data = bn_data
        self.bn_batch_size = _validation.check_count("bn_batch_size", bn_batch_size, minimum=1)
        self.bn_steps = _validation.check_optional_count("bn_steps", bn_steps, minimum=1)
        self.validation_data = validation_data
        self.validation_batch_size = _validation.check_optional_count(
            "validation_batch_size", validation_batch_size, minimum=1
        )
        self.finish_after_epoch = _validation.check_optional_count(
            "finish_after_epoch", finish_after_epoch, minimum=1
        )
        self.start_epoch = _validation.check_optional_count("start_epoch", start_epoch, minimum=1)
        self.verbose = _validation.check_verbose(verbose)
        self._swa: Optional[SWA] = None
        self._finished = False
        # While `fit` runs with `average_non_trainable`: whether the snapshots
        # are known in Python, then their schedule (made at the first batch,
        # once every callback has loaded what it loads at train begin), and
        # where JAX's training state holds the snapshot count.
        self._snapshots_known = True
        self._schedule: Optional[_SnapshotSchedule] = None
        self._following = False
        self._count_position: Optional[int] = None

    def on_train_begin(self, logs=None):
        model = self.model
        self._swa = _find_swa(model)
        if self.start_epoch is not None and self._swa.start_averaging is not None:
            raise ValueError(
                f"SWACallback(start_epoch={self.start_epoch}) takes the "
                "snapshots itself, but the optimizer also takes them from "
                f"update {self._swa.start_averaging} on: build it with "
                "`start_averaging=None` (manual snapshots), or drop "
                "`start_epoch`."
            )
        if self.average_non_trainable:
            self._snapshots_known = self._check_statistics_can_follow(model)
        self._check_data_fits(model)
        kept = getattr(self._swa, _KEPT_TRAINING_VALUES, None)
        if kept is not None:
            for variable, value in zip(model.variables, kept):
                variable.assign(value)
            setattr(self._swa, _KEPT_TRAINING_VALUES, None)
        self._finished = False
        self._schedule = None
        self._following = False
        statistics = self._swa._non_trainable_averages
        # A `fit` that stopped on an error may have left them following (and
        # a snapshot behind, if it stopped at a snapshot batch's end).
        statistics.catch_up()
        statistics.stop_following()
        if self.average_non_trainable:
            statistics.attach(
                model.non_trainable_variables, self._swa._non_trainable_rules(), self._swa.name
            )

    def _check_statistics_can_follow(self, model) -> bool:
        """Refuses what `average_non_trainable` cannot follow; whether the
        snapshots are known in Python."""
        swa = self._swa
        steps = getattr(model, "steps_per_execution", 1) or 1
        if int(steps) > 1:
            raise ValueError(
                "SWACallback(average_non_trainable=True) reads the statistics "
                "after the batches that end with a snapshot, and with "
                f"`steps_per_execution={int(steps)}` Keras runs several batches "
                "between two callback calls. Compile the model with "
                "`steps_per_execution=1`, or recompute the statistics with "
                "`bn_data` instead."
            )
        known = swa.start_averaging is None or (
            model.optimizer is swa
            and not isinstance(swa.inner_optimizer, keras.optimizers.LossScaleOptimizer)
        )
        if not known and not swa.sequential_update:
            raise ValueError(
                "SWACallback(average_non_trainable=True) cannot follow an "
                "optimizer that may skip updates (a LossScaleOptimizer, inside "
                f"{type(swa).__name__} or around it under mixed_float16) when it "
                "snapshots the weights of before each update "
                "(`sequential_update=False`): whether a step snapshots is known "
                "only after it, when the statistics of before it are gone. Use "
                "`sequential_update=True`, or `bn_data`."
            )
        return known

    def _check_data_fits(self, model) -> None:
        """Runs one row of array `bn_data` and `validation_data` through the
        model in inference mode (nothing changes), so that inputs that do not
        fit it are refused before training, not after the first epoch."""
        checked = [("bn_data", _inputs_of(self.bn_data) if self.bn_data is not None else None)]
        if self.validation_data is not None:
            checked.append(("validation_data", self.validation_data[0]))
        for argument, inputs in checked:
            if inputs is None or not _is_array_data(inputs):
                continue
            try:
                model(keras.tree.map_structure(lambda a: a[:1], inputs), training=False)
            except Exception as error:
                raise ValueError(
                    f"`{argument}` does not fit model {model.name!r}: {error}"
                ) from error

    def on_train_batch_begin(self, batch, logs=None):
        if not self.average_non_trainable or self._finished:
            return
        if not self._following:
            self._start_following()
        if self._schedule is not None and self._schedule.next_batch_snapshots():
            statistics = self._swa._non_trainable_averages
            statistics.expect_snapshot()
            if not self._swa.sequential_update:
                # The snapshot of this step is of the weights of before it:
                # the statistics are those of now.
                _ = self.model  # On JAX, writes the state back to the model.
                statistics.catch_up(statistics.synced_count + 1)

    def on_train_batch_end(self, batch, logs=None):
        if not self._following or self._finished:
            return
        statistics = self._swa._non_trainable_averages
        if self._schedule is not None:
            count = statistics.synced_count + 1 if statistics.pending else None
        else:
            count = self._read_snapshot_count()
        if count is not None and count > statistics.synced_count:
            _ = self.model  # On JAX, writes the state back to the model.
            statistics.catch_up(count)

    def _start_following(self) -> None:
        """Reads the optimizer's counts, once."""
        swa = self._swa
        statistics = swa._non_trainable_averages
        self._schedule = _SnapshotSchedule(swa) if self._snapshots_known else None
        self._count_position = None
        statistics.start_following(swa.snapshot_count, read_count=lambda: swa.snapshot_count)
        self._following = True

    def _read_snapshot_count(self) -> int:
        """The optimizer's snapshot count after this batch; on JAX read from
        `fit`'s training state, without writing it back to the model."""
        model = self._model  # Not `self.model`, which would sync on JAX.
        state = getattr(model, "_jax_state", None)
        if (
            keras.config.backend() == "jax"
            and state
            and not getattr(model, "_jax_state_synced", True)
            and state.get("optimizer_variables") is not None
        ):
            if self._count_position is None:
                # Where `fit` keeps it: `model.optimizer.variables` is the
                # order of its optimizer state (a LossScaleOptimizer's first).
                self._count_position = next(
                    i for i, v in enumerate(model.optimizer.variables) if v is self._swa._snapshot_count
                )
            return int(ops.convert_to_numpy(state["optimizer_variables"][self._count_position]))
        _ = self.model
        return self._swa.snapshot_count

    def on_epoch_end(self, epoch, logs=None):
        if self.start_epoch is not None and epoch + 1 >= self.start_epoch and not self._finished:
            self._swa.take_snapshot()  # The non-trainable variables' too.
        if self.validation_data is not None and logs is not None:
            logs.update(self._score_average(logs))
        if self.finish_after_epoch is not None and epoch + 1 >= self.finish_after_epoch:
            self._finish()
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if not self._finished:
            self._finish()
        if self._following:
            self._swa._non_trainable_averages.stop_following()
            self._following = False
            self._schedule = None

    def _score_average(self, logs: dict) -> dict:
        model = self.model
        x, y, *rest = self.validation_data
        sample_weight = rest[0] if rest else None
        if self._swa.snapshot_count == 0:
            # The same keys every epoch, so that History's lists line up.
            names = [name for name in logs if not name.startswith("val_")]
            return {f"val_swa_{name}": math.nan for name in names}
        with self._swa_state(model):
            results = model.evaluate(
                x,
                y,
                sample_weight=sample_weight,
                batch_size=self.validation_batch_size,
                verbose=0,
                return_dict=True,
            )
        if _evaluate_forgets_fit_layouts():
            # On Keras 3.9-3.11, JAX's `evaluate` called inside `fit` clears
            # the variable layouts that fit's next step reads (a TypeError
            # there when the step is not jit-compiled; Keras 3.12 keeps no
            # such state). Any `*_on_batch` call records them again.
            model.predict_on_batch(keras.tree.map_structure(lambda a: a[:1], x))
        return {f"val_swa_{name}": float(value) for name, value in results.items()}

    @contextlib.contextmanager
    def _swa_state(self, model) -> Iterator[None]:
        """The averaged weights and matching statistics inside; everything
        as it was afterwards."""
        with _restored(model.non_trainable_variables), self._swa.use_average_vars(
            model.trainable_variables
        ):
            self._apply_average_statistics(model)
            yield

    def _apply_average_statistics(self, model) -> None:
        if self.average_non_trainable:
            statistics = self._swa._non_trainable_averages
            statistics.catch_up()
            if not statistics.assign_to_sources():
                warnings.warn(
                    "SWACallback kept the training values of the non-trainable "
                    "variables: their averages hold no snapshot yet (the "
                    "weights' were taken without `average_non_trainable=True`).",
                    stacklevel=3,
                )
        elif self.bn_data is not None:
            _update_bn(
                model,
                self.bn_data,
                batch_size=self.bn_batch_size,
                steps=self.bn_steps,
                verbose=self.verbose,
                argument="bn_data",
                data_checked=True,  # at construction
            )

    def _finish(self) -> None:
        self._finished = True
        model = self.model
        if self._swa.snapshot_count == 0:
            if self._swa.start_averaging is None:
                when = "the optimizer takes them only through `take_snapshot()`"
            else:
                when = f"the first comes at update {self._swa.start_averaging}"
            warnings.warn(
                "SWACallback kept the training weights: no snapshot was taken "
                f"during training ({when}).",
                stacklevel=2,
            )
            return
        setattr(
            self._swa,
            _KEPT_TRAINING_VALUES,
            [ops.copy(_kernels.read(v)) for v in model.variables],
        )
        self._swa.assign_average_vars(model.variables)
        self._apply_average_statistics(model)


def _evaluate_forgets_fit_layouts() -> bool:
    return keras.config.backend() == "jax" and (3, 9) <= _keras_version() < (3, 12)


def _check_validation_data(validation_data: Any) -> None:
    """`(x, y)` or `(x, y, sample_weight)`: `x` data, `y` and
    `sample_weight` arrays (or `None`), all of one length."""
    refusal = TypeError(
        "`validation_data` must be a tuple `(x, y)` or `(x, y, sample_weight)` "
        "of arrays (x may be a list or dict of arrays). Received: "
        f"validation_data={_shown(validation_data)} "
        f"(of type {type(validation_data).__name__})"
    )
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3)):
        raise refusal
    try:
        check_data("validation_data", validation_data[0])
        for part in validation_data[1:]:
            if part is not None:
                check_data("validation_data", part)
    except TypeError:
        raise refusal from None
    lengths = {
        int(leaf.shape[0])
        for part in validation_data
        if part is not None and _is_array_data(part)
        for leaf in keras.tree.flatten(part)
    }
    if len(lengths) > 1:
        raise ValueError(
            "`validation_data`: x, y (and sample_weight) must have the same "
            f"number of samples. Received lengths {sorted(lengths)}"
        )


class _SnapshotSchedule:
    """Which batches of `fit` end with an automatic snapshot, worked out in
    Python from the optimizer's counts, read once: each batch is one `apply`
    (`steps_per_execution=1`), an update unless the inner optimizer is
    accumulating gradients, and update `t` is a snapshot when
    `SWA._is_due_now(t)`."""

    def __init__(self, swa: SWA) -> None:
        self._swa = swa
        self._update = swa.update_count
        inner = swa.inner_optimizer
        self._accumulation = getattr(inner, "gradient_accumulation_steps", None) or None
        # Keras's raw count of `apply` calls, which decides the updates.
        self._applies = int(ops.convert_to_numpy(inner._iterations)) if self._accumulation else 0

    def next_batch_snapshots(self) -> bool:
        """Whether the coming batch takes a snapshot; moves on to the next."""
        updates = self._accumulation is None or (self._applies + 1) % self._accumulation == 0
        self._applies += 1
        snapshots = updates and self._swa._is_due_now(self._update)
        self._update += int(updates)
        return snapshots
