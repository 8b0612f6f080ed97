"""The controller's local channel: `ems status`, `ems read` and `ems write` on the same machine.

A Unix stream socket (`<data_dir>/ems.sock`, mode 0600) served by one thread. Each connection
carries one request, a JSON line, and gets one JSON line back:

    {"op": "snapshot"}                      every tag: value, quality, age; scan and wall time
    {"op": "read", "tags": ["soc_pct"]}     those tags (unknown names are an error, nothing read)
    {"op": "write", "tag": "mode", "value": "peak_shaving"}

Reads come from the latest published snapshot (the scan pays nothing per client). A write goes
the way of a Modbus write: checked against the tag (writable, its type and range), recorded
durably in the event log (origin "cli") and applied at a scan boundary; it is answered only once
it is applied and stored, within `WRITE_TIMEOUT_S`. Only root and the controller's own user may
connect (the socket's mode, and SO_PEERCRED checked on every connection); a request larger than
`MAX_REQUEST` bytes or slower than `TIMEOUT_S` is dropped. Answers: {"ok": true, ...} or
{"ok": false, "error": "<one line>"}.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import struct
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from plc.tags import DType, TagSpec, TagValueError
from runtime.image import ProcessImage, Snapshot, StorageError

log = logging.getLogger(__name__)

SOCKET_FILE = "ems.sock"
MAX_REQUEST = 64 * 1024
TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 2.0
TRUE_WORDS, FALSE_WORDS = ("true", "1", "on", "yes"), ("false", "0", "off", "no")


def parse_value(spec: TagSpec, text: Any) -> Any:
    """A value for the tag from a command line word (or a JSON value): enum labels, booleans as
    true/false/on/off/1/0, numbers for numbers. Raises ValueError naming what was expected."""
    if not isinstance(text, str):
        return text
    word = text.strip()
    if spec.dtype is DType.BOOL:
        if word.lower() in TRUE_WORDS or word.lower() in FALSE_WORDS:
            return word.lower() in TRUE_WORDS
        raise ValueError(f"tag {spec.name!r} is a bool: true or false, not {word!r}")
    if spec.dtype is DType.ENUM:
        if word in spec.enum_labels:
            return spec.enum_labels.index(word)
        if word.isdigit():
            return int(word)
        raise ValueError(f"tag {spec.name!r} takes one of {', '.join(spec.enum_labels)} (or its number), not {word!r}")
    if spec.dtype is DType.STRING:
        return word
    try:
        number = float(word) if spec.dtype is DType.FLOAT32 else int(word, 0)
    except ValueError:
        raise ValueError(f"tag {spec.name!r} is a {spec.dtype.value} number, not {word!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"tag {spec.name!r}: {word!r} is not a finite number")
    return number


def tag_row(snapshot: Snapshot, name: str, spec: TagSpec) -> dict[str, Any]:
    i = snapshot.index[name]
    stamp = snapshot.stamps[i]
    return {"value": snapshot.values[i], "quality": snapshot.qualities[i].name.lower(),
            "age_s": round(snapshot.t_s - stamp, 3) if math.isfinite(stamp) else None,
            "unit": spec.unit, "label": spec.label(snapshot.values[i])}


class LocalChannel:
    """A site mirror: the socket and its thread, from `start` to `stop`."""

    def __init__(self, image: ProcessImage, path: Path, site_id: str):
        self.image = image
        self.path = Path(path)
        self.site_id = site_id
        self.served = 0
        self.refused = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: Snapshot | None = image.snapshot
        image.subscribe(self._on_snapshot)  # without a subscriber the scan publishes no snapshot

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """Scan thread, after every scan: just keep the reference."""
        self._latest = snapshot

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if len(os.fsencode(self.path)) >= 108:  # sun_path: no local channel, the rest of the site runs
            log.error("local channel not started: socket path %s is longer than 107 bytes", self.path)
            return
        self.path.unlink(missing_ok=True)  # this site's lock is held: a socket here is a dead run's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="local-channel", daemon=True)
        self._thread.start()
        log.info("local channel on %s (ems status / read / write)", self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)

    # --- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except Exception as exc:  # noqa: BLE001 - one bad client never ends the channel
                    log.warning("local channel: request failed: %s: %s", type(exc).__name__, exc)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT_S)
        if not self._allowed(conn):
            self.refused += 1
            self._send(conn, {"ok": False, "error": "not allowed: only root and the controller's user"})
            return
        data = b""
        deadline = time.monotonic() + TIMEOUT_S  # for the whole request: a byte a second cannot hold the channel
        while not data.endswith(b"\n"):
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                self._send(conn, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                return
        try:
            request = json.loads(data.decode("utf-8"))
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except (UnicodeDecodeError, ValueError) as exc:
            self._send(conn, {"ok": False, "error": f"not a request: {exc}"})
            return
        self.served += 1
        self._send(conn, self.answer(request))

    @staticmethod
    def _allowed(conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in (0, os.getuid())

    @staticmethod
    def _send(conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer, default=str).encode("utf-8") + b"\n")

    # --- answers -------------------------------------------------------------------------------
    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one request (any thread; the channel's in practice)."""
        op = request.get("op")
        snapshot = self._latest
        if op in ("snapshot", "read") and snapshot is None:
            return {"ok": False, "error": "no scan has completed yet"}
        if op == "snapshot":
            assert snapshot is not None
            return {"ok": True, "site": self.site_id, "scan": snapshot.scan, "wall_s": snapshot.wall_s,
                    "tags": {n: tag_row(snapshot, n, self.image[n].spec) for n in snapshot.names}}
        if op == "read":
            assert snapshot is not None
            names = request.get("tags")
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                return {"ok": False, "error": "read: 'tags' is a list of tag names"}
            unknown = [n for n in names if n not in snapshot.index]
            if unknown:
                return {"ok": False, "error": f"no tag named {', '.join(map(repr, unknown))}"}
            return {"ok": True, "site": self.site_id, "scan": snapshot.scan,
                    "tags": {n: tag_row(snapshot, n, self.image[n].spec) for n in names}}
        if op == "write":
            return self._write(request.get("tag"), request.get("value"))
        return {"ok": False, "error": f"unknown op {op!r}: snapshot, read or write"}

    def _write(self, name: Any, value: Any) -> dict[str, Any]:
        if not isinstance(name, str) or name not in self.image:
            return {"ok": False, "error": f"no tag named {name!r}"}
        tag = self.image[name]
        try:
            parsed = parse_value(tag.spec, value)
            request = self.image.request_writes([(name, parsed)], source="cli", durable=True)
        except (ValueError, TagValueError) as exc:
            return {"ok": False, "error": str(exc)}
        except PermissionError as exc:
            return {"ok": False, "error": f"{exc.args[0]}: only writable (rw) tags take writes"}
        try:
            request.done.result(WRITE_TIMEOUT_S)
        except StorageError as exc:
            return {"ok": False, "error": f"not stored, not applied: {exc}"}
        except FutureTimeout:
            return {"ok": False, "error": f"not confirmed within {WRITE_TIMEOUT_S:g} s (is the scan running?)"}
        return {"ok": True, "tag": name, "value": parsed, "label": tag.spec.label(parsed)}
