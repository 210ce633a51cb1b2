"""Snapshots count real updates only under gradient accumulation, and sparse
gradients (TensorFlow's IndexedSlices from an Embedding) average correctly."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, tensor, to_numpy

from kerasswa import SWA


@pytest.mark.parametrize("sequential_update, expected", [(True, 0.5), (False, 0.7)])
def test_gradient_accumulation_snapshots_real_updates_only(sequential_update, expected):
    weights = keras.Variable(np.array([1.0], "float32"))
    inner = keras.optimizers.SGD(1.0, gradient_accumulation_steps=2)
    optimizer = SWA(inner, start_averaging=1, average_period=1, sequential_update=sequential_update)
    counts = []
    for grad in [0.1, 0.3] * 3:  # six micro-batches, three real updates of -0.2
        optimizer.apply_gradients([(tensor([grad]), weights)])
        counts.append(optimizer.snapshot_count)
    np.testing.assert_allclose(to_numpy(weights), [0.4], atol=1e-6)  # 1.0 -> 0.8 -> 0.6 -> 0.4
    assert int(to_numpy(optimizer.iterations)) == 3
    # Real updates t = 0, 1, 2 end on micro-batches 2, 4, 6; t = 1 and 2 are snapshots.
    assert counts == [0, 0, 0, 1, 1, 2]
    optimizer.assign_average_vars([weights])
    # After the update: mean(0.6, 0.4); before it: mean(0.8, 0.6).
    np.testing.assert_allclose(to_numpy(weights), [expected], atol=1e-6)


def test_gradient_accumulation_in_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = SWA(keras.optimizers.SGD(0.05, gradient_accumulation_steps=4), start_averaging=2, average_period=3)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # 32 batches, 8 real updates
    assert int(to_numpy(optimizer.iterations)) == 8
    assert optimizer.snapshot_count == 2  # t = 2, 5


tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's sparse gradients")


def _embedding_run(optimizer, densify=False):
    """Six SWA updates of an Embedding through a custom TensorFlow loop;
    returns the layer and its weights after each update."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    embedding = keras.layers.Embedding(10, 3)
    embedding.build((None,))
    ids = tf.constant([[1, 2, 2], [7, 1, 0]])  # rows 3 to 6, 8, 9 never looked up
    trajectory = []
    for step in range(6):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(embedding(ids) - float(step % 3)))
        (grad,) = tape.gradient(loss, embedding.trainable_variables)
        assert isinstance(grad, tf.IndexedSlices)
        if densify:
            grad = tf.convert_to_tensor(grad)
        optimizer.apply_gradients([(grad, embedding.embeddings)])
        trajectory.append(to_numpy(embedding.embeddings).copy())
    return embedding, trajectory


def _check_average(optimizer, embedding, trajectory):
    assert optimizer.snapshot_count == 3  # t = 1, 3, 5
    optimizer.assign_average_vars([embedding.embeddings])
    expected = np.mean([trajectory[t] for t in (1, 3, 5)], axis=0)
    np.testing.assert_allclose(to_numpy(embedding.embeddings), expected, rtol=1e-6, atol=1e-7)
    # Rows never looked up keep their initial value in the average.
    np.testing.assert_array_equal(to_numpy(embedding.embeddings)[3:7], trajectory[0][3:7])


@tensorflow_only
def test_sparse_embedding_gradients_average_like_dense_ones():
    swa = SWA(keras.optimizers.SGD(0.1), start_averaging=1, average_period=2)
    embedding, trajectory = _embedding_run(swa)
    _, dense_trajectory = _embedding_run(
        SWA(keras.optimizers.SGD(0.1), start_averaging=1, average_period=2), densify=True
    )
    np.testing.assert_allclose(trajectory, dense_trajectory, rtol=1e-6, atol=1e-7)
    _check_average(swa, embedding, trajectory)


@tensorflow_only
def test_clipping_sparse_gradients_on_the_wrapper_is_clipping_on_the_inner_optimizer():
    """TensorFlow clips IndexedSlices by the norm of their slices (repeated
    ids counted apart), so the result differs from clipping the dense
    gradient; clipping on the wrapper must do what Keras itself does."""
    swa = SWA(keras.optimizers.SGD(0.1), start_averaging=1, average_period=2, clipnorm=0.05)
    embedding, trajectory = _embedding_run(swa)
    _, keras_trajectory = _embedding_run(
        SWA(keras.optimizers.SGD(0.1, clipnorm=0.05), start_averaging=1, average_period=2)
    )
    np.testing.assert_array_equal(trajectory, keras_trajectory)
    _check_average(swa, embedding, trajectory)
