"""Averaging rules: how much each snapshot counts in an average.

`SWA(averaging=...)` takes one of a family of rules. Each is a *blend
factor* of the snapshot count alone: at a snapshot, with `count` snapshots
taken before it, every average moves to `avg + factor(count) * (w - avg)`.
The factor of the first snapshot (`count = 0`) is 1 for every rule, so the
average starts as a copy of the weights and never needs a bias correction.

- `"mean"`: `1 / (count + 1)`, the plain mean of the snapshots (SWA).
- a float `d` in (0, 1): `1 - d` (a copy first), a fixed exponential moving
  average.
- `EMA(decay, min_decay, inv_gamma, power)`: an exponential moving average
  whose decay warms up, `1 - decay_n` with
  `decay_n = max(min(decay, 1 - (1 + n / inv_gamma) ** -power), min_decay)`
  and `n = count`, as timm, ema-pytorch and diffusers warm theirs up.
- `PowerEMA(sigma_rel=...)` or `PowerEMA(gamma=...)`: the power-function EMA
  of Karras et al. (2024), `1 - (1 - 1/n) ** (gamma + 1)` with
  `n = count + 1`, whose profile keeps the same shape, relative to its
  length, however long training runs.

The factor depends on the number of snapshots, never on the number of
updates, so with `average_period = k` a rule describes the same profile as
with `k = 1`, sampled every `k` updates. The rules are computed inside the
snapshot only (a step without a snapshot does no work for them) and feed the
same fused kernels (`kerasswa._kernels.blend_`); they serialize as data
(registered Keras objects), so a `.keras` file that holds them loads in
Keras's safe mode.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Union

import keras
import numpy as np
from keras import ops

from kerasswa import _validation

#: The largest relative width of a power-function profile: `gamma = 0`,
#: the plain mean (a uniform profile over the run).
MAX_SIGMA_REL = math.sqrt(1.0 / 12.0)


class _Rule:
    """A blend factor as a function of the number of snapshots before."""

    def factor(self, count, dtype):
        """The factor of a snapshot that follows `count` snapshots (a tensor
        or a Python int), as a scalar tensor of `dtype`."""
        raise NotImplementedError

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


def _compute_dtype(dtype) -> str:
    """The factor is worked out in float32 (float64 for float64 averages)
    and then cast: in float16 the count itself would overflow at 65504."""
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def _first_is_a_copy(count, factor, dtype):
    """`factor` with 1 at the first snapshot, cast to `dtype`."""
    one = ops.convert_to_tensor(1.0, factor.dtype)
    return ops.cast(ops.where(ops.equal(count, 0), one, factor), dtype)


class _Mean(_Rule):
    def factor(self, count, dtype):
        count = ops.convert_to_tensor(count)
        return ops.divide(ops.convert_to_tensor(1.0, dtype), ops.cast(count + 1, dtype))

    def get_config(self) -> dict:
        return {}


class _FixedDecay(_Rule):
    def __init__(self, decay: float) -> None:
        self.decay = decay

    def factor(self, count, dtype):
        count = ops.convert_to_tensor(count)
        return ops.where(
            ops.equal(count, 0),
            ops.convert_to_tensor(1.0, dtype),
            ops.convert_to_tensor(1.0 - self.decay, dtype),
        )

    def get_config(self) -> dict:
        return {"decay": self.decay}


@keras.saving.register_keras_serializable(package="kerasswa", name="EMA")
class EMA(_Rule):
    """An exponential moving average of the snapshots whose decay warms up.

    A fixed decay such as 0.9999 makes a long average, and an average that
    starts that long is dominated for a long time by its first snapshots
    (or, started at zero, pulled towards zero). This rule starts short and
    lengthens as snapshots accumulate, as the EMAs of timm (`ModelEmaV3`),
    ema-pytorch and diffusers (`EMAModel`) do: the snapshot that follows `n`
    snapshots (`n = 0, 1, 2, ...`) gives `decay_n * avg + (1 - decay_n) * w`
    with

        decay_n = max(min(decay, 1 - (1 + n / inv_gamma) ** -power), min_decay)

    for `n >= 1`, and `decay_0 = 0`: the first snapshot is a copy (`n` counts
    the snapshots before, as those libraries count the updates after their
    start step). With the defaults, `decay_n` is 0.37 at `n = 1`, 0.9 at
    31, 0.99 at 1,000 and 0.999 at 31,600: `1 / (1 - decay_n)`, about the
    number of recent snapshots the average spans, is
    `(1 + n / inv_gamma) ** power` until `decay` caps it.

    The names and defaults are those of diffusers' `EMAModel` (`decay`,
    `min_decay`, `inv_gamma`, `power`; ema-pytorch calls `decay` `beta`,
    timm calls `inv_gamma` and `power` `warmup_gamma` and `warmup_power`).
    Their start step and update interval are `SWA`'s `start_averaging` and
    `average_period`; `n` counts snapshots, so `decay` is the decay per
    snapshot (a decay `d` per update is `d ** average_period` per snapshot).
    A fixed decay without warm-up is `averaging=<float>`.

    Args:
        decay: Float in (0, 1): the largest decay, reached once the warm-up
            passes it. Defaults to 0.9999.
        min_decay: Float in [0, decay]: the smallest decay after the first
            snapshot. Defaults to 0.
        inv_gamma: Float > 0: the number of snapshots over which the warm-up
            starts (`n / inv_gamma`); larger is slower. Defaults to 1.
        power: Float > 0: how fast the decay grows; 2/3 (the default) suits
            long runs (0.999 at 31,600 snapshots), 3/4 shorter ones (0.999 at
            10,000).

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import SWA, EMA
    >>> w = keras.Variable(np.zeros(1, "float32"))
    >>> opt = SWA(keras.optimizers.SGD(1.0), average_period=1,
    ...           averaging=EMA(0.9, power=1.0))
    >>> for _ in range(3):  # w = 1, 2, 3
    ...     opt.apply([keras.ops.full((1,), -1.0)], [w])
    >>> # decay_1 = 1 - 1/2, decay_2 = 1 - 1/3: (1 + 2) / 2 = 1.5, then
    >>> # 1.5 * 2/3 + 3 * 1/3 = 2 (the plain mean while the warm-up lasts).
    >>> print(keras.ops.convert_to_numpy(opt.average_variables[0]).round(5))
    [2.]
    """

    def __init__(
        self,
        decay: float = 0.9999,
        min_decay: float = 0.0,
        inv_gamma: float = 1.0,
        power: float = 2.0 / 3.0,
    ) -> None:
        decay = _fraction("decay", decay, "EMA")
        min_decay = _validation.check_optional_number("min_decay", min_decay, allow_zero=True)
        if min_decay is None or min_decay > decay:
            raise ValueError(
                f"`min_decay` must be a number in [0, decay] = [0, {decay!r}]. "
                f"Received: min_decay={min_decay!r}"
            )
        self.decay = decay
        self.min_decay = min_decay
        self.inv_gamma = _positive("inv_gamma", inv_gamma)
        self.power = _positive("power", power)

    def factor(self, count, dtype):
        count = ops.convert_to_tensor(count)
        compute = _compute_dtype(dtype)
        n = ops.cast(count, compute)
        # 1 - (1 - (1 + n / inv_gamma) ** -power), without the cancellation.
        warm = ops.power(1.0 + n / self.inv_gamma, -self.power)
        factor = ops.minimum(ops.maximum(warm, 1.0 - self.decay), 1.0 - self.min_decay)
        return _first_is_a_copy(count, factor, dtype)

    def decay_at(self, n: int) -> float:
        """`decay_n` in Python (float64): the decay of the snapshot that
        follows `n` snapshots.

        >>> from kerasswa import EMA
        >>> round(EMA().decay_at(1000), 4), EMA(0.99).decay_at(10**6)
        (0.99, 0.99)
        """
        n = _validation.check_count("n", n, minimum=0, maximum=2**63 - 1)
        if n == 0:
            return 0.0
        warm = 1.0 - (1.0 + n / self.inv_gamma) ** -self.power
        return max(min(self.decay, warm), self.min_decay)

    def get_config(self) -> dict:
        return {
            "decay": self.decay,
            "min_decay": self.min_decay,
            "inv_gamma": self.inv_gamma,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package="kerasswa", name="PowerEMA")
class PowerEMA(_Rule):
    """The power-function EMA of Karras et al. (2024, EDM2).

    After `t` snapshots, snapshot `tau` (`1 <= tau <= t`) carries the weight
    `(tau/t) ** (gamma+1) - ((tau-1)/t) ** (gamma+1)`: the profile
    `(gamma + 1) tau ** gamma / t ** (gamma + 1)`, the same shape at every
    `t`, stretched to the run so far. Its relative width (standard deviation
    over `t`) is

        sigma_rel = sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))

    so `sigma_rel = 0.05` is `gamma = 16.97`, 0.10 is 6.94, and `gamma = 0`
    (`sigma_rel = sqrt(1/12) = 0.289`) the plain mean. The `n`-th snapshot
    (`n = 1, 2, ...`) blends with factor `1 - (1 - 1/n) ** (gamma + 1)` (1
    for the first: a copy), computed as `-expm1((gamma + 1) * log1p(-1/n))`,
    which keeps float32's accuracy at ten million snapshots where the direct
    form is 20% wrong.

    Unlike an EMA of fixed decay, the average forgets in proportion to the
    run's length, so the same `sigma_rel` suits a short run and a long one;
    `kerasswa.PostHocEMA` keeps two and rebuilds any other after training.

    Args:
        sigma_rel: Float in (0, sqrt(1/12)]: the profile's relative width.
        gamma: Float >= 0: the profile's exponent. Give `sigma_rel` or
            `gamma`, not both.

    Example:

    >>> from kerasswa import PowerEMA
    >>> rule = PowerEMA(sigma_rel=0.10)
    >>> round(rule.gamma, 2), PowerEMA(gamma=0).sigma_rel == 12 ** -0.5
    (6.94, True)
    """

    def __init__(self, sigma_rel: Optional[float] = None, gamma: Optional[float] = None) -> None:
        if (sigma_rel is None) == (gamma is None):
            raise ValueError(
                "PowerEMA needs exactly one of `sigma_rel` and `gamma`. "
                f"Received: sigma_rel={sigma_rel!r}, gamma={gamma!r}"
            )
        if sigma_rel is not None:
            self._sigma_rel = check_sigma_rel("sigma_rel", sigma_rel)
            self._gamma = gamma_of_sigma_rel(self._sigma_rel)
            self._given = "sigma_rel"
        else:
            gamma = _validation.check_optional_number("gamma", gamma, allow_zero=True)
            self._gamma = gamma
            self._sigma_rel = sigma_rel_of_gamma(gamma)
            self._given = "gamma"

    @property
    def gamma(self) -> float:
        """The profile's exponent."""
        return self._gamma

    @property
    def sigma_rel(self) -> float:
        """The profile's relative width."""
        return self._sigma_rel

    def factor(self, count, dtype):
        count = ops.convert_to_tensor(count)
        compute = _compute_dtype(dtype)
        # n = count + 1, kept >= 2 where the first snapshot's 1 is used
        # instead, so that no backend meets log1p(-1) = -inf.
        n = ops.cast(ops.maximum(count + 1, 2), compute)
        factor = -ops.expm1((self._gamma + 1.0) * ops.log1p(-1.0 / n))
        return _first_is_a_copy(count, factor, dtype)

    def get_config(self) -> dict:
        # What was given, so that the rule rebuilt computes the same gamma.
        return {self._given: getattr(self, f"_{self._given}")}


def gamma_of_sigma_rel(sigma_rel: float) -> float:
    """The exponent `gamma >= 0` of the power profile of relative width
    `sigma_rel`: the root of `sigma_rel**2 (g+2)**2 (g+3) = g+1`, in float64.

    >>> round(gamma_of_sigma_rel(0.05), 2), round(gamma_of_sigma_rel(0.10), 2)
    (16.97, 6.94)
    """
    sigma_rel = check_sigma_rel("sigma_rel", sigma_rel)
    # The width falls from sqrt(1/12) at g = 0 towards 1/g as g grows, so the
    # root lies in [0, 2/sigma_rel + 2]. Bisection there (on the logarithm,
    # to cover every scale) then Newton steps: no cubic formula, whose
    # leading coefficient sigma_rel**2 underflows for narrow profiles.
    low, high = 0.0, 2.0 / sigma_rel + 2.0
    for _ in range(200):
        middle = math.expm1(0.5 * (math.log1p(low) + math.log1p(high)))
        if middle in (low, high):
            break
        if sigma_rel_of_gamma(middle) > sigma_rel:
            low = middle
        else:
            high = middle
    gamma = low if sigma_rel_of_gamma(low) - sigma_rel < sigma_rel - sigma_rel_of_gamma(high) else high
    for _ in range(2):
        slope = _width_slope(gamma)
        if slope == 0.0:
            break
        gamma = max(gamma - (sigma_rel_of_gamma(gamma) - sigma_rel) / slope, 0.0)
    return gamma


def sigma_rel_of_gamma(gamma: float) -> float:
    """The relative width of the power profile of exponent `gamma`.

    >>> round(sigma_rel_of_gamma(6.94), 4)
    0.1
    """
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


def _width_slope(gamma: float) -> float:
    """d sigma_rel / d gamma."""
    g1, g2, g3 = gamma + 1.0, gamma + 2.0, gamma + 3.0
    square = g1 / (g2 * g2 * g3)
    d_square = (g2 * g3 - g1 * (2.0 * g3 + g2)) / (g2 ** 3 * g3 ** 2)
    return d_square / (2.0 * math.sqrt(square))


def check_sigma_rel(name: str, value: Any) -> float:
    """A relative width in (0, sqrt(1/12)]."""
    value = _validation._unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a number in (0, sqrt(1/12) = {MAX_SIGMA_REL:.4f}]. "
            f"Received: {name}={_validation._describe(value)}"
        )
    as_float = float(value)
    # A hair above sqrt(1/12) is that value rounded, not a wider profile.
    if not (0.0 < as_float <= MAX_SIGMA_REL * (1 + 1e-12)):
        raise ValueError(
            f"`{name}` must be in (0, sqrt(1/12) = {MAX_SIGMA_REL:.4f}]: a "
            "power-function profile is at most as wide as the plain mean "
            f"(gamma = 0). Received: {name}={value!r}"
        )
    # gamma is about 1 / sigma_rel, and the backends use it in float32.
    if 1.0 / as_float > _validation._FLOAT32_MAX / 2:
        raise ValueError(
            f"`{name}` is too small: the exponent of so narrow a profile, about "
            f"1/{name}, exceeds float32's range. Received: {name}={value!r}"
        )
    return min(as_float, MAX_SIGMA_REL)


def _fraction(name: str, value: Any, owner: str) -> float:
    """A number strictly between 0 and 1."""
    value = _validation._unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` of {owner} must be a number in (0, 1). "
            f"Received: {name}={_validation._describe(value)}"
        )
    as_float = float(value)
    if not 0.0 < as_float < 1.0:
        raise ValueError(
            f"`{name}` of {owner} must be strictly between 0 and 1 (the "
            f"weight of the old average). Received: {name}={value!r}"
        )
    return as_float


def _positive(name: str, value: Any) -> float:
    checked = _validation.check_optional_number(name, value, allow_zero=False)
    if checked is None:
        raise TypeError(f"`{name}` must be a finite number > 0. Received: {name}=None")
    return checked


Averaging = Union[str, float, EMA, PowerEMA]


def check_averaging(value: Any) -> Averaging:
    """The `averaging` argument of `SWA`: `"mean"`, a decay in (0, 1), an
    `EMA` or a `PowerEMA` (or the config dict of one, as `get_config`
    writes it). Anything else is refused with a message that names it."""
    if isinstance(value, (EMA, PowerEMA)):
        return value
    if isinstance(value, dict):
        try:
            rule = keras.saving.deserialize_keras_object(value)
        except Exception as error:  # noqa: BLE001 - anything Keras raises for a bad config
            raise ValueError(
                "`averaging` is a dict that is not the config of a kerasswa "
                f"averaging rule. Received: averaging={value!r} ({error})"
            ) from None
        if not isinstance(rule, (EMA, PowerEMA)):
            raise ValueError(
                "`averaging` is a dict that is not the config of a kerasswa "
                f"averaging rule. Received: averaging={value!r}"
            )
        return rule
    expected = (
        '"mean", a float in (0, 1) (the decay of an exponential moving '
        "average), kerasswa.EMA(...) or kerasswa.PowerEMA(...)"
    )
    if isinstance(value, str):
        if value == "mean":
            return "mean"  # A plain `str`, also for NumPy's `str_`.
        raise ValueError(f"`averaging` must be {expected}. Received: averaging={value!r}")
    value = _validation._unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`averaging` must be {expected}. "
            f"Received: averaging={_validation._describe(value)}"
        )
    decay = float(value)
    if not 0.0 < decay < 1.0:
        raise ValueError(
            '`averaging` must be "mean" or a float strictly between 0 and 1 '
            "(the weight of the old average), kerasswa.EMA(...) or "
            f"kerasswa.PowerEMA(...). Received: averaging={value!r}"
        )
    return decay


def serialize_averaging(averaging: Averaging):
    """`averaging` as `get_config` stores it: `"mean"` and a decay as they
    are (the form of files saved before the rules existed), a rule as its
    Keras config."""
    if isinstance(averaging, _Rule):
        return keras.saving.serialize_keras_object(averaging)
    return averaging


def rule_of(averaging: Averaging) -> _Rule:
    """The rule behind a checked `averaging` value."""
    if isinstance(averaging, _Rule):
        return averaging
    if averaging == "mean":
        return _Mean()
    return _FixedDecay(averaging)


def averaging_factor(averaging: Averaging, count, dtype):
    """The blend factor of a snapshot that follows `count` snapshots (a
    tensor or a Python int), as a scalar tensor of `dtype`: the one seam
    through which an average is told how much a snapshot counts."""
    return rule_of(averaging).factor(count, dtype)


def averaging_factors(averaging: Averaging, count, averages) -> list:
    """`averaging_factor` for each of `averages` (variables), worked out once
    per dtype: what every snapshot, of the weights or of the non-trainable
    variables, blends with."""
    by_dtype = {}
    for average in averages:
        if average.dtype not in by_dtype:
            by_dtype[average.dtype] = averaging_factor(averaging, count, average.dtype)
    return [by_dtype[average.dtype] for average in averages]
