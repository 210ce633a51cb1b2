"""What every Keras 3 optimizer promises, held to by SWA and SWAG.

Keras's documentation and its optimizers' behaviour make promises that code
written for any optimizer relies on: a fresh optimizer gets a name of its own
(so that two fit in one model), a callable learning rate is called with no
argument, `exclude_from_weight_decay` reaches the weight decay, the values of
`optimizer.variables` given to `set_weights` restore the optimizer, variables
marked `overwrite_with_gradient` take their gradient, and optimizers wrap one
another (`LossScaleOptimizer` on either side, gradient accumulation inside).
Each test below states one of them for the wrappers, with the numbers worked
out by hand or taken from the bare Keras optimizer the wrapper must match.
"""

import math

import keras
import numpy as np
import pytest
from conftest import BACKEND, JIT_MODES, tensor, to_numpy
from keras import ops

from kerasswa import SWA, SWAG

KINDS = [SWA, SWAG]


def _kind_id(kind):
    return kind.__name__


# -- names ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_fresh_optimizers_get_names_of_their_own(kind):
    first, second = kind("sgd"), kind("sgd")
    stem = kind.__name__.lower()
    assert first.name != second.name
    for optimizer in (first, second):
        assert optimizer.name == stem or optimizer.name.startswith(stem + "_")
    assert first.iterations is not second.iterations
    assert kind("sgd", name="mine").name == "mine"
    # A name given, or saved in a config, is kept as it is.
    assert kind.from_config(first.get_config()).name == first.name


# Keras 3.8 names every fresh Adam "adam", so two bare Adams clash in one
# model's variable map; later versions number them. There the inner
# optimizers are named by hand, as Keras 3.8 asks of any two optimizers.
_KERAS_NUMBERS_OPTIMIZERS = keras.optimizers.Adam().name != keras.optimizers.Adam().name


class _TwoOptimizerModel(keras.Model):
    """A GAN's shape: two sub-models, each with its own optimizer."""

    def __init__(self, kind, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        self.discriminator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        g_name, d_name = (None, None) if _KERAS_NUMBERS_OPTIMIZERS else ("g_adam", "d_adam")
        self.g_optimizer = kind(keras.optimizers.Adam(0.1, name=g_name), average_period=1)
        self.d_optimizer = kind(keras.optimizers.Adam(0.1, name=d_name), average_period=1)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def call(self, x):
        return self.discriminator(self.generator(x))


def _train_a_little(gan):
    for step in range(2):
        for part, optimizer in ((gan.generator, gan.g_optimizer), (gan.discriminator, gan.d_optimizer)):
            grads = [ops.full(v.shape, 0.1 * (step + 1)) for v in part.trainable_variables]
            optimizer.apply(grads, part.trainable_variables)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_two_optimizers_in_one_model_save_and_load(kind, tmp_path):
    gan = _TwoOptimizerModel(kind)
    gan(np.zeros((1, 2), "float32"))
    _train_a_little(gan)
    # Keras's map of a model's state by variable path: every path once.
    paths = gan._get_variable_map()
    assert f"{gan.g_optimizer.name}/iteration" in paths
    assert f"{gan.d_optimizer.name}/iteration" in paths

    path = tmp_path / "gan.weights.h5"
    gan.save_weights(path)
    restored = _TwoOptimizerModel(kind)
    restored(np.zeros((1, 2), "float32"))
    restored.load_weights(path)
    for mine, theirs in ((restored.g_optimizer, gan.g_optimizer), (restored.d_optimizer, gan.d_optimizer)):
        assert mine.snapshot_count == 2 and mine.update_count == 2
        for a, b in zip(mine.variables, theirs.variables):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


# -- learning rates ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_a_callable_learning_rate_is_called_with_no_argument(kind):
    calls = []

    def rate():
        calls.append(None)
        return 0.5

    weights = keras.Variable(np.ones(2, "float32"))
    optimizer = kind(keras.optimizers.SGD(0.01), learning_rate=rate)
    optimizer.apply([tensor([0.1, 0.2])], [weights])
    np.testing.assert_allclose(to_numpy(weights), [0.95, 0.9], rtol=1e-6)  # 1 - 0.5 * g
    assert calls
    # Arguments with defaults need nothing from the call.
    kind("sgd", learning_rate=lambda step=0, *rest: 0.5)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
@pytest.mark.parametrize("argument", ["learning_rate", "lr"])
def test_a_callable_learning_rate_that_needs_the_step_is_refused(kind, argument):
    inner = keras.optimizers.SGD(0.01)
    with pytest.raises(TypeError, match=rf"`{argument}` .*step.*LearningRateSchedule"):
        kind(inner, **{argument: lambda step: 0.1 * 0.5 ** step})
    np.testing.assert_allclose(to_numpy(inner.learning_rate), 0.01)


class _GrowingRate(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.1 * (ops.cast(step, "float32") + 1.0)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_a_learning_rate_schedule_is_called_with_the_step(kind):
    weights = keras.Variable(np.ones(1, "float32"))
    optimizer = kind(keras.optimizers.SGD(0.01), learning_rate=_GrowingRate())
    for _ in range(2):
        optimizer.apply([tensor([1.0])], [weights])
    np.testing.assert_allclose(to_numpy(weights), [0.7], rtol=1e-6)  # 1 - 0.1 - 0.2


# -- weight decay --------------------------------------------------------------


def _decay_once(optimizer, how):
    """One update with zero gradients of a variable excluded from weight
    decay and of one that is not; returns both."""
    excluded = keras.Variable(np.full(2, 2.0, "float32"), name="excluded")
    decayed = keras.Variable(np.full(2, 2.0, "float32"), name="decayed")
    if how == "var_list":
        optimizer.exclude_from_weight_decay(var_list=[excluded])
    else:
        optimizer.exclude_from_weight_decay(var_names=["excluded"])
    optimizer.apply([ops.zeros(2), ops.zeros(2)], [excluded, decayed])
    return to_numpy(excluded), to_numpy(decayed)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
@pytest.mark.parametrize("how", ["var_list", "var_names"])
@pytest.mark.parametrize("loss_scale", [False, True], ids=["plain", "loss_scale"])
def test_exclude_from_weight_decay_reaches_the_inner_optimizer(kind, how, loss_scale):
    # (Not every variable is excluded: Keras's own PyTorch SGD fails then.)
    def inner():
        sgd = keras.optimizers.SGD(1.0, weight_decay=0.004)
        return keras.optimizers.LossScaleOptimizer(sgd) if loss_scale else sgd

    excluded, decayed = _decay_once(kind(inner(), average_period=1), how)
    np.testing.assert_array_equal(excluded, [2.0, 2.0])
    np.testing.assert_allclose(decayed, [1.992, 1.992], rtol=1e-6)  # 2 - 2 * 0.004 * 1.0
    bare_excluded, bare_decayed = _decay_once(keras.optimizers.SGD(1.0, weight_decay=0.004), how)
    np.testing.assert_array_equal(excluded, bare_excluded)
    np.testing.assert_array_equal(decayed, bare_decayed)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_exclude_from_weight_decay_after_build_is_refused(kind):
    weights = keras.Variable(np.ones(2, "float32"))
    optimizer = kind(keras.optimizers.SGD(1.0, weight_decay=0.004))
    optimizer.build([weights])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_list=[weights])


# -- set_weights -----------------------------------------------------------


def _values(optimizer):
    return [to_numpy(v).copy() for v in optimizer.variables]


def _steps(optimizer, weights, grads):
    for grad in grads:
        optimizer.apply([tensor(grad)], [weights])


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_set_weights_with_the_values_of_variables_restores_the_whole_state(kind):
    weights = keras.Variable(np.array([1.0, 2.0], "float32"))
    trained = kind(keras.optimizers.Adam(0.1), average_period=2)
    _steps(trained, weights, [[0.5, -1.0], [1.5, 0.2], [-0.3, 0.7]])

    copy_weights = keras.Variable(to_numpy(weights).copy())
    fresh = kind(keras.optimizers.Adam(0.1), average_period=2)
    fresh.build([copy_weights])
    fresh.set_weights(_values(trained))
    for mine, theirs in zip(_values(fresh), _values(trained)):
        np.testing.assert_array_equal(mine, theirs)

    # Both go on alike: the same weights, averages and moments, bit for bit.
    later = [[0.1, 0.1], [-2.0, 0.4], [0.3, -0.3], [1.0, 1.0]]
    _steps(trained, weights, later)
    _steps(fresh, copy_weights, later)
    np.testing.assert_array_equal(to_numpy(copy_weights), to_numpy(weights))
    for mine, theirs in zip(_values(fresh), _values(trained)):
        np.testing.assert_array_equal(mine, theirs)
    assert fresh.snapshot_count == trained.snapshot_count == 4  # updates 0, 2, 4, 6


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_set_weights_refuses_a_wrong_list_and_changes_nothing(kind):
    weights = keras.Variable(np.ones(2, "float32"))
    optimizer = kind(keras.optimizers.Adam(0.1), average_period=1)
    with pytest.raises(ValueError, match="needs a built optimizer"):
        optimizer.set_weights([])
    _steps(optimizer, weights, [[0.5, 0.5]])
    before = _values(optimizer)
    own = len(optimizer._variables)

    changed = [value + 1 for value in before]
    with pytest.raises(ValueError, match=rf"{len(before)} \({own} of .* Received {own} values"):
        optimizer.set_weights(changed[:own])  # the wrapper's own only
    index = [v is optimizer.average_variables[0] for v in optimizer.variables].index(True)
    wrong_shape = changed[:index] + [np.zeros((3,), "float32")] + changed[index + 1 :]
    with pytest.raises(ValueError, match=r"shape \(3,\) .* of shape \(2,\)"):
        optimizer.set_weights(wrong_shape)
    for now, then in zip(_values(optimizer), before):
        np.testing.assert_array_equal(now, then)


# -- overwrite_with_gradient -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_a_step_that_averages_no_variable(kind):
    scale, probe = keras.Variable(np.ones(2, "float32")), keras.Variable(np.ones(2, "float32"))
    scale.overwrite_with_gradient = probe.overwrite_with_gradient = True
    try:
        keras.optimizers.SGD(1.0).apply([tensor([1.0, -1.0])], [probe])
    except ValueError as error:  # Keras 3.8: "No gradients provided for any variable."
        pytest.skip(f"Keras {keras.__version__}'s own SGD refuses such a step: {error}")
    optimizer = kind(keras.optimizers.SGD(1.0), average_period=1)
    for value in (3.0, 5.0):
        optimizer.apply([tensor([value, -value])], [scale])
    np.testing.assert_array_equal(to_numpy(scale), [5.0, -5.0])
    assert optimizer.average_variables == [None]
    assert optimizer.update_count == 2 and optimizer.snapshot_count == 2


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
def test_overwritten_variables_beside_averaged_ones(kind):
    weights = keras.Variable(np.ones(2, "float32"))
    scale = keras.Variable(np.zeros((), "float32"))
    scale.overwrite_with_gradient = True
    optimizer = kind(keras.optimizers.SGD(1.0), average_period=1)
    for value in (3.0, 5.0, 7.0):
        optimizer.apply([ops.full((2,), 0.1), tensor(value)], [weights, scale])
    np.testing.assert_allclose(to_numpy(weights), [0.7, 0.7], rtol=1e-6)
    assert float(to_numpy(scale)) == 7.0
    average, none = optimizer.average_variables
    assert none is None
    np.testing.assert_allclose(to_numpy(average), [0.8, 0.8], rtol=1e-6)  # mean(0.9, 0.8, 0.7)
    if kind is SWAG:
        second = optimizer.second_moment_variables[0]
        np.testing.assert_allclose(to_numpy(second), [(0.81 + 0.64 + 0.49) / 3] * 2, rtol=1e-6)


class _DenseWithAmax(keras.layers.Layer):
    """A dense layer beside a float8-style statistic that takes its
    gradient as its value."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 1), initializer="ones")
        self.amax = self.add_weight(shape=(), initializer="zeros")
        self.amax.overwrite_with_gradient = True

    def call(self, x):
        return ops.matmul(x, self.kernel) + self.amax


def _data(n=16):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")


class _Trajectory(keras.callbacks.Callback):
    """The weights after each batch (of models whose every weight is
    trainable: `get_weights`, which JAX's trainer syncs, holds them all)."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append([w.copy() for w in self.model.get_weights()])


def _fit(layers, optimizer, jit_compile, x, y, run_eagerly=False):
    """Fits a fresh model of `layers` (a function making them) with batches
    of 4, unshuffled; returns the model and each batch's trainable values."""
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((x.shape[1],))] + layers())
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile, run_eagerly=run_eagerly)
    trajectory = _Trajectory()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0, callbacks=[trajectory])
    return model, trajectory.values


def _assert_swa_of(swa, model, reference_model, reference_steps):
    """The model's weights are the reference's, and its averages the mean of
    the reference's weights after each of `reference_steps`."""
    for mine, theirs in zip(model.trainable_variables, reference_model.trainable_variables):
        np.testing.assert_allclose(to_numpy(mine), to_numpy(theirs), rtol=1e-6, atol=1e-7)
    for index, average in enumerate(swa.average_variables):
        if average is None:
            continue
        expected = np.mean([step[index] for step in reference_steps], axis=0)
        np.testing.assert_allclose(to_numpy(average), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_overwritten_variables_in_fit(kind, jit_compile):
    x, y = _data()
    reference, steps = _fit(lambda: [_DenseWithAmax()], keras.optimizers.SGD(0.05), jit_compile, x, y)
    swa = kind(keras.optimizers.SGD(0.05), average_period=1)
    model, _ = _fit(lambda: [_DenseWithAmax()], swa, jit_compile, x, y)
    assert swa.snapshot_count == 4
    assert swa.average_variables[1] is None  # the amax
    _assert_swa_of(swa, model, reference, steps)


# -- wrappers inside and around ----------------------------------------------


def _dense():
    return [keras.layers.Dense(1, kernel_initializer="ones")]


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
@pytest.mark.parametrize("order", ["swa_outside", "swa_inside"])
@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_loss_scale_optimizer_on_either_side(kind, order, jit_compile):
    # A loss scale of 2**15 is exact in float32: the updates are SGD's own.
    x, y = _data()
    reference, steps = _fit(_dense, keras.optimizers.SGD(0.05), jit_compile, x, y)
    if order == "swa_outside":
        swa = kind(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)), average_period=1)
        optimizer = swa
    else:
        swa = kind(keras.optimizers.SGD(0.05), average_period=1)
        optimizer = keras.optimizers.LossScaleOptimizer(swa)
    model, _ = _fit(_dense, optimizer, jit_compile, x, y)
    assert swa.update_count == swa.snapshot_count == 4
    _assert_swa_of(swa, model, reference, steps)


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_a_step_that_an_inner_loss_scale_optimizer_skips_is_no_snapshot(jit_compile):
    x, y = _data()
    poisoned = y.copy()
    poisoned[4:8] = np.inf  # the second of four batches
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), initial_scale=1.0)
    swa = SWA(inner, average_period=1)
    model, _ = _fit(_dense, swa, jit_compile, x, poisoned)
    assert swa.update_count == swa.snapshot_count == 3
    assert float(to_numpy(inner.dynamic_scale)) == 0.5  # halved once
    keep = np.r_[0:4, 8:16]
    reference, steps = _fit(_dense, keras.optimizers.SGD(0.05), jit_compile, x[keep], y[keep])
    _assert_swa_of(swa, model, reference, steps)


@pytest.fixture
def mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("kind", KINDS, ids=_kind_id)
@pytest.mark.parametrize("mode", ["jit_compile=False", "run_eagerly=True"])
def test_the_loss_scale_optimizer_that_compile_adds_without_xla(kind, mode, mixed_float16):
    x, y = _data()
    swa = kind(keras.optimizers.SGD(0.1), average_period=1)
    model, _ = _fit(_dense, swa, False, x, y, run_eagerly=mode == "run_eagerly=True")
    assert model.optimizer.inner_optimizer is swa
    # Keras's first loss scale, 2**15, may overflow float16: each step it
    # skips halves the scale. The other steps are updates, each a snapshot.
    skipped = math.log2(2.0**15 / float(to_numpy(model.optimizer.dynamic_scale)))
    assert swa.update_count + skipped == 4
    assert swa.snapshot_count == swa.update_count >= 1
    for average in swa.average_variables:
        assert str(average.dtype) == "float32" and np.isfinite(to_numpy(average)).all()


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_gradient_accumulation_inside(jit_compile):
    x, y = _data()
    reference, steps = _fit(
        _dense, keras.optimizers.SGD(0.05, gradient_accumulation_steps=2), jit_compile, x, y
    )
    swa = SWA(keras.optimizers.SGD(0.05, gradient_accumulation_steps=2), average_period=1)
    model, _ = _fit(_dense, swa, jit_compile, x, y)
    # Four batches, two real updates (after batches 2 and 4), each a snapshot.
    assert swa.update_count == swa.snapshot_count == 2
    _assert_swa_of(swa, model, reference, steps[1::2])
