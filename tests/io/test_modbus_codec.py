"""Register encoding: byte order, word order, integer ranges, strings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.io.modbus import codec

ORDERS = st.sampled_from(["big", "little"])


def test_em24_int32_goes_least_significant_word_first() -> None:
    # -1234.5 W at 0.1 W resolution is -12345 = 0xFFFFCFC7: LSW 0xCFC7 first.
    assert codec.encode(-12345, "int32", word_order="little") == [0xCFC7, 0xFFFF]
    assert codec.decode([0xCFC7, 0xFFFF], "int32", word_order="little") == -12345


def test_big_endian_float32_matches_the_ieee_layout() -> None:
    assert codec.encode(1.0, "float32") == [0x3F80, 0x0000]


def test_byte_order_swaps_bytes_inside_each_register() -> None:
    assert codec.encode(0x1234, "uint16", byte_order="little") == [0x3412]


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=32), byte_order=ORDERS, word_order=ORDERS)
def test_float32_round_trips_in_every_order(value: float, byte_order: str, word_order: str) -> None:
    words = codec.encode(value, "float32", byte_order, word_order)  # type: ignore[arg-type]
    assert codec.decode(words, "float32", byte_order, word_order) == value  # type: ignore[arg-type]


@given(value=st.integers(-(2**63), 2**63 - 1), word_order=ORDERS)
def test_int64_round_trips(value: int, word_order: str) -> None:
    words = codec.encode(value, "int64", word_order=word_order)  # type: ignore[arg-type]
    assert len(words) == 4
    assert codec.decode(words, "int64", word_order=word_order) == value  # type: ignore[arg-type]


def test_value_outside_the_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit in int16"):
        codec.encode(40000, "int16")
    with pytest.raises(ValueError):
        codec.encode(math.nan, "uint16")


def test_string_is_zero_padded_and_read_back_without_padding() -> None:
    words = codec.encode("EM24", "string", length=4)
    assert words == [0x454D, 0x3234, 0, 0]
    assert codec.decode(words, "string") == "EM24"


def test_sunspec_not_implemented_markers() -> None:
    assert codec.raw_unsigned([0x8000]) == codec.SUNSPEC_NAN["int16"]
    assert codec.raw_unsigned([0xFFFF, 0xFFFF]) == codec.SUNSPEC_NAN["uint32"]
