"""A small Azure IoT Hub emulator: the cloud side of the IoT Hub MQTT topics, on a local broker.

It is a paho-mqtt (1.x API, as the Azure SDK pins paho-mqtt < 2) client on the broker's plain listener
(`ems.hubsim.broker.Broker`), answering what a device publishes the way IoT Hub does:

- telemetry `devices/<id>/messages/events/<properties>` (or `devices/<id>/modules/<m>/messages/events/...`):
  recorded as a `Telemetry` with its properties decoded. The SDK URL-encodes them into the topic's last
  level: `$.mid` message id, `$.cid` correlation id, `$.ct` content type, `$.ce` content encoding, `$.uid`,
  `$.exp`, `$.on`, `$.ifid`, then the custom properties sorted by key, all `key=value` joined by `&`;
- twin GET `$iothub/twin/GET/?$rid=R`: answered on `$iothub/twin/res/200/?$rid=R` with the device's twin
  `{"desired": {..., "$version": n}, "reported": {..., "$version": m}}`;
- reported patch `$iothub/twin/PATCH/properties/reported/?$rid=R`: merged (JSON merge patch: null
  deletes), the reported version raised, answered `$iothub/twin/res/204/?$rid=R&$version=m`;
- direct method answers `$iothub/methods/res/<status>/?$rid=R`: handed to the `invoke_method` waiting.

And it acts as the service: `patch_desired` publishes `$iothub/twin/PATCH/properties/desired/?$version=n`;
`invoke_method` publishes `$iothub/methods/POST/<name>/?$rid=R` and waits for the answer.

The `$iothub` topics name no device (a real hub knows it from the connection); the broker's log does
(`Broker.sender_of`), and the emulator keeps one twin per device by it. Without it, `default_device`
owns them. The other way there is no such help: a desired patch or a method call published on the broker
reaches every device connected to it (and is queued for disconnected persistent sessions); use one device
at a time, or distinct method names. SAS tokens are not checked (the broker lets anyone in); device
certificates are, by the broker, when it requires them.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, Self

import attrs
import paho.mqtt.client as mqtt

from ems.hubsim.broker import HOST

log = logging.getLogger(__name__)

_SUBSCRIPTIONS = ("devices/+/messages/events/#", "devices/+/modules/+/messages/events/#",
                  "$iothub/twin/GET/#", "$iothub/twin/PATCH/properties/reported/#", "$iothub/methods/res/#")
_SYSTEM_PROPERTIES = {"$.mid": "message_id", "$.cid": "correlation_id", "$.uid": "user_id",
                      "$.ct": "content_type", "$.ce": "content_encoding", "$.exp": "expiry_time_utc",
                      "$.on": "output_name", "$.ifid": "interface_id"}


class HubError(RuntimeError):
    """The emulator could not do what it was asked (not connected, no answer in time)."""


@attrs.frozen
class Telemetry:
    """One device-to-cloud message as the hub received it."""

    device_id: str
    module_id: str | None
    topic: str
    payload: bytes
    received_at: float  # time.time()
    message_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    expiry_time_utc: str | None = None
    output_name: str | None = None
    interface_id: str | None = None
    custom_properties: dict[str, str | None] = attrs.field(factory=dict)

    def text(self) -> str:
        return self.payload.decode(self.content_encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self.text())


@attrs.frozen
class MethodResult:
    """A device's answer to a direct method."""

    status: int
    payload: Any  # the JSON it returned (None for none)
    device_id: str | None  # who answered, by the broker's log (None when unknown)


def decode_telemetry_topic(topic: str, payload: bytes, received_at: float | None = None) -> Telemetry | None:
    """A `Telemetry` from a `devices/.../messages/events/...` topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[0] == "devices" and parts[2:4] == ["messages", "events"]:
        device_id, module_id, rest = parts[1], None, parts[4:]
    elif len(parts) >= 7 and parts[0] == "devices" and parts[2] == "modules" and parts[4:6] == ["messages", "events"]:
        device_id, module_id, rest = parts[1], parts[3], parts[6:]
    else:
        return None
    system: dict[str, str | None] = {}
    custom: dict[str, str | None] = {}
    # Not urllib.parse.parse_qs: it turns '+' into ' ', and the SDK encodes with quote (a '+' stays '+').
    for entry in filter(None, "/".join(rest).split("&")):
        key, sep, value = entry.partition("=")
        key = urllib.parse.unquote(key)
        decoded = urllib.parse.unquote(value) if sep else None
        if key in _SYSTEM_PROPERTIES:
            system[_SYSTEM_PROPERTIES[key]] = decoded
        else:
            custom[key] = decoded
    return Telemetry(device_id=device_id, module_id=module_id, topic=topic, payload=payload,
                     received_at=time.time() if received_at is None else received_at,
                     custom_properties=custom, **system)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch (RFC 7386) to `target` in place: nested dicts merge, None deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _query(topic: str) -> dict[str, str]:
    _, _, query = topic.partition("?")
    pairs = (entry.partition("=") for entry in query.split("&") if entry)
    return {urllib.parse.unquote(k).lstrip("$"): urllib.parse.unquote(v) for k, _, v in pairs}


class Hub:
    """The emulator: connect with `start()`; records telemetry, holds twins, calls methods."""

    def __init__(self, port: int, host: str = HOST, sender_of: Callable[[str], str | None] | None = None,
                 default_device: str | None = None, client_id: str | None = None) -> None:
        self.host, self.port = host, port
        self.default_device = default_device
        self._sender_of = sender_of
        self._lock = threading.Condition()
        self._telemetry: list[Telemetry] = []
        self._twins: dict[str, dict[str, dict[str, Any]]] = {}
        self._pending: dict[str, MethodResult | None] = {}
        self._pending_device: dict[str, str] = {}
        self._listeners: list[Callable[[Telemetry], None]] = []
        self.errors: list[str] = []  # requests it could not attribute or parse
        self._connected = threading.Event()
        self._suback_mid: int | None = None
        self.client_id = client_id or f"hubsim-{uuid.uuid4().hex[:8]}"
        # A persistent session, as a hub that never loses what it acknowledged: what devices send
        # while the emulator reconnects (after a broker restart) is kept for it by the broker.
        self._client = mqtt.Client(client_id=self.client_id, clean_session=False, protocol=mqtt.MQTTv311)
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ---- lifecycle

    def start(self, timeout_s: float = 5.0) -> Self:
        """Connect to the broker (in paho's own thread, which reconnects by itself) and wait for it."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self.wait_connected(timeout_s)
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout_s: float = 5.0) -> None:
        """Return once connected and subscribed (again, after a broker restart); HubError if not in time."""
        if not self._connected.wait(timeout_s):
            raise HubError(f"hub emulator not connected to {self.host}:{self.port} within {timeout_s} s")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- telemetry

    def telemetry(self, device_id: str | None = None) -> list[Telemetry]:
        """What it has received so far (of one device, or of all)."""
        with self._lock:
            return [t for t in self._telemetry if device_id is None or t.device_id == device_id]

    def wait_telemetry(self, device_id: str, count: int = 1, timeout_s: float = 10.0) -> list[Telemetry]:
        """Wait until `device_id` has sent `count` messages; return them; HubError if not in time."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                got = [t for t in self._telemetry if t.device_id == device_id]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HubError(f"{len(got)} of {count} messages from {device_id} within {timeout_s} s")
                self._lock.wait(left)

    def on_telemetry(self, listener: Callable[[Telemetry], None]) -> None:
        """Call `listener` (in the MQTT thread) with each message received from now on."""
        self._listeners.append(listener)

    # ---- twins

    def twin(self, device_id: str) -> dict[str, dict[str, Any]]:
        """A copy of the device's twin: {"desired": {..., "$version"}, "reported": {..., "$version"}}."""
        with self._lock:
            return copy.deepcopy(self._twin(device_id))

    def set_twin(self, device_id: str, desired: dict[str, Any] | None = None,
                 reported: dict[str, Any] | None = None) -> None:
        """Set what the hub holds (as a service would before the device connects); publishes nothing."""
        with self._lock:
            twin = self._twin(device_id)
            for part, values in (("desired", desired), ("reported", reported)):
                if values is not None:
                    twin[part] = {**copy.deepcopy(values), "$version": twin[part]["$version"] + 1}

    def patch_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        """Merge `patch` into the desired properties and publish it to the device; returns the new version."""
        with self._lock:
            desired = self._twin(device_id)["desired"]
            merge_patch(desired, patch)
            version = desired["$version"] = desired["$version"] + 1
        self._publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}", {**patch, "$version": version})
        return int(version)

    # ---- direct methods

    def invoke_method(self, device_id: str, name: str, payload: Any = None, timeout_s: float = 10.0) -> MethodResult:
        """Call direct method `name` and wait for the device's answer; HubError if none comes in time."""
        rid = uuid.uuid4().hex
        with self._lock:
            self._pending[rid] = None
            self._pending_device[rid] = device_id
        try:
            self._publish(f"$iothub/methods/POST/{urllib.parse.quote(name, safe='')}/?$rid={rid}", payload)
            deadline = time.monotonic() + timeout_s
            with self._lock:
                while (result := self._pending[rid]) is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise HubError(f"device {device_id} did not answer method {name!r} within {timeout_s} s")
                    self._lock.wait(left)
                return result
        finally:
            with self._lock:
                self._pending.pop(rid, None)
                self._pending_device.pop(rid, None)

    # ---- MQTT

    def _publish(self, topic: str, payload: Any) -> None:
        if not self.connected:
            raise HubError(f"hub emulator not connected to {self.host}:{self.port}")
        body = b"" if payload is None else json.dumps(payload).encode()
        self._client.publish(topic, body, qos=1)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: int) -> None:
        if rc != 0:
            log.warning("hub emulator: broker refused the connection (rc %s)", rc)
            return
        _, self._suback_mid = client.subscribe([(topic, 1) for topic in _SUBSCRIPTIONS])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, granted: Any) -> None:
        if mid == self._suback_mid:
            self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, rc: int) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, bytes(message.payload)
        try:
            if topic.startswith("devices/"):
                self._telemetry_received(topic, payload)
            elif topic.startswith("$iothub/twin/GET/"):
                self._twin_get(topic)
            elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
                self._twin_reported(topic, payload)
            elif topic.startswith("$iothub/methods/res/"):
                self._method_answer(topic, payload)
        except Exception as exc:  # one bad message must not stop the emulator
            log.exception("hub emulator: %s", topic)
            self.errors.append(f"{topic}: {exc}")

    def _telemetry_received(self, topic: str, payload: bytes) -> None:
        record = decode_telemetry_topic(topic, payload)
        if record is None:
            return
        with self._lock:
            self._telemetry.append(record)
            self._lock.notify_all()
        for listener in self._listeners:
            listener(record)

    def _device_of(self, topic: str) -> str | None:
        device = self._sender_of(topic) if self._sender_of is not None else None
        return device or self.default_device

    def _twin_request(self, topic: str, what: str) -> tuple[str, str | None]:
        """(request id, device) of a twin request; the device None (answered 404) when unknown."""
        rid = _query(topic).get("rid", "")
        device = self._device_of(topic)
        if device is None:
            self.errors.append(f"{what} from an unknown device: {topic}")
            self._publish(f"$iothub/twin/res/404/?$rid={rid}", {"message": "unknown device"})
        return rid, device

    def _twin_get(self, topic: str) -> None:
        rid, device = self._twin_request(topic, "twin GET")
        if device is not None:
            self._publish(f"$iothub/twin/res/200/?$rid={rid}", self.twin(device))

    def _twin_reported(self, topic: str, payload: bytes) -> None:
        rid, device = self._twin_request(topic, "reported patch")
        if device is None:
            return
        try:
            patch = json.loads(payload or b"{}")
        except ValueError:
            self._publish(f"$iothub/twin/res/400/?$rid={rid}", {"message": "patch is not JSON"})
            return
        if not isinstance(patch, dict):
            self._publish(f"$iothub/twin/res/400/?$rid={rid}", {"message": "patch is not a JSON object"})
            return
        with self._lock:
            reported = self._twin(device)["reported"]
            merge_patch(reported, {k: v for k, v in patch.items() if k != "$version"})
            version = reported["$version"] = reported["$version"] + 1
        self._publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", None)

    def _method_answer(self, topic: str, payload: bytes) -> None:
        rid = _query(topic).get("rid", "")
        status = int(topic.split("/")[3])
        device = self._sender_of(topic) if self._sender_of is not None else None
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            body = payload.decode(errors="replace")
        with self._lock:
            if rid not in self._pending:
                return  # an answer to a call that timed out, or to another hub
            expected = self._pending_device[rid]
            if device is not None and device != expected:
                self.errors.append(f"method answer {rid} from {device}, not {expected}")
                return
            self._pending[rid] = MethodResult(status=status, payload=body, device_id=device)
            self._lock.notify_all()

    def _twin(self, device_id: str) -> dict[str, dict[str, Any]]:
        return self._twins.setdefault(device_id, {"desired": {"$version": 1}, "reported": {"$version": 1}})
