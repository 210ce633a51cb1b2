"""`update_bn` against batch statistics computed in NumPy."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import update_bn
from kerasswa.batchnorm import batch_norm_layers

EPSILON = 1e-3  # Keras's BatchNormalization default


def _nested_model():
    """BN at the top level, and inside a Sequential inside a Functional."""
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(momentum=0.9, name="bn_top")(inputs)
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="dense"), keras.layers.BatchNormalization(name="bn_inner")],
        name="inner",
    )
    outputs = keras.layers.Dense(1)(inner(hidden))
    return keras.Model(inputs, outputs)


def _numpy_statistics(model, x, batch_size):
    """Batch-size-weighted means of each BN layer's batch mean and (biased)
    batch variance, following the data through the layers in NumPy."""
    top, inner_bn = model.get_layer("bn_top"), model.get_layer("inner").get_layer("bn_inner")
    kernel, bias = (to_numpy(w) for w in model.get_layer("inner").get_layer("dense").weights)
    gamma, beta = to_numpy(top.gamma), to_numpy(top.beta)
    sums = {"top": [0, 0], "inner": [0, 0]}
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].astype("float64")
        mean, var = batch.mean(0), batch.var(0)
        sums["top"][0] += len(batch) * mean
        sums["top"][1] += len(batch) * var
        normalized = gamma * (batch - mean) / np.sqrt(var + EPSILON) + beta
        dense = normalized @ kernel + bias
        sums["inner"][0] += len(batch) * dense.mean(0)
        sums["inner"][1] += len(batch) * dense.var(0)
    return {k: (m / len(x), v / len(x)) for k, (m, v) in sums.items()}, (top, inner_bn)


def _data(n=50):
    rng = np.random.default_rng(7)
    return (rng.normal(size=(n, 4)) * [1, 2, 3, 4] + [0, 1, -1, 5]).astype("float32")


@pytest.mark.parametrize("batch_size", [16, 50])  # 16: a last batch of 2
def test_statistics_are_the_average_of_batch_statistics(batch_size):
    model = _nested_model()
    rng = np.random.default_rng(1)
    top = model.get_layer("bn_top")
    top.gamma.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    top.beta.assign(rng.normal(size=4).astype("float32"))
    x = _data()
    trainable_before = [to_numpy(w).copy() for w in model.trainable_weights]

    assert update_bn(model, x, batch_size=batch_size) is model

    expected, layers = _numpy_statistics(model, x, batch_size)
    for (mean, var), layer in zip(expected.values(), layers):
        np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_numpy(layer.moving_variance), var, rtol=1e-5, atol=1e-5)
    assert [layer.momentum for layer in layers] == [0.9, 0.99]
    for before, after in zip(trainable_before, model.trainable_weights):
        np.testing.assert_array_equal(before, to_numpy(after))


def _data_forms(x, form):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return x[index * 16 : (index + 1) * 16], None

    def generator():
        for start in range(0, len(x), 16):
            yield x[start : start + 16], np.zeros(len(x[start : start + 16]))

    def tf_data():
        # Keras reads tf.data on every backend, where TensorFlow is installed.
        tf = pytest.importorskip("tensorflow")
        return tf.data.Dataset.from_tensor_slices(x).batch(16)

    return {
        "array": lambda: x,
        "tuple": lambda: (x, np.zeros(len(x))),
        "tf.data": tf_data,
        "generator": generator,
        "PyDataset": Batches,
    }[form]()


@pytest.mark.parametrize("form", ["array", "tuple", "tf.data", "generator", "PyDataset"])
def test_every_data_form_gives_the_same_statistics(form):
    x = _data()
    data = _data_forms(x, form)
    model = _nested_model()
    update_bn(model, data, batch_size=16)
    expected, layers = _numpy_statistics(model, x, 16)
    np.testing.assert_allclose(to_numpy(layers[0].moving_mean), expected["top"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layers[1].moving_variance), expected["inner"][1], rtol=1e-5, atol=1e-5)


def test_steps_limits_the_pass():
    x = _data()
    model = _nested_model()
    update_bn(model, x, batch_size=10, steps=2)
    np.testing.assert_allclose(
        to_numpy(model.get_layer("bn_top").moving_mean), x[:20].mean(0), rtol=1e-5, atol=1e-5
    )


def test_frozen_batch_norm_is_left_alone():
    model = _nested_model()
    model.get_layer("bn_top").trainable = False
    assert [layer.name for layer in batch_norm_layers(model)] == ["bn_inner"]
    update_bn(model, _data())
    np.testing.assert_array_equal(to_numpy(model.get_layer("bn_top").moving_mean), np.zeros(4))


def test_progress_bar_when_verbose(capsys):
    update_bn(_nested_model(), _data(), batch_size=25, verbose=1)
    assert "2/2" in capsys.readouterr().out


def test_model_without_batch_norm_warns_and_changes_nothing():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.warns(UserWarning, match="no trainable BatchNormalization"):
        update_bn(model, _data())
