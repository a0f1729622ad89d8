"""Range checks of numeric options, shared by the verbs and their Python functions: each
refuses NaN, infinities and values out of range in one line naming the option."""

from __future__ import annotations

import math
from typing import Any

from sessionrec.errors import ConfigError


def finite_number(
    option: str,
    value: Any,
    *,
    low: float = 0.0,
    high: float | None = None,
    low_inclusive: bool = False,
) -> float:
    """``value`` as a float when it is finite, above ``low`` (or equal, with
    ``low_inclusive``) and at most ``high``; else a ``ConfigError`` naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} must be a number, found {value!r}") from None
    above = number >= low if low_inclusive else number > low
    if not math.isfinite(number) or not above or (high is not None and number > high):
        bound = f"{'≥' if low_inclusive else '>'} {low:g}"
        if high is not None:
            bound += f" and ≤ {high:g}"
        raise ConfigError(f"{option} must be a finite number {bound}, found {value!r}")
    return number


def whole_number(option: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """``value`` when it is an integer in ``low..high``; else a ``ConfigError`` naming
    ``option`` (a bool or a float is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{option} must be an integer, found {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"≥ {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"{option} must be {bound}, found {value}")
    return value
