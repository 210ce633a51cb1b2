"""Argument checks shared by the public kerasswa API.

Every check raises at construction time with a message that names the
argument, shows the value received and says what is expected, so a bad value
never reaches a training step. Values from R arrive through reticulate as
Python floats (R's `10`), `nan` (R's `NA_real_`) or booleans, and from NumPy
as scalars or 0-d arrays; they are handled here rather than in each caller.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Optional, Union

import numpy as np


# The largest float32, and its smallest positive (subnormal) value.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)


def _describe(value: Any) -> str:
    return f"{value!r} (of type {type(value).__name__})"


def _unwrap_0d(value: Any) -> Any:
    """A 0-d NumPy array as the NumPy scalar it holds; anything else as is."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def counter_max() -> int:
    """The largest value of the step counters on this backend.

    Keras keeps optimizer step counts in variables of dtype `"int"`: int32 on
    JAX and PyTorch, int64 on TensorFlow. A count argument beyond this cannot
    be compared with a counter, so it is refused here, once, rather than
    overflowing inside a training step.
    """
    from keras.src.backend import standardize_dtype

    return int(np.iinfo(standardize_dtype("int")).max)


def check_count(
    name: str, value: Any, minimum: int, maximum: Optional[int] = None
) -> int:
    """Returns `value` as an `int` if it is a whole number in range.

    Whole-number floats such as R's `10`, NumPy integers and 0-d arrays are
    accepted; booleans, strings, fractions, NaN and infinities are refused.
    `maximum` defaults to the backend's counter range (`counter_max()`).
    """
    value = _unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={_describe(value)}"
        )
    if isinstance(value, numbers.Integral):
        as_int = int(value)
    else:
        as_float = float(value)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise ValueError(
                f"`{name}` must be a whole number >= {minimum}. "
                f"Received: {name}={value!r}"
            )
        as_int = int(as_float)
    if as_int < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={as_int}"
        )
    maximum = counter_max() if maximum is None else maximum
    if as_int > maximum:
        raise ValueError(
            f"`{name}` must be at most {maximum}, the largest step count this "
            f"backend's counters hold. Received: {name}={as_int}"
        )
    return as_int


def check_optional_count(name: str, value: Any, minimum: int) -> Optional[int]:
    """`check_count`, with `None` passed through."""
    return None if value is None else check_count(name, value, minimum)


def check_optional_number(
    name: str, value: Any, *, allow_zero: bool
) -> Optional[float]:
    """Returns `value` as a `float`, or `None` when it is `None`.

    The number must be finite and positive (or zero when `allow_zero`).
    """
    if value is None:
        return None
    value = _unwrap_0d(value)
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a finite number {bound}, or None. "
            f"Received: {name}={_describe(value)}"
        )
    as_float = float(value)
    if (
        not math.isfinite(as_float)
        or as_float < 0
        or (as_float == 0 and not allow_zero)
    ):
        raise ValueError(
            f"`{name}` must be a finite number {bound}, or None. "
            f"Received: {name}={value!r}"
        )
    # The backends compute with it in float32: a larger value becomes inf
    # there, and a positive one below float32's smallest becomes 0.
    if as_float > _FLOAT32_MAX or (as_float and not allow_zero and as_float < _FLOAT32_TINY):
        raise ValueError(
            f"`{name}` must lie between {_FLOAT32_TINY!r} and {_FLOAT32_MAX!r} "
            f"(float32, in which it is used){' or be 0' if allow_zero else ''}. "
            f"Received: {name}={value!r}"
        )
    return as_float


def check_learning_rate(name: str, value: Any) -> Union[None, float, Any]:
    """A learning rate as every Keras optimizer takes it: `None`, a finite
    number > 0, a `LearningRateSchedule` (which Keras calls with the step),
    or a callable that Keras calls with no argument."""
    import keras

    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if callable(value) and not isinstance(value, (numbers.Number, np.ndarray)):
        needs = _required_parameters(value)
        if needs:
            raise TypeError(
                f"`{name}` is a callable that needs the argument(s) "
                f"{', '.join(needs)}, but Keras calls a callable learning rate "
                "with no argument. For a rate that depends on the step, pass a "
                "keras.optimizers.schedules.LearningRateSchedule (Keras calls "
                "it with the step); otherwise a callable of no arguments. "
                f"Received: {name}={value!r}"
            )
        return value
    try:
        return check_optional_number(name, value, allow_zero=False)
    except TypeError:
        raise TypeError(
            f"`{name}` must be a finite number > 0, a "
            "keras.optimizers.schedules.LearningRateSchedule, a callable of "
            f"no arguments, or None. Received: {name}={_describe(value)}"
        ) from None


def _required_parameters(function: Any) -> list:
    """The names of the parameters that a call of `function` with no
    arguments would miss (none for a callable whose signature Python cannot
    tell, such as some built-ins, which are given the benefit of the
    doubt)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [
        parameter.name
        for parameter in signature.parameters.values()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind
        not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def check_bool(name: str, value: Any) -> bool:
    """Returns `value` if it is a boolean (Python or NumPy)."""
    value = _unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f"`{name}` must be True or False. Received: {name}={_describe(value)}"
    )


def check_verbose(value: Any) -> int:
    """0 (silent) or 1 (a progress bar); `True`/`False` too."""
    value = _unwrap_0d(value)
    if isinstance(value, (bool, np.bool_, numbers.Real)) and value in (0, 1):
        return int(value)
    raise ValueError(
        f"`verbose` must be 0 or 1. Received: verbose={_describe(value)}"
    )


def check_name(name: str, value: Any) -> str:
    """Returns `value` if it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"`{name}` must be a non-empty string. "
            f"Received: {name}={_describe(value)}"
        )
    # A plain `str`: NumPy's `str_` is one, but Keras cannot save it.
    return str(value)
