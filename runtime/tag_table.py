"""The tag list as a table (console, CSV, markdown): the register map comes from here, never by hand."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from plc.tags import ModbusTable, TagSpec

COLUMNS = ("name", "dtype", "unit", "access", "area", "modbus_table", "address", "reference", "words",
           "scale", "min", "max", "description")

# 1-based reference numbers as SCADA tools count them (Modicon convention).
REFERENCE_BASE = {ModbusTable.COIL: 1, ModbusTable.DISCRETE: 10001, ModbusTable.INPUT: 30001,
                  ModbusTable.HOLDING: 40001}


def rows(specs: Iterable[TagSpec]) -> list[dict[str, str]]:
    """One row per tag; tags with a Modbus address first, in table and address order."""
    def key(spec: TagSpec) -> tuple[int, str, int, str]:
        if spec.modbus is None:
            return (1, "", 0, spec.name)
        return (0, spec.modbus.table.value, spec.modbus.address, spec.name)

    out = []
    for spec in sorted(specs, key=key):
        m = spec.modbus
        out.append({
            "name": spec.name,
            "dtype": spec.dtype.value,
            "unit": spec.unit,
            "access": spec.access.value,
            "area": spec.area.value,
            "modbus_table": m.table.value if m else "",
            "address": str(m.address) if m else "",
            "reference": str(REFERENCE_BASE[m.table] + m.address) if m else "",
            "words": str(spec.words) if m else "",
            "scale": f"{m.scale:g}" if m else "",
            "min": "" if spec.min is None else f"{spec.min:g}",
            "max": "" if spec.max is None else f"{spec.max:g}",
            "description": spec.description,
        })
    return out


def to_csv(specs: Iterable[TagSpec]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(specs))
    return buf.getvalue()


def to_markdown(specs: Iterable[TagSpec]) -> str:
    table = rows(specs)
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table:
        out.append("| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def to_text(specs: Iterable[TagSpec]) -> str:
    table = rows(specs)
    shown = ("name", "dtype", "unit", "access", "area", "modbus_table", "address", "description")
    widths = {c: max([len(c)] + [len(r[c]) for r in table]) for c in shown}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in shown))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in shown).rstrip() for r in table]
    return "\n".join(lines) + "\n"
