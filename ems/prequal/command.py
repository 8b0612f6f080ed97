"""The `ems prequal` command: run tests, judge them, write plots, results and the report."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ems.prequal.sequences import APPLICABLE, PRODUCTS, TESTS

FFR_LEVELS = ("49.7", "49.6", "49.5")
RESERVE_FACTOR = {"fcr-n": 1.34, "fcr-d-up": 1.0, "fcr-d-down": 1.0, "ffr": 1.0}
COMBINED_RESERVE_FACTOR = 2.34  # FCR-N (1.34 C) and FCR-D (C) at C each, on the side FCR-D serves
NOT_LER_RESERVE_FACTOR = 1.0  # without NEM, C each way the product serves
CARRY_SHARE = 0.9  # default capacity: 90 % of what the inverter rating allows after the reservation


def add_parser(sub: Any) -> None:
    p = sub.add_parser("prequal", help="run Nordic FCR/FFR prequalification tests on the simulated site or a unit")
    p.add_argument("--io-map", default="io_maps/sim_commercial.toml", help="the site (default the commercial one)")
    p.add_argument("--product", required=True, choices=[*PRODUCTS, "all"], help="the product tested, or all of them")
    p.add_argument("--test", required=True, choices=[*TESTS, "all"], help="a test, or all that apply")
    p.add_argument("--capacity-w", type=float, help="sold capacity C (default: what the site can carry)")
    p.add_argument("--out", required=True, help="directory for the report, plots, results and log files")
    p.add_argument("--log-dir", help="where the TSO log files go (default DIR/log)")
    p.add_argument("--ffr-level", choices=[*FFR_LEVELS, "all"], help="FFR activation level (default: the io_map's)")
    p.add_argument("--mode", default="passive", help="site_control mode during the test (simulation; default passive)")
    p.add_argument("--t-fme-s", type=float, default=1.0,
                   help="measurement-equipment time constant of the sine evaluation (default 1 s, the requirements'"
                        " for a test frequency applied in software; 0 when it went through the real meter)")
    p.add_argument("--inverter-delay-s", type=float,
                   help="simulation: the inverter's dead time, to judge the chain with a real unit's delays")
    p.add_argument("--inverter-tau-s", type=float, help="simulation: the inverter's response time constant")
    p.add_argument("--live", action="store_true", help="drive the applied test frequency of a running unit")
    p.add_argument("--host", help="tag server of the unit (default: the io_map's modbus_server host)")
    p.add_argument("--port", type=int, help="its port (default: the io_map's)")
    p.add_argument("--unit-id", type=int, default=1, help="its Modbus unit id")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=cmd_prequal)


def cmd_prequal(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    problem = _bad_args(args)
    if problem:
        print(f"ems prequal: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(args)
    if not plan:
        print(f"no test of {args.test!r} applies to {args.product}: {APPLICABLE.get(args.product)}", file=sys.stderr)
        return 2
    results = []
    for product, test, level in plan:
        capacity = args.capacity_w or carry_capacity(args.io_map, product, test)
        warning = capacity_warning(args.io_map, product, test, capacity)
        if warning:
            print(f"ems prequal: warning: {warning}", file=sys.stderr)
        results.append(run_one(args, product, test, level, capacity, out))
    from ems.prequal.report import write_report

    report = write_report(out)
    failed = [r for r in results if not r["passed"]]
    print(f"{len(results) - len(failed)} of {len(results)} tests pass; report: {report}")
    return 1 if failed else 0


def _bad_args(args: argparse.Namespace) -> str:
    """What is wrong with the chain options, or ""."""
    if not 0.0 <= args.t_fme_s <= 10.0:
        return f"--t-fme-s must be 0..10 s, got {args.t_fme_s:g}"
    for name, value in (("--inverter-delay-s", args.inverter_delay_s), ("--inverter-tau-s", args.inverter_tau_s)):
        if value is None:
            continue
        if args.live:
            return f"{name} sets the simulated inverter; a --live test has the unit's own"
        if not 0.0 <= value <= 5.0:
            return f"{name} must be 0..5 s, got {value:g}"
    return ""


def _plan(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    products = PRODUCTS if args.product == "all" else (args.product,)
    plan: list[tuple[str, str, float | None]] = []
    for product in products:
        tests = APPLICABLE[product] if args.test == "all" else (args.test,)
        for test in tests:
            if test not in APPLICABLE[product]:
                continue
            if product == "ffr" and args.ffr_level:
                levels = FFR_LEVELS if args.ffr_level == "all" else (args.ffr_level,)
                plan += [(product, test, float(level)) for level in levels]
            else:
                plan.append((product, test, None))
    return plan


def carry_capacity(io_map_path: str, product: str, test: str = "") -> float:
    """The capacity the site can carry: the inverter rating over the product's power reservation,
    with 10 % to spare, in whole kW. The combined test sells FCR-N too at the same C; the endurance
    test of a unit that is not LER needs NOT_LER_MIN of full activation each way it serves, so the
    battery bounds C as well."""
    from ems.prequal.sequences import NOT_LER_MIN
    from runtime.config.io_map import load_io_map

    io_map = load_io_map(io_map_path)
    limits = next(io_map.program_params[p.name] for p in io_map.programs if p.kind == "power_limits")
    rated = limits.inverter_rated_p_w
    factor = {"combined": COMBINED_RESERVE_FACTOR, "endurance": NOT_LER_RESERVE_FACTOR}.get(test, RESERVE_FACTOR[product])
    capacity = rated / factor
    if test == "endurance" and product != "ffr":
        grid = next(io_map.program_params[p.name] for p in io_map.programs if p.kind == "grid_services")
        control = next(io_map.program_params[p.name] for p in io_map.programs if p.kind == "site_control")
        window_wh = (control.soc_max_pct - control.soc_min_pct - 2 * grid.soc_margin_pct) / 100.0 * grid.battery_capacity_wh
        ways = 2 if product == "fcr-n" else 1
        capacity = min(capacity, window_wh / ways / (NOT_LER_MIN / 60.0))
    return max(1000.0, (capacity * CARRY_SHARE) // 1000 * 1000)


def capacity_warning(io_map_path: str, product: str, test: str, capacity_w: float) -> str | None:
    """Why `capacity_w` is more than the site can carry in this test (carry_capacity), or None:
    the test then runs and shows the shortfall, but the operator should know before hours of it."""
    carry = carry_capacity(io_map_path, product, test)
    if capacity_w <= carry:
        return None
    return (f"{product} {test} at C = {capacity_w:g} W is beyond what the site can carry (about {carry:g} W: the "
            f"inverter's rating over the product's power reservation, 10 % to spare); expect it to fall short")


def run_one(args: argparse.Namespace, product: str, test: str, level: float | None, capacity: float,
            out: Path) -> dict[str, Any]:
    from ems.prequal.evaluate import context, evaluate
    from ems.prequal.plots import plot_test
    from ems.prequal.report import LABELS, stem, write_result
    from ems.prequal.runner import TestRun, prepare, simulate_test

    run = TestRun(args.io_map, product, test, capacity, level, args.mode, Path(args.log_dir) if args.log_dir else
                  out / "log", args.t_fme_s, args.inverter_delay_s, args.inverter_tau_s)
    name = f"{LABELS[product]} {test}" + (f" at {level:.1f} Hz" if level else "")
    progress = None if args.quiet else _progress(name)
    if args.live:
        from ems.prequal.live import live_test, played_sequence

        io_map, seq = prepare(run)
        host = args.host or io_map.modbus_server.host
        port = args.port or io_map.modbus_server.port
        rec = live_test(run, seq, host, port, args.unit_id, progress=progress)
        seq = played_sequence(seq, rec)
        if level:
            rec.meta["ffr_level_hz"] = level
    else:
        rec, seq = simulate_test(run, progress)
    checks = evaluate(rec, seq)
    file = stem(product, test, rec.meta.get("ffr_level_hz") if product == "ffr" else None)
    plot_test(context(rec, seq), out / f"{file}.png", f"{name}, C = {capacity / 1000:g} kW ({rec.source})")
    result = write_result(out, rec, seq, checks, f"{file}.png")
    ok = sum(c.passed for c in checks)
    print(f"{'PASS' if result['passed'] else 'FAIL'}  {name}: {ok}/{len(checks)} checks", flush=True)
    for c in checks:
        if not c.passed:
            print(f"      FAIL {c.requirement}: {c.measured:.4g} {c.unit} (limit {c.limit})")
    return result


def _progress(name: str) -> Callable[[float, float], None]:
    shown = {"decile": -1}

    def report(done_s: float, total_s: float) -> None:
        decile = int(min(done_s / max(total_s, 1e-9), 1.0) * 10)
        if decile > shown["decile"]:
            shown["decile"] = decile
            sys.stderr.write(f"  {name}: {decile * 10:3d} % of {total_s / 60:.1f} min\n")

    return report
