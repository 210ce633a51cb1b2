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
from conftest import BACKEND

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


def _compare(reference, distributed):
    reference, distributed = np.load(reference), np.load(distributed)
    # 64 samples, global batch 16, 3 epochs: 12 updates, snapshots at 3, 5, ..., 11.
    assert int(reference["iterations"]) == int(distributed["iterations"]) == 12
    assert int(reference["snapshot_count"]) == int(distributed["snapshot_count"]) == 5
    weights = [k for k in reference.files if k.startswith("arr_")]
    assert weights
    largest = max(float(np.abs(reference[k] - distributed[k]).max()) for k in weights)
    assert largest < 1e-5, largest
    return largest


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute runs on the TensorFlow backend")


@tensorflow_only
def test_mirrored_strategy_equals_single_device(tmp_path):
    single, mirrored = _run("single", tmp_path / "single.npz"), _run("mirrored", tmp_path / "mirrored.npz")
    _finish(single, mirrored)
    _compare(tmp_path / "single.npz", tmp_path / "mirrored.npz")


@tensorflow_only
def test_multi_worker_mirrored_strategy_equals_single_device(tmp_path):
    """Two worker processes on loopback, in a custom loop (Keras 3's `fit`
    does not run under this strategy: keras-team/keras#20585)."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = [_run("single_loop", tmp_path / "single.npz")]
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            _run("multiworker", tmp_path / f"worker{index}.npz", {"TF_CONFIG": json.dumps(config)})
        )
    _finish(*processes)
    for index in range(2):
        _compare(tmp_path / "single.npz", tmp_path / f"worker{index}.npz")


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel runs on the JAX backend")
def test_jax_data_parallel_equals_single_device(tmp_path):
    single = _run("jax_single", tmp_path / "single.npz")
    parallel = _run("jax_data_parallel", tmp_path / "parallel.npz")
    _finish(single, parallel)
    _compare(tmp_path / "single.npz", tmp_path / "parallel.npz")
