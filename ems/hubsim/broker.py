"""Mosquitto as the transport half of a local Azure IoT Hub stand-in: writes its config, starts and stops it.

The Azure IoT device SDK (azure-iot-device 2.x) connects to fixed ports, which it does not let a caller
change (azure/iot/device/common/mqtt_transport.py, `MQTTTransport.connect`): 8883 for MQTT over TLS and
443 for MQTT over WebSockets over TLS (path `/$iothub/websocket`). `gateway_hostname` changes the host
only. So the broker listens on 127.0.0.1:8883 and 127.0.0.1:443 (443 needs root, and then `user root` in
the config, as mosquitto would otherwise drop to the `mosquitto` user); a third, plain listener on a free
127.0.0.1 port is for the hub emulator (`ems.hubsim.hub.Hub`), which plays the cloud side.

MQTT carries no sender: a subscriber cannot tell which client published a message, and the IoT Hub's
`$iothub/...` topics name no device (a real hub knows the device from the connection). So the broker
logs at debug level to a file and `sender_of(topic)` reads who published a topic from it; the emulator
uses that to keep one twin per device. Telemetry topics name their device themselves.

`start()` waits until every listener accepts a connection (no fixed delay) and fails with the broker's
own error (e.g. a port in use) when it exits instead. A missing `mosquitto` binary is a one-line error.
"""

from __future__ import annotations

import collections
import getpass
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self, TypeVar

import attrs

from ems.hubsim.certs import KeyPair

HOST = "127.0.0.1"
TLS_PORT = 8883  # MQTT over TLS: fixed in the SDK
WS_PORT = 443  # MQTT over WebSockets over TLS: fixed in the SDK
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_SENDERS_KEPT = 10_000
T = TypeVar("T")

# "1796315183: Received PUBLISH from dev1 (d0, q1, r0, m1, '$iothub/twin/GET/?$rid=5', ... (0 bytes))"
_PUBLISH = re.compile(r"Received PUBLISH from (\S+) \(d\d, q\d, r\d, m\d+, '(.*)', \.\.\. \(\d+ bytes\)\)$")
# "Received SUBSCRIBE from dev1", then per filter "\t$iothub/methods/POST/# (QoS 1)" and "dev1 1 $iothub/..."
_SUBSCRIBE = re.compile(r"Received SUBSCRIBE from (\S+)$")
_FILTER = re.compile(r"^\t(.*) \(QoS \d\)$")


class BrokerError(RuntimeError):
    """The broker could not be started: the message says why in one line."""


def mosquitto_binary() -> str:
    """The path of `mosquitto`; a BrokerError saying how to install it when there is none."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if found is None:
        raise BrokerError("mosquitto not found (not on PATH nor in /usr/sbin): install the Debian package "
                          "`mosquitto` (bash scripts/install-system-deps.sh, as root)")
    return found


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` fails (as mosquitto binds it: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


@attrs.define
class Broker:
    """One mosquitto process serving `directory` (its config, log, persistence) on 127.0.0.1."""

    directory: Path
    server: KeyPair  # the broker's TLS certificate (for localhost / 127.0.0.1)
    ca_file: Path  # the CA it trusts for device certificates (require_certificate)
    websockets: bool = True
    require_certificate: bool = False  # TLS listeners demand a device certificate signed by ca_file
    tls_port: int = TLS_PORT
    ws_port: int = WS_PORT
    plain_port: int = 0  # 0: a free port, chosen at start
    host: str = HOST
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _log_reader: _LogReader | None = attrs.field(default=None, init=False)

    @property
    def conf_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def listeners(self) -> list[int]:
        """The ports it listens on: the plain one first, then TLS, then WebSockets if on."""
        return [self.plain_port, self.tls_port] + ([self.ws_port] if self.websockets else [])

    def write_conf(self) -> Path:
        """Write mosquitto.conf into `directory` (choosing the plain port if 0) and return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.plain_port == 0:
            self.plain_port = free_port(self.host)
        tls = [f"certfile {self.server.cert_file}", f"keyfile {self.server.key_file}", f"cafile {self.ca_file}",
               f"require_certificate {'true' if self.require_certificate else 'false'}"]
        lines = [
            "# Written by ems.hubsim.broker: a local stand-in for Azure IoT Hub's MQTT endpoint.",
            "per_listener_settings false",
            "allow_anonymous true",
            f"user {getpass.getuser()}",  # as root: stay root (443, and files in this directory)
            "persistence true",  # the SDK does not resubscribe after a reconnect: it relies on the session
            f"persistence_location {self.directory}/",
            "persistent_client_expiration 1h",
            f"log_dest file {self.log_file}",
            "log_type all",  # debug: who published what (sender_of)
            "connection_messages true",
            "",
            f"listener {self.plain_port} {self.host}",
            "",
            f"listener {self.tls_port} {self.host}",
            *tls,
        ]
        if self.websockets:
            lines += ["", f"listener {self.ws_port} {self.host}", "protocol websockets", *tls]
        self.conf_file.write_text("\n".join(lines) + "\n")
        return self.conf_file

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start mosquitto and return when every listener accepts connections; BrokerError if it cannot."""
        if self.running:
            return
        binary = mosquitto_binary()
        self.write_conf()
        busy = [p for p in self.listeners() if port_in_use(self.host, p)]
        if busy:
            raise BrokerError(f"{self.host}:{','.join(map(str, busy))} already in use (another broker? "
                              f"`ss -ltnp` shows who); the Azure SDK's ports 8883 and 443 cannot be changed")
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr = (self.directory / "mosquitto.stderr").open("wb")
        try:
            self._process = subprocess.Popen([binary, "-c", str(self.conf_file)], stdin=subprocess.DEVNULL,
                                             stdout=stderr, stderr=stderr)
        finally:
            stderr.close()
        if self._log_reader is None:
            self._log_reader = _LogReader(self.log_file)
        deadline = time.monotonic() + timeout_s
        waiting = list(self.listeners())
        while waiting:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise BrokerError(f"mosquitto exited ({code}) at start: {self._start_error(log_start)}")
            if _accepts(self.host, waiting[0]):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not listen on {self.host}:{waiting[0]} within {timeout_s} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM: it saves its sessions), killing it if it does not end in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, require_certificate: bool | None = None) -> None:
        """Stop and start again, e.g. with device certificates required or not (sessions persist)."""
        self.stop()
        if require_certificate is not None:
            self.require_certificate = require_certificate
        self.start()

    def sender_of(self, topic: str, timeout_s: float = 2.0) -> str | None:
        """The client id that last published `topic`, from the broker's log (None if not seen in time).

        The broker logs a publish before it forwards it, so a subscriber asking about a message it
        received finds it at once; the timeout only covers the file being written."""
        reader = self._log_reader
        if reader is None:
            return None
        return reader.wait_for(lambda: reader.publishers.get(topic), timeout_s)

    def wait_subscribed(self, client_id: str, topic_filter: str, timeout_s: float = 5.0) -> bool:
        """Whether `client_id` has subscribed `topic_filter` (by the log), waiting up to `timeout_s`."""
        reader = self._log_reader
        if reader is None:
            return False
        return bool(reader.wait_for(lambda: topic_filter in reader.subscriptions.get(client_id, ()), timeout_s))

    def _start_error(self, log_start: int) -> str:
        lines: list[str] = []
        for path, start in ((self.log_file, log_start), (self.directory / "mosquitto.stderr", 0)):
            if path.exists():
                with path.open("rb") as f:
                    f.seek(start)
                    lines += f.read().decode(errors="replace").splitlines()
        errors = [line.split(": ", 1)[-1] for line in lines if "rror" in line]
        opening = [line.split(": ", 1)[-1] for line in lines if "listen socket on port" in line]
        if errors:
            where = f" ({opening[-1].rstrip('.')})" if opening else ""
            return "; ".join(errors) + where
        return (lines[-1] if lines else "no output") + f" (see {self.log_file})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _LogReader:
    """Follows mosquitto's log file (across restarts: it appends), remembering publishers and subscriptions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.publishers: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.subscriptions: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._partial = b""
        self._subscriber: str | None = None

    def wait_for(self, found: Callable[[], T | None], timeout_s: float) -> T | None:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                self._read()
                value = found()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.005)

    def _read(self) -> None:
        if self._file is None:
            if not self.path.exists():
                return
            self._file = self.path.open("rb")
        if self.path.stat().st_size < self._file.tell():  # a new log file: read it from its start
            self._file.seek(0)
            self._partial = b""
        chunk = self._file.read()
        if not chunk:
            return
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            self._line(raw.decode(errors="replace"))

    def _line(self, line: str) -> None:
        text = line.split(": ", 1)[-1]
        if self._subscriber is not None:
            match = _FILTER.match(text)
            if match:
                self.subscriptions.setdefault(self._subscriber, set()).add(match.group(1))
                return
            if text.startswith(f"{self._subscriber} "):  # "<client> <qos> <filter>": the filter granted
                return
            self._subscriber = None
        match = _PUBLISH.search(text)
        if match:
            client, topic = match.groups()
            self.publishers[topic] = client
            self.publishers.move_to_end(topic)
            if len(self.publishers) > _SENDERS_KEPT:
                self.publishers.popitem(last=False)
            return
        match = _SUBSCRIBE.search(text)
        if match:
            self._subscriber = match.group(1)
