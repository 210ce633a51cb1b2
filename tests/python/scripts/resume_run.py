"""Trains with SWA, possibly killing itself mid-way, and writes the result.

    python resume_run.py MODE WORKDIR OUTPUT [KILL_EPOCH KILL_BATCH]

MODE is `uninterrupted` (the reference), `backup` (with
keras.callbacks.BackupAndRestore in WORKDIR), `checkpoint` (a `.keras` file
saved by ModelCheckpoint after every epoch, loaded with load_model on the
next start) or `both` (a fresh run that leaves both behind, for one killed
run that each of the other two modes resumes). With KILL_EPOCH and
KILL_BATCH (0-based), the process sends itself SIGKILL after that batch, the
first time only (a marker file in WORKDIR remembers). The backend comes from KERAS_BACKEND.
"""

import glob
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasswa import SWA  # noqa: E402

MODES = ("uninterrupted", "backup", "checkpoint", "both")
EPOCHS = 6  # of 8 updates each: 48 updates, snapshots at 12, 15, ..., 45


class KillOnce(keras.callbacks.Callback):
    def __init__(self, epoch, batch, marker):
        super().__init__()
        self.kill_epoch, self.kill_batch, self.marker = epoch, batch, marker
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (self.kill_epoch, self.kill_batch) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def data():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


def new_model():
    keras.utils.set_random_seed(11)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(1),
        ]
    )
    optimizer = SWA(keras.optimizers.Adam(0.01), start_averaging=12, average_period=3)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def main(mode, workdir, output, kill=None):
    x, y = data()
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}")
    saved = sorted(glob.glob(os.path.join(workdir, "epoch-*.keras"))) if mode == "checkpoint" else []
    if saved:
        model = keras.models.load_model(saved[-1])  # safe mode, no custom_objects
        initial_epoch = int(saved[-1][-8:-6])
    else:
        model, initial_epoch = new_model(), 0
    callbacks = []
    if mode in ("backup", "both"):
        callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")))
    if mode in ("checkpoint", "both"):
        callbacks.append(keras.callbacks.ModelCheckpoint(os.path.join(workdir, "epoch-{epoch:02d}.keras")))
    if kill is not None:
        callbacks.append(KillOnce(*kill, marker=os.path.join(workdir, "killed")))

    model.fit(
        x, y, batch_size=8, epochs=EPOCHS, initial_epoch=initial_epoch,
        shuffle=False, verbose=0, callbacks=callbacks,
    )
    optimizer = model.optimizer
    np.savez(
        output,
        snapshot_count=optimizer.snapshot_count,
        iterations=int(keras.ops.convert_to_numpy(optimizer.iterations)),
        *[keras.ops.convert_to_numpy(v) for v in model.variables],
        *[keras.ops.convert_to_numpy(a) for a in optimizer.average_variables],
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(*arguments[:3], kill=tuple(int(a) for a in arguments[3:5]) or None)
