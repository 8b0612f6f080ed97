"""The pymodbus async client behind the `modbus` driver: connect, read a block, write, close.

Everything here is a coroutine run on the shared IO loop (runtime/io/aio.py). Replies are
sorted into three failures the driver treats differently:
  * ExceptionReply - the device answered with a Modbus exception (illegal address...);
  * BadReply       - an answer of the wrong shape (short, wrong count, undecodable);
  * NoReply        - no usable answer within timeout * (retries + 1).
A lost connection raises ConnectionError, which restarts the driver with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from plc.tags import ModbusTable
from runtime.io.modbus.config import ModbusOptions

# pymodbus logs every retry and every lost frame; the driver logs each fault once per change.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class _ConnectNoise(logging.Filter):
    """A failed connect is logged once, by the driver, with the device's name; pymodbus's own line
    for it (and its "Repeating...." after it) would say it a second time, without the name. The
    filter stays when logging is set up again (runtime/logs.py lets pymodbus warn, for the servers)."""

    NOISE = ("Failed to connect", "Connection to (", "Repeating....")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


logging.getLogger("pymodbus.logging").addFilter(_ConnectNoise())

_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                    4: "device failure", 5: "acknowledge", 6: "device busy", 10: "gateway path unavailable",
                    11: "gateway target did not respond"}


class ExceptionReply(Exception):
    def __init__(self, code: int):
        self.code = code
        super().__init__(f"exception {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})")


class BadReply(Exception):
    """An answer of the wrong shape. `resync`: the byte stream may be out of step."""

    def __init__(self, message: str, resync: bool = False):
        super().__init__(message)
        self.resync = resync


class NoReply(Exception):
    pass


def make_client(options: ModbusOptions) -> Any:
    """A pymodbus async client for the options; pymodbus's own auto-reconnect stays off."""
    common: dict[str, Any] = {"timeout": options.timeout_s, "retries": options.retries, "reconnect_delay": 0}
    if options.transport == "rtu":
        return AsyncModbusSerialClient(options.serial_port, framer=FramerType.RTU, baudrate=options.baudrate,
                                       parity=options.parity, stopbits=options.stopbits,
                                       bytesize=options.bytesize, **common)
    framer = FramerType.RTU if options.transport == "rtu_over_tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(options.host, port=options.port, framer=framer, **common)


def describe(options: ModbusOptions) -> str:
    if options.transport == "rtu":
        return f"{options.serial_port} ({options.baudrate} {options.bytesize}{options.parity}{options.stopbits})"
    return f"{options.host}:{options.port}" + (" (RTU over TCP)" if options.transport == "rtu_over_tcp" else "")


async def connect(options: ModbusOptions) -> Any:
    client = make_client(options)
    if not await client.connect():
        client.close()
        raise ConnectionError(f"cannot connect to {describe(options)}")
    client.set_max_no_responses(2**31)  # silence is the driver's call (stale, bad, reconnect)
    return client


async def read(client: Any, table: ModbusTable, address: int, count: int, unit: int) -> list[int] | list[bool]:
    """One block read; raises ExceptionReply, BadReply, NoReply or ConnectionError."""
    call = {
        ModbusTable.COIL: client.read_coils,
        ModbusTable.DISCRETE: client.read_discrete_inputs,
        ModbusTable.HOLDING: client.read_holding_registers,
        ModbusTable.INPUT: client.read_input_registers,
    }[table]
    reply = await _execute(lambda: call(address, count=count, device_id=unit))
    if table.is_bits:
        bits = list(getattr(reply, "bits", []) or [])
        if len(bits) < count:
            raise BadReply(f"{len(bits)} bits for {count} requested")
        return [bool(b) for b in bits[:count]]
    registers = list(getattr(reply, "registers", []) or [])
    if len(registers) != count:
        raise BadReply(f"{len(registers)} registers for {count} requested")
    return registers


async def read_many(client: Any, requests: list[tuple[ModbusTable, int, int]], unit: int) -> list[Any]:
    """Several block reads in one trip to the loop: each result is the values or the failure.
    Stops at the first missing reply (the rest are not tried) and after a reply that may have
    put the stream out of step. A lost connection raises ConnectionError."""
    results: list[Any] = []
    for table, address, count in requests:
        try:
            results.append(await read(client, table, address, count, unit))
        except ExceptionReply as exc:
            results.append(exc)
        except (NoReply, BadReply) as exc:
            if not client.connected:  # the device (or the stack, on an undecodable frame) hung up
                raise ConnectionError("the connection was closed") from None
            results.append(exc)
            if isinstance(exc, NoReply) or exc.resync:
                break
    return results


async def write(client: Any, table: ModbusTable, address: int, values: list[int] | list[bool], unit: int,
                single: bool) -> None:
    if table is ModbusTable.COIL:
        if len(values) == 1:
            await _execute(lambda: client.write_coil(address, bool(values[0]), device_id=unit))
        else:
            await _execute(lambda: client.write_coils(address, [bool(b) for b in values], device_id=unit))
    elif single and len(values) == 1:
        await _execute(lambda: client.write_register(address, int(values[0]), device_id=unit))
    else:
        await _execute(lambda: client.write_registers(address, [int(w) for w in values], device_id=unit))


async def _execute(request: Callable[[], Any]) -> Any:
    """Send one request (built inside the guard: pymodbus raises at once when disconnected)."""
    try:
        reply = await request()
    except ConnectionException:
        raise ConnectionError("the connection was closed") from None
    except ModbusIOException as exc:
        text = str(exc)
        if "No response" in text or "no response" in text:
            raise NoReply("no answer") from None
        raise BadReply(text, resync=True) from None
    if reply is None:
        raise NoReply("no answer")
    if reply.isError():
        raise ExceptionReply(getattr(reply, "exception_code", 0))
    return reply
