"""Benchmark: time per ``step`` of the hot blocks, next to simple-pid.

Run: ``.venv/bin/python bench/blocks.py [--steps N] [--reps R]``

Every case runs ``--steps`` steps per repetition over precomputed inputs;
the cases are interleaved within each repetition (in a rotating order) so
slow drifts of the machine (frequency scaling, other load) hit all of them
alike. Reported: median and minimum ns per step over the repetitions, the
same minus the cost of the bare loop (``net``), and each block's ratio to
simple-pid's PID call measured in the same run.

simple-pid is called as ``pid(y, dt=dt)`` with ``sample_time=dt`` so that,
like our PID, it does not depend on the wall clock for its time step (it
still calls ``time.monotonic()`` once per call internally; that is part of
its cost as shipped).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file is named blocks.py: make sure "import blocks" finds the package
# at the repository root, not this script.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

from simple_pid import PID as SimplePID

from blocks import PID, TON, MovingAverage, RampLimiter

DT = 0.1
KP, KI, KD = 0.8, 0.3, 0.05
LIMITS = (-100.0, 100.0)


def make_inputs(n: int, seed: int = 7) -> tuple[list[float], list[bool], list[float]]:
    """Measurements around a setpoint, a boolean pattern, grid-frequency-like samples."""
    rng = random.Random(seed)
    ys = [20.0 * math.sin(k / 50.0) + rng.gauss(0.0, 1.0) for k in range(n)]
    bools = [rng.random() < 0.95 for _ in range(n)]
    freqs = [50.0 + rng.gauss(0.0, 0.03) for _ in range(n)]
    return ys, bools, freqs


def build_cases(n: int) -> dict[str, Callable[[], None]]:
    """One closure per case; each runs ``n`` steps on fresh-looking state."""
    ys, bools, freqs = make_inputs(n)
    ours = PID(kp=KP, ki=KI, kd=KD, out_min=LIMITS[0], out_max=LIMITS[1])
    ours_filtered = PID(kp=KP, ki=KI, kd=KD, tf_s=0.05, out_min=LIMITS[0], out_max=LIMITS[1])
    theirs = SimplePID(KP, KI, KD, setpoint=0.0, sample_time=DT, output_limits=LIMITS)
    ton = TON(pt_s=1.0)
    ramp = RampLimiter(rate_up_per_s=50.0, rate_down_per_s=100.0, y0=0.0)
    mavg = MovingAverage(window_s=300.0, sample_period_s=DT)

    def loop_only() -> None:
        for _y in ys:
            pass

    def simple_pid() -> None:
        pid = theirs
        for y in ys:
            pid(y, dt=DT)

    def pid_ours() -> None:
        step = ours.step
        for y in ys:
            step(0.0, y, DT)

    def pid_ours_filtered() -> None:
        step = ours_filtered.step
        for y in ys:
            step(0.0, y, DT)

    def ton_step() -> None:
        step = ton.step
        for b in bools:
            step(b, DT)

    def ramp_step() -> None:
        step = ramp.step
        for y in ys:
            step(y, DT)

    def mavg_step() -> None:
        step = mavg.step
        for f in freqs:
            step(f, DT)

    return {
        "simple-pid PID": simple_pid,
        "PID": pid_ours,
        "PID (tf_s=0.05)": pid_ours_filtered,
        "TON": ton_step,
        "RampLimiter": ramp_step,
        "MovingAverage (n=3000)": mavg_step,
        "(bare loop)": loop_only,
    }


def measure(cases: dict[str, Callable[[], None]], n: int, reps: int) -> dict[str, list[float]]:
    """Interleaved repetitions; returns ns/step samples per case."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up (also fills the moving-average window)
        cases[name]()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(reps):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t0 = time.perf_counter_ns()
                cases[name]()
                samples[name].append((time.perf_counter_ns() - t0) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def report(samples: dict[str, list[float]], n: int, reps: int) -> bool:
    """Print the table; return whether our PID is no slower than simple-pid."""
    loop = statistics.median(samples["(bare loop)"])
    ref = statistics.median(samples["simple-pid PID"])
    ref_net = ref - loop
    print(f"blocks benchmark: {n} steps x {reps} interleaved repetitions, "
          f"Python {sys.version.split()[0]}")
    print(f"{'case':<24}{'median ns':>11}{'min ns':>9}{'net ns':>9}"
          f"{'ratio':>8}{'net ratio':>11}")
    for name, values in samples.items():
        if name == "(bare loop)":
            continue
        med = statistics.median(values)
        net = med - loop
        print(f"{name:<24}{med:>11.0f}{min(values):>9.0f}{net:>9.0f}"
              f"{med / ref:>8.2f}{net / ref_net:>11.2f}")
    print(f"{'(bare loop)':<24}{loop:>11.0f}{min(samples['(bare loop)']):>9.0f}")
    print("ratio = median / simple-pid median; net = minus the bare loop")
    ours = statistics.median(samples["PID"])
    ok = ours <= ref
    verdict = "PASS" if ok else "FAIL"
    print(f"target: our PID step no slower than simple-pid's: {verdict} "
          f"({ours:.0f} ns vs {ref:.0f} ns, ratio {ours / ref:.2f})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps per repetition")
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if our PID is slower than simple-pid")
    args = parser.parse_args(argv)
    cases = build_cases(args.steps)
    ok = report(measure(cases, args.steps, args.reps), args.steps, args.reps)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
