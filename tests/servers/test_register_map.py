"""The register map: addresses from tag declarations, encoding of snapshots, decoding of writes."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plc.tags import Access, Area, DType, ModbusAddress, ModbusTable, TagSpec
from runtime.image import ProcessImage
from runtime.servers.register_map import (
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    MapError,
    RegisterMap,
    WriteRejected,
    decode_value,
    make_encoder,
    range_warnings,
)

H, IR, C, D = ModbusTable.HOLDING, ModbusTable.INPUT, ModbusTable.COIL, ModbusTable.DISCRETE


def tag(name, dtype, table, address, access=Access.RO, scale=1.0, **kw):  # type: ignore[no-untyped-def]
    return TagSpec(name, dtype, Area.MEMORY, access=access, modbus=ModbusAddress(table, address, scale), **kw)


def entry(spec: TagSpec, word_order="high_first"):  # type: ignore[no-untyped-def]
    return next(iter(RegisterMap.from_specs([spec], word_order)))


# --- encoding -------------------------------------------------------------------------------------------
def test_float32_takes_two_registers_high_word_first_by_default():
    e = entry(tag("p", DType.FLOAT32, IR, 0))
    assert make_encoder(e, "high_first")(1234.5) == [0x449A, 0x5000]


def test_float32_low_word_first_swaps_the_registers():
    e = entry(tag("p", DType.FLOAT32, IR, 0))
    assert make_encoder(e, "low_first")(1234.5) == [0x5000, 0x449A]


def test_int32_negative_value_in_twos_complement_high_word_first():
    e = entry(tag("e", DType.INT32, IR, 0))
    assert make_encoder(e, "high_first")(-2) == [0xFFFF, 0xFFFE]
    assert make_encoder(e, "low_first")(70000) == [70000 & 0xFFFF, 1]


def test_int16_with_scale_10_reads_tenths():
    e = entry(tag("t", DType.INT16, IR, 0, scale=10.0))
    assert make_encoder(e, "high_first")(-25) == [(-250) & 0xFFFF]


def test_int16_with_scale_0_1_reads_tens_of_units():
    e = entry(tag("q", DType.INT16, H, 0, access=Access.RW, scale=0.1))
    assert make_encoder(e, "high_first")(12340) == [1234]


def test_scaled_value_past_the_register_range_saturates():
    e = entry(tag("t", DType.INT16, IR, 0, scale=10.0))
    assert make_encoder(e, "high_first")(5000) == [32767]
    assert make_encoder(e, "high_first")(-5000) == [(-32768) & 0xFFFF]


def test_string_packs_two_ascii_characters_per_register_padded_with_nul():
    e = entry(tag("s", DType.STRING, IR, 0, length=5))
    assert e.words == 3
    assert make_encoder(e, "high_first")("OK!") == [0x4F4B, 0x2100, 0x0000]


def test_a_value_never_set_reads_zero_and_a_float_reads_nan():
    f = make_encoder(entry(tag("f", DType.FLOAT32, IR, 0)), "high_first")(None)
    assert math.isnan(struct.unpack(">f", struct.pack(">HH", *f))[0])
    assert make_encoder(entry(tag("n", DType.UINT16, IR, 0)), "high_first")(None) == [0]


def test_a_snapshot_encodes_every_table_and_gaps_read_zero():
    specs = [tag("a", DType.UINT16, IR, 0), tag("b", DType.UINT16, IR, 3), tag("c", DType.BOOL, D, 2),
             tag("d", DType.INT32, H, 2, access=Access.RW)]
    image = ProcessImage(specs)
    for name, value in (("a", 7), ("b", 9), ("c", True), ("d", -1)):
        image[name].set(value)
    image.subscribe(lambda s: None)
    rmap = RegisterMap.from_specs(specs)
    encoded = rmap.encode(image.publish(1, 0.0))
    assert encoded.tables[IR] == [7, 0, 0, 9]
    assert encoded.tables[D] == [False, False, True]
    assert encoded.tables[H] == [0, 0, 0xFFFF, 0xFFFF]
    assert rmap.read(encoded, IR, 1, 3) == [0, 0, 9]


def test_reading_past_the_highest_mapped_address_is_illegal_address():
    rmap = RegisterMap.from_specs([tag("a", DType.UINT16, IR, 0), tag("b", DType.FLOAT32, IR, 4)])
    image = ProcessImage([rmap.entries[IR][i].spec for i in range(2)])
    encoded = rmap.encode(image.publish(1, 0.0))
    assert rmap.read(encoded, IR, 0, 6) == [0, 0, 0, 0, 0x7FC0, 0]
    assert rmap.read(encoded, IR, 5, 2) == ILLEGAL_ADDRESS
    assert rmap.read(encoded, H, 0, 1) == ILLEGAL_ADDRESS


# --- building the map -----------------------------------------------------------------------------------
def test_overlapping_tags_are_reported_with_both_names():
    with pytest.raises(MapError) as info:
        RegisterMap.from_specs([tag("a", DType.FLOAT32, IR, 10), tag("b", DType.UINT16, IR, 11)])
    assert info.value.problems == [("b", "input addresses 11..11 overlap tag 'a'")]


def test_the_same_address_in_two_tables_is_no_overlap():
    rmap = RegisterMap.from_specs([tag("a", DType.UINT16, IR, 0), tag("b", DType.UINT16, H, 0, access=Access.RW)])
    assert len(rmap) == 2


def test_a_writable_tag_in_the_input_table_is_refused():
    with pytest.raises(MapError, match="writable tag must be in a coil or holding table"):
        RegisterMap.from_specs([tag("a", DType.UINT16, IR, 0, access=Access.RW)])


def test_a_number_in_a_bit_table_is_refused():
    with pytest.raises(MapError, match="belongs in a holding or input table"):
        RegisterMap.from_specs([tag("a", DType.UINT16, D, 0)])


def test_a_scale_on_a_float_is_refused():
    with pytest.raises(MapError, match="integer tags only"):
        RegisterMap.from_specs([tag("a", DType.FLOAT32, IR, 0, scale=10.0)])


def test_a_tag_running_past_address_65535_is_refused():
    with pytest.raises(MapError, match="leave 0..65535"):
        RegisterMap.from_specs([tag("a", DType.FLOAT32, IR, 65535)])


def test_a_scaled_range_that_does_not_fit_its_register_is_warned_about():
    rmap = RegisterMap.from_specs([tag("t", DType.INT16, IR, 0, scale=10.0, min=-4000, max=4000)])
    assert range_warnings(rmap) == [("t", "range [-4000, 4000] x scale 10 does not fit int16 [-32768, 32767]: "
                                          "values past it read saturated")]


# --- writes ---------------------------------------------------------------------------------------------
WRITABLE = [
    tag("q", DType.INT16, H, 0, access=Access.RW, scale=0.1),
    tag("fw", DType.UINT16, H, 1),
    tag("p", DType.FLOAT32, H, 2, access=Access.RW),
    tag("limit", DType.UINT32, H, 4, access=Access.RW),
    tag("soc", DType.INT16, H, 6, access=Access.RW, scale=10.0),
    tag("name", DType.STRING, H, 8, access=Access.RW, length=4),
    tag("run", DType.BOOL, C, 0, access=Access.RW),
]


@pytest.fixture
def rmap() -> RegisterMap:
    return RegisterMap.from_specs(WRITABLE)


def test_a_write_spanning_three_tags_decodes_all_of_them(rmap: RegisterMap):
    words = [0x449A, 0x5000, 0x0001, 0x86A0, 550]
    assert rmap.decode_write(H, 2, words) == [("p", 1234.5), ("limit", 100000), ("soc", 55)]


def test_writing_one_register_of_a_float_is_illegal_address(rmap: RegisterMap):
    with pytest.raises(WriteRejected) as info:
        rmap.decode_write(H, 3, [0x5000])
    assert info.value.code == ILLEGAL_ADDRESS
    assert "a write must cover all of them" in info.value.reason


def test_a_write_including_a_read_only_register_is_illegal_address(rmap: RegisterMap):
    with pytest.raises(WriteRejected) as info:
        rmap.decode_write(H, 0, [(-150) & 0xFFFF, 42])
    assert info.value.code == ILLEGAL_ADDRESS
    assert "'fw'" in info.value.reason


def test_a_write_to_an_unmapped_register_is_illegal_address(rmap: RegisterMap):
    with pytest.raises(WriteRejected) as info:
        rmap.decode_write(H, 7, [1])
    assert (info.value.code, info.value.reason) == (ILLEGAL_ADDRESS, "no tag at holding address 7")


def test_a_nan_float_is_illegal_value(rmap: RegisterMap):
    with pytest.raises(WriteRejected) as info:
        rmap.decode_write(H, 2, [0x7FC0, 0x0000])
    assert info.value.code == ILLEGAL_VALUE


def test_a_scaled_register_that_is_not_a_whole_value_is_illegal_value(rmap: RegisterMap):
    with pytest.raises(WriteRejected) as info:
        rmap.decode_write(H, 6, [555])  # 55.5 for an integer tag in tenths
    assert info.value.code == ILLEGAL_VALUE
    assert rmap.decode_write(H, 6, [550]) == [("soc", 55)]


def test_a_string_write_strips_the_padding(rmap: RegisterMap):
    assert rmap.decode_write(H, 8, [0x4869, 0x0000]) == [("name", "Hi")]


def test_a_coil_write_decodes_to_a_bool(rmap: RegisterMap):
    assert rmap.decode_write(C, 0, [True]) == [("run", True)]


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["high_first", "low_first"]))
def test_float32_round_trips_in_both_word_orders(value: float, order: str):
    e = entry(tag("p", DType.FLOAT32, H, 0, access=Access.RW))
    assert decode_value(e, make_encoder(e, order)(value), order) == value  # type: ignore[arg-type]


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["high_first", "low_first"]))
def test_int32_round_trips_in_both_word_orders(value: int, order: str):
    e = entry(tag("e", DType.INT32, H, 0, access=Access.RW))
    assert decode_value(e, make_encoder(e, order)(value), order) == value  # type: ignore[arg-type]


@given(st.integers(-3276, 3276))
def test_int16_with_scale_round_trips_whole_values(value: int):
    e = entry(tag("t", DType.INT16, H, 0, access=Access.RW, scale=10.0))
    assert decode_value(e, make_encoder(e, "high_first")(value), "high_first") == value
