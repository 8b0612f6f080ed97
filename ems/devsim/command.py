"""`ems simulate-devices`: run the simulated field devices of an io_map until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

DEFAULT_IO_MAP = "io_maps/sim_devices.toml"


def add_parser(sub: Any) -> None:
    """Register the subcommand on the `ems` parser's subparsers."""
    parser = sub.add_parser("simulate-devices", help="serve simulated meters, inverters and BMS for an io_map")
    parser.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"site io_map (default {DEFAULT_IO_MAP})")
    parser.add_argument("--preset", choices=["home", "commercial"], default=None,
                        help="plant to simulate (default: commercial when the site id says so, else home)")
    parser.add_argument("--seed", type=int, default=0, help="plant random seed")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="lowest level logged")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ems.devsim.cluster_sim import simulation_for
    from runtime.config.io_map import load_io_map

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    io_map = load_io_map(args.io_map)
    preset = args.preset or ("commercial" if "commercial" in io_map.site.id else "home")
    simulation = simulation_for(io_map, preset=preset, seed=args.seed)  # a cluster's site: several units
    done = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    simulation.start()
    try:
        print(f"simulating {len(simulation.modbus) + len(simulation.can)} devices of {args.io_map} "
              f"({preset} plant); Ctrl-C to stop", flush=True)
        for line in simulation.describe():
            print(f"  {line}", flush=True)
        done.wait(args.duration)
    finally:
        simulation.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0

