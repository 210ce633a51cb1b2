"""SWAG: its moments against a NumPy re-computation of the rule on a recorded
trajectory, its samples against the covariance the paper defines, saving and
resuming, and `swag_predict`."""

import keras
import numpy as np
import pytest
from conftest import JIT_MODES, tensor, to_numpy

from kerasswa import SWA, SWAG, swag_predict


def _numpy_swag(snapshots, max_rank):
    """The rule of CONTRACT.md in NumPy, for one variable: the mean, the mean
    of squares, and the ring of deviations from the mean after each
    snapshot (snapshot i in row i % max_rank)."""
    mean = np.zeros_like(snapshots[0], dtype="float64")
    square = np.zeros_like(mean)
    ring = np.zeros((max_rank,) + mean.shape)
    for i, w in enumerate(snapshots):
        w = w.astype("float64")
        mean = mean * i / (i + 1) + w / (i + 1)
        square = square * i / (i + 1) + w**2 / (i + 1)
        if max_rank:
            ring[i % max_rank] = w - mean
    return mean, square, ring


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.trajectory = []

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append([w.copy() for w in self.model.get_weights()])


def _data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(48, 3)).astype("float32")
    return x, (np.sin(x) @ np.array([[1.0], [-1.0], [0.5]])).astype("float32")


def _model(optimizer, jit_compile=False, batch_norm=False):
    keras.utils.set_random_seed(2)
    layers = [keras.Input((3,)), keras.layers.Dense(4, activation="tanh")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    model = keras.Sequential(layers + [keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", JIT_MODES)
@pytest.mark.parametrize("sequential_update", [True, False])
def test_moments_match_numpy_on_the_recorded_trajectory(jit_compile, sequential_update):
    x, y = _data()
    start, period, max_rank = 2, 2, 3
    optimizer = SWAG(
        keras.optimizers.SGD(0.1, momentum=0.5),
        start_averaging=start,
        average_period=period,
        max_rank=max_rank,
        sequential_update=sequential_update,
    )
    model = _model(optimizer, jit_compile)
    initial = [w.copy() for w in model.get_weights()]
    recorder = _Recorder()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])

    # The weights after update t (sequential) or before it.
    trajectory = recorder.trajectory if sequential_update else [initial] + recorder.trajectory
    steps = [t for t in range(12) if t >= start and (t - start) % period == 0]
    assert optimizer.snapshot_count == len(steps) == 5
    assert optimizer.rank == max_rank  # the ring wrapped: 5 snapshots, 3 rows
    for index, (average, square, ring) in enumerate(
        zip(
            optimizer.average_variables,
            optimizer.second_moment_variables,
            optimizer.deviation_variables,
        )
    ):
        expected = _numpy_swag([trajectory[t][index] for t in steps], max_rank)
        np.testing.assert_allclose(to_numpy(average), expected[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(to_numpy(square), expected[1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(to_numpy(ring), expected[2], rtol=1e-4, atol=1e-6)
        assert tuple(ring.shape) == (max_rank,) + tuple(average.shape)


def test_swag_diagonal_keeps_no_deviations_and_refuses_covariance():
    weights = keras.Variable(np.zeros(2, "float32"))
    optimizer = SWAG(keras.optimizers.SGD(1.0), average_period=1, max_rank=0)
    for value in (1.0, -3.0):
        optimizer.apply([tensor([value, value])], [weights])
    assert optimizer.deviation_variables == [None]
    assert optimizer.rank == 0
    with pytest.raises(ValueError, match="needs at least 2 deviations, and 0 are held"):
        optimizer.sample_vars([weights], seed=1)
    optimizer.sample_vars([weights], seed=1, covariance=False)


def _state_from(snapshots, max_rank):
    """A SWAG optimizer whose snapshots are exactly `snapshots` (rows of two
    variables), taken by hand; and the variables."""
    first = keras.Variable(np.zeros(3, "float32"))
    second = keras.Variable(np.zeros(2, "float32"))
    optimizer = SWAG(keras.optimizers.SGD(1.0), start_averaging=None, max_rank=max_rank)
    optimizer.build([first, second])
    for row in snapshots:
        first.assign(row[:3])
        second.assign(row[3:])
        optimizer.take_snapshot()
    return optimizer, first, second


def test_sample_covariance_matches_the_paper_over_many_seeds():
    """The mean and covariance of 1000 joint samples against
    `scale * (diag(max(s - m**2, clamp)) + D^T D / (K - 1))` worked out in
    NumPy from the snapshots, for both variables together (the low-rank part
    couples them)."""
    rng = np.random.default_rng(3)
    snapshots = rng.normal(size=(6, 5)).astype("float32") * np.array([1.0, 0.5, 2.0, 1.0, 0.1], "float32")
    max_rank, scale = 4, 0.5
    optimizer, first, second = _state_from(snapshots, max_rank)

    mean, square, ring = _numpy_swag(list(snapshots), max_rank)
    expected_covariance = scale * (
        np.diag(np.maximum(square - mean**2, 1e-30)) + ring.T @ ring / (max_rank - 1)
    )
    generator = keras.random.SeedGenerator(2024)
    samples = []
    # 1000 draws: the bounds below are then about 0.22 of each entry's
    # scale. The exact formula, 1/sqrt(K - 1) included, is pinned with the
    # same draws by test_swag_reference.py; this checks the distribution.
    for _ in range(1000):
        optimizer.sample_vars([first, second], scale=scale, seed=generator)
        samples.append(np.concatenate([to_numpy(first), to_numpy(second)]))
    samples = np.asarray(samples, "float64")
    sd = np.sqrt(np.diag(expected_covariance))
    # Standard errors of the sample mean and covariance: sd / sqrt(n) and
    # about sd_i * sd_j * sqrt(2 / n); 5 of them is a loose but real bound.
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=float(5 * sd.max() / np.sqrt(1000)))
    error = np.abs(np.cov(samples.T) - expected_covariance)
    assert (error < 5 * np.outer(sd, sd) * np.sqrt(2 / 1000) + 1e-6).all(), error
    # The cross-covariance between the two variables is not zero: one z2.
    assert np.abs(expected_covariance[:3, 3:]).max() > 0.05


def test_the_same_seed_gives_the_same_sample():
    snapshots = np.random.default_rng(4).normal(size=(4, 5)).astype("float32")
    optimizer, first, second = _state_from(snapshots, 3)
    draws = []
    for seed in (5, 5, 6):
        optimizer.sample_vars([first, second], seed=seed)
        draws.append(np.concatenate([to_numpy(first), to_numpy(second)]))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    optimizer.sample_vars([first, second], scale=0.0)
    np.testing.assert_allclose(to_numpy(first), snapshots[:, :3].mean(axis=0), atol=1e-6)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda o, v: o.sample_vars(v, scale=-1.0), ValueError, "`scale`.*-1.0"),
        (lambda o, v: o.sample_vars(v, scale="big"), TypeError, "`scale`.*'big'"),
        (lambda o, v: o.sample_vars(v, seed=-3), ValueError, "`seed`.*-3"),
        (lambda o, v: o.sample_vars(v, seed=1.5), ValueError, "`seed`.*1.5"),
        (lambda o, v: o.sample_vars(v, covariance="yes"), TypeError, "`covariance`.*'yes'"),
        (lambda o, v: o.sample_vars(3), TypeError, "`var_list`"),
    ],
)
def test_bad_sampling_arguments_are_refused_and_change_nothing(call, error, match):
    snapshots = np.random.default_rng(5).normal(size=(3, 5)).astype("float32")
    optimizer, first, second = _state_from(snapshots, 3)
    before = [to_numpy(first).copy(), to_numpy(second).copy()]
    with pytest.raises(error, match=match):
        call(optimizer, [first, second])
    np.testing.assert_array_equal(to_numpy(first), before[0])
    np.testing.assert_array_equal(to_numpy(second), before[1])


def test_sampling_before_any_snapshot_says_so():
    weights = keras.Variable(np.zeros(2, "float32"))
    optimizer = SWAG("sgd", start_averaging=10)
    optimizer.apply([tensor([1.0, 1.0])], [weights])
    with pytest.raises(ValueError, match="no snapshot has been taken yet"):
        optimizer.sample_vars([weights])


@pytest.mark.parametrize(
    "arguments, error, match",
    [
        ({"max_rank": -1}, ValueError, "`max_rank`.*-1"),
        ({"max_rank": 2.5}, ValueError, "`max_rank`.*2.5"),
        ({"max_rank": "20"}, TypeError, "`max_rank`.*'20'"),
        ({"averaging": 0.9}, ValueError, '`averaging` must be "mean".*0.9'),
        ({"var_clamp": -1e-3}, ValueError, "`var_clamp`"),
        ({"var_clamp": None}, TypeError, "`var_clamp`"),
    ],
)
def test_bad_swag_arguments_are_refused(arguments, error, match):
    inner = keras.optimizers.SGD(0.3)
    with pytest.raises(error, match=match):
        SWAG(inner, **arguments)
    assert float(to_numpy(inner.learning_rate)) == pytest.approx(0.3)


def test_memory_is_two_plus_max_rank_copies_of_the_weights():
    model = _model(None)
    inner = keras.optimizers.Adam()
    optimizer = SWAG(inner, max_rank=7)
    optimizer.build(model.trainable_variables)
    weights = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    own = [v for v in optimizer.variables if all(v is not w for w in inner.variables)]
    # Snapshot count, and the unused step counter and learning rate of the base class.
    assert sum(int(np.prod(v.shape)) for v in own) == (2 + 7) * weights + 3


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_save_load_and_resume_bit_identically(jit_compile, tmp_path):
    x, y = _data()

    def build():
        return _model(
            SWAG(keras.optimizers.Adam(0.01), start_averaging=1, average_period=2, max_rank=2),
            jit_compile,
        )

    straight = build()
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    resumed = build()
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    resumed.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    assert isinstance(resumed.optimizer, SWAG) and resumed.optimizer.max_rank == 2
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert resumed.optimizer.snapshot_count == straight.optimizer.snapshot_count == 6
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def _trained_swag_model(batch_norm=False):
    x, y = _data()
    model = _model(
        SWAG(keras.optimizers.SGD(0.1), start_averaging=4, average_period=1, max_rank=4),
        batch_norm=batch_norm,
    )
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, x


def test_swag_predict_with_scale_zero_is_the_swa_model():
    model, x = _trained_swag_model()
    before = [w.copy() for w in model.get_weights()]
    predictions = swag_predict(model, x, num_samples=3, scale=0.0, seed=1)
    with model.optimizer.use_average_vars(model.variables):
        expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_swag_predict_recomputes_batch_norm_and_restores_the_statistics():
    model, x = _trained_swag_model(batch_norm=True)
    before = [w.copy() for w in model.get_weights()]
    predictions = swag_predict(model, x, num_samples=2, scale=0.0, bn_data=x, seed=1)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    # The SWA model with statistics recomputed for it, built independently.
    from kerasswa import update_bn

    model.optimizer.assign_average_vars(model.variables)
    update_bn(model, x)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_swag_predict_restores_the_model_after_an_error():
    model, x = _trained_swag_model(batch_norm=True)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(Exception):
        swag_predict(model, np.ones((4, 7), "float32"), num_samples=2, bn_data=x)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_swag_predict_averages_probabilities_and_shows_progress(capsys):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        optimizer=SWAG(keras.optimizers.SGD(0.5), average_period=1, max_rank=3),
        loss="sparse_categorical_crossentropy",
    )
    x = np.random.default_rng(0).normal(size=(30, 2)).astype("float32")
    model.fit(x, np.arange(30) % 3, batch_size=5, verbose=0)
    probabilities = swag_predict(model, x, num_samples=4, seed=2, verbose=1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert "4/4" in capsys.readouterr().out
    again = swag_predict(model, x, num_samples=4, seed=2)
    np.testing.assert_array_equal(probabilities, again)


@pytest.mark.parametrize(
    "arguments, error, match",
    [
        ({"num_samples": 0}, ValueError, "`num_samples`.*0"),
        ({"batch_size": 2.5}, ValueError, "`batch_size`.*2.5"),
        ({"verbose": 2}, ValueError, "`verbose`.*2"),
        ({"scale": float("inf")}, ValueError, "`scale`.*inf"),
    ],
)
def test_swag_predict_refuses_bad_arguments(arguments, error, match):
    model, x = _trained_swag_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=match):
        swag_predict(model, x, **arguments)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_swag_predict_needs_a_swag_optimizer():
    model = _model(SWA("sgd"))
    with pytest.raises(TypeError, match="swag_predict needs a model compiled with a kerasswa.SWAG"):
        swag_predict(model, np.ones((2, 3), "float32"))
