"""What a tensorflow-addons user meets when migrating: raw `tf.Variable`
weights, one optimizer wrapped for several models, `start_averaging` counted
in updates made through SWA, and refused updates that change nothing."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, JIT_MODES, tensor, to_numpy

from kerasswa import SWA, SWALearningRateSchedule

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="raw tf.Variable weights exist on TensorFlow only"
)


# -- raw tf.Variable ---------------------------------------------------------


def _tf_variables():
    import tensorflow as tf

    return tf.Variable([1.0, 1.0]), tf.Variable([2.0, 2.0])


@tf_only
@pytest.mark.parametrize("in_function", [False, True])
def test_raw_tf_variables_follow_the_tfa_worked_example(in_function):
    import tensorflow as tf

    first, second = _tf_variables()
    optimizer = SWA(keras.optimizers.SGD(1.0), start_averaging=0, average_period=1)
    grad = tf.constant([0.1, 0.1])

    def step():
        optimizer.apply_gradients([(grad, first), (grad, second)])

    if in_function:
        step = tf.function(step)
    for _ in range(3):
        step()
    np.testing.assert_allclose(first.numpy(), [0.7, 0.7], atol=1e-6)
    assert optimizer.snapshot_count == 3 and optimizer.update_count == 3

    optimizer.assign_average_vars([first, second])
    # (0.9 + 0.8 + 0.7) / 3 and (1.9 + 1.8 + 1.7) / 3
    np.testing.assert_allclose(first.numpy(), [0.8, 0.8], atol=1e-6)
    np.testing.assert_allclose(second.numpy(), [1.8, 1.8], atol=1e-6)


@tf_only
def test_raw_tf_variables_swap_and_use_average_vars():
    import tensorflow as tf

    first, second = _tf_variables()
    optimizer = SWA(keras.optimizers.SGD(1.0), average_period=1)
    for _ in range(3):
        optimizer.apply([tf.constant([0.1, 0.1])] * 2, [first, second])
    optimizer.swap_average_vars([first, second])
    np.testing.assert_allclose(first.numpy(), [0.8, 0.8], atol=1e-6)
    optimizer.swap_average_vars([first, second])
    np.testing.assert_allclose(first.numpy(), [0.7, 0.7], atol=1e-6)
    with optimizer.use_average_vars([first, second]):
        np.testing.assert_allclose(second.numpy(), [1.8, 1.8], atol=1e-6)
    np.testing.assert_allclose(second.numpy(), [1.7, 1.7], atol=1e-6)


@tf_only
def test_raw_tf_variables_with_sequential_update_false_and_manual_snapshots():
    import tensorflow as tf

    weights = tf.Variable([1.0, 1.0])
    optimizer = SWA(
        keras.optimizers.SGD(1.0), average_period=1, sequential_update=False
    )
    for _ in range(3):
        optimizer.apply([tf.constant([0.1, 0.1])], [weights])
    optimizer.take_snapshot()  # the weights now: 0.7
    # (1.0 + 0.9 + 0.8 + 0.7) / 4
    np.testing.assert_allclose(
        to_numpy(optimizer.average_variables[0]), [0.85, 0.85], atol=1e-6
    )


def _state(optimizer, variables):
    return [to_numpy(v).copy() for v in list(variables) + list(optimizer.variables)]


def _assert_unchanged(before, after):
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def _refusals(weights, stranger):
    """Updates that must be refused before any variable changes."""
    return {
        "unknown variable": (
            lambda o: o.apply([tensor([0.1, 0.1]), tensor([0.1, 0.1])], [weights, stranger]),
            "Unknown variable",
        ),
        "more gradients than variables": (
            lambda o: o.apply([tensor([0.1, 0.1]), tensor([0.1, 0.1])], [weights]),
            "2 gradients for 1 variables",
        ),
        "gradient of the wrong shape": (
            lambda o: o.apply([tensor([0.1, 0.1, 0.1])], [weights]),
            r"shape \(3,\).*\(2,\)",
        ),
    }


@pytest.mark.parametrize("case", ["unknown variable", "more gradients than variables",
                                  "gradient of the wrong shape"])
@pytest.mark.parametrize("raw", [False, True])
def test_refused_update_changes_no_variable(case, raw):
    if raw:
        if BACKEND != "tensorflow":
            pytest.skip("raw tf.Variable weights exist on TensorFlow only")
        import tensorflow as tf

        weights, stranger = tf.Variable([1.0, 1.0]), tf.Variable([5.0, 5.0])
    else:
        weights = keras.Variable(np.array([1.0, 1.0], "float32"))
        stranger = keras.Variable(np.array([5.0, 5.0], "float32"))
    optimizer = SWA(keras.optimizers.Adam(0.1), average_period=1)
    optimizer.apply([tensor([0.1, 0.1])], [weights])  # built, one snapshot
    before = _state(optimizer, [weights, stranger])
    call, match = _refusals(weights, stranger)[case]
    with pytest.raises(ValueError, match=match):
        call(optimizer)
    _assert_unchanged(before, _state(optimizer, [weights, stranger]))


# -- one optimizer, several models -----------------------------------------


def _model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_an_inner_optimizer_built_for_another_model_is_refused(jit_compile):
    x, y = _data()
    shared = keras.optimizers.SGD(0.05, name="shared_sgd")
    first = _model(1)
    first.compile(optimizer=SWA(shared, average_period=1), loss="mse", jit_compile=jit_compile)
    first.fit(x, y, epochs=1, verbose=0)

    second = _model(2)
    before = [w.copy() for w in second.get_weights()]
    second.compile(optimizer=SWA(shared, average_period=1), loss="mse", jit_compile=jit_compile)
    # On JAX, Keras would train nothing here and say nothing.
    with pytest.raises(ValueError, match="'shared_sgd'.*already built for other variables.*fresh"):
        second.fit(x, y, epochs=1, verbose=0)
    for old, new in zip(before, second.get_weights()):
        np.testing.assert_array_equal(old, new)

    # The way the error shows: a fresh optimizer per model trains.
    third = _model(2)
    fresh = keras.optimizers.SGD.from_config(shared.get_config())
    third.compile(optimizer=SWA(fresh, average_period=1), loss="mse", jit_compile=jit_compile)
    third.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before[0], third.get_weights()[0])


def test_an_inner_optimizer_built_for_the_same_variables_is_kept():
    weights = keras.Variable(np.array([0.0], "float32"))
    inner = keras.optimizers.Adam(0.1)
    for _ in range(3):
        inner.apply([tensor([1.0])], [weights])
    optimizer = SWA(inner, average_period=1)
    optimizer.apply([tensor([1.0])], [weights])
    # Adam's moments and step count went on: step 4 of a bias-corrected Adam.
    assert int(to_numpy(inner.iterations)) == 4
    assert optimizer.snapshot_count == 1


# -- start_averaging counts updates made through SWA ------------------------


def test_start_averaging_counts_updates_through_swa_not_the_inner_count():
    """The issue's pin: an SGD that trained 16 updates, wrapped with
    start_averaging=4 and average_period=2, takes exactly 2 snapshots in 8
    more updates (t = 4 and t = 6 of t = 0..7)."""
    weights = keras.Variable(np.array([0.0], "float32"))
    inner = keras.optimizers.SGD(0.5)
    for _ in range(16):
        inner.apply([tensor([1.0])], [weights])
    # weights = -8.0 after 16 steps of -0.5
    optimizer = SWA(inner, start_averaging=4, average_period=2)
    for _ in range(8):
        optimizer.apply([tensor([1.0])], [weights])
    assert optimizer.snapshot_count == 2
    assert optimizer.update_count == 8
    # The inner optimizer's own count goes on (its schedules, bias corrections).
    assert int(to_numpy(optimizer.iterations)) == 24
    # After update t the weights are -8 - 0.5 * (t + 1): -10.5 and -11.5.
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [-11.0])


def test_skipped_updates_are_not_counted():
    weights = keras.Variable(np.array([0.0], "float32"))
    inner = keras.optimizers.SGD(1.0, gradient_accumulation_steps=2)
    optimizer = SWA(inner, start_averaging=1, average_period=1)
    for _ in range(6):  # 3 real updates: after calls 2, 4 and 6
        optimizer.apply([tensor([1.0])], [weights])
    assert optimizer.update_count == 3
    # Snapshots at t = 1 and t = 2: weights -2 and -3.
    assert optimizer.snapshot_count == 2
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [-2.5])


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_update_count_is_saved_and_training_resumes_bit_identically(jit_compile, tmp_path):
    x, y = _data()

    def build():
        model = _model(3)
        model.compile(
            optimizer=SWA(keras.optimizers.Adam(0.01), start_averaging=3, average_period=2),
            loss="mse",
            jit_compile=jit_compile,
        )
        return model

    straight = build()
    straight.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)  # 16 updates

    resumed = build()
    resumed.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "half.keras"
    resumed.save(path)
    resumed = keras.models.load_model(path)
    assert resumed.optimizer.update_count == 8
    resumed.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

    for optimizer in (straight.optimizer, resumed.optimizer):
        assert optimizer.update_count == 16
        assert optimizer.snapshot_count == 7  # t = 3, 5, ..., 15
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_swa_schedule_and_snapshots_line_up_for_a_fresh_inner_optimizer():
    """The schedule reads the inner optimizer's step; for a fresh inner
    optimizer it equals the SWA update count, so the same `start_averaging`
    aligns both (a pre-trained one needs `start_averaging + iterations` in
    the schedule, as the docs say)."""
    schedule = SWALearningRateSchedule(1.0, 0.25, start_averaging=3)
    weights = keras.Variable(np.array([0.0], "float32"))
    optimizer = SWA(keras.optimizers.SGD(schedule), start_averaging=3, average_period=1)
    steps = []
    for _ in range(5):
        before = float(to_numpy(weights)[0])
        optimizer.apply([tensor([1.0])], [weights])
        steps.append(before - float(to_numpy(weights)[0]))
    # The learning rate drops at update 3, the first snapshot.
    np.testing.assert_allclose(steps, [1.0, 1.0, 1.0, 0.25, 0.25])
    assert optimizer.snapshot_count == 2


# -- learning rates the wrapper accepts, as every Keras optimizer does -------


def test_learning_rate_schedule_and_callable_on_the_wrapper(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    inner = keras.optimizers.SGD(0.9)
    optimizer = SWA(inner, learning_rate=schedule, average_period=1)
    assert inner.learning_rate is not None and inner._learning_rate is schedule
    weights = keras.Variable(np.array([0.0], "float32"))
    for _ in range(3):
        optimizer.apply([tensor([1.0])], [weights])
    # Steps of 0.1, 0.05, 0.025.
    np.testing.assert_allclose(to_numpy(weights), [-0.175], atol=1e-6)

    x, y = _data()
    model = _model(4)
    model.compile(optimizer=SWA("sgd", learning_rate=schedule, average_period=1), loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(
        loaded.optimizer.inner_optimizer._learning_rate,
        keras.optimizers.schedules.ExponentialDecay,
    )

    halving = SWA("sgd", learning_rate=lambda: 0.5)
    assert float(to_numpy(halving.learning_rate)) == pytest.approx(0.5)


def test_decay_with_a_schedule_is_refused_with_a_reason():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    inner = keras.optimizers.SGD(0.9)
    with pytest.raises(ValueError, match="`decay` applies to a constant learning rate"):
        SWA(inner, learning_rate=schedule, decay=0.1)
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.9)
