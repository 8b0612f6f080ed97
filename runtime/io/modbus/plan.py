"""Read planning: which block reads fetch the registers a site uses, group by group.

Registers of one poll group and table are sorted by address and merged into blocks while
the block stays within the device's maximum per read and the space between two registers
is either served by the device (another register of the profile sits there) or no wider
than the profile's `max_gap`. Reading across addresses the device does not serve would
earn an "illegal data address" exception from most devices, so gaps are opt-in.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from plc.tags import ModbusTable
from runtime.io.modbus.profile import Profile, Register


@attrs.frozen
class Block:
    """One read request: `count` registers (or bits) from `address` in `table`."""

    group: str
    table: ModbusTable
    address: int
    count: int
    registers: tuple[str, ...]  # names of the registers decoded from this block

    @property
    def end(self) -> int:
        return self.address + self.count


def served_addresses(profile: Profile) -> dict[ModbusTable, set[int]]:
    """Every address the device answers for, per table (from the whole profile)."""
    served: dict[ModbusTable, set[int]] = {t: set() for t in ModbusTable}
    for reg in profile.registers.values():
        if not reg.alone:
            served[reg.table].update(range(reg.address, reg.address + reg.words))
    return served


def plan_reads(profile: Profile, names: Iterable[str]) -> list[Block]:
    """Blocks that read `names` (plus the scale-factor registers they need), per poll group."""
    wanted: dict[str, set[str]] = {}
    for name in names:
        reg = profile.registers[name]
        group = profile.group_of(reg)
        wanted.setdefault(group, set()).add(name)
        if reg.scale_register:
            wanted[group].add(reg.scale_register)  # read with its value, in the same cycle
    served = served_addresses(profile)
    blocks: list[Block] = []
    for group in sorted(wanted):
        by_table: dict[ModbusTable, list[str]] = {}
        for name in wanted[group]:
            by_table.setdefault(profile.registers[name].table, []).append(name)
        for table, members in sorted(by_table.items(), key=lambda item: item[0].value):
            blocks.extend(_merge(profile, group, table, members, served[table]))
    return blocks


def _merge(profile: Profile, group: str, table: ModbusTable, names: list[str], served: set[int]) -> list[Block]:
    regs = profile.registers
    limit = profile.device.max_bits_per_read if table.is_bits \
        else profile.device.max_registers_per_read
    ordered = sorted(names, key=lambda n: (regs[n].address, n))
    blocks: list[Block] = []
    start, end, members = -1, -1, []  # type: ignore[var-annotated]
    for name in ordered:
        reg = regs[name]
        reg_end = reg.address + reg.words
        if reg.alone:  # its own request, and nothing else joins it
            blocks.append(Block(group, table, reg.address, reg.words, (name,)))
            continue
        if members and _joinable(end, reg, served, profile.device.max_gap) and max(end, reg_end) - start <= limit:
            end = max(end, reg_end)
            members.append(name)
            continue
        if members:
            blocks.append(Block(group, table, start, end - start, tuple(members)))
        start, end, members = reg.address, reg_end, [name]
    if members:
        blocks.append(Block(group, table, start, end - start, tuple(members)))
    return blocks


def _joinable(end: int, reg: Register, served: set[int], max_gap: int) -> bool:
    if reg.address <= end:
        return True
    gap = range(end, reg.address)
    return len(gap) <= max_gap or all(a in served for a in gap)
