"""The tag list as a table (console, CSV, markdown): the register map comes from here, never by hand."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from plc.tags import ModbusTable, TagSpec

COLUMNS = ("name", "dtype", "unit", "access", "area", "modbus_table", "address", "reference", "words",
           "scale", "min", "max", "description", "values")

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
            "values": ", ".join(f"{n} = {label}" for n, label in enum_values(spec)),
        })
    return out


def enum_values(spec: TagSpec) -> list[tuple[int, str]]:
    """The numbers an enum tag takes on the wire, with their labels (SCADA writes the numbers)."""
    return list(enumerate(spec.enum_labels))


def to_json(specs: Iterable[TagSpec]) -> str:
    """Every tag as a JSON object: the CSV's columns, numbers as numbers, enum values as a map."""
    by_name = {spec.name: spec for spec in specs}
    out: list[dict[str, Any]] = []
    for row in rows(by_name.values()):
        spec = by_name[row["name"]]
        item: dict[str, Any] = {k: v for k, v in row.items() if k != "values"}
        for key in ("address", "reference", "words"):
            item[key] = int(row[key]) if row[key] else None
        item["scale"] = spec.modbus.scale if spec.modbus else None
        item["min"], item["max"] = spec.min, spec.max
        item["values"] = {str(n): label for n, label in enum_values(spec)} or None
        out.append(item)
    return json.dumps(out, indent=1) + "\n"


def to_csv(specs: Iterable[TagSpec]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(specs))
    return buf.getvalue()


MARKDOWN_COLUMNS = COLUMNS[:-1]  # the enum values get a table of their own below the map


def to_markdown(specs: Iterable[TagSpec]) -> str:
    table = rows(specs)
    out = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for row in table:
        out.append("| " + " | ".join(row[c].replace("|", "\\|") for c in MARKDOWN_COLUMNS) + " |")
    enums = [row for row in table if row["values"]]
    if enums:
        out += ["", "Enum values (the numbers on the wire; `ems write` also takes the labels):", "",
                "| name | values |", "|---|---|"]
        out += [f"| {row['name']} | {row['values']} |" for row in enums]
    return "\n".join(out) + "\n"


def to_text(specs: Iterable[TagSpec]) -> str:
    table = rows(specs)
    shown = ("name", "dtype", "unit", "access", "area", "modbus_table", "address", "description")
    widths = {c: max([len(c)] + [len(r[c]) for r in table]) for c in shown}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in shown))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in shown).rstrip() for r in table]
    enums = [r for r in table if r["values"]]
    if enums:
        lines += ["", "enum values:"] + [f"  {r['name']}: {r['values']}" for r in enums]
    return "\n".join(lines) + "\n"
