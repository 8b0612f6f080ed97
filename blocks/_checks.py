"""Construction-time parameter checks shared by the blocks.

Every check raises ``ValueError`` with a message that names the block class,
the parameter and the bad value, e.g. ``"TON: pt_s must be >= 0, got -1.0"``.
They run only when a block is made (or in explicit setters such as
``PID.set_limits``), never inside ``step``.
"""

from __future__ import annotations

import math
import numbers


def real(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float; reject bools, non-numbers and NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    out = float(value)
    if math.isnan(out):
        raise ValueError(f"{owner}: {name} must not be NaN, got {value!r}")
    return out


def finite(owner: str, name: str, value: object) -> float:
    """A finite real number."""
    out = real(owner, name, value)
    if math.isinf(out):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return out


def non_negative(owner: str, name: str, value: object) -> float:
    """A finite number >= 0 (times, gains, widths)."""
    out = real(owner, name, value)
    if not out >= 0.0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    if math.isinf(out):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return out


def positive(owner: str, name: str, value: object, *, allow_inf: bool = False) -> float:
    """A number > 0; ``allow_inf`` admits +inf (e.g. an unlimited rate)."""
    out = real(owner, name, value)
    if not out > 0.0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    if math.isinf(out) and not allow_inf:
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return out


def ordered(owner: str, lo_name: str, lo: float, hi_name: str, hi: float,
            *, strict: bool = False) -> None:
    """Require ``lo <= hi`` (or ``lo < hi`` when ``strict``)."""
    bad = lo >= hi if strict else lo > hi
    if bad:
        op = "<" if strict else "<="
        raise ValueError(
            f"{owner}: {lo_name} must be {op} {hi_name}, got {lo_name}={lo!r}, {hi_name}={hi!r}"
        )


def limits(owner: str, lo_name: str, lo: object, hi_name: str, hi: object) -> tuple[float, float]:
    """A lower/upper limit pair; either may be infinite on its own side."""
    lo_f = real(owner, lo_name, lo)
    hi_f = real(owner, hi_name, hi)
    if lo_f == math.inf:
        raise ValueError(f"{owner}: {lo_name} must be < inf, got {lo!r}")
    if hi_f == -math.inf:
        raise ValueError(f"{owner}: {hi_name} must be > -inf, got {hi!r}")
    ordered(owner, lo_name, lo_f, hi_name, hi_f)
    return lo_f, hi_f


def integer(owner: str, name: str, value: object, *, minimum: int | None = None) -> int:
    """An int (not a bool), optionally with a lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return out


def boolean(owner: str, name: str, value: object) -> bool:
    """A real bool (catches ``reverse="no"`` style mistakes)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be a bool, got {value!r}")
    return value
