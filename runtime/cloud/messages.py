"""What the cloud link sends: the JSON body of each message type, and batches of them.

Every body is a JSON object with `type`, `schema` (SCHEMA_VERSION), `site_id` and `ts` (ISO 8601,
UTC, from the scan's injected wall clock), and the fields of its type (docs/cloud.md has the
JSON Schema of each, and tests/cloud/test_messages.py validates every body against it). Values
are in SI units, as the tags hold them; a tag's quality goes with its value.

  SC_Spot_10s       the tags declared `telemetry = true`, every `spot_interval_s`
  SC_state_event    site state and mode changes, with their reason (event log kinds state, mode)
  SC_error_event    errors raised, cleared and acknowledged (event log kind error)
  SC_setpoint_event an accepted write from outside: a setpoint, a limit, a schedule (kind write)
  SC_service_event  the controller's start and stop, clock steps, monitor findings
  SC_cluster_state_event  this node's Raft role, leader, term, members online (kind cluster)
  SC_aem_event      a grid service's AEM alarm on and off (kind aem)

A batch (when several messages wait: draining the queue) is one hub message of type `batch`
whose body is a JSON array of `{"id": message id, "type": message type, "body": body}`, in
queue order; above `gzip_above_bytes` it is gzip-compressed (contentEncoding gzip). A single
message carries its id as the hub message's message id; the hub deduplicates on the ids.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from plc.tags import Quality, TagSpec
from runtime.events import SEVERITIES, Event
from runtime.image import Snapshot

SCHEMA_VERSION = 1
SPOT = "SC_Spot_10s"
BATCH = "batch"
EVENT_TYPES = {"state": "SC_state_event", "mode": "SC_state_event", "error": "SC_error_event",
               "write": "SC_setpoint_event", "service": "SC_service_event", "clock": "SC_service_event",
               "monitor": "SC_service_event", "cluster": "SC_cluster_state_event", "aem": "SC_aem_event"}
MESSAGE_TYPES = (SPOT, *sorted(set(EVENT_TYPES.values())))


def iso(wall_s: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-12-03T16:34:05.123Z."""
    return datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _json_value(value: Any) -> Any:
    """A tag value as JSON holds it: a float that is not finite is null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def spot_body(snapshot: Snapshot, tags: Sequence[TagSpec], site_id: str) -> bytes:
    """SC_Spot_10s: each telemetry tag's value, quality and unit at the end of one scan."""
    values = {}
    for spec in tags:
        i = snapshot.index[spec.name]
        quality: Quality = snapshot.qualities[i]
        value = _json_value(snapshot.values[i])
        values[spec.name] = {"value": value, "quality": quality.name, "unit": spec.unit}
        if spec.enum_labels:
            values[spec.name]["label"] = spec.label(value)
    return _encode({"type": SPOT, "schema": SCHEMA_VERSION, "site_id": site_id, "ts": iso(snapshot.wall_s),
                    "scan": snapshot.scan, "values": values})


def event_body(event: Event, site_id: str) -> tuple[str, bytes]:
    """(message type, body) of one event of the event log."""
    kind = EVENT_TYPES.get(event.kind, "SC_service_event")
    body: dict[str, Any] = {"type": kind, "schema": SCHEMA_VERSION, "site_id": site_id, "ts": iso(event.wall_s),
                            "kind": event.kind, "severity": SEVERITIES[event.severity], "source": event.source,
                            "name": event.name, "text": event.message}
    if event.code:
        body["code"] = event.code
    return kind, _encode(body)


def batch_body(bodies: Sequence[bytes], gzip_above_bytes: int) -> tuple[bytes, str]:
    """(payload, content encoding) of one transmission carrying several entries as a JSON array."""
    payload = b"[" + b",".join(bodies) + b"]"
    if len(payload) > gzip_above_bytes:
        return gzip.compress(payload, compresslevel=6, mtime=0), "gzip"
    return payload, "utf-8"
