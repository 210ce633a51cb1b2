"""Mixed precision: averages in the variables' float32, and steps that the
LossScaleOptimizer skips are no snapshots."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


def _data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    return x, y


def _fit(x, y, initial_scale=None):
    """SWA averaging every update. `initial_scale`: wrap it in a
    LossScaleOptimizer ourselves; `None`: let `compile` do it (under
    mixed_float16, with Keras's initial scale 2**15)."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    swa = SWA(keras.optimizers.SGD(0.02), start_averaging=0, average_period=1)
    optimizer = swa
    if initial_scale is not None:
        optimizer = keras.optimizers.LossScaleOptimizer(swa, initial_scale=initial_scale)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    return model, swa


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_averages_are_kept_in_float32(policy):
    model, swa = _fit(*_data())
    assert model.layers[0].compute_dtype in ("float16", "bfloat16")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is swa
    # Keras's first loss scale (2**15) overflows float16, so LossScaleOptimizer
    # may skip early steps; every real update is a snapshot here.
    updates = int(to_numpy(swa.iterations))
    assert 1 <= updates <= 4 and swa.snapshot_count == updates
    assert {str(a.dtype) for a in swa.average_variables} == {"float32"}
    assert {str(w.dtype) for w in model.trainable_variables} == {"float32"}


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_step_skipped_for_non_finite_gradients_is_not_a_snapshot(policy):
    x, y = _data()
    poisoned = y.copy()
    poisoned[8:16] = np.inf  # the second of four batches
    # A scale of 1 so that only the poisoned batch is skipped.
    model, swa = _fit(x, poisoned, initial_scale=1.0)
    # Three real updates, three snapshots: the skipped step counts for nothing.
    assert int(to_numpy(swa.iterations)) == 3
    assert swa.snapshot_count == 3

    keep = np.r_[0:8, 16:32]
    reference, reference_swa = _fit(x[keep], y[keep], initial_scale=1.0)
    for mine, theirs in zip(swa.average_variables, reference_swa.average_variables):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
    for mine, theirs in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
