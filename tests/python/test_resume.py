"""Crash and resume: a training run killed with SIGKILL in the middle of the
averaging phase, resumed, ends bit-identical to an uninterrupted run."""

import os
import pathlib
import shutil
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


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One run with both BackupAndRestore and ModelCheckpoint, killed after
    batch 4 of epoch 4 (update 28 of 48; snapshots from 12 on): what each
    mode resumes from, in a copy of its own."""
    workdir = tmp_path_factory.mktemp("killed")
    output = workdir / "result.npz"
    run = _run("both", workdir, output, 3, 4)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert not output.exists()
    assert (workdir / "backup").is_dir() and (workdir / "epoch-03.keras").is_file()
    return workdir


@pytest.mark.parametrize("mode", ["backup", "checkpoint"])
def test_killed_run_resumes_to_the_uninterrupted_result(mode, uninterrupted, killed, tmp_path):
    shutil.copytree(killed, tmp_path, dirs_exist_ok=True)
    output = tmp_path / "result.npz"
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
