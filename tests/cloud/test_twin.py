"""The device twin (runtime/cloud/twin.py): parameters from the hub, applied whole or not at all.

The hub emulator holds each device's twin and publishes desired patches as IoT Hub does; the real
azure-iot-device SDK receives them. Mosquitto and the emulator stand in for Azure IoT Hub
(tests/cloud/conftest.py): no real hub can run here. The home site scans on the virtual clock
in a thread of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Running, site_io_map, started_site
from testkit.waiting import wait_until

from ems.hubsim.broker import Broker
from ems.hubsim.hub import Hub
from ems.hubsim.local import LocalHub
from runtime import __version__
from runtime.events import read_events

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"),
]


def reported(hub: Hub, device_id: str) -> dict[str, Any]:
    return hub.twin(device_id)["reported"]


def reported_version(hub: Hub, device_id: str, version: int) -> dict[str, Any] | None:
    """The reported parameters once they say what became of desired `version`."""
    parameters = reported(hub, device_id).get("parameters", {})
    if parameters.get("version") == version or parameters.get("refused_version") == version:
        return dict(parameters)
    return None


def test_a_patch_of_the_pi_gains_and_the_peak_shaving_limit_is_applied_at_one_scan_boundary_and_reported(
        running: Running, hub: Hub, device_id: str) -> None:
    changes = {"trim_kp": 0.08, "trim_ki": 0.5, "import_limit_w": 7500.0, "soc_reserve_pct": 35.0}
    version = hub.patch_desired(device_id, {"parameters": changes})
    got = wait_until(lambda: reported_version(hub, device_id, version), 15.0, "the patch reported")
    assert got["errors"] == [] and sorted(got["changed"]) == sorted(changes)
    image = running.site.image
    assert [image[name].value for name in changes] == [pytest.approx(0.08), 0.5, 7500.0, 35.0]
    assert len({image[name].stamp for name in changes}) == 1, "all at one scan boundary"
    control = next(p for p in running.site.programs if p.kind == "site_control")
    wait_until(lambda: control.modes[control.active].tracker.trim.ki == 0.5, 5.0,
               "the self-consumption trim's new gains")
    assert control.modes[control.active].tracker.trim.kp == pytest.approx(0.08)
    events = [e.message for e in read_events(running.data / "events.sqlite") if e.kind == "write"]
    assert f"import_limit_w = 7500 W (by cloud twin v{version})" in events


def test_a_patch_with_a_bad_value_changes_nothing_and_reports_every_error(running: Running, hub: Hub,
                                                                          device_id: str) -> None:
    image = running.site.image
    before = (image["import_limit_w"].value, image["soc_reserve_pct"].value)
    version = hub.patch_desired(device_id, {"parameters": {"import_limit_w": 5000.0, "soc_reserve_pct": 140.0,
                                                           "soc_pct": 50.0, "mode": "turbo"}})
    got = wait_until(lambda: reported_version(hub, device_id, version), 15.0, "the refusal reported")
    assert got["refused_version"] == version
    assert sorted(got["errors"]) == [
        "parameters.mode: 'turbo' is not one of passive, self_consumption, peak_shaving, external, charge_only, "
        "local, cost_saving, load_matching",
        "parameters.soc_pct: not a parameter of this site (it is read-only or not retained)",
        "parameters.soc_reserve_pct: tag 'soc_reserve_pct': 140.0 is outside its range [0, 100] %",
    ]
    assert (image["import_limit_w"].value, image["soc_reserve_pct"].value) == before, "nothing of it applied"


def test_parameters_set_while_the_site_was_offline_are_applied_when_it_connects(tmp_path: Path, local: LocalHub,
                                                                               hub: Hub, device_id: str) -> None:
    hub.set_twin(device_id, desired={"parameters": {"ramp_w_per_s": 1234.0}})
    version = hub.twin(device_id)["desired"]["$version"]
    site = started_site(site_io_map(tmp_path, local, device_id), tmp_path / "data")
    try:
        running = Running(site, hub, device_id, tmp_path / "data")
        wait_until(lambda: reported_version(hub, device_id, version), 15.0, "the offline change reported")
        assert running.site.image["ramp_w_per_s"].value == 1234.0
    finally:
        site.stop()


def test_the_site_reports_its_software_state_and_link(running: Running, hub: Hub, device_id: str) -> None:
    got = wait_until(lambda: reported(hub, device_id).get("site"), 15.0, "the reported properties")
    twin = reported(hub, device_id)
    assert twin["firmware_version"] == __version__
    assert got["site_state"] == "run" and "soc_pct" in got
    assert twin["link"]["state"] in ("connecting", "connected")


def test_accepted_parameters_hold_after_a_restart_without_the_hub(tmp_path: Path, local: LocalHub, broker: Broker,
                                                                  hub: Hub, device_id: str) -> None:
    path, data = site_io_map(tmp_path, local, device_id), tmp_path / "data"
    site = started_site(path, data)
    try:
        Running(site, hub, device_id, data)
        version = hub.patch_desired(device_id, {"parameters": {"export_limit_w": 4200.0}})
        wait_until(lambda: reported_version(hub, device_id, version), 15.0, "the patch reported")
    finally:
        site.stop()
    broker.stop()
    try:
        site = started_site(path, data)
        site.run(5.0)
        assert site.image["export_limit_w"].value == 4200.0
        site.stop()
    finally:
        broker.start()
        hub.wait_connected()
