"""The tag server: every addressed tag over Modbus TCP (and RTU), read consistent, written whole.

Reads: the scan thread only hands over each published snapshot (one reference store); the
server thread encodes a snapshot into register tables the first time a client reads after
it changed, and slices every response from those tables. So all registers of a response
come from the same scan, and the scan pays nothing per client.

Writes: the registers of one request are decoded into tag values and queued with
`ProcessImage.request_writes` as one durable request, or rejected with an exception code and
nothing queued (docs/modbus.md). A durable request is recorded first (event log, then retain
store), then applied whole at a scan boundary; the server answers once it is applied, with
exception 04 when it could not be stored (never applied), or 06 when that took longer than
`[modbus_server] write_timeout_s` (runtime/servers/host.py).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from concurrent.futures import Future
from typing import Any

from plc.tags import ModbusTable, TagValueError
from runtime.config.schema import ModbusServerConfig
from runtime.image import ProcessImage, Snapshot
from runtime.servers.host import ConnectionLimits, Peer, ServedMirror
from runtime.servers.register_map import (
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    EncodedTables,
    RegisterMap,
    WriteRejected,
)

log = logging.getLogger(__name__)

DEVICE_BUSY = 0x06  # no scan has been published yet
_LOG_ONCE_LIMIT = 1000
_TAG_IN_REASON = re.compile(r"tag '([^']+)'")


class WritePolicy:
    """Whether a client may write: writes enabled, and its address in the allow-list."""

    def __init__(self, enabled: bool, allow: tuple[str, ...]):
        self.enabled = enabled
        self.rtu = "rtu" in allow
        self.networks = [ipaddress.ip_network(a, strict=False) for a in allow if a != "rtu"]
        self._verdicts: dict[str, bool] = {}

    def allows(self, peer: Peer) -> bool:
        if not self.enabled:
            return False
        if peer.transport == "rtu":
            return self.rtu
        verdict = self._verdicts.get(peer.host)
        if verdict is None:
            try:
                address = ipaddress.ip_address(peer.host)
            except ValueError:
                verdict = False
            else:
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                    address = address.ipv4_mapped
                verdict = any(address in network for network in self.networks)
            if len(self._verdicts) < _LOG_ONCE_LIMIT:
                self._verdicts[peer.host] = verdict
        return verdict


class TagStore:
    """The tag server's datastore: reads from the latest snapshot, writes into the image's queue."""

    functions = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23})  # every table's reads and writes

    def __init__(self, register_map: RegisterMap, image: ProcessImage, unit_ids: tuple[int, ...],
                 policy: WritePolicy):
        self.map = register_map
        self.image = image
        self.unit_ids = frozenset(unit_ids)
        self.policy = policy
        self.rejected = 0  # writes refused since start
        self.write_timeout_s = 1.0  # the longest a write waits to be applied and stored ([modbus_server])
        self._latest: Snapshot | None = image.snapshot
        self._encoded: EncodedTables | None = None
        self._encoded_from: Snapshot | None = None
        self._logged: set[tuple[str, int, str]] = set()
        image.subscribe(self.on_snapshot)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Scan thread, after every scan: just keep the reference."""
        self._latest = snapshot

    def current(self) -> EncodedTables | None:
        """The latest snapshot's tables, encoded on first use (server thread only)."""
        snapshot = self._latest
        if snapshot is None:
            return None
        if snapshot is not self._encoded_from:
            self._encoded = self.map.encode(snapshot)
            self._encoded_from = snapshot
        return self._encoded

    def read(self, table: ModbusTable, address: int, count: int) -> list[Any] | int:
        encoded = self.current()
        if encoded is None:
            return DEVICE_BUSY
        return self.map.read(encoded, table, address, count)

    def write(self, table: ModbusTable, address: int, values: list[Any], peer: Peer) -> int | Future[None] | None:
        if not self.policy.allows(peer):
            why = "writes are disabled ([modbus_server] writes_enabled)" if not self.policy.enabled else \
                "the client is not in [modbus_server] write_allow"
            return self._refuse(peer, ILLEGAL_FUNCTION, why, key="policy")
        try:
            items = self.map.decode_write(table, address, values)
        except WriteRejected as rejected:
            return self._refuse(peer, rejected.code, rejected.reason)
        try:
            request = self.image.request_writes(items, source=f"modbus {peer}", durable=True)
        except TagValueError as exc:
            return self._refuse(peer, ILLEGAL_VALUE, str(exc))
        except (KeyError, PermissionError) as exc:
            return self._refuse(peer, ILLEGAL_ADDRESS, str(exc.args[0] if exc.args else exc))
        return request.done  # answered once applied (or refused: not stored)

    def _refuse(self, peer: Peer, code: int, reason: str, key: str | None = None) -> int:
        self.rejected += 1
        tag = _TAG_IN_REASON.search(reason)
        once = (peer.host, code, key or (tag.group(1) if tag else reason))
        if once not in self._logged and len(self._logged) < _LOG_ONCE_LIMIT:
            self._logged.add(once)
            log.warning("modbus write from %s refused with exception %02d: %s", peer, code, reason)
        return code


class ModbusTagServer(ServedMirror):
    """The tag server as a site mirror."""

    def __init__(self, cfg: ModbusServerConfig, image: ProcessImage, register_map: RegisterMap):
        self.cfg = cfg
        self.map = register_map
        store = TagStore(register_map, image, cfg.unit_ids, WritePolicy(cfg.writes_enabled, cfg.write_allow))
        store.write_timeout_s = cfg.write_timeout_s
        super().__init__("modbus-server", store, cfg.host, cfg.port, cfg.serial,
                         ConnectionLimits(cfg.max_connections, cfg.idle_timeout_s, cfg.max_connections_per_client), "modbus_server")
