"""Read planning: contiguous registers merge into blocks bounded by the device's maximum."""

from __future__ import annotations

from io_kit import profile

from runtime.io.modbus.plan import plan_reads
from runtime.io.modbus.profile import parse_profile

HEAD = """\
[device]
vendor = "t"
model = "t"
kind = "meter"
source = "test"
max_registers_per_read = {max}
max_gap = {gap}

[poll_groups]
normal = {{ period_s = 1.0 }}
slow = {{ period_s = 10.0 }}

[registers]
"""


def make(registers: str, max: int = 125, gap: int = 0):  # type: ignore[no-untyped-def]
    return parse_profile(HEAD.format(max=max, gap=gap) + registers, "plan.toml")


def spans(blocks):  # type: ignore[no-untyped-def]
    return [(b.group, b.address, b.count) for b in blocks]


def test_contiguous_registers_merge_into_one_read() -> None:
    p = make("""
a = { table = "holding", address = 10, dtype = "int32" }
b = { table = "holding", address = 12, dtype = "uint16" }
c = { table = "holding", address = 13, dtype = "float32" }
""")
    assert spans(plan_reads(p, ["a", "b", "c"])) == [("normal", 10, 5)]


def test_block_never_exceeds_the_device_maximum() -> None:
    regs = "\n".join(f'r{i} = {{ table = "input", address = {i}, dtype = "uint16" }}' for i in range(10))
    p = make(regs, max=4)
    blocks = plan_reads(p, [f"r{i}" for i in range(10)])
    assert spans(blocks) == [("normal", 0, 4), ("normal", 4, 4), ("normal", 8, 2)]


def test_unserved_gap_splits_the_read_unless_the_profile_allows_it() -> None:
    regs = """
a = { table = "holding", address = 0, dtype = "uint16" }
b = { table = "holding", address = 5, dtype = "uint16" }
"""
    assert spans(plan_reads(make(regs), ["a", "b"])) == [("normal", 0, 1), ("normal", 5, 1)]
    assert spans(plan_reads(make(regs, gap=4), ["a", "b"])) == [("normal", 0, 6)]


def test_gap_of_registers_the_device_serves_is_read_over() -> None:
    p = make("""
a = { table = "holding", address = 0, dtype = "uint16" }
unused = { table = "holding", address = 1, dtype = "int32" }
b = { table = "holding", address = 3, dtype = "uint16" }
""")
    blocks = plan_reads(p, ["a", "b"])
    assert spans(blocks) == [("normal", 0, 4)]
    assert blocks[0].registers == ("a", "b")


def test_each_poll_group_and_table_reads_separately() -> None:
    p = make("""
a = { table = "holding", address = 0, dtype = "uint16" }
b = { table = "holding", address = 1, dtype = "uint16", group = "slow" }
c = { table = "input", address = 2, dtype = "uint16" }
""")
    assert sorted(spans(plan_reads(p, ["a", "b", "c"]))) == [("normal", 0, 1), ("normal", 2, 1), ("slow", 1, 1)]


def test_sunspec_scale_factor_is_read_in_the_same_cycle_as_its_value() -> None:
    blocks = plan_reads(profile("sunspec_inverter_storage"), ["p_ac"])
    assert len(blocks) == 1
    assert set(blocks[0].registers) == {"p_ac", "w_sf"}
    assert (blocks[0].address, blocks[0].count) == (40084, 2)


def test_em24_power_block_covers_the_three_phases_and_the_total() -> None:
    blocks = plan_reads(profile("carlo_gavazzi_em24"), ["p_l1", "p_l2", "p_l3", "p_total"])
    assert spans(blocks) == [("fast", 0x12, 0x28 + 2 - 0x12)]
