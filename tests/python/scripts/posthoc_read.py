"""Rebuilds a power EMA from a folder of post-hoc EMA saves, in a process of
its own, as a second process (evaluation beside training) would:

    python posthoc_read.py FOLDER SIGMA_REL OUTPUT

The model is built anew with the architecture of tests/python/test_posthoc_ema.py
(`new_model`); OUTPUT (.npz) receives the relative error and the weights.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasswa import posthoc_ema  # noqa: E402


def new_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])


def main(folder, sigma_rel, output):
    model = new_model()
    error = posthoc_ema(model, folder, sigma_rel=float(sigma_rel))
    np.savez(output, error=error, *model.get_weights())


if __name__ == "__main__":
    main(*sys.argv[1:4])
