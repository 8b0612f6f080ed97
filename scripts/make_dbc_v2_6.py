"""Write io_maps/dbc/{cbms,nbms}_v2.6.dbc from the 2.5 files: the cell index sized for real racks.

2.6 changes only the cell numbering; every other frame, signal and attribute is 2.5's:
  * the 8-bit MinCellVNum / MaxCellVNum leave PackCells / NbmsCells (whose 8 bytes are full)
    for a new frame PackCellNumbers (CBMS 0x354) / NbmsCellNumbers (NBMS 0x18FF5800): 16-bit
    MinCellVNum, MaxCellVNum and, new, MinCellTNum, MaxCellTNum (1..65535, rack-local, 1-based);
  * CellVoltages keeps 3 cells of 16 bits per frame under an 8-bit CellPage, now with every
    page 0..255 declared: cells 1..768 (Cell01_V ... Cell99_V, Cell100_V ... Cell768_V); a BMS
    sends the pages of its own cells only, one frame per rack every CELL_PAGE_CYCLE_MS.
The header comment states the bus load, computed here from the cycle times.

    .venv/bin/python scripts/make_dbc_v2_6.py
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import cantools

DBC_DIR = Path(__file__).resolve().parents[1] / "io_maps" / "dbc"
PAGES = 256  # the 8-bit CellPage
CELLS = 3 * PAGES
CELL_PAGE_CYCLE_MS = 20
BITRATE = 500_000
RACK_CELLS = 400  # the rack the header's numbers are for
RACKS = 16  # the most racks the layout addresses (CBMS id & 0x00F, NBMS RackId 0..15)
# Bits of an 8-byte data frame with the interframe space: nominal, and with worst-case bit stuffing.
FRAME_BITS = {False: (111, 135), True: (131, 160)}  # 11-bit ids, 29-bit ids

FAMILY = {
    "cbms": {"cells": 850, "numbers": 852, "numbers_name": "PackCellNumbers", "pages": 1024,
             "intel": True, "after": 851, "rack_signal": False},
    "nbms": {"cells": 2566869504, "numbers": 2566871040, "numbers_name": "NbmsCellNumbers",
             "pages": 2566870784, "intel": False, "after": 2566869760, "rack_signal": True},
}

NUMBERS = (  # signal, PlantVar, comment
    ("MinCellVNum", "@min_cell_v_num", "Rack-local number (1-based) of the lowest cell"),
    ("MaxCellVNum", "@max_cell_v_num", "Rack-local number (1-based) of the highest cell"),
    ("MinCellTNum", "@min_cell_t_num", "Rack-local number (1-based) of the coldest cell"),
    ("MaxCellTNum", "@max_cell_t_num", "Rack-local number (1-based) of the hottest cell"),
)


def cell_name(n: int) -> str:
    return f"Cell{n:02d}_V"


def start_bit(byte: int, intel: bool) -> int:
    """The DBC start bit of a signal beginning at `byte` (Intel: its lsb; Motorola: its msb)."""
    return 8 * byte if intel else 8 * byte + 7


def bus_load(family: str, extended: bool) -> dict[str, float]:
    """Frames per second and bus load (nominal, worst case) of the 2.6 layout for RACKS racks."""
    db = cantools.database.load_file(str(DBC_DIR / f"{family}_v2.5.dbc"), strict=True)
    nominal, worst = FRAME_BITS[extended]
    pack = rack = 0.0
    for message in db.messages:
        cycle = message.dbc.attributes["GenMsgCycleTime"].value if "GenMsgCycleTime" in message.dbc.attributes \
            else 0
        if message.name == "CellVoltages" or not cycle:
            continue
        per_rack = "RackMessage" in message.dbc.attributes and message.dbc.attributes["RackMessage"].value
        if per_rack:
            rack += 1000.0 / cycle
        else:
            pack += 1000.0 / cycle
    pack += 1000.0 / 500  # the new cell-number frame, at PackCells' 500 ms
    pages = 1000.0 / CELL_PAGE_CYCLE_MS
    total = pack + RACKS * (rack + pages)
    return {"pages_fps": pages, "page_pct": 100 * pages * nominal / BITRATE,
            "page_worst_pct": 100 * pages * worst / BITRATE,
            "all_pages_pct": 100 * RACKS * pages * nominal / BITRATE,
            "all_pages_worst_pct": 100 * RACKS * pages * worst / BITRATE,
            "total_fps": total, "total_pct": 100 * total * nominal / BITRATE,
            "total_worst_pct": 100 * total * worst / BITRATE, "nominal": nominal, "worst": worst}


def header(family: str, numbers_id: int, extended: bool) -> str:
    load = bus_load(family, extended)
    pages = math.ceil(RACK_CELLS / 3)
    ident = f"0x{numbers_id & 0x1FFFFFFF:X}"
    bits = "29-bit" if extended else "11-bit"
    text = (f"{family.upper()} BMS CAN protocol 2.6 - the EMS project's own reference layout, not the vendor's "
            "file (see docs/devices.md).")
    if family == "cbms":
        text += (" Frame 0x351 (PackLimits) shares its id with the SMA/Pylontech battery protocol's charge and "
                 "discharge limits, which have another layout: a BMS speaking that protocol must not be put on "
                 "this bus with this file.")
    text += (
        f" 2.6 sizes the cell index for racks of 240-400 cells and more: the cell numbers are 16 bits "
        f"(1..65535, rack-local) in frame {ident} ({FAMILY[family]['numbers_name']}: MinCellVNum, MaxCellVNum, "
        f"MinCellTNum, MaxCellTNum; the 8-bit numbers of 2.5 left the full cell-extremes frame), and "
        f"CellVoltages carries 3 cells (16 bits, 1 mV) per frame under an 8-bit CellPage: page n is cells "
        f"3n+1..3n+3, 256 pages, cells 1..{CELLS}. A BMS sends the pages of its own cells only, one frame per "
        f"rack every {CELL_PAGE_CYCLE_MS} ms: a {RACK_CELLS}-cell rack is {pages} pages, each cell anew every "
        f"{pages * CELL_PAGE_CYCLE_MS / 1000:.2f} s, {load['pages_fps']:.0f} frames/s, "
        f"{load['page_pct']:.2f} % of a {BITRATE // 1000} kbit/s bus ({load['nominal']} bits per 8-byte "
        f"{bits} frame; {load['page_worst_pct']:.2f} % with worst-case bit stuffing, {load['worst']} bits). "
        f"{RACKS} racks: {load['all_pages_pct']:.1f} % ({load['all_pages_worst_pct']:.1f} %) for the pages, "
        f"{load['total_pct']:.1f} % ({load['total_worst_pct']:.1f} %) for the whole layout, "
        f"{load['total_fps']:.0f} frames/s.")
    return text


def convert(family: str) -> str:
    f = FAMILY[family]
    cells_id, numbers_id, pages_id, after = f["cells"], f["numbers"], f["pages"], f["after"]
    intel = bool(f["intel"])
    order = "1" if intel else "0"
    source = (DBC_DIR / f"{family}_v2.5.dbc").read_text()
    out: list[str] = []
    block: int | None = None  # the BO_ whose SG_ lines are being read
    for line in source.splitlines():
        if line.startswith("BO_ "):
            block = int(line.split()[1])
        elif not line.startswith(" SG_ "):
            if block == after and not line.strip():
                out.extend(numbers_block(f, intel, order))
            block = None if not line.strip() else block
        if line.startswith("VERSION "):
            line = line.replace("2.5", "2.6")
        elif line.startswith(" SG_ ") and block == cells_id and "CellVNum" in line:
            continue
        elif line.startswith(" SG_ ") and block == pages_id:
            if "CellPage M" in line:
                out.append(re.sub(r"\[0\|15\]", f"[0|{PAGES - 1}]", line))
                out.extend(page_signals(intel, order, bool(f["rack_signal"])))
            elif "Cell" not in line.split()[1]:
                out.append(line)
            continue
        elif line.startswith('CM_ "'):
            line = f'CM_ "{header(family, numbers_id, not intel)}";'
        elif re.match(rf"(CM_ SG_|BA_ \"PlantVar\" SG_) {cells_id} M..CellVNum ", line):
            continue
        elif re.match(rf"CM_ SG_ {pages_id} Cell\d+_V ", line) or re.match(
                rf"BA_ \"PlantVar\" SG_ {pages_id} Cell\d+_V ", line):
            if "Cell01_V" in line:
                kind = "CM_" if line.startswith("CM_") else "BA_"
                out.extend(page_attributes(kind, pages_id))
            continue
        elif line.startswith(f"CM_ SG_ {pages_id} CellPage "):
            line = f'CM_ SG_ {pages_id} CellPage "Page n carries cells 3n+1..3n+3 (0..{PAGES - 1}: cells 1..{CELLS})";'
        elif line.startswith(f"CM_ BO_ {pages_id} "):
            line = (f'CM_ BO_ {pages_id} "Cell voltages of one rack, 3 per page, one page per frame; the BMS sends '
                    f'the pages of its cells only";')
        elif line.startswith(f"BA_ \"GenMsgCycleTime\" BO_ {pages_id} "):
            line = f'BA_ "GenMsgCycleTime" BO_ {pages_id} {CELL_PAGE_CYCLE_MS};'
        elif line == 'BA_ "ProtocolVersion" "2.5";':
            line = 'BA_ "ProtocolVersion" "2.6";'
        out.append(line)
        if line.startswith(f"CM_ BO_ {after} "):
            out.extend(f'CM_ SG_ {numbers_id} {name} "{comment}";' for name, _var, comment in NUMBERS)
            out.append(f'CM_ BO_ {numbers_id} "Cell numbers of the pack\'s cell extremes (16 bits)";')
        elif line.startswith(f"BA_ \"GenMsgCycleTime\" BO_ {after} "):
            out.extend(f'BA_ "PlantVar" SG_ {numbers_id} {name} "{var}";' for name, var, _comment in NUMBERS)
            out.append(f'BA_ "GenMsgCycleTime" BO_ {numbers_id} 500;')
    return "\n".join(out) + "\n"


def numbers_block(f: dict[str, object], intel: bool, order: str) -> list[str]:
    lines = [f"BO_ {f['numbers']} {f['numbers_name']}: 8 BMS"]
    for i, (name, _var, _comment) in enumerate(NUMBERS):
        lines.append(f' SG_ {name} : {start_bit(2 * i, intel)}|16@{order}+ (1,0) [0|65535] "" EMS')
    return [*lines, ""]


def page_signals(intel: bool, order: str, rack_signal: bool) -> list[str]:
    first = 2 if rack_signal else 1  # NBMS: RackId, CellPage, then the cells
    lines = []
    for page in range(PAGES):
        for slot in range(3):
            n = 3 * page + slot + 1
            lines.append(f' SG_ {cell_name(n)} m{page} : {start_bit(first + 2 * slot, intel)}|16@{order}+ '
                         f'(0.001,0) [0|5] "V" EMS')
    return lines


def page_attributes(kind: str, pages_id: int) -> list[str]:
    if kind == "CM_":
        return [f'CM_ SG_ {pages_id} {cell_name(n)} "Cell {n} voltage";' for n in range(1, CELLS + 1)]
    return [f'BA_ "PlantVar" SG_ {pages_id} {cell_name(n)} "@cell_v";' for n in range(1, CELLS + 1)]


def main() -> int:
    for family in FAMILY:
        path = DBC_DIR / f"{family}_v2.6.dbc"
        path.write_text(convert(family))
        cantools.database.load_file(str(path), strict=True)  # refuses overlapping or out-of-frame signals
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
