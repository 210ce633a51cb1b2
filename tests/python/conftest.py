"""Shared set-up for the kerasswa tests.

Each pytest process runs on one Keras backend, chosen by `KERAS_BACKEND`
(`make test` runs the suite once per backend).
"""

import os
import pathlib
import shutil

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# kerasswa is imported from python/ (pyproject's `pythonpath`), not installed:
# the scripts the tests start in subprocesses need the same path.
_SOURCES = str(pathlib.Path(__file__).resolve().parents[2] / "python")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_SOURCES, os.environ.get("PYTHONPATH")) if p
)
# Hypothesis keeps its files (the example database is off, but not all of
# them) under .cache/, not in a .hypothesis/ folder wherever pytest started.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY",
    str(pathlib.Path(__file__).resolve().parents[2] / ".cache" / "hypothesis"),
)
# torch.compile's cache too, which would otherwise stay in the temporary
# folder (torchinductor_<user>) after the run; its precompiled headers go
# there whatever this says (see `_torch_compile_leaves_no_files`).
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    str(pathlib.Path(__file__).resolve().parents[2] / ".cache" / "torchinductor"),
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.config.backend()
# (major, minor), for the few tests of what older Keras lacks.
KERAS_VERSION = tuple(int(part) for part in keras.__version__.split(".")[:2])

# `jit_compile` settings to test a feature under. On PyTorch `jit_compile=True`
# is `torch.compile`, which takes 10-30 s per model here: test_training.py
# covers it, feature tests run eagerly.
JIT_MODES = [False] if BACKEND == "torch" else [False, True]


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {BACKEND}, numpy {np.__version__}"


def to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def tensor(values, dtype="float32"):
    """A backend tensor (the torch backend refuses NumPy gradients)."""
    return keras.ops.convert_to_tensor(np.asarray(values, dtype=dtype))


@pytest.fixture(scope="session", autouse=True)
def _torch_compile_leaves_no_files():
    """Removes the folder that torch.compile makes in the temporary folder
    for its precompiled headers (`torch._inductor.codecache._HEADER_DIR`,
    not moved by TORCHINDUCTOR_CACHE_DIR), when this session made it."""
    if BACKEND != "torch":
        yield
        return
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = pathlib.Path(default_cache_dir())
    made_here = not folder.exists()
    yield
    if made_here:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Without the garbage collection that clear_session() runs by default:
    # with TensorFlow loaded it takes 0.3-0.5 s, a quarter of the suite's time
    # (Python's own collector still runs).
    keras.backend.clear_session(free_memory=False)
