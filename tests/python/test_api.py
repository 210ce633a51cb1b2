"""The wrapper's surface: inner optimizer forms, learning rate, `lr`, `decay`,
and the safety of `assign_average_vars` / `swap_average_vars`."""

import warnings

import keras
import numpy as np
import pytest
from conftest import tensor, to_numpy

from kerasswa import SWA


@pytest.mark.parametrize(
    "inner, expected_class",
    [
        ("sgd", keras.optimizers.SGD),
        ("adam", keras.optimizers.Adam),
        ({"class_name": "RMSprop", "config": {"learning_rate": 0.25}}, keras.optimizers.RMSprop),
        (keras.optimizers.Nadam(0.002), keras.optimizers.Nadam),
    ],
)
def test_inner_optimizer_forms(inner, expected_class):
    optimizer = SWA(inner)
    assert isinstance(optimizer.inner_optimizer, expected_class)
    if isinstance(inner, dict):
        assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(0.25)


def test_given_instance_is_used_not_copied():
    inner = keras.optimizers.SGD(0.1)
    assert SWA(inner).inner_optimizer is inner


def test_learning_rate_and_iterations_forward_to_inner():
    inner = keras.optimizers.SGD(0.1)
    optimizer = SWA(inner, learning_rate=0.3)
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.3)
    optimizer.learning_rate = 0.02
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.02)
    weights = keras.Variable(np.zeros(1, "float32"))
    optimizer.apply_gradients([(tensor([1.0]), weights)])
    assert optimizer.iterations is inner.iterations
    assert int(to_numpy(optimizer.iterations)) == 1
    np.testing.assert_allclose(to_numpy(weights), [-0.02], atol=1e-7)


def test_lr_is_a_deprecated_alias_that_works():
    inner = keras.optimizers.SGD(0.1)
    with pytest.warns(DeprecationWarning, match="`lr` is deprecated"):
        SWA(inner, lr=0.5)
    # tfa accepted `lr` and silently ignored it.
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.5)


def test_decay_is_keras2_inverse_time_decay():
    inner = keras.optimizers.SGD(0.1)
    optimizer = SWA(inner, learning_rate=0.5, decay=0.25)
    weights = keras.Variable(np.zeros(1, "float32"))
    previous = 0.0
    for step in range(4):
        optimizer.apply_gradients([(tensor([1.0]), weights)])
        current = float(to_numpy(weights)[0])
        # Keras 2: lr_t = lr / (1 + decay * t), t = updates before this one.
        assert previous - current == pytest.approx(0.5 / (1 + 0.25 * step), rel=1e-5)
        previous = current
    config = keras.saving.serialize_keras_object(SWA.from_config(optimizer.get_config()))
    schedule = config["config"]["optimizer"]["config"]["learning_rate"]
    assert schedule["class_name"] == "InverseTimeDecay"
    assert schedule["config"]["decay_rate"] == pytest.approx(0.25)


def test_decay_without_learning_rate_starts_from_inner_rate():
    inner = keras.optimizers.SGD(0.2)
    SWA(inner, decay=1.0)
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.2)


def test_zero_decay_keeps_a_constant_learning_rate():
    inner = keras.optimizers.SGD(0.2)
    SWA(inner, decay=0)
    assert isinstance(inner.learning_rate, keras.Variable)


def test_assign_before_first_snapshot_warns_and_keeps_weights():
    weights = keras.Variable(np.array([1.0, 2.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(0.1), start_averaging=10)
    optimizer.apply_gradients([(tensor([1.0, 1.0]), weights)])
    before = to_numpy(weights).copy()
    with pytest.warns(UserWarning, match="no snapshot has been taken yet"):
        optimizer.assign_average_vars([weights])
    # tfa overwrote the weights with zeros here.
    np.testing.assert_array_equal(to_numpy(weights), before)


def test_assign_skips_non_trainable_variables_such_as_batch_norm_statistics():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    optimizer = SWA(keras.optimizers.SGD(0.1), average_period=1)
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, np.zeros((16, 4), "float32"), batch_size=8, epochs=1, verbose=0)
    moving = {v.path: to_numpy(v).copy() for v in model.non_trainable_variables}
    assert moving
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        optimizer.assign_average_vars(model.variables)
    for variable in model.non_trainable_variables:
        np.testing.assert_array_equal(to_numpy(variable), moving[variable.path])


def test_assign_refuses_trainable_variables_it_does_not_know():
    weights = keras.Variable(np.zeros(2, "float32"))
    stranger = keras.Variable(np.zeros(2, "float32"), name="stranger")
    optimizer = SWA(keras.optimizers.SGD(0.1), average_period=1)
    optimizer.apply_gradients([(tensor([1.0, 1.0]), weights)])
    with pytest.raises(ValueError, match="stranger"):
        optimizer.assign_average_vars([weights, stranger])
    # Checked before anything is assigned.
    np.testing.assert_allclose(to_numpy(weights), [-0.1, -0.1], atol=1e-7)


def test_assign_on_an_unbuilt_optimizer_warns_and_changes_nothing():
    weights = keras.Variable(np.array([1.0, 2.0], "float32"))
    optimizer = SWA("sgd")
    for method in (optimizer.assign_average_vars, optimizer.swap_average_vars):
        with pytest.warns(UserWarning, match="no snapshot has been taken yet"):
            method([weights])
    np.testing.assert_array_equal(to_numpy(weights), [1.0, 2.0])
    with pytest.raises(TypeError, match="var_list"):
        optimizer.assign_average_vars(3)


def test_swap_twice_restores_and_use_average_vars_restores_on_error():
    weights = keras.Variable(np.array([1.0, 1.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(1.0), average_period=1)
    for _ in range(3):
        optimizer.apply_gradients([(tensor([0.1, 0.1]), weights)])
    optimizer.swap_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), [0.8, 0.8], atol=1e-6)
    optimizer.swap_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), [0.7, 0.7], atol=1e-6)

    with pytest.raises(RuntimeError, match="inside"):
        with optimizer.use_average_vars([weights]):
            np.testing.assert_allclose(to_numpy(weights), [0.8, 0.8], atol=1e-6)
            raise RuntimeError("inside")
    np.testing.assert_allclose(to_numpy(weights), [0.7, 0.7], atol=1e-6)
    # Training continues from the training weights.
    optimizer.apply_gradients([(tensor([0.1, 0.1]), weights)])
    np.testing.assert_allclose(to_numpy(weights), [0.6, 0.6], atol=1e-6)
    optimizer.assign_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), [0.75, 0.75], atol=1e-6)


def test_use_average_vars_restores_the_model_after_a_failed_predict():
    # On JAX, Keras empties the model's variables while `predict` runs and
    # leaves them empty when it fails part-way; the block must still end with
    # the training weights and statistics in place, on every backend.
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    optimizer = SWA(keras.optimizers.SGD(0.1), average_period=1)
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0)
    before = [to_numpy(v).copy() for v in model.variables]
    with pytest.raises(Exception):
        with optimizer.use_average_vars(model.variables):
            model.predict(x[:, :2], verbose=0)  # the wrong number of features
    for variable, value in zip(model.variables, before):
        np.testing.assert_array_equal(to_numpy(variable), value)
    model.predict(x, verbose=0)


def test_snapshot_count_is_read_only():
    optimizer = SWA("sgd")
    assert optimizer.snapshot_count == 0
    with pytest.raises(AttributeError):
        optimizer.snapshot_count = 3


def test_optimizer_memory_is_inner_state_plus_one_copy_of_weights():
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5), keras.layers.Dense(2)])
    inner = keras.optimizers.Adam()
    optimizer = SWA(inner)
    optimizer.build(model.trainable_variables)

    def size(variables):
        return sum(int(np.prod(v.shape)) for v in variables)

    own = [v for v in optimizer.variables if all(v is not w for w in inner.variables)]
    # Beyond one average per weight: the snapshot count, and the unused
    # step counter and learning rate every Keras optimizer creates.
    assert size(own) == size(model.trainable_variables) + 3
    assert len(optimizer.variables) == len(own) + len(inner.variables)
