"""The arithmetic of `bench/kernel_profile.py`: which kernel runs of a
variant's trace count as added to the bare optimizer's, under XLA."""

import pathlib
import sys

import pytest
from conftest import BACKEND

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
if BACKEND == "tensorflow":
    import kernel_profile

pytestmark = pytest.mark.skipif(BACKEND != "tensorflow", reason="the profiler reads TensorFlow's traces")


def test_each_bare_run_takes_the_nearest_run_and_the_rest_is_added():
    leftover = kernel_profile.leftover
    assert leftover([], [1.0, 2.0]) == 3.0
    assert leftover([5.0, 5.0], [5.0, 5.0]) == 0.0
    # Two weight copies in both runs; the variant adds two scalar copies.
    assert leftover([100.0, 100.0], [100.5, 0.25, 99.5, 0.5]) == 0.75
    # The variant adds three weight copies and three small ones.
    assert leftover([100.0, 100.0, 1.0], [100.0] * 5 + [1.0] * 4) == 303.0
    # Nearest in duration, not in order: 2 -> 2, 100 -> 100, 101 -> 101.
    assert leftover([100.0, 101.0, 2.0], [99.0, 100.0, 101.0, 102.0, 3.0, 2.0, 1.5]) == 205.5


def test_renumbered_fusions_add_nothing_and_kinds_are_summed_per_step():
    bare = {"multiply_subtract_fusion.3": [4.0] * 10, "copy.2": [1.0] * 10}
    variant = {
        "multiply_subtract_fusion.7": [4.0] * 10,  # SGD's update, renumbered
        "multiply_subtract_fusion.9": [4.0],  # one snapshot in ten steps
        "copy.26": [1.0] * 10,
        "copy.32": [0.002] * 10,  # a scalar copied on every step
    }
    added = kernel_profile.added_by_kind(variant, bare, steps=10)
    assert added == pytest.approx({"multiply_subtract_fusion": 0.4, "copy": 0.002})
