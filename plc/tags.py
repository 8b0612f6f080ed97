"""Tag declarations: the one place a signal's name, type, unit, range, access and address live.

Everything else (the process image, the Modbus register map, telemetry names, HMI labels,
`ems tags`) is derived from these records, and an io_map's `[[tags]]` entry is this record
too (its field names are the TOML keys): a tag is declared in one shape, by a program or by
an integrator. This module is pure vocabulary: no IO, so programs may import it to name
qualities and types.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from typing import Any

import attrs
from attrs import validators as v


class DType(str, enum.Enum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    ENUM = "enum"
    STRING = "string"


class Access(str, enum.Enum):
    RO = "ro"
    RW = "rw"


class Area(str, enum.Enum):
    INPUT = "input"
    OUTPUT = "output"
    MEMORY = "memory"


class Quality(enum.IntEnum):
    """Quality of a value. Only GOOD values may drive actuation."""

    UNINIT = 0
    GOOD = 1
    STALE = 2
    BAD = 3


class ModbusTable(str, enum.Enum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bits(self) -> bool:
        """Coils and discrete inputs hold single bits; the register tables 16-bit words."""
        return self in (ModbusTable.COIL, ModbusTable.DISCRETE)

    @property
    def writable(self) -> bool:
        """A client may write coils and holding registers; the other two are read-only."""
        return self in (ModbusTable.COIL, ModbusTable.HOLDING)


INT_RANGES: dict[DType, tuple[int, int]] = {
    DType.INT16: (-(2**15), 2**15 - 1),
    DType.UINT16: (0, 2**16 - 1),
    DType.INT32: (-(2**31), 2**31 - 1),
    DType.UINT32: (0, 2**32 - 1),
    DType.ENUM: (0, 2**16 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38


NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def _name(_instance: Any, _attribute: Any, value: str) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a valid tag name (pattern {NAME_PATTERN.pattern})")


@attrs.frozen
class ModbusAddress:
    """Where a tag sits in the tag server's register map (0-based protocol address)."""

    table: ModbusTable
    address: int = attrs.field(validator=[v.ge(0), v.le(65535)])
    scale: float = attrs.field(default=1.0, validator=v.gt(0.0))  # register = engineering value * scale


@attrs.frozen
class TagSpec:
    """The declaration of one tag. Validated at the edge (io_map loading, program setup)."""

    name: str = attrs.field(validator=_name)
    dtype: DType
    area: Area
    unit: str = ""
    min: float | None = None
    max: float | None = None
    access: Access = Access.RO
    description: str = ""
    modbus: ModbusAddress | None = None
    retain: bool = False
    safe_value: Any = None  # required for outputs: what the output holds whenever in doubt
    # In doubt (program fault, supervisor trip, stop, a bad value) a safe_hold output keeps its
    # last command instead of jumping to safe_value, and before its first command it sends
    # none: a battery contactor must not open under load. Programs still command it on purpose.
    safe_hold: bool = False
    initial: Any = None  # memory tags start GOOD at this value; None leaves them UNINIT
    max_age_s: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))  # older: STALE
    enum_labels: tuple[str, ...] = ()
    length: int = attrs.field(default=0, validator=v.ge(0))  # strings: maximum characters
    telemetry: bool = False  # sent to the fleet back end in every spot message (runtime/cloud, docs/cloud.md)

    @property
    def words(self) -> int:
        """Modbus registers this tag takes."""
        if self.dtype in (DType.INT32, DType.UINT32, DType.FLOAT32):
            return 2
        if self.dtype is DType.STRING:
            return (self.length + 1) // 2
        return 1

    def label(self, value: Any) -> str:
        """Human-readable rendering of a value (enum labels, units)."""
        if self.dtype is DType.ENUM and isinstance(value, int) and 0 <= value < len(self.enum_labels):
            return self.enum_labels[value]
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.6g} {self.unit}".rstrip()
        return f"{value} {self.unit}".rstrip()


class TagValueError(ValueError):
    """A value of the wrong type or outside its tag's range."""


def make_checker(spec: TagSpec) -> Callable[[Any], Any]:
    """Build a function that validates (and normalises) a value for this tag, or raises.

    Built once per tag so that writes in the scan cost one call and a few comparisons.
    """
    name = spec.name
    lo = spec.min
    hi = spec.max

    def out_of_range(value: Any) -> TagValueError:
        return TagValueError(f"tag {name!r}: {value!r} is outside its range [{lo}, {hi}] {spec.unit}".rstrip())

    def wrong_type(value: Any) -> TagValueError:
        return TagValueError(f"tag {name!r}: expected {spec.dtype.value}, got {type(value).__name__} {value!r}")

    if spec.dtype is DType.BOOL:

        def check_bool(value: Any) -> bool:
            if value is True or value is False:
                return value
            raise wrong_type(value)

        return check_bool

    if spec.dtype is DType.FLOAT32:
        flo = -FLOAT32_MAX if lo is None else lo
        fhi = FLOAT32_MAX if hi is None else hi

        def check_float(value: Any) -> float:
            if value.__class__ is not float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise wrong_type(value)
                value = float(value)
            if flo <= value <= fhi:
                return value
            if value != value:  # NaN: no value is better than a made-up one, but it is not a number
                raise TagValueError(f"tag {name!r}: NaN is not a valid value")
            raise out_of_range(value)

        return check_float

    if spec.dtype is DType.STRING:
        limit = spec.length

        def check_str(value: Any) -> str:
            if not isinstance(value, str):
                raise wrong_type(value)
            if limit and len(value) > limit:
                raise TagValueError(f"tag {name!r}: string of {len(value)} characters exceeds its length {limit}")
            return value

        return check_str

    type_lo, type_hi = INT_RANGES[spec.dtype]
    if spec.dtype is DType.ENUM and spec.enum_labels:
        type_hi = len(spec.enum_labels) - 1
    ilo = type_lo if lo is None else max(type_lo, math.ceil(lo))
    ihi = type_hi if hi is None else min(type_hi, math.floor(hi))

    def check_int(value: Any) -> int:
        if value.__class__ is not int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong_type(value)
            value = int(value)  # IntEnum members become plain ints
        if ilo <= value <= ihi:
            return value
        raise out_of_range(value)

    return check_int
