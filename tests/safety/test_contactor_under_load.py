"""No contactor opens under load, except on an emergency stop.

A battery contactor opened while the inverter carries power latches the inverter's DC-lost
fault (and wears the contactor). So the contactor command is a `safe_hold` output: in doubt
it keeps its last command, before its first it sends none, and dispatch opens it only once
the measured power and battery current are down, however long that takes.
"""

from __future__ import annotations

from typing import Any

from testkit.drivers import FunctionDriver
from testkit.harness import Harness

from plc.tags import Access, Area, DType, Quality, TagSpec
from programs.dispatch import Dispatch, Params
from programs.enums import SiteState
from runtime.clock import VirtualClock
from runtime.image import ProcessImage
from runtime.io.driver import DriverSettings, Point
from runtime.scan import OutputBinding, ScanEngine

SETPOINT = TagSpec(name="inverter_p_setpoint_w", dtype=DType.FLOAT32, area=Area.OUTPUT, access=Access.RW,
                   safe_value=0.0)
CONTACTOR = TagSpec(name="bms_contactor_cmd", dtype=DType.BOOL, area=Area.OUTPUT, access=Access.RW,
                    safe_value=False, safe_hold=True)


class Staged(FunctionDriver):
    """Records every tuple the scan stages (what would go to the device)."""

    def __init__(self) -> None:
        super().__init__("bms", [], [Point("inverter_p_setpoint_w", "p"), Point("bms_contactor_cmd", "c", is_bool=True)],
                         VirtualClock(), DriverSettings(), lambda now: [])
        self.staged: list[tuple[Any, ...]] = []

    def stage(self, values: tuple[Any, ...]) -> None:
        self.staged.append(values)
        super().stage(values)


def engine_with() -> tuple[ProcessImage, Staged, ScanEngine, OutputBinding]:
    image = ProcessImage([SETPOINT, CONTACTOR])
    driver = Staged()
    binding = OutputBinding(driver, (image["inverter_p_setpoint_w"], image["bms_contactor_cmd"]), (0.0, False))
    return image, driver, ScanEngine(image, [], VirtualClock(), 0.1, outputs=[binding]), binding


def test_in_doubt_the_setpoint_goes_to_0_w_and_the_contactor_gets_no_command() -> None:
    _, _, _, binding = engine_with()
    assert binding.in_doubt == (0.0, None)


def test_before_any_program_commanded_it_the_contactor_gets_no_command() -> None:
    image, _, _, binding = engine_with()
    assert image["bms_contactor_cmd"].quality is not Quality.GOOD  # a restarted process: nothing decided yet
    assert binding.commanded() == (0.0, None)


def test_a_commanded_contactor_goes_out_as_commanded() -> None:
    image, _, _, binding = engine_with()
    image["inverter_p_setpoint_w"].set(3000.0)
    image["bms_contactor_cmd"].set(True)
    assert binding.commanded() == (3000.0, True)


def test_the_supervisors_safe_outputs_leave_the_contactor_as_it_was() -> None:
    _, driver, engine, _ = engine_with()
    engine.safe_outputs()
    assert driver.staged[-1] == (0.0, None)


def dispatch(**inputs: Any) -> Harness:
    values = {"baseline_p_w": 0.0, "q_request_var": 0.0, "limit_charge_w": 5000.0, "limit_discharge_w": 5000.0,
              "site_state": int(SiteState.ERROR), "control_hold": False, "inverter_p_setpoint_w": 0.0,
              "inverter_q_setpoint_var": 0.0, "inverter_run_cmd": False, "bms_contactor_cmd": True,
              "inverter_p_w": 3000.0, "battery_current_a": 60.0}
    values.update(inputs)
    return Harness([Dispatch("dispatch", Params())], inputs=values)


def test_in_error_the_contactor_stays_closed_while_the_inverter_still_carries_3_kw() -> None:
    dispatch().run_s(60.0).expect(bms_contactor_cmd=True, inverter_p_setpoint_w=0.0, inverter_run_cmd=False)


def test_the_contactor_opens_once_power_and_battery_current_are_down() -> None:
    h = dispatch().run_s(1.0)
    h.scan(inverter_p_w=20.0, battery_current_a=40.0).expect(bms_contactor_cmd=True)  # DC still flows
    h.scan(inverter_p_w=20.0, battery_current_a=1.5).expect(bms_contactor_cmd=False)


def test_the_contactor_stays_closed_while_the_power_reading_is_not_good() -> None:
    h = dispatch(inverter_p_w=0.0, battery_current_a=0.0)
    h.image["inverter_p_w"].set_quality(Quality.BAD)
    h.run_s(30.0)
    assert h["bms_contactor_cmd"] is True


def test_in_run_the_contactor_is_closed() -> None:
    dispatch(site_state=int(SiteState.RUN), inverter_p_w=0.0, battery_current_a=0.0).scan().expect(bms_contactor_cmd=True)
