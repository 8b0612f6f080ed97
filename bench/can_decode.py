"""CAN frames decoded per second: our CAN BMS driver next to bare cantools, in the same run.

The frames are the commercial site's BMS traffic (4 racks, every message of the DBC, cell
pages included), encoded by the simulated BMS from a running plant. Measured, best of
`--repeat` runs each:
  * cantools   - `Database.decode_message(frame_id, data)`, the floor;
  * decoder    - our FrameDecoder: id -> message and rack, decode, DBC range checks;
  * driver     - `CanBmsDriver.handle`: the decoder plus storing each signal with its time;
  * bus+driver - frames sent on a python-can virtual bus and drained by the driver's poll.

    .venv/bin/python bench/can_decode.py [--family cbms|nbms] [--frames N] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import can

from ems.devsim.can_bms_sim import SimulatedBms
from runtime.clock import RealClock
from runtime.io.can.bms import CanBmsConfig, CanBmsDriver, CanBmsOptions, CanPoint
from runtime.io.can.dbc import FrameDecoder, load_dbc, resolve_dbc
from runtime.io.driver import DriverSettings, Point
from sim import Plant, PlantConfig


def traffic(family: str, count: int) -> list[tuple[int, bytes, bool]]:
    """`count` frames in the order and mix the simulated BMS sends them (one cycle repeated)."""
    db = load_dbc(str(resolve_dbc(family=family, version="2.5")))
    plant = Plant(PlantConfig.commercial())
    plant.inverter.run_cmd = True
    for _ in range(100):
        plant.step(0.1)
    bus = can.Bus(interface="virtual", channel="bench-traffic")
    bms = SimulatedBms(db, bus, plant, racks=4)
    cycle: list[tuple[int, bytes, bool]] = []
    for spec, rack in bms._schedule:  # one frame per message and rack, weighted by its rate
        repeats = max(1, round(1.0 / (spec.cycle_s or 1.0)))
        for _ in range(repeats):
            values = bms.values_for(spec.message, rack)
            data = spec.message.encode(values, scaling=True, strict=False)
            cycle.append((bms.decoder.frame_id(spec, rack), data, spec.message.is_extended_frame))
    bus.shutdown()
    return (cycle * (count // len(cycle) + 1))[:count]


def best(repeat: int, run: Callable[[], Any], frames: int) -> float:
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        rates.append(frames / (time.perf_counter() - started))
    return max(rates)


def driver_for(family: str, channel: str) -> CanBmsDriver:
    pack = "PackStatus" if family == "cbms" else "NbmsStatus"
    points = [Point("soc", CanPoint(pack, "PackSoc"))] + \
        [Point(f"r{r}", CanPoint("RackStatus", "RackSoc", rack=r)) for r in range(4)]
    options = CanBmsOptions(interface="virtual", channel=channel, family=family, version="2.5", racks=4,  # type: ignore[arg-type]
                            max_frames_per_poll=10**9)
    return CanBmsDriver("bms", points, [], RealClock(), DriverSettings(),
                        CanBmsConfig(options, str(resolve_dbc(family=family, version="2.5"))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["cbms", "nbms"], default="cbms")
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frames = traffic(args.family, args.frames)
    db = load_dbc(str(resolve_dbc(family=args.family, version="2.5")))
    decoder = FrameDecoder(db)
    driver = driver_for(args.family, "bench-unused")

    # cantools alone cannot tell the rack from a CBMS frame id: it gets the DBC's (rack 0) id
    base_ids = [(decoder.lookup(f)[0].message.frame_id, d) for f, d, _ in frames]  # type: ignore[index]

    def bare() -> None:
        decode = db.decode_message
        for frame_id, data in base_ids:
            decode(frame_id, data, decode_choices=False)

    def ours() -> None:
        decode = decoder.decode
        for frame_id, data, extended in frames:
            decode(frame_id, data, extended)

    def handled() -> None:
        handle, now = driver.handle, time.monotonic()
        for frame_id, data, extended in frames:
            handle(frame_id, data, extended, now)

    results = {"cantools decode_message": best(args.repeat, bare, len(frames)),
               "our FrameDecoder.decode": best(args.repeat, ours, len(frames)),
               "CanBmsDriver.handle": best(args.repeat, handled, len(frames))}
    results["virtual bus + driver poll"] = bus_rate(args.family, frames[: min(len(frames), 20_000)], args.repeat)
    print(f"CAN decode, {args.family.upper()} 2.5, 4 racks, {len(frames)} frames "
          f"({len({f[0] for f in frames})} distinct ids), best of {args.repeat}")
    floor = results["cantools decode_message"]
    for name, rate in results.items():
        print(f"  {name:28s} {rate:>10,.0f} frames/s  {rate / floor:5.2f} x cantools")
    assert driver.stats.bad_frames == 0 and driver.stats.unknown_ids == 0
    return 0


def bus_rate(family: str, frames: list[tuple[int, bytes, bool]], repeat: int) -> float:
    """Frames through a virtual bus into the driver's poll (send first, then one drain)."""
    rates = []
    for attempt in range(repeat):
        channel = f"bench-bus-{attempt}"
        driver = driver_for(family, channel)
        driver.open()
        sender = can.Bus(interface="virtual", channel=channel)
        messages = [can.Message(arbitration_id=i, data=d, is_extended_id=e) for i, d, e in frames]
        for message in messages:
            sender.send(message)
        started = time.perf_counter()
        driver.read_inputs(time.monotonic())
        rates.append(len(frames) / (time.perf_counter() - started))
        assert driver.stats.frames == len(frames), driver.stats
        driver.close()
        sender.shutdown()
    return max(rates)


if __name__ == "__main__":
    sys.exit(main())
