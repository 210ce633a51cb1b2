"""`SWALearningRateSchedule`: the learning rate SWA wants around the averaging phase."""

from __future__ import annotations

import math
from typing import Optional, Union

import keras
from keras import ops

from kerasswa import _validation

_ANNEAL_STRATEGIES = ("cos", "linear")


@keras.saving.register_keras_serializable(package="kerasswa", name="SWALearningRateSchedule")
class SWALearningRateSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate for SWA: the usual one, then a constant or cyclic SWA rate.

    Before `start_averaging` the rate is `base_learning_rate` (a float or
    another schedule, evaluated at the same step). From `start_averaging` on,
    it anneals from the base rate at that step to `swa_learning_rate` over
    `anneal_steps` steps (`"cos"` or `"linear"`, as PyTorch's `SWALR` does),
    then holds `swa_learning_rate`.

    With `cycle_length=c`, the averaging phase is cyclic instead, as in the
    SWA paper: within each cycle the rate falls linearly from the base rate at
    `start_averaging` to `swa_learning_rate`, reaching it at steps
    `start_averaging + j * c`. With `c` equal to the optimizer's
    `average_period`, those are exactly SWA's snapshot steps.

    The step is the optimizer's update count (0 for the first update), as for
    every Keras schedule. Pass the same `start_averaging` as to `SWA`.

    Args:
        base_learning_rate: Float > 0 or a `LearningRateSchedule`: the rate
            before averaging starts.
        swa_learning_rate: Float > 0: the rate while averaging.
        start_averaging: Integer >= 0: the step where averaging starts.
        anneal_steps: Integer >= 0: steps to go from the base rate to
            `swa_learning_rate` (0 switches at once). Not used with
            `cycle_length`.
        anneal_strategy: `"cos"` (the default) or `"linear"`.
        cycle_length: Integer >= 1 or `None`: the length of the cycles of a
            cyclic schedule; `None` for the constant SWA rate.
        name: Optional name.

    Example:

    >>> from kerasswa import SWALearningRateSchedule
    >>> schedule = SWALearningRateSchedule(0.1, 0.01, start_averaging=10,
    ...                                    anneal_steps=4, anneal_strategy="linear")
    >>> [round(float(schedule(step)), 4) for step in (0, 9, 10, 12, 14, 100)]
    [0.1, 0.1, 0.1, 0.055, 0.01, 0.01]
    """

    def __init__(
        self,
        base_learning_rate: Union[float, keras.optimizers.schedules.LearningRateSchedule],
        swa_learning_rate: float,
        start_averaging: int,
        anneal_steps: int = 0,
        anneal_strategy: str = "cos",
        cycle_length: Optional[int] = None,
        name: Optional[str] = None,
    ) -> None:
        if not isinstance(base_learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            base_learning_rate = _validation.check_optional_number(
                "base_learning_rate", base_learning_rate, allow_zero=False
            )
            if base_learning_rate is None:
                raise TypeError(
                    "`base_learning_rate` must be a float > 0 or a "
                    "LearningRateSchedule. Received: base_learning_rate=None"
                )
        swa_learning_rate = _validation.check_optional_number(
            "swa_learning_rate", swa_learning_rate, allow_zero=False
        )
        if swa_learning_rate is None:
            raise TypeError(
                "`swa_learning_rate` must be a float > 0. "
                "Received: swa_learning_rate=None"
            )
        self.base_learning_rate = base_learning_rate
        self.swa_learning_rate = swa_learning_rate
        self.start_averaging = _validation.check_count(
            "start_averaging", start_averaging, minimum=0
        )
        self.anneal_steps = _validation.check_count("anneal_steps", anneal_steps, minimum=0)
        if anneal_strategy not in _ANNEAL_STRATEGIES:
            raise ValueError(
                f"`anneal_strategy` must be one of {_ANNEAL_STRATEGIES}. "
                f"Received: anneal_strategy={anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        if cycle_length is not None:
            cycle_length = _validation.check_count("cycle_length", cycle_length, minimum=1)
            if self.anneal_steps:
                raise ValueError(
                    "`anneal_steps` and `cycle_length` exclude each other: a "
                    "cyclic schedule falls to `swa_learning_rate` in every "
                    f"cycle. Received: anneal_steps={self.anneal_steps}, "
                    f"cycle_length={cycle_length}"
                )
        self.cycle_length = cycle_length
        self.name = None if name is None else _validation.check_name("name", name)

    def _base(self, step):
        if isinstance(self.base_learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return ops.cast(self.base_learning_rate(step), "float32")
        return ops.convert_to_tensor(self.base_learning_rate, "float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = float(self.start_averaging)
        base_now = self._base(step)
        base_at_start = self._base(ops.convert_to_tensor(start, "float32"))
        swa = self.swa_learning_rate
        if self.cycle_length is not None:
            # Position in the cycle: 1/c just after a snapshot step, 1 on it.
            length = float(self.cycle_length)
            position = (ops.mod(step - start - 1.0, length) + 1.0) / length
            averaging = base_at_start + (swa - base_at_start) * position
        elif self.anneal_steps == 0:
            averaging = ops.convert_to_tensor(swa, "float32")
        else:
            progress = ops.clip((step - start) / float(self.anneal_steps), 0.0, 1.0)
            if self.anneal_strategy == "cos":
                remaining = (1.0 + ops.cos(math.pi * progress)) / 2.0
            else:
                remaining = 1.0 - progress
            averaging = swa + (base_at_start - swa) * remaining
        return ops.where(step < start, base_now, averaging)

    def get_config(self) -> dict:
        base = self.base_learning_rate
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.saving.serialize_keras_object(base)
        return {
            "base_learning_rate": base,
            "swa_learning_rate": self.swa_learning_rate,
            "start_averaging": self.start_averaging,
            "anneal_steps": self.anneal_steps,
            "anneal_strategy": self.anneal_strategy,
            "cycle_length": self.cycle_length,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> "SWALearningRateSchedule":
        config = dict(config)
        if isinstance(config.get("base_learning_rate"), dict):
            config["base_learning_rate"] = keras.saving.deserialize_keras_object(
                config["base_learning_rate"]
            )
        return cls(**config)
