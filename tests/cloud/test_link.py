"""The cloud link (runtime/cloud/link.py) of a whole site, through the real azure-iot-device SDK.

Mosquitto (TLS on 127.0.0.1:8883) and the hub emulator stand in for Azure IoT Hub in every test
here (tests/cloud/conftest.py): no real hub can run on this machine. The site is the default
home site on the virtual clock (its scans run faster than real time, so minutes of site time
take a second or two); the link, its queue and the SDK run on the real clock, as in production.
"""

from __future__ import annotations

import os
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cloud_kit import (
    RETRYING,
    check_body,
    drained,
    entries,
    of_type,
    run_until,
    seqs,
    site_io_map,
    started_site,
    x509_cloud,
)
from testkit.waiting import wait_until

from ems.hubsim.broker import Broker
from ems.hubsim.hub import Hub
from ems.hubsim.local import LocalHub
from runtime.clock import VirtualClock
from runtime.cloud.queue import MessageQueue
from runtime.config.io_map import load_io_map
from runtime.secret_files import SecretFileError
from runtime.site import build_site

# the home site's telemetry tags: its io_map's, and the site state and mode the programs declare
TELEMETRY = ("grid_power_w", "grid_frequency_hz", "inverter_p_w", "pv_power_w", "load_power_w", "soc_pct",
             "site_state", "mode_active")

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"),
]


def test_spot_telemetry_reaches_the_hub_every_10_s_of_site_time(tmp_path: Path, local: LocalHub, hub: Hub,
                                                                 device_id: str) -> None:
    site = started_site(site_io_map(tmp_path, local, device_id), tmp_path / "data")
    try:
        site.run(60.0)
        spots = wait_until(lambda: of_type(hub, device_id, "SC_Spot_10s", 6), 20.0, "6 spot messages at the hub")
    finally:
        site.stop()
    body = spots[0]["body"]
    assert body["site_id"] == "sim-home" and body["schema"] == 1
    assert set(body["values"]) == set(TELEMETRY)
    assert body["values"]["soc_pct"]["unit"] == "%"
    assert body["values"]["grid_power_w"]["quality"] == "GOOD"
    assert body["values"]["site_state"]["label"] in ("init", "run", "idle")
    stamps = [e["body"]["ts"] for e in spots]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_the_controllers_start_event_is_sent(tmp_path: Path, local: LocalHub, hub: Hub, device_id: str) -> None:
    site = started_site(site_io_map(tmp_path, local, device_id), tmp_path / "data")
    try:
        site.run(5.0)
        found = wait_until(lambda: of_type(hub, device_id, "SC_service_event"), 20.0, "the start event at the hub")
    finally:
        site.stop()
    assert found[0]["body"]["name"] == "started"
    assert found[0]["body"]["text"].startswith("controller started")


def test_state_and_mode_changes_are_sent_as_state_events(tmp_path: Path, local: LocalHub, hub: Hub,
                                                         device_id: str) -> None:
    site = started_site(site_io_map(tmp_path, local, device_id), tmp_path / "data")
    try:
        site.run(30.0)
        found = wait_until(lambda: of_type(hub, device_id, "SC_state_event"), 20.0, "a state event at the hub")
    finally:
        site.stop()
    assert {e["body"]["kind"] for e in found} <= {"state", "mode"}
    assert all(e["body"]["source"] == "site" for e in found)


def test_two_minutes_without_the_hub_lose_nothing_and_arrive_in_order(tmp_path: Path, local: LocalHub,
                                                                      broker: Broker, hub: Hub,
                                                                      device_id: str) -> None:
    """The broker stopped for 150 s of site time while spot messages and events flow: the link
    queues, its state says so, and once the broker is back every message arrives, oldest first."""
    site = started_site(site_io_map(tmp_path, local, device_id), tmp_path / "data")
    try:
        run_until(site, lambda: drained(site), 20.0, "connected and drained")
        broker.stop()
        try:
            site.run(150.0)
            run_until(site, lambda: site.image["cloud_state"].value == RETRYING
                      and site.image["cloud_queue_depth"].value >= 15, 20.0, "retrying, 150 s of spot messages queued")
            assert site.image["cloud_last_error"].value
        finally:
            broker.start()
            hub.wait_connected()
        run_until(site, lambda: drained(site), 30.0, "the queue drained after the broker came back")
    finally:
        site.stop()
    got = entries(hub.telemetry(device_id))
    numbers = seqs(got)
    assert sorted(set(numbers)) == list(range(1, max(numbers) + 1)), "every message, none missing"
    firsts = [numbers.index(n) for n in sorted(set(numbers))]
    assert firsts == sorted(firsts), "in queue order (per type too)"
    spots = [datetime.fromisoformat(e["body"]["ts"]) for e in got if e["type"] == "SC_Spot_10s"]
    assert len(spots) >= 15
    assert {(b - a).total_seconds() for a, b in pairwise(spots)} == {10.0}, "one every 10 s, none missing"


def test_what_was_queued_at_a_stop_is_sent_at_the_next_start(tmp_path: Path, local: LocalHub, broker: Broker,
                                                             hub: Hub, device_id: str) -> None:
    path = site_io_map(tmp_path, local, device_id)
    broker.stop()
    try:
        site = started_site(path, tmp_path / "data")
        site.run(60.0)
        site.stop()
    finally:
        broker.start()
        hub.wait_connected()
    queue = MessageQueue(tmp_path / "data" / "cloud_queue.sqlite")
    queued = queue.depth
    queue.close()
    assert queued >= 7  # 6 spot messages, the start and stop events
    site = started_site(path, tmp_path / "data")
    try:
        run_until(site, lambda: drained(site), 30.0, "the queue of the last run drained")
    finally:
        site.stop()
    assert len(set(seqs(entries(hub.telemetry(device_id))))) >= queued


def test_a_connection_string_readable_by_others_stops_the_start_with_one_line(tmp_path: Path, local: LocalHub,
                                                                             device_id: str) -> None:
    path = site_io_map(tmp_path, local, device_id, mode=0o644)
    site = build_site(load_io_map(path), VirtualClock())
    site.attach_services(tmp_path / "data")
    with pytest.raises(SecretFileError, match=r"cloud connection string file .*cloud.connection is readable by "
                                              r"others \(mode 0644\): chmod 600"):
        site.start()
    site.stop()


def test_a_connection_string_without_its_key_is_refused_naming_what_is_missing(tmp_path: Path, local: LocalHub,
                                                                              device_id: str) -> None:
    path = site_io_map(tmp_path, local, device_id)
    secret = tmp_path / "cloud.connection"
    secret.write_text(f"HostName=localhost;DeviceId={device_id}\n")
    os.chmod(secret, 0o600)
    site = build_site(load_io_map(path), VirtualClock())
    site.attach_services(tmp_path / "data")
    with pytest.raises(OSError, match=r"cloud.connection: no SharedAccessKey"):
        site.start()
    site.stop()


def test_the_schemas_of_docs_cloud_md_refuse_a_wrong_message() -> None:
    """The check above can fail: a spot value of an unknown quality, an event without its text."""
    spot = {"type": "SC_Spot_10s", "schema": 1, "site_id": "a", "ts": "2026-12-03T16:34:05.123Z", "scan": 1,
            "values": {"grid_power_w": {"value": 1.0, "quality": "FINE", "unit": "W"}}}
    with pytest.raises(jsonschema.ValidationError, match="'FINE' is not one of"):
        check_body("SC_Spot_10s", spot)
    event = {"type": "SC_state_event", "schema": 1, "site_id": "a", "ts": "2026-12-03T16:34:05.123Z",
             "kind": "state", "severity": "info", "source": "site", "name": "site_state"}
    with pytest.raises(jsonschema.ValidationError, match="'text' is a required property"):
        check_body("SC_state_event", event)


def test_the_link_over_websockets_sends_telemetry(tmp_path: Path, local: LocalHub, hub: Hub, device_id: str) -> None:
    """transport = "websockets": MQTT over TLS on 443, the way through a firewall that passes only HTTPS."""
    site = started_site(site_io_map(tmp_path, local, device_id, extra='transport = "websockets"\n'),
                        tmp_path / "data")
    try:
        site.run(20.0)
        assert wait_until(lambda: of_type(hub, device_id, "SC_Spot_10s", 2), 20.0, "spot messages over WebSockets")
    finally:
        site.stop()


def test_the_link_with_a_device_certificate_sends_telemetry(tmp_path: Path, local: LocalHub, hub: Hub,
                                                            device_id: str, device_certificates_required: Any) -> None:
    """auth = "x509": the broker demands a client certificate signed by its CA (the hub's device registry)."""
    pair = local.device_cert(device_id)
    pair.key_file.chmod(0o600)
    extra = x509_cloud(pair, device_id)
    site = started_site(site_io_map(tmp_path, local, device_id, extra=extra), tmp_path / "data")
    try:
        site.run(20.0)
        assert wait_until(lambda: of_type(hub, device_id, "SC_Spot_10s", 2), 20.0, "spot messages with X.509")
    finally:
        site.stop()


def test_a_device_key_readable_by_others_stops_the_start_with_one_line(tmp_path: Path, local: LocalHub,
                                                                       device_id: str) -> None:
    pair = local.device_cert(device_id)
    pair.key_file.chmod(0o644)
    extra = x509_cloud(pair, device_id)
    site = build_site(load_io_map(site_io_map(tmp_path, local, device_id, extra=extra)), VirtualClock())
    site.attach_services(tmp_path / "data")
    with pytest.raises(SecretFileError, match=r"cloud device key file .* is readable by others \(mode 0644\)"):
        site.start()
    site.stop()


def test_a_hub_whose_certificate_does_not_chain_to_the_ca_is_never_trusted_and_the_site_controls_on(
        tmp_path: Path, local: LocalHub, other_ca: Any, hub: Hub, device_id: str) -> None:
    """ca_file of another CA: the TLS handshake fails at every attempt; the link says why, queues, and the
    scan runs on (the site reaches Run as without a cloud)."""
    path = site_io_map(tmp_path, local, device_id)
    path.write_text(path.read_text().replace(str(local.ca.cert_file), str(other_ca.cert_file)))
    site = started_site(path, tmp_path / "data")
    try:
        run_until(site, lambda: site.image["cloud_state"].value == RETRYING and site.image["site_state"].value == 1
                  and site.image["cloud_queue_depth"].value >= 3, 20.0, "retrying, queueing, and the site running")
        assert "TLS" in site.image["cloud_last_error"].value or "tls" in site.image["cloud_last_error"].value.lower()
    finally:
        site.stop()
    assert hub.telemetry(device_id) == []


def test_the_cloud_state_tag_labels_are_the_link_states() -> None:
    """runtime/scan_stats.py declares the tag's labels; runtime/cloud/link.py sets its values."""
    from runtime.cloud.link import LinkState
    from runtime.scan_stats import STATS_TAG_EXTRAS

    assert STATS_TAG_EXTRAS["cloud_state"]["enum_labels"] == tuple(state.name.lower() for state in LinkState)
