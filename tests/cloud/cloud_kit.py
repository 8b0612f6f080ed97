"""Helpers of the cloud tests: the home site with [cloud] at the local hub, and what the hub got.

Mosquitto and the hub emulator (tests/cloud/conftest.py) stand in for Azure IoT Hub: no real hub
can run here. Every message `entries` unpacks is checked against its JSON Schema in docs/cloud.md.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from pathlib import Path
from typing import Any

import jsonschema
from testkit.waiting import wait_until

from ems.hubsim.hub import Hub, MethodResult, Telemetry
from ems.hubsim.local import LocalHub
from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.site import Site, build_site

ROOT = Path(__file__).resolve().parents[2]


def site_io_map(tmp_path: Path, local: LocalHub, device_id: str, mode: int = 0o600, extra: str = "") -> Path:
    """The home site with [cloud] pointing at the local hub."""
    secret = tmp_path / "cloud.connection"
    secret.write_text(local.connection_string(device_id) + "\n")
    secret.chmod(mode)
    text = (ROOT / "io_maps" / "sim_home.toml").read_text()
    text += f"""
[cloud]
enabled = true
connection_string_file = "{secret}"
ca_file = "{local.ca.cert_file}"
backoff_base_s = 0.2
backoff_cap_s = 1.0
call_timeout_s = 5.0
{extra}"""
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def x509_cloud(pair: Any, device_id: str) -> str:
    """The [cloud] keys of X.509 authentication with `pair` (a device certificate and its key)."""
    return (f'auth = "x509"\nhost = "localhost"\ndevice_id = "{device_id}"\ncert_file = "{pair.cert_file}"\n'
            f'key_file = "{pair.key_file}"\n')


def started_site(path: Path, data_dir: Path) -> Site:
    site = build_site(load_io_map(path), VirtualClock())
    site.attach_services(data_dir)
    site.start()
    return site


def doc_schemas() -> dict[str, Any]:
    """The JSON Schemas of docs/cloud.md, by name (its ```json schema=NAME blocks)."""
    text = (ROOT / "docs" / "cloud.md").read_text()
    return {name: json.loads(body) for name, body in re.findall(r"```json schema=(\S+)\n(.*?)```", text, re.DOTALL)}


SCHEMAS = doc_schemas()


def check_body(kind: str, body: Any) -> None:
    """A message body against docs/cloud.md: the common fields and its type's."""
    jsonschema.validate(body, SCHEMAS["common"])
    jsonschema.validate(body, SCHEMAS["SC_Spot_10s" if kind == "SC_Spot_10s" else "event"])
    assert body["type"] == kind


def entries(telemetry: list[Telemetry]) -> list[dict[str, Any]]:
    """Every message the hub got, batches unpacked, as {"id", "type", "body"} in arrival order;
    each checked against its schema in docs/cloud.md on the way."""
    out = []
    for t in telemetry:
        assert t.content_type == "application/json" and t.content_encoding in ("utf-8", "gzip")
        assert t.custom_properties["site_id"] == "sim-home" and t.custom_properties["schema"] == "1"
        payload = json.loads(gzip.decompress(t.payload) if t.content_encoding == "gzip" else t.payload)
        if t.custom_properties["type"] == "batch":
            jsonschema.validate(payload, SCHEMAS["batch"])
            assert t.custom_properties["count"] == str(len(payload))
            out.extend(payload)
        else:
            out.append({"id": t.message_id, "type": t.custom_properties["type"], "body": payload})
    for entry in out:
        check_body(entry["type"], entry["body"])
    return out


def seqs(found: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"].rsplit("-", 1)[1]) for e in found]


def of_type(hub: Hub, device_id: str, kind: str, at_least: int = 1) -> list[dict[str, Any]] | None:
    found = [e for e in entries(hub.telemetry(device_id)) if e["type"] == kind]
    return found if len(found) >= at_least else None


def run_until(site: Site, condition: Any, timeout_s: float, what: str) -> None:
    """Run the site a second of site time at a time until `condition()` holds."""
    wait_until(lambda: site.run(1.0) or condition(), timeout_s, what)


CONNECTED, RETRYING = 2, 3  # cloud_state


def drained(site: Site) -> bool:
    return bool(site.image["cloud_state"].value == CONNECTED and site.image["cloud_queue_depth"].value == 0)


class Running:
    """A started site scanning in its own thread, and a way to call its methods through the hub."""

    def __init__(self, site: Site, hub: Hub, device_id: str, data: Path):
        self.site, self.hub, self.device_id, self.data = site, hub, device_id, data
        self.thread = threading.Thread(target=site.run, name="test-site", daemon=True)
        self.thread.start()
        wait_until(lambda: self.value("cloud_state") == 2 and self.value("site_state") == 1, 30.0,
                   "the site running and its link connected")

    def value(self, name: str) -> Any:
        snapshot = self.site.image.snapshot
        return None if snapshot is None else snapshot.value(name)

    def call(self, name: str, payload: Any = None) -> MethodResult:
        return self.hub.invoke_method(self.device_id, name, payload, timeout_s=15.0)
