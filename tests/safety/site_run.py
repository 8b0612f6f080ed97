"""The default home site on the plant simulator, driven scan by scan, for the safety tests.

`SiteRun` builds `io_maps/sim_home.toml` on the virtual clock with an event log and a retain
store in a temporary directory, lets a test change the plant (fault injection) between scans,
and records every scan's outputs so that a test can say in which scan a reaction happened.
The plant's own BMS protection is set wide by default (`WIDE_BMS`) so that what acts on a
fault is the controller's interlock, not the simulated BMS; the BMS-trip test keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ems.scenario import Scenario, ScenarioInfo
from ems.simulate import prepare, virtual_clock_for
from programs.enums import StateCommand
from runtime.events import Event, read_events
from runtime.site import Site, build_site

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "io_maps" / "sim_home.toml"
WIDE_BMS = {"cell_ov_v": 4.5, "cell_uv_v": 1.0, "cell_ot_degc": 90.0, "cell_ut_degc": -40.0,
            "overcurrent_trip_delay_s": 600.0}


@attrs.define
class Scan:
    """What the controller wrote in one scan."""

    n: int
    t_s: float
    setpoint_w: float
    run: bool
    contactor: bool
    state: str
    battery_w: float


class SiteRun:
    def __init__(self, data_dir: Path, interlocks: dict[str, dict[str, Any]] | None = None,
                 monitor: dict[str, Any] | None = None, plant: dict[str, Any] | None = None,
                 wide_bms: bool = True, io_map: Path = HOME, params: dict[str, dict[str, Any]] | None = None):
        overrides = dict(plant or {})
        if wide_bms:
            overrides["bms"] = {**WIDE_BMS, **overrides.get("bms", {})}
        scenario = Scenario(path="<test>", info=ScenarioInfo(), tags={}, plant=overrides, events=())
        cfg, plant_name = prepare(str(io_map), scenario, None, None)
        cfg = _with_params(cfg, interlocks or {}, {**(params or {}), "monitor": monitor or {}})
        self.data_dir = data_dir
        self.site: Site = build_site(cfg, virtual_clock_for(cfg))
        self.site.attach_services(data_dir)
        self.plant = self.site.drivers[plant_name].plant  # type: ignore[attr-defined]
        self.image = self.site.image
        self.safety = next(p for p in self.site.programs if p.kind == "safety")
        self.period = self.site.period_s
        self.scans: list[Scan] = []
        self.site.engine.after_scan.append(self._record)

    # --- driving ---------------------------------------------------------------------------------
    def scan(self, n: int = 1) -> None:
        clock, engine = self.site.clock, self.site.engine
        for _ in range(n):
            t = clock.now() + self.period
            clock.sleep_until(t)
            engine.scan_once(t, self.period)

    def run(self, seconds: float) -> None:
        self.scan(int(round(seconds / self.period)))

    def until(self, condition: Callable[[], bool], within_s: float, what: str = "") -> int:
        """Scan until `condition()` holds; return how many scans it took (fails past `within_s`)."""
        for n in range(1, int(round(within_s / self.period)) + 1):
            self.scan()
            if condition():
                return n
        raise AssertionError(f"not within {within_s} s: {what}")

    def set_plant(self, path: str, value: Any) -> None:
        self.plant.set(path, value)

    def demand(self, load_w: float, pv_w: float = 0.0) -> None:
        """Fix the household load and PV so the battery has a known job (self-consumption)."""
        self.plant.set("load.override_w", load_w)
        self.plant.set("pv.override_w", pv_w)

    def acknowledge(self) -> None:
        """What an operator does: a RESET command to the site state machine."""
        self.image.request_writes([("site_state_cmd", int(StateCommand.RESET))], "test operator")

    def stop(self) -> None:
        self.site.stop()

    # --- reading ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.image[name].value

    @property
    def state(self) -> str:
        tag = self.image["site_state"]
        return tag.spec.label(tag.value)

    def active(self, name: str) -> bool:
        return self.safety.table.is_active(name)

    def stopped(self) -> bool:
        """The stop reaction holds: 0 W and the inverter's run command off."""
        return self["inverter_p_setpoint_w"] == 0.0 and self["inverter_run_cmd"] is False

    def logged(self, kind: str | None = None) -> list[Event]:
        """The event log as written to disk (waits for the writer to catch up)."""
        self._flush()
        events = read_events(self.data_dir / "events.sqlite")
        return [e for e in events if kind is None or e.kind == kind]

    def logged_error(self, name: str, action: str) -> list[Event]:
        return [e for e in self.logged("error") if e.name == name and e.message.startswith(action)]

    def _flush(self) -> None:
        for hook in self.site.engine.after_scan:
            sink = getattr(hook, "sink", None)
            if sink is not None:
                sink.writer.run_now(lambda db: None)

    def _record(self, ctx: Any) -> None:
        t = self.image
        self.scans.append(Scan(ctx.scan, ctx.t_s, t["inverter_p_setpoint_w"].value, t["inverter_run_cmd"].value,
                               t["bms_contactor_cmd"].value, self.state, t["inverter_p_w"].value))


def _with_params(cfg: Any, interlocks: dict[str, dict[str, Any]], programs: dict[str, dict[str, Any]]) -> Any:
    """The io_map with interlock settings and other program parameters changed (by program name)."""
    from programs.safety import InterlockSettings

    params = dict(cfg.program_params)
    safety = params["safety"]
    merged = dict(safety.interlocks)
    for name, settings in interlocks.items():
        merged[name] = attrs.evolve(merged.get(name, InterlockSettings()), **settings)
    params["safety"] = attrs.evolve(safety, interlocks=merged)
    for program, changes in programs.items():
        if changes:
            params[program] = attrs.evolve(params[program], **changes)
    return attrs.evolve(cfg, program_params=params)


def scans_for(seconds: float, period: float = 0.1) -> int:
    """The number of scans a configured time takes."""
    return int(math.ceil(seconds / period - 1e-9))
