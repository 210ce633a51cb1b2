"""SWA inside `model.fit`, custom loops and `stateless_apply`, with the SWA
effect measured on a problem whose answer is known."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, tensor, to_numpy

from kerasswa import SWA


def _linear_regression_data(n=2048, features=5, noise=0.5):
    rng = np.random.default_rng(0)
    true_weights = rng.normal(size=(features, 1)).astype("float32")
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x @ true_weights + noise * rng.normal(size=(n, 1))).astype("float32")
    return x, y, true_weights


def _linear_model(features):
    return keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(1, use_bias=False)]
    )


# 1536 updates: on JAX without jit that is 30 s of dispatching op by op, and
# the JAX eager path is covered by every other test here; the statistics
# only need the step to be the one users run (jit on JAX, both elsewhere;
# on PyTorch `True` is torch.compile).
@pytest.mark.parametrize("jit_compile", [True] if BACKEND == "jax" else [False, True])
def test_fit_average_is_closer_to_true_weights_than_last_iterate(jit_compile):
    x, y, true_weights = _linear_regression_data()
    model = _linear_model(x.shape[1])
    # A constant, large learning rate and small batches: the last iterate
    # keeps bouncing around the optimum, the average settles near it.
    optimizer = SWA(
        keras.optimizers.SGD(learning_rate=0.05), start_averaging=512, average_period=1
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0)  # 1536 updates

    last_error = np.linalg.norm(to_numpy(model.weights[0]) - true_weights)
    optimizer.assign_average_vars(model.variables)
    swa_error = np.linalg.norm(to_numpy(model.weights[0]) - true_weights)

    assert optimizer.snapshot_count == 1536 - 512
    # Measured on TF, JAX and PyTorch: last iterate ~0.07-0.1, average ~0.01-0.02.
    assert swa_error < 0.5 * last_error, (swa_error, last_error)
    assert swa_error < 0.03


def test_fit_counts_snapshots_and_leaves_weights_to_training():
    x, y, _ = _linear_regression_data(n=64)
    model = _linear_model(x.shape[1])
    reference = _linear_model(x.shape[1])
    reference.set_weights(model.get_weights())

    optimizer = SWA(keras.optimizers.Adam(0.01), start_averaging=5, average_period=2)
    model.compile(optimizer=optimizer, loss="mse")
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    reference.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    # 16 updates (t = 0..15): snapshots at t = 5, 7, 9, 11, 13, 15.
    assert int(to_numpy(optimizer.iterations)) == 16
    assert optimizer.snapshot_count == 6
    np.testing.assert_allclose(
        to_numpy(model.weights[0]), to_numpy(reference.weights[0]), rtol=1e-5, atol=1e-6
    )


def test_custom_loop_with_apply_gradients_matches_analytic_gradient_descent():
    """A loop that computes the gradients itself, as users of `GradientTape`
    or `jax.grad` do, then calls `apply_gradients`."""
    x, y, _ = _linear_regression_data(n=32)
    weights = keras.Variable(np.zeros((x.shape[1], 1), "float32"))
    optimizer = SWA(keras.optimizers.SGD(0.1), start_averaging=2, average_period=3)
    expected = np.zeros((x.shape[1], 1), "float32")
    snapshots = []
    for step in range(10):
        grad = 2.0 * x.T @ (x @ to_numpy(weights) - y) / len(x)
        optimizer.apply_gradients([(tensor(grad), weights)])
        expected = expected - 0.1 * (2.0 * x.T @ (x @ expected - y) / len(x))
        if step >= 2 and (step - 2) % 3 == 0:
            snapshots.append(expected.copy())
    np.testing.assert_allclose(to_numpy(weights), expected, rtol=1e-5, atol=1e-6)
    optimizer.assign_average_vars([weights])
    np.testing.assert_allclose(
        to_numpy(weights), np.mean(snapshots, axis=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.skipif(
    BACKEND != "jax",
    reason="stateless_apply is JAX's: Keras refuses it on TensorFlow, and its "
    "PyTorch optimizers (SGD included) update the variables in place under it",
)
def test_stateless_apply_returns_the_stateful_result():
    initial = np.array([1.0, 1.0], "float32")
    grad = tensor([0.1, 0.1])

    stateful_weights = keras.Variable(initial)
    stateful = SWA(keras.optimizers.SGD(1.0), average_period=1)
    for _ in range(3):
        stateful.apply_gradients([(grad, stateful_weights)])

    weights = keras.Variable(initial)
    optimizer = SWA(keras.optimizers.SGD(1.0), average_period=1)
    optimizer.build([weights])
    weight_values = [weights.value]
    optimizer_values = [v.value for v in optimizer.variables]
    for _ in range(3):
        weight_values, optimizer_values = optimizer.stateless_apply(
            optimizer_values, [grad], weight_values
        )
    # Nothing changed in place ...
    np.testing.assert_array_equal(to_numpy(weights), initial)
    assert optimizer.snapshot_count == 0
    # ... and the returned state is the stateful one.
    np.testing.assert_allclose(to_numpy(weight_values[0]), [0.7, 0.7], atol=1e-6)
    for variable, value in zip(optimizer.variables, optimizer_values):
        variable.assign(value)
    assert optimizer.snapshot_count == 3
    optimizer.assign_average_vars([weights])
    np.testing.assert_allclose(to_numpy(weights), [0.8, 0.8], atol=1e-6)


def test_mid_training_evaluation_with_averages_does_not_disturb_training():
    x, y, _ = _linear_regression_data(n=64)
    interrupted = _linear_model(x.shape[1])
    straight = _linear_model(x.shape[1])
    straight.set_weights(interrupted.get_weights())
    optimizers = []
    for model in (interrupted, straight):
        optimizers.append(SWA(keras.optimizers.SGD(0.05), average_period=3))
        model.compile(optimizer=optimizers[-1], loss="mse")

    interrupted.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    training_weights = interrupted.get_weights()
    with optimizers[0].use_average_vars(interrupted.variables):
        averaged = interrupted.get_weights()
        interrupted.evaluate(x, y, verbose=0)
    for before, after in zip(training_weights, interrupted.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(averaged[0], training_weights[0])
    interrupted.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        interrupted.get_weights()[0], straight.get_weights()[0], rtol=1e-6, atol=1e-7
    )
    optimizers[0].assign_average_vars(interrupted.variables)
    optimizers[1].assign_average_vars(straight.variables)
    np.testing.assert_allclose(
        interrupted.get_weights()[0], straight.get_weights()[0], rtol=1e-6, atol=1e-7
    )


def test_clipping_on_the_wrapper_reaches_the_inner_optimizer():
    def one_step(**clipping):
        first = keras.Variable(np.zeros(2, "float32"))
        second = keras.Variable(np.zeros(1, "float32"))
        optimizer = SWA(keras.optimizers.SGD(1.0), **clipping)
        optimizer.apply_gradients(
            [(tensor([3.0, 4.0]), first), (tensor([12.0]), second)]
        )
        return to_numpy(first), to_numpy(second)

    # clipnorm: each gradient to norm 1 on its own: [3, 4] / 5 and [12] / 12.
    first, second = one_step(clipnorm=1.0)
    np.testing.assert_allclose(first, [-0.6, -0.8], atol=1e-6)
    np.testing.assert_allclose(second, [-1.0], atol=1e-6)
    # global_clipnorm: all together, global norm 13, to 1.3.
    first, second = one_step(global_clipnorm=1.3)
    np.testing.assert_allclose(first, [-0.3, -0.4], atol=1e-6)
    np.testing.assert_allclose(second, [-1.2], atol=1e-6)
    # clipvalue: element-wise to [-0.5, 0.5].
    first, second = one_step(clipvalue=0.5)
    np.testing.assert_allclose(first, [-0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(second, [-0.5], atol=1e-6)


def test_counts_written_eagerly_go_on_across_blocks_resets_and_donated_buffers():
    # On JAX the eager path writes the count from ready-made arrays, 1024 at
    # a time: crossing a block, going back (a restored checkpoint) and an
    # array freed by a jitted step that donated it must all count on.
    weight = keras.Variable(np.zeros(3, "float32"))
    optimizer = SWA(keras.optimizers.SGD(0.1), start_averaging=1020, average_period=5)
    optimizer.build([weight])
    grad = tensor(np.ones(3, "float32"))
    for _ in range(1030):
        optimizer.apply([grad], [weight])
    assert (optimizer.update_count, optimizer.snapshot_count) == (1030, 2)  # t = 1020, 1025
    if BACKEND == "jax":
        import jax

        written = optimizer._iterations.value
        optimizer._iterations.assign(jax.jit(lambda count: count + 1, donate_argnums=0)(written))
        # JAX 0.4.30 does not free a donated array that came out of iterating
        # another (the block): free it as newer JAX does.
        if not written.is_deleted():
            written.delete()
    optimizer._iterations.assign(1029)
    optimizer.apply([grad], [weight])  # count 1030 again: its array may be gone
    assert optimizer.update_count == 1030
    optimizer.apply([grad], [weight])  # t = 1030: a snapshot
    assert (optimizer.update_count, optimizer.snapshot_count) == (1031, 3)
    np.testing.assert_allclose(to_numpy(weight), -103.2, rtol=1e-5)
