"""Distributed training gives the averages of a single-device run.

Each run is a separate process (device layouts are fixed when a backend
starts); each test runs only in the pytest process of its backend.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import BACKEND, KERAS_VERSION

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "distributed_run.py"
TIMEOUT = 180  # seconds for one run; each takes about 10 here


def _run(mode, output, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("KERAS_BACKEND", None)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(*processes):
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]


# 64 samples, global batch 16, 3 epochs: 12 updates. Automatic snapshots at
# 3, 5, ..., 11; manual ones at the 3 epoch ends.
SNAPSHOTS = {"swa": 5, "ema": 5, "manual": 3, "swag": 5}


def _compare(reference, distributed):
    """Every variant's counts, averaged weights and optimizer variables
    (averages, SWAG's moments and deviations) equal the single-device run's."""
    reference, distributed = np.load(reference), np.load(distributed)
    for variant, snapshots in SNAPSHOTS.items():
        assert int(reference[f"{variant}/iterations"]) == 12
        assert int(distributed[f"{variant}/iterations"]) == 12
        assert int(reference[f"{variant}/snapshot_count"]) == snapshots
        assert int(distributed[f"{variant}/snapshot_count"]) == snapshots
    arrays = [k for k in reference.files if "/weight" in k or "/optimizer/" in k]
    deviations = [p for p in reference["swag/optimizer_paths"] if p.endswith("swag_deviations")]
    assert len(deviations) == 4
    assert sorted(arrays) == sorted(k for k in distributed.files if "/weight" in k or "/optimizer/" in k)
    largest = max(float(np.abs(reference[k] - distributed[k]).max()) for k in arrays)
    assert largest < 1e-5, largest
    return largest


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute runs on the TensorFlow backend")


@pytest.fixture(scope="module")
def tf_single(tmp_path_factory):
    """The single-device TensorFlow run both TensorFlow tests compare with:
    `fit`. (A custom loop on one device, the script's `single_loop`, gives
    the same numbers bit for bit: measured, 0.0 apart.)"""
    output = tmp_path_factory.mktemp("tf-single") / "single.npz"
    _finish(_run("single", output))
    return output


@tensorflow_only
def test_mirrored_strategy_equals_single_device(tf_single, tmp_path):
    _finish(_run("mirrored", tmp_path / "mirrored.npz"))
    _compare(tf_single, tmp_path / "mirrored.npz")


@tensorflow_only
def test_multi_worker_mirrored_strategy_equals_single_device(tf_single, tmp_path):
    """Two worker processes on loopback, in a custom loop (Keras 3's `fit`
    does not run under this strategy: keras-team/keras#20585)."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            _run("multiworker", tmp_path / f"worker{index}.npz", {"TF_CONFIG": json.dumps(config)})
        )
    _finish(*processes)
    for index in range(2):
        _compare(tf_single, tmp_path / f"worker{index}.npz")


@pytest.fixture(scope="module")
def jax_single(tmp_path_factory):
    """The single-device JAX run both JAX tests compare with."""
    output = tmp_path_factory.mktemp("jax-single") / "single.npz"
    _finish(_run("jax_single", output))
    return output


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel runs on the JAX backend")
def test_jax_data_parallel_equals_single_device(jax_single, tmp_path):
    _finish(_run("jax_data_parallel", tmp_path / "parallel.npz"))
    _compare(jax_single, tmp_path / "parallel.npz")


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.ModelParallel runs on the JAX backend")
def test_jax_model_parallel_shards_the_averages_like_their_weights(jax_single, tmp_path):
    _finish(_run("jax_model_parallel", tmp_path / "parallel.npz"))
    _compare(jax_single, tmp_path / "parallel.npz")
    if KERAS_VERSION < (3, 10):
        pytest.skip(
            "the same averages, not sharded: Keras < 3.10 gives an optimizer "
            "variable no layout of its weight (`add_variable` takes none)"
        )
    shardings = np.load(tmp_path / "parallel.npz")
    # The hidden kernel (4, 4) is split on its last axis; SWAG's deviations
    # (3, 4, 4) on their last axis too, with the rank axis whole.
    kernel = "sharding/hidden/kernel"
    assert str(shardings[kernel]) == "(None, 'model')"
    assert str(shardings[f"{kernel}/average"]) == "(None, 'model')"
    assert str(shardings[f"{kernel}/second_moment"]) == "(None, 'model')"
    assert str(shardings[f"{kernel}/deviations"]) == "(None, None, 'model')"
    # Replicated, as its weight is (JAX 0.4.30 writes that spec as `()`).
    assert str(shardings["sharding/out/kernel/deviations"]) in ("(None, None, None)", "()")
