"""Wake-up jitter and scan duration of the real-time scan, beside a bare loop measured in the same run.

The bare loop only sleeps to absolute deadlines on the monotonic clock: it is the floor this
machine allows. The site runs its scan thread as its io_map says (`realtime_priority`: SCHED_FIFO
when permitted); the bare loop is measured at normal priority and, when the site got real-time
priority, at that priority too. Target: scan p99 jitter <= 1 ms at 100 ms, at most 2x the bare
loop's, and no overruns. Usage: python bench/scan_jitter.py [--seconds 60] [--periods 0.1 0.01]
"""

from __future__ import annotations

import argparse
import threading
import time

from _site import default_site, percentile

from runtime.clock import RealClock
from runtime.site import set_realtime_priority


def bare_loop(period_s: float, seconds: float, priority: int | None = None) -> list[float]:
    """Lateness of each wake-up of a loop that does nothing but sleep to its deadlines."""
    if priority is not None:
        result: list[float] = []

        def run() -> None:
            set_realtime_priority(priority)
            result.extend(bare_loop(period_s, seconds))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return result
    lateness = []
    t0 = time.monotonic()
    n = 0
    while True:
        deadline = t0 + n * period_s
        if deadline - t0 >= seconds:
            return lateness
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        lateness.append(time.monotonic() - deadline)
        n += 1


def site_loop(period_s: float, seconds: float) -> tuple[list[float], list[float], int, int | None]:
    """Jitter and duration of every scan of the default site on the real clock."""
    site = default_site(RealClock(), period_s=period_s)
    jitters: list[float] = []
    durations: list[float] = []
    stats = site.engine.stats
    site.engine.after_scan.append(lambda ctx: (jitters.append(stats.last_jitter),
                                               durations.append(stats.last_duration)))
    site.start()
    try:
        site.run(seconds)
    finally:
        site.stop()
    return jitters[1:], durations[1:], stats.overruns, site.io_map.site.realtime_priority if site.realtime else None


def ms(x: float) -> str:
    return f"{x * 1e3:7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring time per loop and period")
    parser.add_argument("--periods", type=float, nargs="+", default=[0.1, 0.01])
    args = parser.parse_args()
    print(f"{'loop':<22}{'period':>8}{'scans':>8}{'jit p50':>9}{'jit p99':>9}{'jit max':>9}"
          f"{'dur p50':>9}{'dur p99':>9}{'dur max':>9}{'overruns':>9}   (ms)")
    for period in args.periods:
        bare = bare_loop(period, args.seconds)
        jit, dur, overruns, priority = site_loop(period, args.seconds)
        loops = [("bare sleep", bare, [], 0)]
        if priority is not None:
            loops.append((f"bare FIFO {priority}", bare_loop(period, args.seconds, priority), [], 0))
        loops.append(("default site" + (f" FIFO {priority}" if priority else ""), jit, dur, overruns))
        for name, j, d, o in loops:
            dcols = "".join(ms(x) + "  " for x in (percentile(d, 50), percentile(d, 99), max(d))) if d \
                else f"{'-':>9}" * 3 + "  "
            print(f"{name:<22}{period * 1e3:6.0f}ms{len(j):>8}  {ms(percentile(j, 50))}  {ms(percentile(j, 99))}"
                  f"  {ms(max(j))}  {dcols}{o:>7}")
        ratio = percentile(jit, 99) / max(percentile(bare, 99), 1e-9)
        print(f"  p99 jitter, site / bare sleep at {period * 1e3:.0f} ms: {ratio:.2f}x")


if __name__ == "__main__":
    main()
