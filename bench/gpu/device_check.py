"""Which device Keras puts its variables on, and a pytest plugin that stops a
test run on the wrong one.

The test suite's conftest.py hides the GPUs unless `CUDA_VISIBLE_DEVICES` is
set before it runs; bench/gpu/run.sh sets it. Loaded with `-p device_check`
(bench/gpu on `PYTHONPATH`), this plugin adds the device to pytest's header
and, when `KERASSWA_EXPECT_DEVICE` is "gpu" (or "cpu"), exits the session
before any test runs if a Keras variable is not on such a device: a GPU
check that quietly ran on the CPU would report nothing about the GPU.
"""

from __future__ import annotations

import os


def describe() -> dict:
    """The device of a new Keras variable on this process's backend:
    {"backend", "kind" ("gpu" or "cpu"), "name"}."""
    import keras
    import numpy as np

    backend = keras.config.backend()
    value = keras.Variable(np.zeros(2, "float32")).value
    if backend == "jax":
        (device,) = value.devices()
        kind = "gpu" if device.platform in ("gpu", "cuda", "rocm") else device.platform
        name = getattr(device, "device_kind", str(device))
    elif backend == "torch":
        import torch

        kind = "gpu" if value.device.type == "cuda" else value.device.type
        name = torch.cuda.get_device_name(value.device) if kind == "gpu" else value.device.type
    else:  # TensorFlow names the device in a string: ".../device:GPU:0"
        kind = "gpu" if "GPU" in value.device.upper() else "cpu"
        name = value.device
    return {"backend": backend, "kind": kind, "name": name}


def require(expected: str | None) -> dict:
    """`describe()`, or SystemExit with a message when the device is not of
    the `expected` kind ("gpu" or "cpu"; None or "" checks nothing)."""
    found = describe()
    if expected and found["kind"] != expected:
        raise SystemExit(
            f"device check failed: KERASSWA_EXPECT_DEVICE={expected!r}, but Keras ({found['backend']}) puts "
            f"its variables on {found['kind']} ({found['name']}); CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
        )
    return found


def pytest_report_header(config):
    found = describe()
    return f"device: {found['kind']} ({found['name']}), backend {found['backend']}"


def pytest_sessionstart(session):
    import pytest

    try:
        require(os.environ.get("KERASSWA_EXPECT_DEVICE"))
    except SystemExit as stop:
        pytest.exit(str(stop), returncode=3)
