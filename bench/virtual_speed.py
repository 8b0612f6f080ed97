"""Simulated seconds per wall second: the default site on the virtual clock at its own 100 ms period.

Target: >= 1000x real time (24 h in under 90 s), aiming at 2000x.
Usage: python bench/virtual_speed.py [--hours 1]
"""

from __future__ import annotations

import argparse
import time

from _site import default_site

from runtime.clock import VirtualClock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours to run")
    args = parser.parse_args()
    site = default_site(VirtualClock())
    seconds = args.hours * 3600.0
    site.start()
    started = time.perf_counter()
    site.run(seconds)
    wall = time.perf_counter() - started
    site.stop()
    scans = site.engine.stats.count
    print(f"simulated {seconds:.0f} s ({scans} scans at {site.period_s * 1e3:.0f} ms) in {wall:.2f} s wall")
    print(f"speed: {seconds / wall:.0f}x real time; 24 h would take {86400 / (seconds / wall):.1f} s "
          f"(target >= 1000x, aim 2000x); {wall / scans * 1e6:.1f} us per scan")


if __name__ == "__main__":
    main()
