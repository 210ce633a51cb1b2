"""`SWAModelCheckpoint`: files that hold the averaged model, a run left undisturbed.

The expected weights come from `_simulate`, plain SGD on the mean squared
error of a linear model written in NumPy (float64) with the averaging rule of
the contract, not from kerasswa. Keras trains in float32, so the comparisons
with the simulation use `rtol=1e-5` (a dozen float32 steps drift by ~1e-7
relative); comparisons between two Keras runs or states are bit for bit.
"""

import warnings

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA, SWACallback, SWAG, SWAModelCheckpoint

LEARNING_RATE = 0.1
BATCH = 8  # 32 samples: 4 updates an epoch
FIT = dict(batch_size=BATCH, shuffle=False, verbose=0)
SIMULATION = dict(rtol=1e-5, atol=1e-6)


def _data(n=32, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _linear_model(optimizer):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _simulate(model, x, y, epochs, start=None, period=1, averaging="mean", epoch_snapshots=(), update_weights=False):
    """SGD on the model's initial weights, in NumPy.

    Returns `(steps, epoch_ends)`: after each update, and at each epoch end
    (after the epoch-end snapshot, before `update_weights` assigns), a dict
    with the training `weights`, the `saved` weights (the average, or the
    training weights before the first snapshot) and the snapshot `count`.
    """
    weights = [w.astype("float64") for w in model.get_weights()]
    average, count = None, 0
    steps, epoch_ends = [], []

    def snapshot():
        nonlocal average, count
        if count == 0:
            average = [w.copy() for w in weights]
        else:
            factor = 1.0 / (count + 1) if averaging == "mean" else 1.0 - averaging
            average = [a + factor * (w - a) for a, w in zip(average, weights)]
        count += 1

    def state():
        saved = average if count else weights
        return dict(weights=[w.copy() for w in weights], saved=[s.copy() for s in saved], count=count)

    t = 0
    for epoch in range(1, epochs + 1):
        for begin in range(0, len(x), BATCH):
            xb, yb = x[begin : begin + BATCH].astype("float64"), y[begin : begin + BATCH].astype("float64")
            residual = xb @ weights[0] + weights[1] - yb
            grads = [2.0 / len(xb) * xb.T @ residual, 2.0 / len(xb) * residual.sum(axis=0)]
            weights = [w - LEARNING_RATE * g for w, g in zip(weights, grads)]
            if start is not None and t >= start and (t - start) % period == 0:
                snapshot()
            t += 1
            steps.append(state())
        if epoch in epoch_snapshots:
            snapshot()
        epoch_ends.append(state())
        if update_weights and count:
            weights = [a.copy() for a in average]
    return steps, epoch_ends


def _assert_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, **SIMULATION)


def _assert_identical(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(e))


def _saved_weights(path):
    return keras.models.load_model(path).get_weights()


class _RecordEpochEnds(keras.callbacks.Callback):
    """The model's variables and the optimizer's at each epoch end."""

    def __init__(self):
        super().__init__()
        self.records = []

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        self.records.append(
            [to_numpy(v).copy() for v in model.variables]
            + [to_numpy(v).copy() for v in model.optimizer.variables]
        )


def test_files_hold_the_averages_and_training_is_undisturbed(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=2, average_period=3))
    plain = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=2, average_period=3))
    plain.set_weights(model.get_weights())
    _, expected = _simulate(model, x, y, epochs=3, start=2, period=3)

    before, after = _RecordEpochEnds(), _RecordEpochEnds()
    checkpoint = SWAModelCheckpoint(str(tmp_path / "swa-{epoch}.keras"))
    model.fit(x, y, epochs=3, callbacks=[before, checkpoint, after], **FIT)
    plain.fit(x, y, epochs=3, **FIT)

    # Snapshots at updates 2, 5, 8, 11: 1, 2 and 4 of them by the epoch ends.
    assert [e["count"] for e in expected] == [1, 2, 4]
    for epoch, state in enumerate(expected, start=1):
        _assert_close(_saved_weights(tmp_path / f"swa-{epoch}.keras"), state["saved"])
    # The saves changed no variable, of the model or the optimizer, and the
    # run ends where a run without the callback ends, bit for bit.
    for mine, theirs in zip(before.records, after.records):
        _assert_identical(mine, theirs)
    _assert_identical(model.get_weights(), plain.get_weights())
    _assert_identical(model.optimizer.variables, plain.optimizer.variables)
    _assert_close(model.get_weights(), expected[-1]["weights"])


def test_full_save_loads_consistent_and_resumes_from_the_averages(tmp_path):
    x, y = _data()

    def compiled():
        return _linear_model(SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=3, average_period=2))

    model = compiled()
    reference = compiled()
    reference.set_weights(model.get_weights())
    path = tmp_path / "swa.keras"
    model.fit(x, y, epochs=2, callbacks=[SWAModelCheckpoint(path)], **FIT)
    reference.fit(x, y, epochs=2, **FIT)

    loaded = keras.models.load_model(path)  # safe mode, no custom_objects
    assert isinstance(loaded.optimizer, SWA)
    # 8 updates, snapshots at 3, 5, 7.
    assert loaded.optimizer.update_count == 8
    assert loaded.optimizer.snapshot_count == 3
    averages = model.optimizer.average_variables
    _assert_identical(loaded.get_weights(), averages)
    _assert_identical(loaded.optimizer.average_variables, averages)
    # The inner optimizer's state (momentum) is the live one.
    _assert_identical(loaded.optimizer.inner_optimizer.variables, model.optimizer.inner_optimizer.variables)

    # Resuming from the file is resuming from the averages: the same as
    # assigning them and training on, bit for bit.
    reference.optimizer.assign_average_vars(reference.variables)
    loaded.fit(x, y, epochs=2, **FIT)
    reference.fit(x, y, epochs=2, **FIT)
    assert loaded.optimizer.snapshot_count == reference.optimizer.snapshot_count == 7
    _assert_identical(loaded.get_weights(), reference.get_weights())
    _assert_identical(loaded.optimizer.average_variables, reference.optimizer.average_variables)


def test_save_weights_only_writes_averaged_weights_and_optimizer(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=1, average_period=2))
    _, expected = _simulate(model, x, y, epochs=2, start=1, period=2)
    path = tmp_path / "swa.weights.h5"
    model.fit(x, y, epochs=2, callbacks=[SWAModelCheckpoint(path, save_weights_only=True)], **FIT)

    fresh = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=1, average_period=2))
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(path)
    _assert_close(fresh.get_weights(), expected[-1]["saved"])
    assert fresh.optimizer.snapshot_count == 4  # updates 1, 3, 5, 7
    _assert_identical(fresh.optimizer.average_variables, model.optimizer.average_variables)


def test_save_best_only_keeps_the_best_average(tmp_path):
    x, y = _data()
    # Validation targets of the opposite sign: the scores of the average get
    # worse as it learns the training data, so later epochs do not improve.
    x_val, y_val = x[:16], -y[:16]
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=5, average_period=1))
    _, expected = _simulate(model, x, y, epochs=4, start=5, period=1)
    scores = SWACallback(validation_data=(x_val, y_val))
    checkpoint = SWAModelCheckpoint(
        str(tmp_path / "best-{epoch}.keras"), monitor="val_swa_loss", save_best_only=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the averages (and their scores) start in epoch 2
        history = model.fit(x, y, epochs=4, callbacks=[scores, checkpoint], **FIT)

    # The NaN score before the first snapshot never counts as an improvement.
    losses = history.history["val_swa_loss"]
    assert np.isnan(losses[0])
    expected_saves, best = [], np.inf
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best = loss
            expected_saves.append(epoch)
    assert expected_saves == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-2.keras"]
    _assert_close(_saved_weights(tmp_path / "best-2.keras"), expected[1]["saved"])
    assert checkpoint.best == pytest.approx(losses[1])


def test_auto_mode_follows_the_metric_behind_a_val_swa_name(tmp_path):
    x, y = _data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=SWA("sgd", start_averaging=0), loss="mse", metrics=["accuracy"])
    checkpoint = SWAModelCheckpoint(tmp_path / "swa.keras", monitor="val_swa_accuracy", save_best_only=True)
    model.fit(x, y, epochs=1, callbacks=[SWACallback(validation_data=(x, y)), checkpoint], **FIT)
    # Accuracy goes up: the greater score is the better (older Keras compares
    # with NumPy's `greater`, newer Keras with `keras.ops.greater`).
    assert checkpoint.monitor_op(2.0, 1.0) and not checkpoint.monitor_op(1.0, 2.0)
    assert (tmp_path / "swa.keras").exists()


def test_update_weights_trains_on_from_the_averages(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=2, average_period=3))
    _, expected = _simulate(model, x, y, epochs=3, start=2, period=3, update_weights=True)
    checkpoint = SWAModelCheckpoint(str(tmp_path / "swa-{epoch}.keras"), update_weights=True)
    model.fit(x, y, epochs=3, callbacks=[checkpoint], **FIT)

    for epoch, state in enumerate(expected, start=1):
        _assert_close(_saved_weights(tmp_path / f"swa-{epoch}.keras"), state["saved"])
    # The model ends on the last average; the optimizer's averages are intact.
    _assert_identical(model.trainable_variables, model.optimizer.average_variables)
    _assert_close(model.get_weights(), expected[-1]["saved"])


def test_save_freq_in_batches(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=0, average_period=4))
    steps, _ = _simulate(model, x, y, epochs=3, start=0, period=4)
    checkpoint = SWAModelCheckpoint(str(tmp_path / "swa-{epoch}-{batch}.keras"), save_freq=6)
    model.fit(x, y, epochs=3, callbacks=[checkpoint], **FIT)

    # After updates 6 and 12: batch 2 of epoch 2, batch 4 of epoch 3.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swa-2-2.keras", "swa-3-4.keras"]
    _assert_close(_saved_weights(tmp_path / "swa-2-2.keras"), steps[5]["saved"])
    _assert_close(_saved_weights(tmp_path / "swa-3-4.keras"), steps[11]["saved"])
    assert steps[5]["count"] == 2 and steps[11]["count"] == 3  # updates 0, 4, 8


def _batch_norm_model():
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=SWA(keras.optimizers.SGD(0.05), start_averaging=2, average_period=2), loss="mse")
    return model


def _statistics_for(x, kernel, bias, batch_size):
    """What `update_bn` must give the batch-norm layer after `Dense(kernel,
    bias)`: the mean over the batches of the batch means and of the (biased)
    batch variances, batches of equal size."""
    hidden = x.astype("float64") @ kernel + bias
    batches = [hidden[i : i + batch_size] for i in range(0, len(hidden), batch_size)]
    return np.mean([b.mean(axis=0) for b in batches], axis=0), np.mean([b.var(axis=0) for b in batches], axis=0)


@pytest.mark.parametrize("update_weights", [False, True])
def test_bn_data_recomputes_the_statistics_of_the_saved_model(tmp_path, update_weights):
    x, y = _data()
    model = _batch_norm_model()
    path = tmp_path / "swa.keras"
    before, after = _RecordEpochEnds(), _RecordEpochEnds()
    checkpoint = SWAModelCheckpoint(path, bn_data=x, bn_batch_size=16, update_weights=update_weights)
    model.fit(x, y, epochs=2, callbacks=[before, checkpoint, after], **FIT)

    saved = keras.models.load_model(path)
    dense, bn = saved.layers[0], saved.layers[1]
    _assert_identical(saved.trainable_variables, model.optimizer.average_variables)
    mean, variance = _statistics_for(x, to_numpy(dense.kernel), to_numpy(dense.bias), 16)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), variance, rtol=1e-5, atol=1e-5)
    # The statistics left by training are not those.
    assert not np.allclose(before.records[-1][4], mean, rtol=1e-3)

    if update_weights:
        _assert_identical(model.get_weights(), saved.get_weights())
    else:
        for mine, theirs in zip(before.records, after.records):
            _assert_identical(mine, theirs)


def test_one_warning_before_the_first_snapshot(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=9, average_period=3))
    _, expected = _simulate(model, x, y, epochs=3, start=9, period=3)
    checkpoint = SWAModelCheckpoint(str(tmp_path / "swa-{epoch}.keras"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, callbacks=[checkpoint], **FIT)

    messages = [str(w.message) for w in caught if "SWAModelCheckpoint" in str(w.message)]
    assert len(messages) == 1, messages
    assert "saved nothing" in messages[0] and "averages do not exist yet" in messages[0]
    assert "snapshot_count=0" in messages[0] and "start_averaging=9" in messages[0]
    # Epochs 1 and 2 (updates 0-7) save nothing; epoch 3 the average of the
    # snapshot at update 9.
    assert [e["count"] for e in expected] == [0, 0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swa-3.keras"]
    _assert_close(_saved_weights(tmp_path / "swa-3.keras"), expected[2]["saved"])
    assert not np.allclose(expected[2]["saved"][0], expected[2]["weights"][0], rtol=1e-3)


def test_save_best_only_ignores_scores_before_the_first_snapshot(tmp_path):
    # The loss falls from epoch to epoch; if epoch 1's score (no average yet)
    # counted as the best, the first average (epoch 3) would have to beat it.
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=9, average_period=3))
    checkpoint = SWAModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", save_best_only=True)
    with pytest.warns(UserWarning, match="saved nothing"):
        model.fit(x, y, epochs=3, callbacks=[checkpoint], **FIT)
    assert (tmp_path / "best.keras").exists()
    assert model.optimizer.snapshot_count == 1


def test_exponential_moving_average(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=1, average_period=2, averaging=0.5))
    _, expected = _simulate(model, x, y, epochs=2, start=1, period=2, averaging=0.5)
    model.fit(x, y, epochs=2, callbacks=[SWAModelCheckpoint(str(tmp_path / "ema-{epoch}.keras"))], **FIT)
    for epoch, state in enumerate(expected, start=1):
        _assert_close(_saved_weights(tmp_path / f"ema-{epoch}.keras"), state["saved"])


def test_manual_snapshots_at_epoch_ends(tmp_path):
    x, y = _data()
    model = _linear_model(SWA(keras.optimizers.SGD(LEARNING_RATE), start_averaging=None))
    _, expected = _simulate(model, x, y, epochs=3, epoch_snapshots=(2, 3))
    checkpoint = SWAModelCheckpoint(str(tmp_path / "swa-{epoch}.keras"))
    with pytest.warns(UserWarning, match="start_averaging=None"):
        # SWACallback first, so that each epoch's snapshot is in its checkpoint.
        model.fit(x, y, epochs=3, callbacks=[SWACallback(start_epoch=2), checkpoint], **FIT)
    # Epoch 1: nothing; epoch 2: its own weights; epoch 3: the mean of the
    # weights at the ends of epochs 2 and 3.
    assert [e["count"] for e in expected] == [0, 1, 2]
    assert not (tmp_path / "swa-1.keras").exists()
    for epoch, state in list(enumerate(expected, start=1))[1:]:
        _assert_close(_saved_weights(tmp_path / f"swa-{epoch}.keras"), state["saved"])


def test_swag_checkpoint_holds_the_mean_and_the_moments(tmp_path):
    x, y = _data()
    model = _linear_model(SWAG(keras.optimizers.SGD(LEARNING_RATE), start_averaging=2, average_period=3, max_rank=2))
    _, expected = _simulate(model, x, y, epochs=2, start=2, period=3)
    path = tmp_path / "swag.keras"
    model.fit(x, y, epochs=2, callbacks=[SWAModelCheckpoint(path)], **FIT)

    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, SWAG)
    _assert_close(loaded.get_weights(), expected[-1]["saved"])
    _assert_identical(loaded.optimizer.average_variables, model.optimizer.average_variables)
    _assert_identical(loaded.optimizer.second_moment_variables, model.optimizer.second_moment_variables)
    _assert_identical(loaded.optimizer.deviation_variables, model.optimizer.deviation_variables)


@pytest.mark.parametrize(
    "arguments, error, match",
    [
        (dict(filepath=None), TypeError, "filepath=None"),
        (dict(filepath="swa.txt"), ValueError, "filepath=swa.txt"),
        (dict(filepath="swa.keras", save_weights_only=True), ValueError, r"\.weights\.h5"),
        (dict(monitor=""), TypeError, "monitor=''"),
        (dict(verbose=2), ValueError, "verbose=2"),
        (dict(save_best_only="yes"), TypeError, "save_best_only='yes'"),
        (dict(save_weights_only=1), TypeError, "save_weights_only=1"),
        (dict(mode="best"), ValueError, "mode='best'"),
        (dict(save_freq="batch"), ValueError, "save_freq='batch'"),
        (dict(save_freq=0), ValueError, "save_freq=0"),
        (dict(save_freq=2.5), ValueError, "save_freq=2.5"),
        (dict(save_freq=True), TypeError, "save_freq=True"),
        (dict(initial_value_threshold="low"), TypeError, "initial_value_threshold='low'"),
        (dict(initial_value_threshold=float("nan")), ValueError, "initial_value_threshold=nan"),
        (dict(update_weights=None), TypeError, "update_weights=None"),
        (dict(bn_batch_size=0), ValueError, "bn_batch_size=0"),
    ],
)
def test_bad_arguments_are_refused(arguments, error, match):
    arguments = {"filepath": "swa.keras", **arguments}
    with pytest.raises(error, match=match):
        SWAModelCheckpoint(**arguments)


def test_whole_number_save_freq_from_r_is_an_integer(tmp_path):
    assert SWAModelCheckpoint(tmp_path / "a.keras", save_freq=10.0).save_freq == 10


def test_model_without_swa_optimizer_is_refused(tmp_path):
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(LEARNING_RATE))
    with pytest.raises(TypeError, match="SWAModelCheckpoint needs a model compiled with a kerasswa.SWA .*SGD"):
        model.fit(x, y, epochs=1, callbacks=[SWAModelCheckpoint(tmp_path / "swa.keras")], **FIT)
