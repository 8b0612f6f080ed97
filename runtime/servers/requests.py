"""Requests checked against the Modbus application protocol before pymodbus decodes them.

The checks follow the Modbus Application Protocol Specification V1.1b3 (modbus.org, 2012),
section 6 (one state diagram per function code) and section 7 (exception codes):

- a function code the server does not serve is exception 01 (illegal function);
- a served function code whose quantity, byte count or value is outside what its section
  allows, or whose PDU has the wrong length, is exception 03 (illegal data value);
- addresses (exception 02) and the data themselves are the datastore's to check.

| FC | section | request after the function code | allowed |
|---|---|---|---|
| 01, 02 | 6.1, 6.2 | address, quantity | quantity 1..2000 (0x07D0) |
| 03, 04 | 6.3, 6.4 | address, quantity | quantity 1..125 (0x007D) |
| 05 | 6.5 | address, value | value 0x0000 (off) or 0xFF00 (on) |
| 06 | 6.6 | address, value | any value |
| 15 | 6.11 | address, quantity, byte count, bits | quantity 1..1968 (0x07B0), byte count = ceil(quantity / 8) |
| 16 | 6.12 | address, quantity, byte count, registers | quantity 1..123 (0x007B), byte count = 2 x quantity |
| 22 | 6.16 | address, AND mask, OR mask | any masks |
| 23 | 6.17 | read address, read quantity, write address, write quantity, byte count, registers | read 1..125, write 1..121 (0x0079), byte count = 2 x write quantity |

`RequestDecoder` applies the table to every PDU: a refused request becomes a `RefusedRequest`,
which the server answers with its exception without touching the datastore.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from pymodbus.pdu import DecodePDU, ModbusPDU

from runtime.servers.register_map import ILLEGAL_FUNCTION, ILLEGAL_VALUE

SPEC = "Modbus Application Protocol Specification V1.1b3"

# Every function code the module knows how to check: the most a datastore can serve.
CHECKED_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23})


def _u16(pdu: bytes, at: int) -> int:
    return (pdu[at] << 8) | pdu[at + 1]


def _read(limit: int) -> Callable[[bytes], str | None]:
    def check(pdu: bytes) -> str | None:
        if len(pdu) != 5:
            return f"a read request is 5 bytes, got {len(pdu)}"
        quantity = _u16(pdu, 3)
        if not 1 <= quantity <= limit:
            return f"quantity {quantity} is outside 1..{limit}"
        return None

    return check


def _write_single_coil(pdu: bytes) -> str | None:
    if len(pdu) != 5:
        return f"a write single coil request is 5 bytes, got {len(pdu)}"
    value = _u16(pdu, 3)
    if value not in (0x0000, 0xFF00):
        return f"coil value 0x{value:04X} is neither 0x0000 nor 0xFF00"
    return None


def _fixed(size: int) -> Callable[[bytes], str | None]:
    def check(pdu: bytes) -> str | None:
        return None if len(pdu) == size else f"the request is {size} bytes, got {len(pdu)}"

    return check


def _write_multiple(limit: int, bytes_for: Callable[[int], int]) -> Callable[[bytes], str | None]:
    def check(pdu: bytes) -> str | None:
        if len(pdu) < 6:
            return f"a write multiple request is at least 6 bytes, got {len(pdu)}"
        quantity, count = _u16(pdu, 3), pdu[5]
        if not 1 <= quantity <= limit:
            return f"quantity {quantity} is outside 1..{limit}"
        if count != bytes_for(quantity):
            return f"byte count {count} for {quantity} values, expected {bytes_for(quantity)}"
        if len(pdu) != 6 + count:
            return f"byte count {count} but {len(pdu) - 6} data bytes"
        return None

    return check


def _read_write_multiple(pdu: bytes) -> str | None:
    if len(pdu) < 10:
        return f"a read/write multiple request is at least 10 bytes, got {len(pdu)}"
    reads, writes, count = _u16(pdu, 3), _u16(pdu, 7), pdu[9]
    if not 1 <= reads <= 125:
        return f"read quantity {reads} is outside 1..125"
    if not 1 <= writes <= 121:
        return f"write quantity {writes} is outside 1..121"
    if count != 2 * writes:
        return f"byte count {count} for {writes} registers, expected {2 * writes}"
    if len(pdu) != 10 + count:
        return f"byte count {count} but {len(pdu) - 10} data bytes"
    return None


# Function code -> check of the whole PDU (function code included): None when it may be served.
CHECKS: dict[int, Callable[[bytes], str | None]] = {
    1: _read(2000),
    2: _read(2000),
    3: _read(125),
    4: _read(125),
    5: _write_single_coil,
    6: _fixed(5),
    15: _write_multiple(1968, lambda n: (n + 7) // 8),
    16: _write_multiple(123, lambda n: 2 * n),
    22: _fixed(7),
    23: _read_write_multiple,
}
assert set(CHECKS) == CHECKED_FUNCTIONS


def check_request(pdu: bytes, served: Collection[int]) -> tuple[int, str] | None:
    """None when `pdu` (function code first) is a well-formed request of a function in `served`;
    else (exception code, reason)."""
    if not pdu:
        return ILLEGAL_FUNCTION, "no function code"
    function = pdu[0]
    if function not in served or function not in CHECKS:
        return ILLEGAL_FUNCTION, f"function code 0x{function:02X} is not served"
    reason = CHECKS[function](pdu)
    return None if reason is None else (ILLEGAL_VALUE, reason)


class RefusedRequest(ModbusPDU):
    """A request answered with an exception before it reaches the datastore."""

    def __init__(self, function: int, exception: int, reason: str):
        super().__init__()
        self.function_code = function & 0x7F
        self.exception = exception
        self.reason = reason


class RequestDecoder(DecodePDU):
    """pymodbus's request decoder behind the checks of `check_request`."""

    def __init__(self, served: Collection[int]):
        super().__init__(is_server=True)
        self.served = frozenset(served) & CHECKED_FUNCTIONS

    def decode(self, frame: bytes) -> ModbusPDU | None:
        refused = check_request(frame, self.served)
        if refused is not None:
            return RefusedRequest(frame[0] if frame else 0, *refused)
        pdu = super().decode(frame)
        if pdu is None:  # checked above, so this should not happen; answer it rather than drop it
            return RefusedRequest(frame[0], ILLEGAL_VALUE, "pymodbus could not decode the request")
        return pdu
