"""Smoke test of an installed kerasswa (make dist): import it, train a linear
model with SWA for 16 updates (6 snapshots), keep the averages, save and load."""

import os
import tempfile

import keras
import numpy as np

import kerasswa

assert kerasswa.__file__.find("site-packages") >= 0, kerasswa.__file__
rng = np.random.default_rng(0)
x = rng.uniform(size=(64, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [3.0], [0.5]], "float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
optimizer = kerasswa.SWA(keras.optimizers.SGD(0.05), start_averaging=4, average_period=2)
model.compile(optimizer=optimizer, loss="mse")
model.fit(x, y, batch_size=8, epochs=2, verbose=0)
assert optimizer.snapshot_count == 6, optimizer.snapshot_count
optimizer.assign_average_vars(model.trainable_variables)
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
assert isinstance(restored.optimizer, kerasswa.SWA)
np.testing.assert_array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))
print(f"kerasswa {kerasswa.__version__} from {os.path.dirname(kerasswa.__file__)}: "
      f"{optimizer.snapshot_count} snapshots on {keras.backend.backend()}, saved and loaded")
