"""Argument checks shared by the public kerasswa API.

Every check raises at construction time with a message that names the
argument, shows the value received and says what is expected, so a bad value
never reaches a training step. Values from R arrive through reticulate as
Python floats (R's `10`), `nan` (R's `NA_real_`) or booleans, and are handled
here rather than in each caller.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional


def _describe(value: Any) -> str:
    return f"{value!r} (of type {type(value).__name__})"


def check_count(name: str, value: Any, minimum: int) -> int:
    """Returns `value` as an `int` if it is a whole number `>= minimum`.

    Whole-number floats such as R's `10` are accepted; booleans, strings,
    fractions, NaN and infinities are refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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
    return as_int


def check_optional_number(
    name: str, value: Any, *, allow_zero: bool
) -> Optional[float]:
    """Returns `value` as a `float`, or `None` when it is `None`.

    The number must be finite and positive (or zero when `allow_zero`).
    """
    if value is None:
        return None
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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
    return as_float


def check_bool(name: str, value: Any) -> bool:
    """Returns `value` if it is a boolean (Python or NumPy)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(
        f"`{name}` must be True or False. Received: {name}={_describe(value)}"
    )


def check_name(name: str, value: Any) -> str:
    """Returns `value` if it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"`{name}` must be a non-empty string. "
            f"Received: {name}={_describe(value)}"
        )
    return value
