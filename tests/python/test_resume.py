"""Crash and resume: a training run killed with SIGKILL in the middle of the
averaging phase, resumed, ends bit-identical to an uninterrupted run."""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "resume_run.py"
TIMEOUT = 180  # seconds for one run; each takes 5 to 15 here


def _run(*arguments):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, arguments)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    finished = _run("uninterrupted", workdir, workdir / "result.npz")
    assert finished.returncode == 0, finished.stderr[-3000:]
    return np.load(workdir / "result.npz")


@pytest.mark.parametrize("mode", ["backup", "checkpoint"])
def test_killed_run_resumes_to_the_uninterrupted_result(mode, uninterrupted, tmp_path):
    output = tmp_path / "result.npz"
    # Killed after batch 4 of epoch 4 (update 28 of 48; snapshots from 12 on).
    killed = _run(mode, tmp_path, output, 3, 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not output.exists()
    resumed = _run(mode, tmp_path, output)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    result = np.load(output)
    assert int(result["iterations"]) == int(uninterrupted["iterations"]) == 48
    # Snapshots at updates 12, 15, ..., 45.
    assert int(result["snapshot_count"]) == int(uninterrupted["snapshot_count"]) == 12
    arrays = [k for k in uninterrupted.files if k.startswith("arr_")]
    assert len(arrays) == len(result.files) - 2
    for key in arrays:
        # Model variables (weights, batch-norm statistics), then the averages:
        # bit for bit on CPU.
        np.testing.assert_array_equal(result[key], uninterrupted[key], err_msg=key)
