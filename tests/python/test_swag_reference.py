"""SWAG's samples against an independent NumPy re-implementation of the
paper, given the same normal draws.

The reference follows Maddox et al. 2019 ("A Simple Baseline for Bayesian
Uncertainty in Deep Learning") as written there, not kerasswa's code: all
weights flattened into one vector theta; Algorithm 1's running moments
(theta_bar, theta2_bar) and a deviation matrix D whose columns are
`theta_i - theta_bar` (the mean after snapshot i), the oldest column dropped
once it holds K; and the sample (their eq. 1 and Algorithm 1, "Test
Bayesian model averaging")

    theta~ = theta_bar + Sigma_diag**(1/2) z1 / sqrt(2) + D z2 / sqrt(2 (K - 1)),
    Sigma_diag = diag(theta2_bar - theta_bar**2),

z1 ~ N(0, I_d), z2 ~ N(0, I_K). SWAG-diagonal drops the D term (with the
same 1/sqrt(2), as the reference code's `sample(scale=0.5, cov=False)`).
The draws kerasswa requests from `keras.random.normal` are replaced by
draws fixed here, so both sides must give the same numbers.

    KERAS_BACKEND=jax python tests/python/test_swag_reference.py   # the figures
"""

import math

import keras
import numpy as np
import pytest

from kerasswa import SWAG

SHAPES = [(2, 4), (3,)]  # none of them (K,): each draw is told by its shape
VAR_CLAMP = 1e-30  # the floor of the variance, swa_gaussian's `var_clamp`


def paper_swag(snapshots, max_rank):
    """Algorithm 1 of the paper on flat weight vectors: theta_bar, theta2_bar
    and D (d x K, oldest column first)."""
    theta_bar = np.zeros_like(snapshots[0])
    theta2_bar = np.zeros_like(snapshots[0])
    columns = []
    for n, theta in enumerate(snapshots):
        theta_bar = (n * theta_bar + theta) / (n + 1)
        theta2_bar = (n * theta2_bar + theta**2) / (n + 1)
        if max_rank:
            if len(columns) == max_rank:
                columns.pop(0)
            columns.append(theta - theta_bar)
    deviations = np.stack(columns, axis=1) if columns else np.zeros((len(theta_bar), 0))
    return theta_bar, theta2_bar, deviations


def paper_sample(theta_bar, theta2_bar, deviations, z1, z2=None):
    """The paper's sample (scale 1/2), SWAG-diagonal when `z2` is None."""
    sigma_diag = np.maximum(theta2_bar - theta_bar**2, VAR_CLAMP)
    sample = theta_bar + np.sqrt(sigma_diag) * z1 / math.sqrt(2)
    if z2 is not None:
        rank = deviations.shape[1]
        sample = sample + deviations @ z2 / math.sqrt(2 * (rank - 1))
    return sample


def _kerasswa_sample(snapshots, max_rank, draws, covariance, monkeypatch):
    """kerasswa's sample after snapshots of the flat vectors `snapshots`,
    with `keras.random.normal` answering from `draws` (by shape); and the
    shapes it was asked for."""
    variables = [keras.Variable(np.zeros(shape, "float32")) for shape in SHAPES]
    optimizer = SWAG(keras.optimizers.SGD(1.0), start_averaging=None, max_rank=max_rank, var_clamp=VAR_CLAMP)
    optimizer.build(variables)
    for theta in snapshots:
        for variable, part in zip(variables, _split(theta)):
            variable.assign(part)
        optimizer.take_snapshot()

    asked = []

    def fixed_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        asked.append(tuple(shape))
        return keras.ops.convert_to_tensor(draws[tuple(shape)], dtype=dtype or "float32")

    with monkeypatch.context() as patch:
        patch.setattr(keras.random, "normal", fixed_normal)
        optimizer.sample_vars(variables, scale=0.5, covariance=covariance)
    sample = np.concatenate([np.ravel(keras.ops.convert_to_numpy(v)) for v in variables])
    return sample.astype("float64"), asked


def _split(theta):
    parts, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        parts.append(theta[start:start + size].reshape(shape))
        start += size
    return parts


def _snapshots(count):
    """Flat float32 snapshots with coordinates of different spreads, and one
    coordinate that never moves (its variance is clamped)."""
    rng = np.random.default_rng(count)
    size = sum(int(np.prod(shape)) for shape in SHAPES)
    centre = rng.normal(size=size)
    spread = rng.uniform(0.05, 2.0, size=size)
    snapshots = centre + spread * rng.normal(size=(count, size))
    snapshots[:, 5] = 0.3
    return list(snapshots.astype("float32"))


def reference_error(count, max_rank, covariance, monkeypatch):
    """The largest difference between kerasswa's sample and the paper's,
    for `count` snapshots, given the same z1 and z2."""
    snapshots = _snapshots(count)
    rank = min(count, max_rank)
    rng = np.random.default_rng(100 + count)
    draws = {shape: rng.normal(size=shape).astype("float32") for shape in SHAPES}
    draws[(rank,)] = rng.normal(size=rank).astype("float32")
    sample, asked = _kerasswa_sample(snapshots, max_rank, draws, covariance, monkeypatch)

    expected_shapes = SHAPES + ([(rank,)] if covariance else [])
    assert sorted(asked) == sorted(expected_shapes)  # each draw used exactly once

    theta_bar, theta2_bar, deviations = paper_swag([s.astype("float64") for s in snapshots], max_rank)
    z1 = np.concatenate([draws[shape].ravel() for shape in SHAPES]).astype("float64")
    z2 = None
    if covariance:
        # kerasswa keeps deviation i in row i % max_rank of a ring; the
        # paper's D keeps them oldest first. Which deviation meets which
        # element of z2 is a storage convention (the Gaussian is the same):
        # the paper's column j (snapshot count - rank + j) meets ring row
        # (count - rank + j) % max_rank.
        ring = draws[(rank,)].astype("float64")
        z2 = np.array([ring[(count - rank + j) % max_rank] for j in range(rank)])
    expected = paper_sample(theta_bar, theta2_bar, deviations, z1, z2)
    assert expected[5] == pytest.approx(0.3, abs=1e-6)  # clamped variance: no noise there

    # kerasswa works in float32: `s - m**2` loses about a few float32 ulps of
    # `s` to cancellation, which its square root magnifies where the variance
    # is small. The tolerance allows that, and 1e-6 more for the rest.
    variance = np.maximum(theta2_bar - theta_bar**2, VAR_CLAMP)
    variance_error = 8 * np.finfo("float32").eps * theta2_bar
    sd_error = variance_error / (2 * np.sqrt(np.maximum(variance, variance_error)))
    tolerance = 1e-6 * (1 + np.abs(expected)) + sd_error * np.abs(z1) / math.sqrt(2)
    error = np.abs(sample - expected)
    assert (error <= tolerance).all(), (error, tolerance)
    return float(error.max()), float((error / tolerance).max()), float(np.abs(expected - theta_bar).max())


@pytest.mark.parametrize(
    "count, max_rank, covariance",
    [
        (4, 6, True),  # fewer snapshots than max_rank: K = 4
        (9, 5, True),  # the ring has wrapped: K = 5, the 5 latest deviations
        (9, 5, False),  # SWAG-diagonal: no z2 drawn
        (3, 0, False),  # max_rank = 0 keeps no deviations at all
    ],
)
def test_sample_is_the_papers_given_the_same_draws(count, max_rank, covariance, monkeypatch):
    error, _, noise = reference_error(count, max_rank, covariance, monkeypatch)
    assert noise > 0.5  # the sample is well away from the mean: a real check
    assert error < 1e-4, error


if __name__ == "__main__":
    patch = pytest.MonkeyPatch()
    for case in [(4, 6, True), (9, 5, True), (9, 5, False), (3, 0, False)]:
        error, ratio, noise = reference_error(*case, patch)
        print(f"{keras.config.backend()}: snapshots {case[0]}, max_rank {case[1]}, covariance {case[2]}: "
              f"max |kerasswa - paper| {error:.2e} ({ratio:.2f} of the tolerance), "
              f"max |sample - mean| {noise:.2f}")
