"""The seed systems' modes: an exponential moving average taken at SWA's
snapshots (`averaging=<decay>`), manual snapshots (`start_averaging=None`
with `take_snapshot()`), and epoch-level SWA (`SWACallback(start_epoch=)`),
each pinned by numbers worked out by hand or in NumPy."""

import keras
import numpy as np
import pytest
from conftest import JIT_MODES, tensor, to_numpy

from kerasswa import SWA, SWACallback


def _tfa_example(**swa_arguments):
    first = keras.Variable(np.array([1.0, 1.0], "float32"))
    second = keras.Variable(np.array([2.0, 2.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(1.0), **swa_arguments)
    grad = tensor([0.1, 0.1])
    for _ in range(3):
        optimizer.apply_gradients([(grad, first), (grad, second)])
    return optimizer, first, second


def test_moving_average_on_the_tfa_worked_example():
    optimizer, first, second = _tfa_example(start_averaging=0, average_period=1, averaging=0.5)
    # Snapshots 0.9, 0.8, 0.7: copy 0.9, then 0.5 * 0.9 + 0.5 * 0.8 = 0.85,
    # then 0.5 * 0.85 + 0.5 * 0.7 = 0.775 (and 1.775 for the second).
    optimizer.assign_average_vars([first, second])
    np.testing.assert_allclose(to_numpy(first), [0.775, 0.775], atol=1e-6)
    np.testing.assert_allclose(to_numpy(second), [1.775, 1.775], atol=1e-6)


def test_moving_average_before_the_update_with_sequential_update_false():
    optimizer, first, _ = _tfa_example(
        average_period=1, averaging=0.5, sequential_update=False
    )
    # Snapshots 1.0, 0.9, 0.8: copy 1.0, then 0.95, then 0.875.
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [0.875] * 2, atol=1e-6)


def _recording_data(n=48):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


class _RecordAfterBatch(keras.callbacks.Callback):
    """Records the trainable weights after every batch."""

    def __init__(self):
        super().__init__()
        self.trajectory = []

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append([w.copy() for w in self.model.get_weights()])


def _model(optimizer, jit_compile):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_moving_average_in_fit_matches_numpy_over_the_recorded_trajectory(jit_compile):
    x, y = _recording_data()
    start, period, decay = 2, 3, 0.8
    optimizer = SWA(
        keras.optimizers.SGD(0.05),
        start_averaging=start,
        average_period=period,
        averaging=decay,
    )
    model = _model(optimizer, jit_compile)
    recorder = _RecordAfterBatch()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])

    snapshots = [t for t in range(len(recorder.trajectory)) if t >= start and (t - start) % period == 0]
    assert optimizer.snapshot_count == len(snapshots) == 8
    expected = [w.copy() for w in recorder.trajectory[snapshots[0]]]
    for t in snapshots[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, recorder.trajectory[t])]
    for average, value in zip(optimizer.average_variables, expected):
        np.testing.assert_allclose(to_numpy(average), value, rtol=1e-5, atol=1e-6)


def test_moving_average_is_serialized_and_resumes_bit_identically(tmp_path):
    x, y = _recording_data()

    def build():
        return _model(SWA("adam", start_averaging=1, average_period=2, averaging=0.9), False)

    straight = build()
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    resumed = build()
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    resumed.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    assert resumed.optimizer.averaging == pytest.approx(0.9)
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert SWA.from_config(straight.optimizer.get_config()).averaging == pytest.approx(0.9)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (0.0, ValueError, "strictly between 0 and 1"),
        (1.0, ValueError, "strictly between 0 and 1"),
        (1.5, ValueError, "1.5"),
        (float("nan"), ValueError, "nan"),
        ("ema", ValueError, "'ema'"),
        (True, TypeError, "True"),
        (None, TypeError, "None"),
    ],
)
def test_bad_averaging_is_refused(value, error, match):
    with pytest.raises(error, match=f"`averaging`.*{match}"):
        SWA("sgd", averaging=value)


# -- manual snapshots ---------------------------------------------------------


def test_manual_snapshots_after_the_first_and_third_update():
    weights = keras.Variable(np.array([1.0, 1.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(1.0), start_averaging=None)
    grad = tensor([0.1, 0.1])
    optimizer.apply([grad], [weights])
    optimizer.take_snapshot()  # 0.9
    optimizer.apply([grad], [weights])
    optimizer.apply([grad], [weights])
    optimizer.take_snapshot()  # 0.7
    assert optimizer.snapshot_count == 2
    assert optimizer.update_count == 3
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [0.8, 0.8], atol=1e-6)


def test_take_snapshot_needs_a_built_optimizer():
    with pytest.raises(ValueError, match="`take_snapshot` needs a built optimizer"):
        SWA("sgd", start_averaging=None).take_snapshot()


class _SnapshotAtEpochEnd(keras.callbacks.Callback):
    """Records the weights and takes a snapshot at each epoch end."""

    def __init__(self, optimizer):
        super().__init__()
        self.optimizer = optimizer
        self.recorded = []

    def on_epoch_end(self, epoch, logs=None):
        self.recorded.append([w.copy() for w in self.model.get_weights()])
        self.optimizer.take_snapshot()


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_manual_snapshots_from_a_callback_and_between_fit_calls(jit_compile):
    x, y = _recording_data()
    optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=None)
    model = _model(optimizer, jit_compile)
    callback = _SnapshotAtEpochEnd(optimizer)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callback])
    assert optimizer.snapshot_count == 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # no automatic snapshot
    assert optimizer.snapshot_count == 3
    callback.recorded.append([w.copy() for w in model.get_weights()])
    optimizer.take_snapshot()
    assert optimizer.snapshot_count == 4 and optimizer.update_count == 24

    expected = [np.mean(values, axis=0) for values in zip(*callback.recorded)]
    with optimizer.use_average_vars(model.variables):
        for weight, value in zip(model.get_weights(), expected):
            np.testing.assert_allclose(weight, value, rtol=1e-5, atol=1e-6)


def test_manual_mode_round_trips_through_config_and_save(tmp_path):
    x, y = _recording_data()
    model = _model(SWA("sgd", start_averaging=None), False)
    model.fit(x, y, epochs=1, verbose=0)
    model.optimizer.take_snapshot()
    model.save(tmp_path / "manual.keras")
    loaded = keras.models.load_model(tmp_path / "manual.keras")
    assert loaded.optimizer.start_averaging is None
    assert loaded.optimizer.snapshot_count == 1
    loaded.fit(x, y, epochs=1, verbose=0)
    assert loaded.optimizer.snapshot_count == 1


# -- epoch-level SWA ----------------------------------------------------------


class _RecordAtEpochEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.recorded = []

    def on_epoch_end(self, epoch, logs=None):
        self.recorded.append([w.copy() for w in self.model.get_weights()])


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_swa_callback_start_epoch_averages_the_last_epochs(jit_compile):
    """SWA_keras's recipe: average the weights at the end of epochs 4 to 6 of
    6, then finish with the average."""
    x, y = _recording_data()
    optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=None)
    model = _model(optimizer, jit_compile)
    recorder = _RecordAtEpochEnd()  # runs before the SWA callback
    history = model.fit(
        x, y, batch_size=8, epochs=6, verbose=0,
        callbacks=[recorder, SWACallback(start_epoch=4, validation_data=(x, y))],
    )
    assert optimizer.snapshot_count == 3
    expected = [np.mean(values, axis=0) for values in zip(*recorder.recorded[3:])]
    for weight, value in zip(model.get_weights(), expected):
        np.testing.assert_allclose(weight, value, rtol=1e-5, atol=1e-6)
    # The averaged model is scored from the epoch of the first snapshot on.
    scores = history.history["val_swa_loss"]
    assert np.isnan(scores[:3]).all() and np.isfinite(scores[3:]).all()
    assert scores[-1] == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-5)


def test_swa_callback_start_epoch_refuses_automatic_snapshots():
    x, y = _recording_data()
    model = _model(SWA("sgd", start_averaging=0), False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="start_averaging=None"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[SWACallback(start_epoch=1)])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_swa_callback_start_epoch_with_averaged_batch_norm_statistics():
    """`average_non_trainable=True` follows the manual snapshots too: the
    statistics at the end of epochs 2 and 3, averaged."""
    x, y = _recording_data()
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
    )
    model.compile(optimizer=SWA(keras.optimizers.SGD(0.05), start_averaging=None), loss="mse")

    class RecordStatistics(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.recorded = []

        def on_epoch_end(self, epoch, logs=None):
            self.recorded.append(to_numpy(self.model.layers[0].moving_mean).copy())

    recorder = RecordStatistics()
    model.fit(
        x, y, batch_size=8, epochs=3, verbose=0,
        callbacks=[recorder, SWACallback(start_epoch=2, average_non_trainable=True)],
    )
    np.testing.assert_allclose(
        to_numpy(model.layers[0].moving_mean),
        np.mean(recorder.recorded[1:], axis=0),
        rtol=1e-5,
        atol=1e-6,
    )
