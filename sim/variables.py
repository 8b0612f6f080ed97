"""Variable metadata and the helpers that make every plant value a dotted path.

Each plant class lists its bindable attributes in a class attribute ``VARS``
of ``Var`` entries. ``Plant.variables()`` prefixes them with the object's
path (``inverter.p_ac_w``, ``bms.racks.2.soc_pct``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import attrs


class Var(NamedTuple):
    """Declaration of one bindable attribute of a plant class."""

    name: str
    unit: str
    writable: bool
    type: str  # "float", "bool", "int" or "str"
    description: str


@attrs.frozen
class VariableInfo:
    """What a dotted path holds: unit ("" if none), whether it is a command or
    fault-injection input (writable), its Python type name and a description."""

    unit: str
    writable: bool
    description: str
    type: str = "float"


class Indexed(tuple[Any, ...]):
    """A tuple whose items are also attributes "0", "1", ... so that
    ``operator.attrgetter("bms.racks.0.soc_pct")`` works."""

    def __new__(cls, items: Iterable[Any]) -> Indexed:  # noqa: PYI034 - always exactly this class
        obj = super().__new__(cls, items)
        for i, item in enumerate(obj):
            setattr(obj, str(i), item)
        return obj


def infos(prefix: str, specs: Iterable[Var]) -> dict[str, VariableInfo]:
    """VariableInfo entries for ``specs`` under ``prefix``."""
    return {f"{prefix}.{v.name}" if prefix else v.name:
            VariableInfo(unit=v.unit, writable=v.writable, description=v.description,
                         type=v.type)
            for v in specs}


_CASTS = {"float": float, "int": int, "str": str}
_TRUE = {"1", "true", "yes", "on", "close", "closed"}
_FALSE = {"0", "false", "no", "off", "open", ""}


def coerce(value: object, type_name: str, path: str) -> object:
    """Convert an event value (float, bool or str) to the variable's type."""
    if type_name == "bool":
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(f"{path}: cannot interpret {value!r} as bool")
        return bool(value)
    try:
        return _CASTS[type_name](value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot convert {value!r} to {type_name}") from exc
