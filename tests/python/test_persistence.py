"""Config round-trip, `.keras` files, and resuming on the same trajectory."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA


def test_registered_name_and_config_round_trip():
    optimizer = SWA(
        keras.optimizers.Adam(0.003),
        start_averaging=7,
        average_period=3,
        name="my_swa",
        sequential_update=False,
        clipvalue=0.5,
    )
    config = keras.saving.serialize_keras_object(optimizer)
    assert config["registered_name"] == "kerasswa>SWA"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, SWA)
    assert restored.get_config() == optimizer.get_config()
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert float(to_numpy(restored.learning_rate)) == pytest.approx(0.003)
    assert (restored.start_averaging, restored.average_period) == (7, 3)
    assert restored.sequential_update is False and restored.clipvalue == 0.5
    assert restored.name == "my_swa"


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.3 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


def _compiled_model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=SWA(keras.optimizers.Adam(0.01), start_averaging=4, average_period=3),
        loss="mse",
    )
    return model


def test_save_load_continue_equals_uninterrupted(tmp_path):
    x, y = _data()
    uninterrupted = _compiled_model()
    resumed = _compiled_model()
    resumed.set_weights(uninterrupted.get_weights())

    fit = dict(batch_size=8, shuffle=False, verbose=0)
    resumed.fit(x, y, epochs=2, **fit)
    path = tmp_path / "swa.keras"
    resumed.save(path)
    del resumed
    keras.backend.clear_session()

    loaded = keras.models.load_model(path)  # safe mode, no custom_objects
    assert isinstance(loaded.optimizer, SWA)
    assert int(to_numpy(loaded.optimizer.iterations)) == 16
    # Updates 4, 7, 10, 13 were snapshots; 16, 19, ..., 31 follow.
    assert loaded.optimizer.snapshot_count == 4
    loaded.fit(x, y, epochs=2, **fit)
    uninterrupted.fit(x, y, epochs=4, **fit)

    assert loaded.optimizer.snapshot_count == uninterrupted.optimizer.snapshot_count == 10
    for mine, theirs in zip(loaded.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    loaded.optimizer.assign_average_vars(loaded.variables)
    uninterrupted.optimizer.assign_average_vars(uninterrupted.variables)
    for mine, theirs in zip(loaded.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
