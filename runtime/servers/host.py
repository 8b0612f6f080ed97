"""Runs pymodbus servers (TCP, and RTU on a serial line) in their own thread and event loop.

The servers answer from a `Datastore`: the tag server and the meter gateway each provide one.
pymodbus parses frames and builds responses; this module adds what a controller needs and
pymodbus lacks: the client's address reaches the datastore (for the write allow-list), unit
ids are checked here, every request on a connection is answered in order, a write of one
coil or register is echoed as the spec says (not re-read), and a failing datastore is
logged once instead of once per request.

What a client sends is checked before pymodbus decodes it (runtime/servers/requests.py, after the
Modbus application protocol specification): a function the datastore does not serve is answered
01, a bad quantity, byte count or coil value 03. A TCP frame whose MBAP header is not Modbus
(protocol id not 0, length outside 2..254) closes the connection, as the stream cannot be
re-synchronised. Each server holds at most `max_connections` clients (and
`max_connections_per_client` from one address) and closes a connection
that has not completed a request for `idle_timeout_s` (one that never sends, or sends a byte at
a time); a client's bad input is logged at most once a minute per client and kind, with a count
of what was held back (runtime/logs.py, LogLimiter).

Requests are handled in the event loop's thread as soon as their frame is complete: the
datastore's methods never wait, so the pymodbus coroutine that calls them runs to its end
in one step and needs no task of its own.

A write the datastore accepts may still have to be applied and stored: it then returns a
future (runtime/image.py WriteRequest.done) and the answer waits for it, at most the store's
`write_timeout_s`. Done: the answer pymodbus built; failed (not stored, never applied):
exception 04; not done in time: exception 06 (busy; the write may still apply later, as if the
answer had been lost). Meanwhile the event loop serves the other connections, and the requests
that arrive behind the write on its own connection are held and handled after it, in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, Literal, Protocol

import attrs
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerSocket
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

from plc.tags import ModbusTable
from runtime.logs import LogLimiter
from runtime.servers.register_map import TABLE_OF_FUNCTION
from runtime.servers.requests import RefusedRequest, RequestDecoder

log = logging.getLogger(__name__)

ECHOED_WRITES = (5, 6)  # write single coil / register: the response repeats the request

# The servers share the GIL with the scan thread, and Python hands the GIL to a waiting
# thread only after the holder has run for the switch interval (5 ms by default): a busy
# server could make the scan wake up to 5 ms late. At 0.5 ms that bound drops below the 1 ms
# jitter budget; the extra switches cost nothing while the scan sleeps.
SWITCH_INTERVAL_S = 0.0005
DEFAULT_WRITE_TIMEOUT_S = 1.0  # a datastore's write_timeout_s, when it has none

# File descriptors kept for everything but the servers' clients: the drivers' sockets and serial
# ports, log files, SQLite, pipes. Each of the (at most two) servers may take half of the rest.
RESERVED_FDS = 256
SERVERS_SHARING_FDS = 2
MAX_MBAP_LENGTH = 254  # unit id + a PDU of at most 253 bytes
MAX_ADU = 6 + MAX_MBAP_LENGTH  # the longest Modbus TCP frame
# The listening socket's backlog (asyncio's default: 100). asyncio accepts up to this many
# connections in one go and opens their descriptors before any is reported connected (and the
# ones past max_connections closed), so it bounds the descriptors a burst of connects takes
# beyond max_connections.
LISTEN_BACKLOG = 16


def bound_gil_switch_interval(limit_s: float = SWITCH_INTERVAL_S) -> None:
    """Lower the interpreter's switch interval to `limit_s` (never raise it). Process-wide."""
    if sys.getswitchinterval() > limit_s:
        log.info("GIL switch interval %.2f ms -> %.2f ms, so that server threads cannot delay the scan",
                 sys.getswitchinterval() * 1e3, limit_s * 1e3)
        sys.setswitchinterval(limit_s)


@attrs.frozen
class Peer:
    """Who sent a request: a TCP client's address, or the serial line it came in on."""

    transport: Literal["tcp", "rtu"]
    host: str
    port: int = 0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if self.transport == "tcp" else f"rtu:{self.host}"


class Datastore(Protocol):
    """What a server serves. Called in the server's thread only; must never block."""

    unit_ids: frozenset[int]
    functions: frozenset[int]  # the function codes served; any other is answered 01

    def read(self, table: ModbusTable, address: int, count: int) -> list[Any] | int:
        """Registers or bits, or a Modbus exception code."""
        ...

    def write(self, table: ModbusTable, address: int, values: list[Any], peer: Peer) -> int | Future[None] | None:
        """None when accepted, a future to wait for (its result: done; its exception: exception
        04), else a Modbus exception code."""
        ...


@attrs.frozen
class ConnectionLimits:
    """How many TCP clients a server holds, and how long one may stay without a complete request."""

    max_connections: int = 16
    idle_timeout_s: float = 60.0
    max_connections_per_client: int = 4  # per client address: one client cannot take every place


def connection_ceiling() -> int:
    """The most clients one server may hold without taking the descriptors RESERVED_FDS keeps."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - RESERVED_FDS) // SERVERS_SHARING_FDS)


class BadFrame(Exception):
    """A TCP frame that is not Modbus: the connection is closed."""


class _SocketFramer(FramerSocket):
    """pymodbus's MBAP framer, but a header that is not Modbus raises BadFrame (pymodbus logs it
    with a hex dump of the receive buffer and waits for more on a stream it cannot re-synchronise)."""

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        if len(data) < 7:
            return 0, 0, 0, self.EMPTY
        protocol, length = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
        if protocol != 0:
            raise BadFrame(f"MBAP protocol id {protocol}, not 0 (Modbus)")
        if not 2 <= length <= MAX_MBAP_LENGTH:
            raise BadFrame(f"MBAP length {length}, outside 2..{MAX_MBAP_LENGTH}")
        if len(data) < 6 + length:
            return 0, 0, 0, self.EMPTY
        return 6 + length, data[6], int.from_bytes(data[0:2], "big"), data[7:6 + length]


@attrs.frozen
class TcpEndpoint:
    host: str
    port: int  # 0: the system picks a free port; see ServerThread.tcp_port


@attrs.frozen
class SerialEndpoint:
    port: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


class _RequestContext:
    """The datastore as one request sees it: knows the peer, echoes single writes.

    It stands in for pymodbus's ModbusServerContext, of which the PDUs call only
    async_getValues and async_setValues."""

    __slots__ = ("store", "peer", "echo", "pending")

    def __init__(self, store: Datastore, peer: Peer):
        self.store = store
        self.peer = peer
        self.echo: list[Any] | None = None
        self.pending: Future[None] | None = None  # an accepted write still to be applied and stored

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[Any] | ExcCodes:
        if func_code in ECHOED_WRITES and self.echo is not None:
            return self.echo
        table = TABLE_OF_FUNCTION.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        result = self.store.read(table, address, count)
        return ExcCodes(result) if isinstance(result, int) else result

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Sequence[Any]) -> ExcCodes | None:
        table = TABLE_OF_FUNCTION.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        values = list(values)
        code = self.store.write(table, address, values, self.peer)
        if isinstance(code, Future):
            self.pending = code
        elif code:
            return ExcCodes(code)
        if func_code in ECHOED_WRITES:
            self.echo = values
        return None


def _run_to_end(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends and return its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a Modbus request handler suspended; the datastore must not wait")


class _Handler(ServerRequestHandler):
    """One client connection (or the serial line)."""

    server: _TcpServer | _SerialServer
    peer: Peer
    last_request: float  # time.monotonic() of the connection or its last complete request

    def callback_connected(self) -> None:
        super().callback_connected()
        owner = self.server
        self.last_request = time.monotonic()
        if isinstance(owner, _SerialServer):
            self.peer = Peer("rtu", owner.line)
            return
        host, port = (self.transport.get_extra_info("peername") or ("?", 0))[:2]
        self.peer = Peer("tcp", str(host), int(port))
        # Counted here, not in pymodbus's active_connections: asyncio accepts a burst of connections
        # (and pymodbus lists them) before any of them is reported connected.
        thread = owner.thread
        same = owner.per_client.get(self.peer.host, 0)
        if len(owner.admitted) >= owner.max_connections:
            why = f"{len(owner.admitted)} clients connected, the most it holds ([{thread.section}] max_connections)"
        elif same >= thread.limits.max_connections_per_client:
            why = f"{same} connections from that address, the most it takes from one " \
                  f"([{thread.section}] max_connections_per_client)"
        else:
            owner.admitted.add(self)
            owner.per_client[self.peer.host] = same + 1
            return
        thread.refused += 1
        thread.limiter.log(logging.WARNING, (self.peer.host, "limit"), "%s: connection from %s closed: %s",
                           thread.name, self.peer, why)
        self.close()

    def callback_disconnected(self, exc: Exception | None) -> None:
        self._leave()
        super().callback_disconnected(exc)

    def close(self, reconnect: bool = False) -> None:
        self._leave()
        super().close(reconnect)

    def _leave(self) -> None:
        owner = self.server
        if isinstance(owner, _TcpServer) and self in owner.admitted:
            owner.admitted.discard(self)
            left = owner.per_client[self.peer.host] - 1
            if left:
                owner.per_client[self.peer.host] = left
            else:
                del owner.per_client[self.peer.host]

    def data_received(self, data: bytes) -> None:
        """TCP: keep what is not a complete frame yet and answer the rest. (pymodbus drops the whole
        receive buffer once it passes 264 bytes: requests pipelined in one segment were lost.) What
        is kept is at most one incomplete frame, under MAX_ADU bytes."""
        if isinstance(self.server, _SerialServer):
            super().data_received(data)
            return
        buffer = self.recv_buffer + data if self.recv_buffer else data
        used = self.callback_data(buffer, None)
        self.recv_buffer = buffer[used:] if self.transport is not None else b""

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Answer every complete request in `data`, in order; return the bytes used."""
        used = 0
        window = MAX_ADU if isinstance(self.server, _TcpServer) else len(data)  # at most one TCP frame a step
        while used < len(data):
            try:
                step = TransactionManager.callback_data(self, data[used:used + window], addr)
            except BadFrame as bad:
                self.server.thread.limiter.log(logging.WARNING, (self.peer.host, "frame"),
                                               "%s: closed the connection of %s: %s", self.server.thread.name,
                                               self.peer, bad)
                self.close()
                return len(data)
            except ModbusIOException:  # a function code pymodbus does not know: answer 01, drop the rest
                self._illegal_function(data[used:], addr)
                return len(data)
            pdu = self.last_pdu
            used += step
            if pdu is not None:
                self.last_request = time.monotonic()
                self._answer(pdu, addr)
            if step == 0 or self.transport is None:
                break
        return used

    def _illegal_function(self, frame: bytes, addr: tuple[Any, ...] | None) -> None:
        """Exception 01 for a request pymodbus cannot decode, addressed from its raw header."""
        serial = isinstance(self.server, _SerialServer)
        head = 2 if serial else 8  # RTU: unit, function; TCP: 7-byte MBAP header, function
        if len(frame) < head:
            return
        unit, function = frame[head - 2], frame[head - 1]
        if serial and unit not in self.server.store.unit_ids:
            return  # not for this device
        response = ExceptionResponse(function & 0x7F, ExcCodes.ILLEGAL_FUNCTION, device_id=unit,
                                     transaction=0 if serial else int.from_bytes(frame[0:2], "big"))
        self.server_send(response, addr)

    def send(self, data: bytes, addr: tuple[Any, ...] | None = None) -> None:
        """Write a response. (pymodbus's `send` also empties the receive buffer, which would drop
        a request that arrived behind the one being answered.)"""
        if self.transport:
            self.transport.write(data)  # type: ignore[attr-defined]

    _held: deque[tuple[ModbusPDU, tuple[Any, ...] | None]] | None = None  # behind a write being applied

    def _pause(self, paused: bool) -> None:
        """Stop (or resume) reading a TCP connection."""
        transport = self.transport
        if isinstance(self.server, _TcpServer) and transport is not None and not transport.is_closing():
            if paused:
                transport.pause_reading()  # type: ignore[attr-defined]
            else:
                transport.resume_reading()  # type: ignore[attr-defined]

    def _answer(self, pdu: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        if self._held is not None:
            self._held.append((pdu, addr))  # answered in order, once the write ahead of it is
            return
        pending: Future[None] | None = None
        owner = self.server
        store = owner.store
        serial = isinstance(owner, _SerialServer)
        if serial and pdu.dev_id == 0:
            return  # an RTU broadcast: never answered, and not taken as a command to this device
        if pdu.dev_id not in store.unit_ids:
            if serial:
                return  # another device on the line: stay silent
            response: ModbusPDU = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        elif isinstance(pdu, RefusedRequest):
            owner.thread.limiter.log(logging.WARNING, (self.peer.host, pdu.function_code, pdu.exception),
                                     "%s: function 0x%02X from %s answered with exception %02d: %s",
                                     owner.thread.name, pdu.function_code, self.peer, pdu.exception, pdu.reason)
            response = ExceptionResponse(pdu.function_code, pdu.exception)
        else:
            try:
                context = _RequestContext(store, self.peer)
                update = pdu.datastore_update(context, pdu.dev_id)  # type: ignore[arg-type]  # a duck-typed context
                response = _run_to_end(update)
                pending = context.pending
            except Exception as exc:  # noqa: BLE001 - a datastore bug must not kill the connection
                owner.thread.report_failure(exc)
                response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        if pending is not None and not isinstance(response, ExceptionResponse):
            self._answer_when_done(pending, pdu, response, addr)
            return
        self.server_send(response, addr)

    def _answer_when_done(self, pending: Future[None], pdu: ModbusPDU, response: ModbusPDU,
                          addr: tuple[Any, ...] | None) -> None:
        """Send `response` once the write is applied and stored (04 if it could not be stored,
        06 after write_timeout_s); hold this connection's next requests until then."""
        self._held = deque()
        self._pause(True)  # and read no more of them meanwhile: what is held stays what has arrived
        loop = asyncio.get_running_loop()
        answered = False

        def finish(code: ExcCodes | None) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            timer.cancel()
            answer = response
            if code is not None:
                answer = ExceptionResponse(pdu.function_code, code)
                answer.transaction_id = pdu.transaction_id
                answer.dev_id = pdu.dev_id
            self.server_send(answer, addr)
            held, self._held = self._held, None
            while held and self._held is None:
                self._answer(*held.popleft())
            if held:  # waiting again: what is left stays ahead of what comes next
                assert self._held is not None
                self._held.extendleft(reversed(held))
            if self._held is None:
                self._pause(False)

        def resolved(future: Future[None]) -> None:  # in the thread that resolved it (scan, writer)
            code = ExcCodes.DEVICE_FAILURE if future.exception() is not None else None
            try:
                loop.call_soon_threadsafe(finish, code)
            except RuntimeError:  # the server has stopped
                pass

        timeout = getattr(self.server.store, "write_timeout_s", DEFAULT_WRITE_TIMEOUT_S)
        timer = loop.call_later(timeout, finish, ExcCodes.DEVICE_BUSY)
        pending.add_done_callback(resolved)


_PLACEHOLDER = SimDevice(id=0, simdata=SimData(0, count=1, values=0, datatype=DataType.REGISTERS))


def _served(store: Datastore) -> frozenset[int]:
    return frozenset(getattr(store, "functions", TABLE_OF_FUNCTION))


class _TcpServer(ModbusTcpServer):
    def __init__(self, thread: ServerThread, endpoint: TcpEndpoint, max_connections: int):
        super().__init__(_PLACEHOLDER, address=(endpoint.host, endpoint.port))
        self.thread = thread
        self.store = thread.store
        self.max_connections = max_connections
        self.admitted: set[_Handler] = set()  # connections counted against max_connections
        self.per_client: dict[str, int] = {}  # admitted connections per client address
        self.framer = _SocketFramer
        create = self.call_create  # pymodbus's partial(loop.create_server, ...)
        self.call_create = functools.partial(create.func, *create.args,  # type: ignore[attr-defined]
                                             **{**create.keywords, "backlog": LISTEN_BACKLOG})  # type: ignore[attr-defined]
        self.decoder = RequestDecoder(_served(thread.store))

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, None, None, None)


class _SerialServer(ModbusSerialServer):
    def __init__(self, thread: ServerThread, endpoint: SerialEndpoint):
        super().__init__(_PLACEHOLDER, port=endpoint.port, baudrate=endpoint.baudrate, parity=endpoint.parity,
                         stopbits=endpoint.stopbits, bytesize=endpoint.bytesize, ignore_missing_devices=True)
        self.thread = thread
        self.store = thread.store
        self.line = endpoint.port
        self.decoder = RequestDecoder(_served(thread.store))

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, None, None, None)


async def _listen(server: _TcpServer | _SerialServer) -> None:
    """Open the listening socket or serial port; raise OSError with the reason if it fails.

    (pymodbus's own `listen()` logs the reason and returns False.)
    """
    server.is_closing = False
    server.is_listener = True
    created = await server.call_create()
    server.transport = created[0] if isinstance(created, tuple) else created


class ServerThread:
    """A thread with its own event loop, hosting one datastore on TCP and optionally RTU."""

    def __init__(self, name: str, store: Datastore, tcp: TcpEndpoint | None, serial: SerialEndpoint | None = None,
                 limits: ConnectionLimits = ConnectionLimits(), section: str = "modbus_server"):
        self.name = name
        self.store = store
        self.tcp = tcp
        self.serial = serial
        self.limits = limits
        self.section = section  # the io_map table of its settings, for log lines
        self.max_connections = limits.max_connections  # lowered at start to what the descriptors allow
        self.limiter = LogLimiter(log)
        self.idle_closed = 0  # connections closed for want of a complete request
        self.refused = 0  # connections closed at once: max_connections were connected
        self._sweeper: asyncio.Task[None] | None = None
        self.tcp_port: int | None = None  # the port actually listened on
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[_TcpServer | _SerialServer] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._failures: set[str] = set()
        self._stopped = False

    def start(self, timeout_s: float = 5.0) -> None:
        """Return once every endpoint listens; raise OSError/RuntimeError if one cannot."""
        if self._thread is not None:
            return
        bound_gil_switch_interval()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{self.name}: not listening after {timeout_s} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            raise self._error

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close every endpoint and connection and end the thread. Safe to call twice."""
        if self._stopped or self._thread is None:
            self._stopped = True
            return
        self._stopped = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._close)
            except RuntimeError:  # loop already closed
                pass
        self._thread.join(timeout_s)

    def report_failure(self, exc: BaseException) -> None:
        """A datastore raised: answer 04 and log each distinct failure once."""
        key = f"{type(exc).__name__}: {exc}"
        if key not in self._failures and len(self._failures) < 100:
            self._failures.add(key)
            log.error("%s: request failed (%s); answered with exception 04", self.name, key, exc_info=exc)

    # --- in the server thread ----------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
        self._ready.set()
        try:
            if self._error is None:
                loop.run_forever()
        finally:
            self._shutdown(loop)

    async def _open(self) -> None:
        if self.tcp is not None:
            ceiling = connection_ceiling()
            if self.limits.max_connections > ceiling:
                log.warning("%s: [%s] max_connections %d lowered to %d, so that %d of the %d file descriptors "
                            "stay for the drivers", self.name, self.section, self.limits.max_connections, ceiling,
                            RESERVED_FDS, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            self.max_connections = min(self.limits.max_connections, ceiling)
            server = _TcpServer(self, self.tcp, self.max_connections)
            self._servers.append(server)
            try:
                await _listen(server)
            except OSError as exc:
                raise OSError(exc.errno, f"{self.name}: cannot listen on {self.tcp.host}:{self.tcp.port}: "
                                         f"{exc.strerror or exc}") from None
            self.tcp_port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        if self.serial is not None:
            line = _SerialServer(self, self.serial)
            self._servers.append(line)
            try:
                await _listen(line)
            except OSError as exc:
                raise OSError(exc.errno, f"{self.name}: cannot open serial port {self.serial.port}: {exc}") from None
        where = [f"tcp {self.tcp.host}:{self.tcp_port}"] if self.tcp else []
        where += [f"rtu {self.serial.port} {self.serial.baudrate} {self.serial.bytesize}{self.serial.parity}"
                  f"{self.serial.stopbits}"] if self.serial else []
        log.info("%s listening on %s, unit id(s) %s", self.name, ", ".join(where),
                 ", ".join(map(str, sorted(self.store.unit_ids))))
        if self.tcp is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name=f"{self.name} idle")

    async def _sweep(self) -> None:
        """Close TCP connections without a complete request for idle_timeout_s; say what the
        log limiter held back."""
        timeout = self.limits.idle_timeout_s
        step = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for server in self._servers:
                if not isinstance(server, _TcpServer):
                    continue
                for handler in list(server.admitted):  # (one whose write is being applied is not idle)
                    if handler._held is None and now - handler.last_request > timeout:
                        self.idle_closed += 1
                        self.limiter.log(logging.INFO, (handler.peer.host, "idle"),
                                         "%s: closed the connection of %s: no complete request for %g s "
                                         "([%s] idle_timeout_s)", self.name, handler.peer, timeout, self.section)
                        handler.close()
            self.limiter.flush()

    @property
    def connections(self) -> int:
        """TCP clients connected now."""
        return sum(len(s.admitted) for s in self._servers if isinstance(s, _TcpServer))

    def _close(self) -> None:
        for server in self._servers:
            server.close()
        assert self._loop is not None
        self._loop.stop()

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        for server in self._servers:
            server.close()
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(asyncio.sleep(0))  # let transports finish closing
        loop.close()
        log.info("%s stopped", self.name)


class ServedMirror:
    """A server as a site mirror: its own thread and event loop; `start()` returns once it
    listens, `stop()` closes it (twice is fine)."""

    def __init__(self, name: str, store: Any, host: str, port: int, serial: Any = None,
                 limits: ConnectionLimits = ConnectionLimits(), section: str = "modbus_server"):
        self.store = store
        self.thread = ServerThread(
            name, store, TcpEndpoint(host, port),
            SerialEndpoint(serial.port, serial.baudrate, serial.parity, serial.stopbits, serial.bytesize)
            if serial else None,
            limits, section,
        )

    @property
    def port(self) -> int | None:
        """The TCP port listened on (the configured one, or the one picked for port 0)."""
        return self.thread.tcp_port

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.thread.stop()
