"""`ems simulate-devices`: the field devices of an io_map, simulated from the plant model.

For each device of the io_map:
  * `modbus` - a pymodbus server on the device's host:port serving exactly its profile's
    register map, values bound to the plant through the profile's `plant_var`s (and the
    device's `sim_vars` overrides);
  * `can_bms` - a simulated BMS sending the DBC's frames at their cycle times; for
    `interface = "remote"` it serves a python-can-remote endpoint at the channel's URL;
  * `bms_sleep` with a Modbus relay - the relay module, its coil bound to the BMS's sleep;
  * other kinds (gpio, i2c, sysfs, sim) have nothing to simulate here.
One plant, stepped in real time, feeds them all; the plant's `<device>.comm_ok` faults
silence the matching simulated devices. The plant steps every `step_s`, and also at each write
and each revert deadline of a simulated device: a command or a revert acts from its moment, as
in an inverter's own fast control loop, not from the start of the step it fell in.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlparse

import attrs
import can

from ems.devsim.can_bms_sim import SimulatedBms
from ems.devsim.loop import LoopThread
from ems.devsim.modbus_device import DeviceServer
from ems.devsim.plant_link import PlantLink
from runtime.config.schema import IoMap
from runtime.io.can.dbc import load_dbc
from runtime.io.modbus.profile import load_profile, resolve_profile_path
from sim import Plant, PlantConfig

log = logging.getLogger(__name__)
PRESETS = {"home": PlantConfig.home, "commercial": PlantConfig.commercial}
_COMM_FLAG = {"meter": "meter.comm_ok", "inverter": "inverter.comm_ok"}
WRITE_STEP_S = 0.005  # a write acts within this of its moment (a real inverter's control loop: a few ms)


class SteppedPlant(Protocol):
    """What the simulation itself does with its plant (a Plant, or a cluster's): step it."""

    def step(self, dt_s: float) -> None: ...


@attrs.define
class SimulatedModbus:
    name: str
    server: DeviceServer
    link: PlantLink
    comm_flag: str | None


@attrs.define
class SimulatedCan:
    name: str
    bms: SimulatedBms
    bus: can.BusABC
    endpoint: Any  # python-can-remote server, when the driver connects remotely


class DeviceSimulation:
    """The plant and every simulated device of one io_map. `start()`, then `stop()`."""

    def __init__(self, io_map: IoMap, preset: str = "home", seed: int = 0, step_s: float = 0.05):
        self.io_map = io_map
        self.plant: SteppedPlant = Plant(attrs.evolve(PRESETS[preset](), seed=seed))
        self.lock = threading.Lock()
        self.step_s = step_s
        self.loop = LoopThread("devsim")
        self.modbus: list[SimulatedModbus] = []
        self.can: list[SimulatedCan] = []
        self._stop = threading.Event()
        self._stepper = threading.Thread(target=self._run, name="devsim-plant", daemon=True)
        self._stepped_to = time.monotonic()  # the plant's time: stepped up to here
        self._due = self._stepped_to  # the next periodic step (and refresh of the registers)
        self._wake = threading.Event()  # a write may have armed a revert timer: the stepper looks again

    # --- building -------------------------------------------------------------------------------
    def plant_for(self, device: str) -> Any:
        """The plant a device is bound to (one plant here; ems/devsim/cluster_sim.py has several)."""
        return self.plant

    def start(self) -> None:
        for device in self.io_map.devices:
            config = self.io_map.device_options.get(device.name)
            if config is None:
                continue
            if device.driver == "modbus":
                self._modbus(device.name, config)
            elif device.driver == "can_bms":
                self._can(device.name, config)
            elif device.driver == "bms_sleep" and config.options.relay.kind == "modbus":
                self._sleep_relay(device.name, config)
            else:
                log.info("device %s (%s): nothing to simulate", device.name, device.driver)
        self._refresh()
        self._stepped_to = time.monotonic()
        self._due = self._stepped_to + self.step_s
        self._stepper.start()

    def _modbus(self, name: str, config: Any) -> None:
        options = config.options
        if options.transport == "rtu":
            log.warning("device %s: serial RTU cannot be simulated here; use rtu_over_tcp", name)
            return
        server = DeviceServer(config.profile, port=options.port, host=options.host, unit_id=config.unit_id,
                              framer="rtu" if options.transport == "rtu_over_tcp" else "socket")
        self.loop.run(server.start())
        link = PlantLink(server.device, self.plant_for(name), self.lock, options.sim_vars)
        link.advance = self._written
        self.modbus.append(SimulatedModbus(name, server, link, _COMM_FLAG.get(config.profile.device.kind)))
        log.info("device %s: %s on %s:%d (unit %d)", name, config.profile.name, options.host, options.port,
                 config.unit_id)

    def _sleep_relay(self, name: str, config: Any) -> None:
        relay = config.options.relay
        server = DeviceServer(load_profile(resolve_profile_path(model=relay.model)), port=relay.port, host=relay.host,
                              unit_id=relay.unit_id)
        self.loop.run(server.start())
        link = PlantLink(server.device, self.plant_for(name), self.lock)
        awake_when_on = config.options.energised_means == "awake"

        def on_write(register: str, value: Any) -> None:
            if register != relay.register:
                return
            with self.lock:
                self._written()
                self.plant_for(name).set("bms.sleep_cmd", not value if awake_when_on else bool(value))
            if relay.feedback:
                server.device.set(relay.feedback, bool(value))

        server.device.on_write = on_write
        self.modbus.append(SimulatedModbus(name, server, link, None))
        log.info("device %s: relay module on %s:%d", name, relay.host, relay.port)

    def _can(self, name: str, config: Any) -> None:
        options = config.options
        endpoint = None
        if options.interface == "remote":
            channel = f"devsim-{name}"
            endpoint = _serve_remote(options.channel, channel)
            bus = can.Bus(interface="virtual", channel=channel)
        else:
            bus = can.Bus(interface=options.interface, channel=options.channel)
        bms = SimulatedBms(load_dbc(config.dbc_path), bus, self.plant_for(name), racks=options.racks,
                           lock=self.lock)
        bms.start()
        self.can.append(SimulatedCan(name, bms, bus, endpoint))
        log.info("device %s: simulated BMS (%s, %d racks) on %s %s", name, config.dbc_path.rsplit("/", 1)[-1],
                 options.racks, options.interface, options.channel)

    # --- running --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            wait_s = self._until_next_step()
            if wait_s > 0.0:
                self._wake.wait(wait_s)
                self._wake.clear()
                continue
            with self.lock:
                self._advance()
            self._refresh()
            now = time.monotonic()
            if now >= self._due:  # a periodic step (not a revert's): the next one a period on
                self._due = max(self._due + self.step_s, now)

    def _written(self) -> None:
        """A client's write is about to reach the plant (the lock is held): step up to now,
        unless the plant was stepped less than WRITE_STEP_S ago (the registers of one request,
        or several units' writes at once: one step, not one each, on a site of 16 units), and
        have the stepper look at the revert deadlines again."""
        if time.monotonic() - self._stepped_to >= WRITE_STEP_S:
            self._advance()
        self._wake.set()

    def _advance(self) -> None:
        """Step the plant up to now (the caller holds the lock)."""
        now = time.monotonic()
        if now > self._stepped_to:
            self.plant.step(now - self._stepped_to)
            self._stepped_to = now

    def _until_next_step(self) -> float:
        """Seconds to the next step: every `step_s` (a write's step between does not move it:
        the registers are refreshed on the period), or sooner at a revert deadline."""
        now = time.monotonic()
        due = self._due
        for sim in self.modbus:
            expiry = sim.server.device.next_expiry()
            if expiry is not None:
                due = min(due, expiry)
        return max(0.0, due - now)

    def _refresh(self) -> None:
        for sim in self.modbus:
            sim.link.refresh()
            if sim.comm_flag:
                sim.server.device.faults.silent = not self.plant_for(sim.name).get(sim.comm_flag)
        for can_sim in self.can:
            can_sim.bms.faults.silent = not self.plant_for(can_sim.name).get("bms.comm_ok")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._stepper.is_alive():
            self._stepper.join(2.0)
        for can_sim in self.can:
            can_sim.bms.stop()
            can_sim.bus.shutdown()
            if can_sim.endpoint is not None:
                can_sim.endpoint.shutdown()
                can_sim.endpoint.server_close()
        for sim in self.modbus:
            self.loop.run(sim.server.stop())
        self.loop.stop()

    def describe(self) -> list[str]:
        lines = [f"modbus {s.name}: {s.server.profile.name} on {s.server.host}:{s.server.port}" for s in self.modbus]
        for s in self.can:
            dbc = s.bms.decoder.db.dbc
            assert dbc is not None, "the database was loaded from a DBC file"
            lines.append(f"can {s.name}: {dbc.attributes['ProtocolVersion'].value} x{s.bms.racks} racks")
        return lines


def _serve_remote(url: str, channel: str) -> Any:
    """A python-can-remote server for `url` (ws://127.0.0.1:PORT/) on a virtual channel."""
    from can_remote.server import RemoteServer

    parsed = urlparse(url)
    server = RemoteServer(host=parsed.hostname or "127.0.0.1", port=parsed.port or 54701, channel=channel,
                          interface="virtual")
    threading.Thread(target=server.serve_forever, name="devsim-can-remote", daemon=True).start()
    return server
