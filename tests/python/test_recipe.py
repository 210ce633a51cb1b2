"""The full SWA recipe end to end: a small CNN with batch norm on scikit-learn's
digits, trained with SWA + SWALearningRateSchedule + SWACallback."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA, SWACallback, SWALearningRateSchedule, update_bn

datasets = pytest.importorskip("sklearn.datasets")


def _digits():
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


def _cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def test_full_recipe_on_digits():
    (x_train, y_train), (x_test, y_test) = _digits()
    steps_per_epoch = 1200 // 40
    start = 3 * steps_per_epoch
    schedule = SWALearningRateSchedule(0.1, 0.03, start_averaging=start, anneal_steps=steps_per_epoch)
    optimizer = SWA(keras.optimizers.SGD(schedule, momentum=0.9), start_averaging=start, average_period=5)
    model = _cnn()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x_train,
        y_train,
        batch_size=40,
        epochs=6,
        verbose=0,
        callbacks=[SWACallback(bn_data=x_train, validation_data=(x_test, y_test))],
    )
    # Updates 90, 95, ..., 175 of 180.
    assert optimizer.snapshot_count == 18

    # The model holds the averages ...
    averages = [to_numpy(a).copy() for a in optimizer.average_variables]
    for weight, average in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(to_numpy(weight), average)
    # ... and batch-norm statistics that a fresh pass reproduces.
    bn = model.layers[1]
    statistics = [to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy()]
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    update_bn(model, x_train)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), statistics[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), statistics[1], rtol=1e-5, atol=1e-6)

    # The accuracy is that of the averaged weights: a separate model given the
    # averages and its own statistics scores the same.
    independent = _cnn()
    for variable, average in zip(independent.trainable_variables, averages):
        variable.assign(average)
    independent.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    update_bn(independent, x_train)
    independent_loss, independent_accuracy = independent.evaluate(x_test, y_test, verbose=0)
    assert independent_accuracy == pytest.approx(accuracy, abs=1e-6)
    assert independent_loss == pytest.approx(loss, rel=1e-4)
    assert history.history["val_swa_accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)
    assert accuracy > 0.9
