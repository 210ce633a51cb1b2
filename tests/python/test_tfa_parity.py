"""What tensorflow-addons' own SWA tests checked, checked again on Keras 3.

tensorflow-addons 0.23 (tag v0.23.0, commit 6f07f87) tested its
`tfa.optimizers.SWA` in
`tensorflow_addons/optimizers/tests/stochastic_weight_averaging_test.py`:
the averaging rule on a worked example, refused arguments, an inner
optimizer given by name, the config round trip, a model with batch
normalization (refreshed there by `fit_bn`, here by `kerasswa.update_bn`),
a linear model that converges, and serialization. Each behaviour is checked
here on every Keras backend, against numbers worked out by hand or with
NumPy, never against kerasswa's own output.
"""

import warnings

import keras
import numpy as np
import pytest
from conftest import JIT_MODES, tensor, to_numpy

from kerasswa import SWA, update_bn

# -- the averaging rule ------------------------------------------------------


def _two_variables():
    return (
        keras.Variable(np.array([1.0, 1.0], "float32")),
        keras.Variable(np.array([2.0, 2.0], "float32")),
    )


@pytest.mark.parametrize("call", ["apply_gradients", "apply"])
def test_worked_example_of_the_tfa_test(call):
    """SGD(1.0), a snapshot at every update, gradient 0.1, three updates.

    The weights go 1.0 -> 0.9 -> 0.8 -> 0.7 (and 2.0 -> 1.9 -> 1.8 -> 1.7);
    the snapshots are the weights after each update, so the averages are
    (0.9 + 0.8 + 0.7) / 3 = 0.8 and (1.9 + 1.8 + 1.7) / 3 = 1.8.
    """
    first, second = _two_variables()
    optimizer = SWA(keras.optimizers.SGD(learning_rate=1.0), 0, 1)
    grads = [tensor([0.1, 0.1]), tensor([0.1, 0.1])]
    for _ in range(3):
        if call == "apply_gradients":
            optimizer.apply_gradients(zip(grads, [first, second]))
        else:
            optimizer.apply(grads, [first, second])

    np.testing.assert_allclose(to_numpy(first), [0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(to_numpy(second), [1.7, 1.7], atol=1e-6)
    optimizer.assign_average_vars([first, second])
    np.testing.assert_allclose(to_numpy(first), [0.8, 0.8], atol=1e-6)
    np.testing.assert_allclose(to_numpy(second), [1.8, 1.8], atol=1e-6)


def test_start_and_period_pick_the_snapshots():
    """m = 1, k = 2, five updates of -0.1 from 1.0: after update t the weight
    is 0.9 - 0.1 t, and the snapshots are t = 1 and t = 3 (0.8 and 0.6)."""
    weight = keras.Variable(np.array([1.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(1.0), start_averaging=1, average_period=2)
    for _ in range(5):
        optimizer.apply([tensor([0.1])], [weight])
    assert optimizer.snapshot_count == 2
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [0.7], atol=1e-6)
    np.testing.assert_allclose(to_numpy(weight), [0.5], atol=1e-6)


# -- refused arguments ---------------------------------------------------------


def test_no_inner_optimizer_is_a_type_error():
    with pytest.raises(TypeError, match="optimizer=None"):
        SWA(None, average_period=10)


@pytest.mark.parametrize(
    "arguments, match",
    [
        ({"average_period": 0}, "average_period"),
        ({"start_averaging": -1}, "start_averaging"),
        ({"average_period": 2.5}, "average_period"),
    ],
)
def test_out_of_range_counts_are_refused_naming_the_argument(arguments, match):
    # tfa refused the first two with a ValueError too
    # (stochastic_weight_averaging.py:107-110 at v0.23.0).
    with pytest.raises(ValueError, match=match):
        SWA("sgd", **arguments)


# -- an inner optimizer given by name -----------------------------------------


def test_inner_optimizer_by_name():
    optimizer = SWA("adam", average_period=10)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)

    # Adam's first step moves each weight by learning_rate * g / (|g| + eps'),
    # i.e. by 0.001 for any gradient far above epsilon.
    weight = keras.Variable(np.array([1.0, -1.0], "float32"))
    optimizer.apply([tensor([0.5, -3.0])], [weight])
    np.testing.assert_allclose(to_numpy(weight), [0.999, -0.999], atol=1e-6)
    assert optimizer.snapshot_count == 1  # start_averaging=0: t = 0 is one


# -- get_config / from_config ---------------------------------------------------


def test_config_round_trip():
    optimizer = SWA("adam", average_period=10, start_averaging=0)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, SWA)
    config = restored.get_config()
    assert config["average_period"] == 10
    assert config["start_averaging"] == 0
    assert config == optimizer.get_config()
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert restored.inner_optimizer is not optimizer.inner_optimizer


# -- batch normalization: fit_bn becomes update_bn ----------------------------


def _relu(values):
    return np.maximum(values, 0.0)


def test_batch_norm_model_averages_and_refreshes_statistics():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 64)).astype("float32")
    y = rng.standard_normal((10, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    optimizer = SWA(keras.optimizers.SGD(0.01), start_averaging=0, average_period=2)
    model.compile(optimizer=optimizer, loss="mean_squared_error")

    # The trainable weights after each of the 5 updates, read independently.
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([w.copy() for w in self.model.get_weights()])

    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    assert len(seen) == 5
    trainable = [i for i, v in enumerate(model.weights) if v.trainable]
    # Snapshots at t = 0, 2, 4.
    expected = [np.mean([seen[t][i] for t in (0, 2, 4)], axis=0) for i in trainable]
    statistics_before = [to_numpy(v).copy() for v in model.non_trainable_weights]

    # tfa's documented call: every model variable, statistics included. tfa
    # warned once per statistic here; kerasswa skips them silently.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer.assign_average_vars(model.variables)
    # (Keras itself may raise NumPy 2 deprecation notices on the way.)
    assert [str(w.message) for w in caught if w.category is not DeprecationWarning] == []
    weights = model.get_weights()
    for i, mean in zip(trainable, expected):
        np.testing.assert_allclose(weights[i], mean, rtol=1e-5, atol=1e-6)
    for before, after in zip(statistics_before, model.non_trainable_weights):
        np.testing.assert_array_equal(before, to_numpy(after))

    # update_bn: one pass in one batch of 10, so the statistics are the mean
    # and biased variance of the first layer's output under the averages.
    update_bn(model, x, batch_size=10)
    kernel, bias = weights[0], weights[1]
    hidden = _relu(x.astype("float64") @ kernel + bias)
    bn = model.layers[1]
    np.testing.assert_allclose(to_numpy(bn.moving_mean), hidden.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(bn.moving_variance), hidden.var(axis=0), rtol=1e-4, atol=1e-6
    )


# -- a linear model converges ---------------------------------------------------


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_simple_linear_model_converges(jit_compile):
    """tfa fitted 100000 samples for 2 epochs; 1600 samples and a larger
    learning rate make the same point in a fraction of the time."""
    rng = np.random.default_rng(0x2019)
    num_examples, batch_size = 1600, 32
    x = rng.standard_normal((num_examples, 3)).astype("float32")
    w = rng.standard_normal((3, 1)).astype("float32")
    y = x @ w + rng.standard_normal((num_examples, 1)).astype("float32") * 1e-4

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    steps_per_epoch = num_examples // batch_size  # 50
    # Averaging starts at the last update of the first epoch (t counts from 0).
    optimizer = SWA(
        keras.optimizers.SGD(0.2), start_averaging=steps_per_epoch - 1, average_period=10
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0)
    # 100 updates, snapshots at t = 49, 59, ..., 99.
    assert optimizer.update_count == 100
    assert optimizer.snapshot_count == 6
    optimizer.assign_average_vars(model.variables)

    x_new = rng.standard_normal((100, 3)).astype("float32")
    predicted = model.predict(x_new, verbose=0)
    assert np.max(np.abs(predicted - x_new @ w)) < 1e-3


# -- serialization ----------------------------------------------------------------


def test_saved_model_keeps_the_optimizer_and_trains_on_identically(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=SWA(keras.optimizers.SGD(0.1), 0, 1), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 4 updates

    path = tmp_path / "swa.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe mode, no custom_objects
    assert isinstance(loaded.optimizer, SWA)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.snapshot_count == 4
    assert loaded.optimizer.update_count == 4
    for a, b in zip(model.optimizer.average_variables, loaded.optimizer.average_variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))

    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
