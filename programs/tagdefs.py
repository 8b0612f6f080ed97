"""Short-hands for the tags a program declares: parameters (writable, retained) and status."""

from __future__ import annotations

import enum
from typing import Any

from plc.tags import Access, Area, DType, ModbusAddress, ModbusTable, TagSpec
from programs.enums import labels


class Layout:
    """Hands out Modbus addresses in declaration order from a program's bases.

    Holding registers and coils for parameters, input registers and discrete inputs for
    status. Append new tags at the end of a program's declarations to keep addresses stable.
    """

    def __init__(self, holding_base: int | None, input_base: int | None):
        self._next = {ModbusTable.HOLDING: holding_base, ModbusTable.INPUT: input_base,
                      ModbusTable.COIL: holding_base, ModbusTable.DISCRETE: input_base}

    def address(self, table: ModbusTable, words: int) -> ModbusAddress | None:
        """The next free address; a 32-bit value (two words) at the next even one, so that a
        block read of floats from any even address never straddles one."""
        base = self._next[table]
        if base is None:
            return None
        if words == 2 and base % 2:
            base += 1
        self._next[table] = base + words
        return ModbusAddress(table, base)


def _words(dtype: DType) -> int:
    return 2 if dtype in (DType.FLOAT32, DType.INT32, DType.UINT32) else 1


def param(layout: Layout, name: str, dtype: DType, initial: Any, description: str, unit: str = "",
          lo: float | None = None, hi: float | None = None, enum_cls: type[enum.IntEnum] | None = None,
          retain: bool = True) -> TagSpec:
    """A setting that SCADA, the cloud or the HMI may change at run time."""
    table = ModbusTable.COIL if dtype is DType.BOOL else ModbusTable.HOLDING
    return TagSpec(
        name=name, dtype=dtype, area=Area.MEMORY, unit=unit, min=lo, max=hi, access=Access.RW,
        description=description, modbus=layout.address(table, _words(dtype)), retain=retain,
        initial=initial, enum_labels=labels(enum_cls) if enum_cls else (),
    )


def status(layout: Layout, name: str, dtype: DType, description: str, unit: str = "",
           enum_cls: type[enum.IntEnum] | None = None, length: int = 0, initial: Any = None,
           telemetry: bool = False) -> TagSpec:
    """A value the program computes for others to read (`telemetry`: in every spot message too)."""
    table = ModbusTable.DISCRETE if dtype is DType.BOOL else ModbusTable.INPUT
    words = (length + 1) // 2 if dtype is DType.STRING else _words(dtype)
    if initial is None:
        initial = {DType.BOOL: False, DType.FLOAT32: 0.0, DType.STRING: ""}.get(dtype, 0)
    return TagSpec(
        name=name, dtype=dtype, area=Area.MEMORY, unit=unit, access=Access.RO, description=description,
        modbus=layout.address(table, words), initial=initial,
        enum_labels=labels(enum_cls) if enum_cls else (), length=length, telemetry=telemetry,
    )


def text(value: str, length: int) -> str:
    """Fit a reason text into a string tag."""
    return value if len(value) <= length else value[: length - 1] + "~"
