"""`SWACallback`: finishing, scoring the average, resuming, non-trainable averaging."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA, SWACallback, update_bn


def _data(n=64):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _model(start_averaging=8, average_period=2):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        optimizer=SWA(keras.optimizers.SGD(0.05), start_averaging=start_averaging, average_period=average_period),
        loss="mse",
    )
    return model


FIT = dict(batch_size=8, shuffle=False, verbose=0)


def test_finish_assigns_averages_and_refreshes_batch_norm():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=3, callbacks=[SWACallback(bn_data=x)], **FIT)
    optimizer = model.optimizer
    # 24 updates: snapshots at 8, 10, ..., 22.
    assert optimizer.snapshot_count == 8
    for weight, average in zip(model.trainable_variables, optimizer.average_variables):
        np.testing.assert_array_equal(to_numpy(weight), to_numpy(average))
    bn = model.layers[1]
    statistics = [to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy()]
    update_bn(model, x)
    np.testing.assert_allclose(statistics[0], to_numpy(bn.moving_mean), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(statistics[1], to_numpy(bn.moving_variance), rtol=1e-6, atol=1e-6)


def test_validation_scores_of_the_average_without_disturbing_training():
    x, y = _data()
    scored, plain = _model(), _model()
    plain.set_weights(scored.get_weights())
    history = scored.fit(
        x, y, epochs=3, validation_data=(x, y), callbacks=[SWACallback(bn_data=x, validation_data=(x, y))], **FIT
    )
    plain.fit(x, y, epochs=3, callbacks=[SWACallback(bn_data=x)], **FIT)

    swa_loss = history.history["val_swa_loss"]
    assert len(swa_loss) == 3 and np.isnan(swa_loss[0]) and not np.isnan(swa_loss[1])
    # The last score is the model the callback leaves behind.
    assert swa_loss[-1] == pytest.approx(scored.evaluate(x, y, verbose=0), rel=1e-5)
    # Scoring mid-training changed nothing.
    for mine, theirs in zip(scored.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("same_callback", [True, False])
def test_fits_in_a_row_continue_one_trajectory(same_callback):
    x, y = _data()
    twice, once = _model(), _model()
    once.set_weights(twice.get_weights())
    callback = SWACallback(bn_data=x)
    twice.fit(x, y, epochs=2, callbacks=[callback], **FIT)
    if not same_callback:
        callback = SWACallback(bn_data=x)
    twice.fit(x, y, epochs=2, callbacks=[callback], **FIT)
    once.fit(x, y, epochs=4, callbacks=[SWACallback(bn_data=x)], **FIT)
    assert twice.optimizer.snapshot_count == once.optimizer.snapshot_count == 12
    for mine, theirs in zip(twice.get_weights(), once.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_finish_after_epoch_stops_training():
    x, y = _data()
    model = _model()
    history = model.fit(x, y, epochs=6, callbacks=[SWACallback(finish_after_epoch=2)], **FIT)
    assert len(history.history["loss"]) == 2
    assert model.optimizer.snapshot_count == 4  # updates 8, 10, 12, 14
    for weight, average in zip(model.trainable_variables, model.optimizer.average_variables):
        np.testing.assert_array_equal(to_numpy(weight), to_numpy(average))


class _RecordStatistics(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.records = []

    def on_train_batch_end(self, batch, logs=None):
        bn = self.model.layers[1]
        self.records.append((to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy()))


def test_average_non_trainable_averages_statistics_at_snapshots():
    x, y = _data()
    model = _model(start_averaging=3, average_period=5)
    recorder = _RecordStatistics()
    model.fit(x, y, epochs=2, callbacks=[recorder, SWACallback(average_non_trainable=True)], **FIT)
    snapshots = [3, 8, 13]  # of 16 updates
    assert model.optimizer.snapshot_count == len(snapshots)
    bn = model.layers[1]
    expected_mean = np.mean([recorder.records[t][0] for t in snapshots], axis=0)
    expected_variance = np.mean([recorder.records[t][1] for t in snapshots], axis=0)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), expected_variance, rtol=1e-5, atol=1e-6)


def test_no_snapshot_keeps_training_weights_with_a_warning():
    x, y = _data()
    model = _model(start_averaging=1000)
    with pytest.warns(UserWarning, match="no snapshot was taken"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback(bn_data=x)], **FIT)


def test_model_without_swa_optimizer_is_refused():
    x, y = _data()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="compiled with a kerasswa.SWA optimizer"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback()], **FIT)
