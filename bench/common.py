"""Shared pieces of the kerasswa benchmarks: environment, statistics, tables
and result files. Each benchmark runs on the Keras backend of its process
(`KERAS_BACKEND`) and writes a JSON file that `report.py` turns into
`RESULTS.md`."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
from typing import Iterable, Optional, Sequence

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def versions() -> dict:
    import keras
    import numpy

    found = {"python": platform.python_version(), "keras": keras.__version__, "numpy": numpy.__version__}
    for name in ("tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = module.__version__
    return found


def synchronize(values=()) -> None:
    """Waits until the device has done the work queued so far. JAX queues
    its work everywhere (this waits for `values`, arrays or variables, and
    what they depend on); PyTorch queues it on a GPU (this waits for the
    whole device); TensorFlow, and PyTorch on the CPU, run an op before
    returning."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        jax.block_until_ready([v.value if isinstance(v, keras.Variable) else v for v in values])
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}


def median_and_spread(values: Sequence[float]) -> tuple:
    """Median and interquartile range."""
    ordered = sorted(values)
    if len(ordered) < 4:
        return statistics.median(ordered), ordered[-1] - ordered[0]
    quartiles = statistics.quantiles(ordered, n=4)
    return statistics.median(ordered), quartiles[2] - quartiles[0]


def mean_sd(values: Sequence[float]) -> tuple:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def load(name: str) -> Optional[dict]:
    """The results file `name` written by `write`, or None if there is none."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write(name: str, payload: dict) -> pathlib.Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    import keras

    command = f"KERAS_BACKEND={keras.config.backend()} python " + " ".join(sys.argv)
    payload = dict(payload, versions=versions(), machine=machine(), command=command)
    path.write_text(json.dumps(payload, indent=1))
    return path
