"""The direct methods (runtime/cloud/methods.py), invoked through the hub on a running site.

Each method is called as the fleet back end calls it: the hub emulator publishes it, the real
azure-iot-device SDK hands it to the link, the answer goes back the same way. Mosquitto and the
emulator stand in for Azure IoT Hub (tests/cloud/conftest.py): no real hub can run here. The
home site scans on the virtual clock in a thread of its own for the whole test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Running, site_io_map
from testkit.waiting import wait_until

from ems.hubsim.local import LocalHub
from runtime.clock import VirtualClock
from runtime.cloud.methods import METHODS, Methods
from runtime.config.io_map import load_io_map
from runtime.events import read_events
from runtime.site import build_site

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"),
]


def test_going_idle_and_running_again(running: Running) -> None:
    idle = running.call("GoToState_Idling", {"reason": "maintenance window"})
    assert (idle.status, idle.payload["state"]) == (200, "idle")
    back = running.call("GoToState_Running")
    assert (back.status, back.payload["state"]) == (200, "run")


@pytest.mark.parametrize("method, mode", [("GoToMode_SelfConsumption", "self_consumption"),
                                          ("GoToMode_LoadMatching", "load_matching"),
                                          ("GoToMode_ExternalControl", "external"),
                                          ("GoToMode_CostSaving", "cost_saving"),
                                          ("GoToMode_ChargeOnly", "charge_only")])
def test_each_mode_method_puts_the_site_in_its_mode(running: Running, method: str, mode: str) -> None:
    answer = running.call(method, {})
    assert answer.status == 200, answer.payload
    assert (answer.payload["state"], answer.payload["configured_mode"]) == ("run", mode)
    if mode == "external":  # no external controller sends its heartbeat here: the fallback runs, and says why
        assert (answer.payload["mode"], answer.payload["mode_reason"]) == ("passive", "external heartbeat lost")
    else:
        assert (answer.payload["mode"], answer.payload["mode_reason"]) == (mode, "configured")


@pytest.mark.parametrize("method", ["Update_Device", "Receive_Artifact", "Setup_Device", "GoToMode_GridForming"])
def test_what_is_not_built_yet_answers_501_saying_so(running: Running, method: str) -> None:
    answer = running.call(method, {})
    assert answer.status == 501
    assert "not implemented yet" in answer.payload["error"]


@pytest.mark.parametrize("method", METHODS)
def test_a_payload_with_an_unknown_field_is_400_naming_it(running: Running, method: str) -> None:
    answer = running.call(method, {"speed": 3})
    assert answer.status == 400
    assert answer.payload["error"] == f"{method}: unknown field 'speed' (the payload takes only 'reason')"


@pytest.mark.parametrize("payload, problem", [("run now", "must be a JSON object"),
                                              ({"reason": 12}, "field 'reason' must be text, not int"),
                                              ({"reason": "x" * 65}, "field 'reason' has 65 characters; at most 64")])
def test_a_payload_of_the_wrong_shape_is_400_and_changes_nothing(running: Running, payload: Any,
                                                                 problem: str) -> None:
    answer = running.call("GoToState_Idling", payload)
    assert answer.status == 400 and problem in answer.payload["error"]
    assert running.value("site_state") == 1  # still running


def test_an_unknown_method_is_404_listing_the_known_ones(running: Running) -> None:
    answer = running.call("GoToState_Flying")
    assert answer.status == 404
    assert "no method 'GoToState_Flying'" in answer.payload["error"] and "GoToState_Idling" in answer.payload["error"]


def test_a_mode_change_in_maintenance_is_409_and_the_mode_stays(running: Running) -> None:
    running.site.image.request_writes([("site_state_cmd", 3)], source="test").done.result(5.0)  # maintenance
    wait_until(lambda: running.value("site_state") == 3, 10.0, "maintenance")
    before = running.value("mode_active")
    answer = running.call("GoToMode_ChargeOnly")
    assert answer.status == 409
    assert answer.payload["error"] == "GoToMode_ChargeOnly: no mode change while the site is in maintenance"
    assert answer.payload["state"] == "maintenance" and running.value("mode_active") == before


def test_idling_from_maintenance_is_409_the_state_machine_did_not_take_it(running: Running) -> None:
    running.site.image.request_writes([("site_state_cmd", 3)], source="test").done.result(5.0)
    wait_until(lambda: running.value("site_state") == 3, 10.0, "maintenance")
    answer = running.call("GoToState_Idling")
    assert (answer.status, answer.payload["error"]) == (409, "GoToState_Idling: refused in state maintenance")


def test_every_command_is_in_the_event_log_with_its_origin(running: Running) -> None:
    assert running.call("GoToMode_CostSaving", {"reason": "tariff 3"}).status == 200
    wait_until(lambda: any("by cloud GoToMode_CostSaving: tariff 3" in e.message
                           for e in read_events(running.data / "events.sqlite")), 10.0, "the command's event")


def test_restart_device_at_power_is_409_the_state_machine_restarts_only_from_idle(running: Running) -> None:
    answer = running.call("Restart_Device")
    assert (answer.status, answer.payload["error"]) == (409, "Restart_Device: refused in state run")


def test_restart_device_answers_200_and_the_site_stops_to_be_restarted(running: Running) -> None:
    assert running.call("GoToState_Idling").status == 200
    answer = running.call("Restart_Device")
    assert (answer.status, answer.payload["state"]) == (200, "restart")
    running.thread.join(30.0)
    assert running.site.actions.exit_code == running.site.actions.RESTART_EXIT


def test_a_command_the_scan_does_not_apply_in_time_is_500(tmp_path: Path, local: LocalHub, device_id: str) -> None:
    """No scan runs: the write is recorded, never applied within the bound."""
    site = build_site(load_io_map(site_io_map(tmp_path, local, device_id)), VirtualClock())
    answer = Methods(site.image, timeout_s=0.2).answer("GoToState_Idling", None)
    assert answer.status == 500
    assert answer.payload["error"] == "GoToState_Idling: not applied within 0.2 s (is the scan running?)"
