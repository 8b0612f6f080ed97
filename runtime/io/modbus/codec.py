"""Modbus register values <-> Python numbers, with the device's byte and word order.

A register is 16 bits. Multi-register values (32/64-bit integers and floats) are laid out
word by word: `word_order = "big"` puts the most significant word first (the Modbus
convention), `"little"` puts it last (Carlo Gavazzi "LSW first", LuxPower "L then H").
`byte_order` says how the two bytes inside each register are sent ("big" is standard).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

Order = Literal["big", "little"]

# dtype -> (registers, struct format of the whole value in big-endian order)
_FORMATS: dict[str, tuple[int, str]] = {
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "sunssf": (1, ">h"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "acc32": (2, ">I"),
    "float32": (2, ">f"),
    "int64": (4, ">q"),
    "uint64": (4, ">Q"),
    "float64": (4, ">d"),
}
# "string": two ASCII characters per register; "string_lo": one per register, in its low byte
# (the high byte 0), as Carlo Gavazzi's EM3xx and ET1xx meters send their serial number
STRING_DTYPES = ("string", "string_lo")
REGISTER_DTYPES = tuple(_FORMATS) + STRING_DTYPES
BIT_DTYPES = ("bool",)
DTYPES = REGISTER_DTYPES + BIT_DTYPES
INTEGER_DTYPES = ("int16", "uint16", "int32", "uint32", "acc32", "int64", "uint64", "sunssf")
FLOAT_DTYPES = ("float32", "float64")

# SunSpec "not implemented" values: a register holding one of these has no value.
SUNSPEC_NAN: dict[str, int] = {
    "int16": 0x8000,
    "sunssf": 0x8000,
    "uint16": 0xFFFF,
    "int32": 0x80000000,
    "uint32": 0xFFFFFFFF,
    "acc32": 0,
    "int64": 0x8000000000000000,
    "uint64": 0xFFFFFFFFFFFFFFFF,
}


def register_count(dtype: str, length: int = 0) -> int:
    """Registers a value of this dtype takes (`length` is in registers for strings)."""
    if dtype in STRING_DTYPES:
        return length
    if dtype in BIT_DTYPES:
        return 1
    return _FORMATS[dtype][0]


def _swap_bytes(words: Sequence[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def _to_bytes(words: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    words = list(words)
    if byte_order == "little":
        words = _swap_bytes(words)
    if word_order == "little":
        words.reverse()
    return b"".join(w.to_bytes(2, "big") for w in words)


def _from_bytes(data: bytes, byte_order: Order, word_order: Order) -> list[int]:
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = _swap_bytes(words)
    return words


def raw_unsigned(words: Sequence[int], byte_order: Order = "big", word_order: Order = "big") -> int:
    """The registers as one unsigned integer (for "not implemented" checks and bit fields)."""
    return int.from_bytes(_to_bytes(words, byte_order, word_order), "big")


def decode(words: Sequence[int], dtype: str, byte_order: Order = "big", word_order: Order = "big") -> int | float | str:
    """Registers -> value. Raises ValueError for a wrong register count."""
    if dtype == "string":
        data = _to_bytes(words, byte_order, "big")  # strings run in address order
        return data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    if dtype == "string_lo":
        low = bytes(w & 0xFF for w in (_swap_bytes(words) if byte_order == "little" else words))
        return low.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    count, fmt = _FORMATS[dtype]
    if len(words) != count:
        raise ValueError(f"{dtype} takes {count} registers, got {len(words)}")
    return struct.unpack(fmt, _to_bytes(words, byte_order, word_order))[0]


def encode(value: float | str, dtype: str, byte_order: Order = "big", word_order: Order = "big",
           length: int = 0) -> list[int]:
    """Value -> registers. Integers are rounded; out-of-range values raise ValueError."""
    if dtype == "string":
        data = str(value).encode("ascii")[: length * 2].ljust(length * 2, b"\x00")
        return _from_bytes(data, byte_order, "big")
    if dtype == "string_lo":
        words = list(str(value).encode("ascii")[:length].ljust(length, b"\x00"))
        return _swap_bytes(words) if byte_order == "little" else words
    _, fmt = _FORMATS[dtype]
    if dtype not in FLOAT_DTYPES:
        if isinstance(value, str):  # the TypeError round() would raise, with the dtype in it
            raise TypeError(f"cannot write text {value!r} as {dtype}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot write {value} as {dtype}")
        value = int(round(value))
    try:
        data = struct.pack(fmt, value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit in {dtype}") from exc
    return _from_bytes(data, byte_order, word_order)
