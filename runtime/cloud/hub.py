"""One Azure IoT Hub device client (the real azure-iot-device SDK), every call bounded in time.

The SDK's calls block, some without end (`get_twin` waits forever for an answer that does not
come), so each runs in a worker thread of this client and is waited for `call_timeout_s`; a
call that overruns raises TimeoutError and its worker is abandoned (a daemon thread: it cannot
hold the process at exit), the next call gets a fresh one. The SDK's own reconnection is off:
the link reconnects, with its backoff, and knows at every moment whether it is connected.

`send_message` returns once the hub has acknowledged the message (MQTT QoS 1 PUBACK): the link
removes a message from its queue only then.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from runtime.config.schema import CloudConfig
from runtime.secret_files import read_private, resolve

log = logging.getLogger(__name__)
T = TypeVar("T")
CANCEL_POLL_S = 0.05  # how soon a call in progress notices that it is given up
CLOSE_TIMEOUT_S = 2.0  # a shutdown that takes longer is left to its worker thread


class HubConfigError(OSError):
    """The link's credentials cannot be used (one line naming the file or the key): the site
    does not start, as with a port in use."""


def connection_string(cfg: CloudConfig, base: Path) -> str:
    """The SAS connection string from its private file, checked for its three parts."""
    path = resolve(cfg.connection_string_file, base)
    text = read_private(path, "cloud connection string file").decode("utf-8", errors="replace").strip()
    parts = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    missing = [key for key in ("HostName", "DeviceId", "SharedAccessKey") if not parts.get(key)]
    if missing:
        raise HubConfigError(f"cloud connection string file {path}: no {', '.join(missing)} "
                             "(expected HostName=...;DeviceId=...;SharedAccessKey=...)")
    return text


def create_client(cfg: CloudConfig, base: Path) -> Any:
    """An IoTHubDeviceClient for `cfg`, not connected yet."""
    from azure.iot.device import X509, IoTHubDeviceClient

    options: dict[str, Any] = {"websockets": cfg.transport == "websockets", "connection_retry": False,
                               "keep_alive": 60}
    if cfg.ca_file:
        path = resolve(cfg.ca_file, base)
        try:
            options["server_verification_cert"] = path.read_text()
        except OSError as exc:
            raise HubConfigError(f"cloud ca_file {path} cannot be read: {exc.strerror}") from None
    if cfg.auth == "sas":
        return IoTHubDeviceClient.create_from_connection_string(connection_string(cfg, base), **options)
    cert, key = resolve(cfg.cert_file, base), resolve(cfg.key_file, base)
    read_private(key, "cloud device key file")
    if not cert.is_file():
        raise HubConfigError(f"cloud cert_file {cert} does not exist")
    return IoTHubDeviceClient.create_from_x509_certificate(X509(str(cert), str(key)), cfg.host, cfg.device_id,
                                                           **options)


class Cancelled(Exception):
    """The caller gave the call up (the link is stopping)."""


class Caller:
    """Runs calls in a worker thread, each waited for at most a timeout (see module docstring),
    or until `cancel` is set."""

    def __init__(self, name: str, cancel: threading.Event | None = None):
        self.name = name
        self.cancel = cancel or threading.Event()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] | None = None

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_work, args=(self._jobs,), name=self.name, daemon=True).start()
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        deadline = time.monotonic() + timeout_s
        while not self.cancel.is_set():
            try:
                return future.result(max(0.0, min(CANCEL_POLL_S, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    break
        self._jobs.put(None)  # the worker ends when (if) the call returns; the next call starts another
        self._jobs = None
        if self.cancel.is_set():
            raise Cancelled("given up: stopping")
        raise TimeoutError(f"no answer within {timeout_s:g} s")

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


def _work(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]) -> None:
    while (job := jobs.get()) is not None:
        fn, future = job
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which decides
            future.set_exception(exc)


class HubClient:
    """The link's view of the hub: connect, send one message, close; each bounded in time."""

    def __init__(self, client: Any, timeout_s: float, cancel: threading.Event | None = None):
        self.client = client
        self.timeout_s = timeout_s
        self._caller = Caller("cloud-sdk", cancel)
        self._caller_for_answers = Caller("cloud-sdk-answers", cancel)  # the handler's thread is not the link's

    def connect(self) -> None:
        self._caller.call(self.client.connect, self.timeout_s)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def send(self, payload: bytes, message_id: str, content_encoding: str, properties: Mapping[str, str]) -> None:
        """One message; returns once the hub acknowledged it."""
        from azure.iot.device import Message

        message = Message(payload, message_id=message_id, content_encoding=content_encoding,
                          content_type="application/json")
        message.custom_properties.update(properties)
        self._caller.call(lambda: self.client.send_message(message), self.timeout_s)

    def on_method(self, answer: Callable[[str, Any], tuple[int, Any]]) -> None:
        """Answer every direct method with `answer(name, payload) -> (status, payload)` (in the SDK's
        handler thread). Setting the handler subscribes: bounded as any call."""
        from azure.iot.device import MethodResponse

        def handle(request: Any) -> None:
            status, payload = answer(request.name, request.payload)
            response = MethodResponse.create_from_method_request(request, status, payload)
            try:
                self._caller_for_answers.call(lambda: self.client.send_method_response(response), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - the connection went: the caller times out, the link reconnects
                log.warning("cloud link: answer to %s not sent: %s: %s", request.name, type(exc).__name__, exc)

        self._caller.call(lambda: setattr(self.client, "on_method_request_received", handle), self.timeout_s)

    def on_desired(self, apply: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Hand every desired-properties patch to `apply` (the SDK's handler thread) and report what
        it returns (nothing when it returns {})."""
        def handle(patch: dict[str, Any]) -> None:
            reported = apply(patch)
            if reported:
                try:
                    self._caller_for_answers.call(lambda: self.client.patch_twin_reported_properties(reported),
                                                  self.timeout_s)
                except Exception as exc:  # noqa: BLE001 - reported again at the next connect
                    log.warning("cloud link: reported properties not sent: %s: %s", type(exc).__name__, exc)

        self._caller.call(lambda: setattr(self.client, "on_twin_desired_properties_patch_received", handle),
                          self.timeout_s)

    def get_twin(self) -> dict[str, Any]:
        """The whole twin ({"desired": ..., "reported": ...}); bounded (the SDK's call is not)."""
        return dict(self._caller.call(self.client.get_twin, self.timeout_s))

    def report(self, reported: dict[str, Any]) -> None:
        self._caller.call(lambda: self.client.patch_twin_reported_properties(reported), self.timeout_s)

    def close(self) -> None:
        """Shut the client down (bounded too: a dead broker must not hold the stop)."""
        self._caller.cancel = threading.Event()  # even when the link is stopping
        try:
            self._caller.call(self.client.shutdown, min(self.timeout_s, CLOSE_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - closing: the client is dropped whatever it says
            log.debug("cloud link: closing the client: %s: %s", type(exc).__name__, exc)
        self._caller.close()
        self._caller_for_answers.close()
