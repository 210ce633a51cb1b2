"""The backend kernels of a snapshot (`kerasswa._kernels`) against the
`keras.ops` reference: bit for bit on JAX; on TensorFlow, where XLA compiles
the rule even in a step that runs TensorFlow's kernels, and on PyTorch, to 2
units in the last place (XLA contracts `avg + f * (w - avg)` into a fused
multiply-add, which rounds once; PyTorch's `lerp` computes
`w - (1 - f) * (w - avg)` when `f >= 0.5`; both compute SWAG's mean of
squares as `m * (1 - f) + (f * w) * w`, the reference as
`m + (w * w - m) * f`). Those units are of the largest value the optimizer holds: the scale is that of
the whole state, not of each array, because a SWAG deviation `w - avg` inherits
the rounding of the average it is taken from, which can be far larger than the
deviation itself."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, to_numpy

from kerasswa import SWA, SWAG, _kernels

OPTIMIZERS = {
    "mean": lambda **kw: SWA(keras.optimizers.SGD(0.1), **kw),
    "moving average": lambda **kw: SWA(keras.optimizers.SGD(0.1), averaging=0.3, **kw),
    "swag": lambda **kw: SWAG(keras.optimizers.SGD(0.1), max_rank=3, **kw),
}


def _assert_same(fused, reference):
    scale = max(float(np.abs(b).max()) for b in reference if b.size and b.dtype.kind == "f")
    for a, b in zip(fused, reference):
        ulps = {"torch": 2, "tensorflow": 2}.get(BACKEND, 0)
        np.testing.assert_allclose(a, b, rtol=0, atol=ulps * np.spacing(np.float32(scale)))


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_snapshots_taken_in_place_match_the_reference(kind, monkeypatch):
    def run(fused):
        monkeypatch.setattr(_kernels, "FUSED", fused)
        weights = [
            keras.Variable(np.zeros((3, 4), "float32")),
            keras.Variable(np.zeros(5, "float32")),
        ]
        optimizer = OPTIMIZERS[kind](start_averaging=None)
        optimizer.build(weights)
        rng = np.random.default_rng(0)
        for _ in range(7):  # the SWAG ring wraps twice
            for weight in weights:
                weight.assign(rng.normal(size=weight.shape).astype("float32"))
            optimizer.take_snapshot()
        return [to_numpy(v).copy() for v in optimizer.variables]

    fused, reference = run(True), run(False)
    assert len(fused) == len(reference)
    _assert_same(fused, reference)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@pytest.mark.parametrize("jit_compile", [False, True] if BACKEND != "torch" else [False])
def test_snapshots_in_fit_match_the_reference(kind, jit_compile, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = x @ np.array([[1.0], [2.0], [-1.0]], "float32")

    def run(fused):
        monkeypatch.setattr(_kernels, "FUSED", fused)
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        optimizer = OPTIMIZERS[kind](start_averaging=1, average_period=2)
        model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        assert optimizer.snapshot_count == 10
        return [to_numpy(v).copy() for v in optimizer.variables]

    _assert_same(run(True), run(False))
