"""`SWAModelCheckpoint`: `ModelCheckpoint` that writes the SWA-averaged model."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from typing import Any, Callable, Iterator, Optional, Union

import keras
import numpy as np
from keras.src.utils import io_utils

from kerasswa import _validation
from kerasswa.batchnorm import _update_bn, batch_norm_layers, check_data
from kerasswa.swa import SWA, _find_swa, _restored

# The prefix under which `SWACallback` logs the scores of the averaged model.
_SWA_METRIC_PREFIX = "val_swa_"


class SWAModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that saves the averaged (SWA) model.

    The successor of TensorFlow Addons' `tfa.callbacks.AverageModelCheckpoint`.
    It decides when to save exactly as `ModelCheckpoint` does (`filepath`
    formatting, `monitor`, `save_best_only`, `save_freq`, ...), but each file
    it writes holds the weights averaged by the model's `kerasswa.SWA` (or
    `SWAG`) optimizer instead of the training weights. Training is not
    disturbed: after each save the model holds, bit for bit, the weights it
    held before, unless `update_weights=True`.

    A full `.keras` file also holds the optimizer with its averages, snapshot
    count and inner state intact, so `keras.models.load_model` gives the
    averaged model, ready to train on from the averages (as a run with
    `update_weights=True` would). It cannot resume the training trajectory
    itself, whose weights the file does not hold: for that, add a plain
    `ModelCheckpoint` beside this one.

    Before the first snapshot there is no average: nothing is saved, and one
    warning (per callback) says so.

    Batch-norm statistics belong to the training weights, not to their
    average (see `update_bn`). Given `bn_data`, the statistics of the saved
    model are recomputed with `update_bn` for the averaged weights before
    each save; the model's own statistics are put back afterwards unless
    `update_weights=True`.

    To keep the best averaged model, monitor a score of the average:
    `SWACallback(validation_data=...)` logs `val_swa_loss` and the other
    `val_swa_*` metrics (NaN before the first snapshot, which never counts as
    an improvement); put it before this callback in the `callbacks` list. In
    `mode="auto"`, `val_swa_<metric>` is minimized or maximized as `<metric>`
    is.

    Args:
        filepath: String or `PathLike`: where to save, ending in `.keras`
            (the whole model) or, with `save_weights_only=True`,
            `.weights.h5`. It may hold formatting options filled from the
            epoch and the logs, e.g. `"swa-{epoch:02d}-{val_swa_loss:.3f}.keras"`.
        monitor: Name of the logged metric that `save_best_only` compares
            (e.g. `"val_swa_loss"`). Defaults to `"val_loss"`.
        verbose: 0 (silent) or 1 (a message at each save).
        save_best_only: Boolean. Save only when `monitor` improves on the
            best value seen so far. A NaN value never does.
        save_weights_only: Boolean. Save with `model.save_weights` (a
            `.weights.h5` file, which also holds the optimizer's variables)
            instead of `model.save`.
        mode: `"auto"`, `"min"` or `"max"`: whether `monitor` improves by
            going down or up; `"auto"` infers it from the metric.
        save_freq: `"epoch"` (save at the end of each epoch) or an integer
            >= 1 (save every that many batches).
        initial_value_threshold: Float or `None`: with `save_best_only`, a
            first save needs `monitor` to beat this value.
        update_weights: Boolean. If `True`, the averages are assigned to the
            model's weights for good each time a file is written (batch-norm
            statistics recomputed from `bn_data` included) and training goes
            on from them, as in tensorflow-addons. Defaults to `False`: the
            model is left exactly as it was.
        bn_data: Inputs for `update_bn` (arrays, a `tf.data.Dataset`, a
            `PyDataset`, an iterable of batches), usually the training
            inputs; `None` saves the statistics as they are.
        bn_batch_size: Integer >= 1. Batch size for array `bn_data`.
            Defaults to 32.

    Raises:
        TypeError, ValueError: At construction, for an argument of the wrong
            type or value; when training starts, if the model is not
            compiled with a `kerasswa.SWA` optimizer.

    Example:

    >>> import os, tempfile
    >>> import numpy as np, keras
    >>> from kerasswa import SWA, SWAModelCheckpoint
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=SWA("sgd", start_averaging=4, average_period=2),
    ...               loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "swa.keras")
    >>> _ = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
    ...               callbacks=[SWAModelCheckpoint(path)])
    >>> saved = keras.models.load_model(path)
    >>> saved.optimizer.snapshot_count  # updates 4, 6, ..., 14 of 16
    6
    >>> averages = [keras.ops.convert_to_numpy(a)
    ...             for a in model.optimizer.average_variables]
    >>> all(np.array_equal(w, a) for w, a in zip(saved.get_weights(), averages))
    True
    >>> # The model itself still holds its training weights.
    >>> any(np.array_equal(w, a) for w, a in zip(model.get_weights(), averages))
    False
    >>> folder.cleanup()
    """

    def __init__(
        self,
        filepath: Union[str, "os.PathLike[str]"],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: Union[str, int] = "epoch",
        initial_value_threshold: Optional[float] = None,
        update_weights: bool = False,
        bn_data: Any = None,
        bn_batch_size: int = 32,
    ) -> None:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(
                "`filepath` must be a string or a path ending in `.keras` "
                "(or `.weights.h5` with `save_weights_only=True`). "
                f"Received: filepath={_validation._describe(filepath)}"
            )
        monitor = _validation.check_name("monitor", monitor)
        verbose = _validation.check_verbose(verbose)
        save_best_only = _validation.check_bool("save_best_only", save_best_only)
        save_weights_only = _validation.check_bool(
            "save_weights_only", save_weights_only
        )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                '`mode` must be "auto", "min" or "max". '
                f"Received: mode={_validation._describe(mode)}"
            )
        if not (isinstance(save_freq, str) and save_freq == "epoch"):
            if isinstance(save_freq, str):
                raise ValueError(
                    '`save_freq` must be "epoch" or an integer >= 1 (a number '
                    f"of batches). Received: save_freq={save_freq!r}"
                )
            save_freq = _validation.check_count("save_freq", save_freq, minimum=1)
        initial_value_threshold = _check_threshold(initial_value_threshold)
        self.update_weights = _validation.check_bool("update_weights", update_weights)
        self.bn_batch_size = _validation.check_count(
            "bn_batch_size", bn_batch_size, minimum=1
        )
        if bn_data is not None:
            check_data("bn_data", bn_data, finite=True)
        self.bn_data = bn_data
        super().__init__(
            filepath,
            monitor=monitor,
            verbose=verbose,
            save_best_only=save_best_only,
            save_weights_only=save_weights_only,
            mode=mode,
            save_freq=save_freq,
            initial_value_threshold=initial_value_threshold,
        )
        self._swa: Optional[SWA] = None
        self._refresh_statistics = False
        self._warned_no_average = False
        self._writing = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        model = self.model
        self._swa = _find_swa(model, user="SWAModelCheckpoint")
        self._refresh_statistics = self.bn_data is not None
        if self._refresh_statistics and not batch_norm_layers(model):
            warnings.warn(
                "SWAModelCheckpoint ignores `bn_data`: model "
                f"{model.name!r} has no trainable BatchNormalization layer.",
                stacklevel=2,
            )
            self._refresh_statistics = False

    # Every Keras 3 version writes a checkpoint with `self.model.save(...)` or
    # `self.model.save_weights(...)` from `_save_model`, while the decision
    # whether to write has moved between versions. So the averaged weights go
    # in around those two calls, and only when a file is actually written.
    @property
    def model(self):
        model = super().model
        if self._writing:
            return _AveragedWriter(model, self._write_averaged)
        return model

    def _save_model(self, epoch, batch, logs):
        # Keras's `model` property first: on JAX it puts the training state
        # back into the variables, which are empty in the middle of an epoch.
        model = super().model
        if self._swa is None:
            # Saving outside `fit` (a direct call): find the optimizer now.
            self._swa = _find_swa(model, user="SWAModelCheckpoint")
        if self._swa.snapshot_count == 0:
            # Before `ModelCheckpoint` looks at `monitor`: a value seen now
            # must not become the best that a later average has to beat.
            self._warn_no_average(self.filepath)
            return
        if self.save_best_only and _is_nan((logs or {}).get(self.monitor)):
            # Keras takes the first value it sees as the best, even NaN, and
            # nothing improves on NaN: `SWACallback`'s NaN scores before the
            # first snapshot would block every later save.
            if self.verbose > 0:
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} is NaN, not saving"
                )
            return
        self._writing = True
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self._writing = False

    def _set_monitor_op(self):
        # `mode="auto"`: a score of the average, `val_swa_<metric>`, goes the
        # way `<metric>` goes, which Keras cannot tell from the prefixed name.
        monitor = self.monitor
        if self.mode == "auto" and monitor.startswith(_SWA_METRIC_PREFIX):
            self.monitor = monitor[len(_SWA_METRIC_PREFIX) :]
        try:
            super()._set_monitor_op()
        finally:
            self.monitor = monitor

    def _write_averaged(self, model: keras.Model, write: Callable[[], Any], filepath) -> Any:
        """Runs `write()` with the averaged weights in `model`."""
        with self._averaged_state(model, filepath):
            return write()

    @contextlib.contextmanager
    def _averaged_state(self, model: keras.Model, filepath) -> Iterator[None]:
        """The averaged weights (and refreshed statistics) in `model` inside;
        the model as it was afterwards, unless `update_weights`.

        The averages are copied into the weights with `assign_average_vars`
        rather than swapped with them, so that the optimizer variables the
        file also holds keep the averages and the file loads consistent.
        """
        trainable = model.trainable_variables
        changed = trainable + (model.non_trainable_variables if self._refresh_statistics else [])
        with contextlib.nullcontext() if self.update_weights else _restored(changed):
            self._swa.assign_average_vars(trainable)
            if self._refresh_statistics:
                _update_bn(
                    model, self.bn_data, batch_size=self.bn_batch_size, steps=None,
                    verbose=0, argument="bn_data", data_checked=True,
                )
            yield

    def _warn_no_average(self, filepath) -> None:
        if self._warned_no_average:
            return
        self._warned_no_average = True
        swa = self._swa
        if swa.start_averaging is None:
            when = "start_averaging=None: snapshots come only from `take_snapshot()`"
        else:
            when = (
                f"start_averaging={swa.start_averaging}: the first snapshot "
                f"comes at update {swa.start_averaging}, "
                f"{swa.update_count} updates so far"
            )
        warnings.warn(
            f"SWAModelCheckpoint saved nothing to {filepath}: the averages do "
            f"not exist yet (snapshot_count=0; {when}). It saves from the first "
            "snapshot on. This warning is not repeated.",
            stacklevel=2,
        )


class _AveragedWriter:
    """The model as `ModelCheckpoint._save_model` sees it: `save` and
    `save_weights` write the averaged model; everything else is the model's."""

    def __init__(self, model: keras.Model, write_averaged: Callable) -> None:
        self._model = model
        self._write_averaged = write_averaged

    def save(self, filepath, *args, **kwargs):
        return self._write_averaged(
            self._model, lambda: self._model.save(filepath, *args, **kwargs), filepath
        )

    def save_weights(self, filepath, *args, **kwargs):
        return self._write_averaged(
            self._model,
            lambda: self._model.save_weights(filepath, *args, **kwargs),
            filepath,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _is_nan(value: Any) -> bool:
    try:
        return bool(np.isnan(value))
    except (TypeError, ValueError):  # None, strings, arrays
        return False


def _check_threshold(value: Any) -> Optional[float]:
    """`initial_value_threshold`: `None` or a finite number (of either sign)."""
    if value is None:
        return None
    value = _validation._unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            "`initial_value_threshold` must be a finite number or None. "
            f"Received: initial_value_threshold={_validation._describe(value)}"
        )
    if not math.isfinite(float(value)):
        raise ValueError(
            "`initial_value_threshold` must be a finite number or None. "
            f"Received: initial_value_threshold={_validation._describe(value)}"
        )
    return float(value)
