"""The averaging rule of CONTRACT.md, pinned by numbers worked out by hand and
by an independent NumPy re-implementation."""

import keras
import numpy as np
import pytest
from conftest import tensor, to_numpy

from kerasswa import SWA


def _tfa_example(sequential_update):
    """The tensorflow-addons unit test: SGD(1.0), m=0, k=1, gradient 0.1."""
    first = keras.Variable(np.array([1.0, 1.0], "float32"))
    second = keras.Variable(np.array([2.0, 2.0], "float32"))
    optimizer = SWA(
        keras.optimizers.SGD(learning_rate=1.0),
        start_averaging=0,
        average_period=1,
        sequential_update=sequential_update,
    )
    grad = tensor([0.1, 0.1])
    for _ in range(3):
        optimizer.apply_gradients([(grad, first), (grad, second)])
    return optimizer, first, second


@pytest.mark.parametrize(
    "sequential_update, expected_first, expected_second",
    [
        # Mean of the weights after updates 1, 2, 3: (0.9 + 0.8 + 0.7) / 3.
        (True, 0.8, 1.8),
        # Mean of the weights before them: (1.0 + 0.9 + 0.8) / 3.
        (False, 0.9, 1.9),
    ],
)
def test_tfa_worked_example(sequential_update, expected_first, expected_second):
    optimizer, first, second = _tfa_example(sequential_update)
    np.testing.assert_allclose(to_numpy(first), [0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(to_numpy(second), [1.7, 1.7], atol=1e-6)
    assert optimizer.snapshot_count == 3
    assert int(to_numpy(optimizer.iterations)) == 3

    optimizer.assign_average_vars([first, second])

    np.testing.assert_allclose(to_numpy(first), [expected_first] * 2, atol=1e-6)
    np.testing.assert_allclose(to_numpy(second), [expected_second] * 2, atol=1e-6)


def _quadratic_gradient(weights, step):
    """Gradient of 0.5 * ||w - target||^2 plus fixed per-step noise."""
    noise = np.random.default_rng(step).normal(size=weights.shape)
    return (weights - 3.0 + noise).astype("float32")


@pytest.mark.parametrize("sequential_update", [True, False])
def test_trajectory_matches_numpy_rule_with_adam(sequential_update):
    start, period, steps = 3, 2, 12
    initial = np.array([[0.5, -1.0], [2.0, 0.0]], "float32")

    # The reference trajectory comes from a bare Adam, not from SWA.
    reference = keras.Variable(initial)
    bare = keras.optimizers.Adam(learning_rate=0.1)
    trajectory = [initial.copy()]
    for step in range(steps):
        grad = _quadratic_gradient(to_numpy(reference), step)
        bare.apply_gradients([(tensor(grad), reference)])
        trajectory.append(to_numpy(reference).copy())

    weights = keras.Variable(initial)
    optimizer = SWA(
        keras.optimizers.Adam(learning_rate=0.1),
        start_averaging=start,
        average_period=period,
        sequential_update=sequential_update,
    )
    for step in range(steps):
        grad = _quadratic_gradient(to_numpy(weights), step)
        optimizer.apply_gradients([(tensor(grad), weights)])
        # Averaging never changes the training weights.
        np.testing.assert_allclose(to_numpy(weights), trajectory[step + 1], atol=1e-6)

    # The rule in plain NumPy: update t (0-based) is a snapshot when
    # t >= start and (t - start) % period == 0; it averages the weights
    # after that update (sequential) or before it.
    snapshot_steps = [t for t in range(steps) if t >= start and (t - start) % period == 0]
    assert snapshot_steps == [3, 5, 7, 9, 11]
    offset = 1 if sequential_update else 0
    expected = np.mean([trajectory[t + offset] for t in snapshot_steps], axis=0)

    assert optimizer.snapshot_count == len(snapshot_steps)
    optimizer.assign_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), expected, rtol=1e-5, atol=1e-6)


def test_non_snapshot_steps_leave_averages_bit_identical():
    weights = keras.Variable(np.array([1.0, -2.0, 0.5], "float32"))
    optimizer = SWA(keras.optimizers.SGD(0.1), start_averaging=2, average_period=3)
    optimizer.build([weights])
    average = optimizer.average_variables[0]
    snapshots = {2, 5, 8}
    for step in range(10):
        before = to_numpy(average).copy()
        optimizer.apply_gradients([(tensor([0.3, -0.1, 0.2]), weights)])
        after = to_numpy(average)
        if step in snapshots:
            assert not np.array_equal(before, after), step
        else:
            assert np.array_equal(before, after), step
    assert optimizer.snapshot_count == 3


def test_first_snapshot_is_exactly_the_weights():
    weights = keras.Variable(np.array([0.1, 0.2, 0.3], "float32"))
    optimizer = SWA(keras.optimizers.SGD(0.5), start_averaging=4, average_period=10)
    for _ in range(5):
        optimizer.apply_gradients([(tensor([1.0, 1.0, 1.0]), weights)])
    assert optimizer.snapshot_count == 1
    np.testing.assert_array_equal(to_numpy(optimizer.average_variables[0]), to_numpy(weights))


def test_average_is_mean_of_snapshots_when_inner_was_trained_before():
    """tfa derived the snapshot count from the step counter, so wrapping an
    optimizer that had already taken steps averaged in phantom zeros. The
    stored count keeps the average a plain mean."""
    weights = keras.Variable(np.array([1.0], "float32"))
    inner = keras.optimizers.SGD(1.0)
    for _ in range(4):
        inner.apply_gradients([(tensor([0.25]), weights)])
    # weights are now 0.0 and the inner optimizer is at step 4.
    optimizer = SWA(inner, start_averaging=0, average_period=1)
    for _ in range(2):
        optimizer.apply_gradients([(tensor([0.25]), weights)])
    assert optimizer.snapshot_count == 2
    optimizer.assign_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), [(-0.25 - 0.5) / 2], atol=1e-7)
