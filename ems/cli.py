"""The `ems` command line."""

from __future__ import annotations

import argparse
import gc
import logging
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ems import cloud_command, cluster_command, live_command
from ems.devsim import command as devsim_command
from ems.errors import EPILOG, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_START, CommandError
from ems.help import document
from ems.prequal import command as prequal_command
from runtime import __version__
from runtime.clock import RealClock, VirtualClock
from runtime.config.io_map import load_io_map
from runtime.config.schema import IoMap
from runtime.config.structure import ConfigErrors
from runtime.events import KINDS as EVENT_KINDS
from runtime.logs import setup_logging
from runtime.paths import DEFAULT_IO_MAP
from runtime.site_lock import SiteBusy, SiteLock

log = logging.getLogger("ems")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_CONFIG
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigErrors as exc:
        _print_config_errors(exc)
        return EXIT_CONFIG
    except CommandError as exc:
        print(f"ems {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"ems {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ems", description="EMS controller for battery energy storage systems",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ems {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND", dest="command")

    run = sub.add_parser("run", help="run the controller on a site")
    run.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"site io_map file (default {DEFAULT_IO_MAP})")
    run.add_argument("--virtual-time", action="store_true", help="run on the virtual clock, as fast as possible")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much (clock) time")
    run.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="lowest level logged (default: the io_map's [logging] level)")
    run.add_argument("--data-dir", help="override the site's data directory (logs, stores)")
    run.add_argument("--status-every", type=float, metavar="SECONDS",
                     help="a one-line status on stderr every SECONDS (default 10 in a terminal, else off; 0: off)")
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check-config", help="validate an io_map; exit 0 when valid, 2 with every error")
    check.add_argument("file", help="the io_map to check")
    check.set_defaults(handler=cmd_check_config)

    tags = sub.add_parser("tags", help="list the tags of a site (the register map)")
    tags.add_argument("--io-map", default=DEFAULT_IO_MAP, help="site io_map")
    tags.add_argument("--format", choices=["table", "csv", "markdown", "json"], default="table",
                      help="table (default), csv, markdown (docs/modbus.md) or json; enums with their values")
    tags.set_defaults(handler=cmd_tags)

    sim = sub.add_parser("sim", help="simulate a site on the virtual clock; write CSV, plot and summary")
    sim.add_argument("--io-map", help=f"site io_map (default: the scenario's, else {DEFAULT_IO_MAP})")
    sim.add_argument("--scenario", help="scenario file (TOML): mode, settings, plant changes, timed events")
    sim.add_argument("--profile", help="CSV t_s,pv_power_w,load_power_w replacing the plant's PV and load")
    sim.add_argument("--frequency-profile", help="CSV t_s,frequency_hz replacing the plant's grid frequency")
    sim.add_argument("--hours", type=float, help="simulated hours (default: the scenario's, else 24)")
    sim.add_argument("--out", default="run.csv", help="CSV output, one row per sample (default run.csv)")
    sim.add_argument("--plot", help="PNG plot of power flows, SOC and mode")
    sim.add_argument("--sample-rate-hz", type=float, help="CSV rows per second (default 1, at most the scan rate)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=cmd_sim)

    events = sub.add_parser("events", help="show the event log: state and mode changes, errors, writes")
    events.add_argument("--io-map", default=DEFAULT_IO_MAP, help="site io_map (finds the data directory)")
    events.add_argument("--data-dir", help="override the site's data directory")
    events.add_argument("--since", help="only newer events: a duration (30m, 2h, 7d) or a date (2026-01-31T12:00)")
    events.add_argument("--severity", default="info", help="lowest severity: info, warning, error, critical")
    events.add_argument("--kind", action="append", default=[], help=f"only this kind ({', '.join(EVENT_KINDS)}); "
                                                                   "repeatable")
    events.add_argument("--limit", type=int, help="only the newest N events")
    events.set_defaults(handler=cmd_events)
    devsim_command.add_parser(sub)  # ems simulate-devices
    prequal_command.add_parser(sub)  # ems prequal
    cluster_command.add_parser(sub)  # ems cluster status
    cloud_command.add_parser(sub)  # ems cloud hub
    live_command.add_parser(sub)  # ems status, ems read, ems write
    return document(parser)

def _print_config_errors(exc: ConfigErrors) -> None:
    count = len(exc.errors)
    if count == 1:  # one line: file:line: key: message
        print(exc.errors[0], file=sys.stderr)
        return
    print(f"{count} error{'s' if count != 1 else ''} in configuration:", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)

def _load(path: str) -> IoMap:
    return load_io_map(path)

def cmd_check_config(args: argparse.Namespace) -> int:
    from runtime.site import build_site

    io_map = _load(args.file)
    site = build_site(io_map, VirtualClock())  # programs bind to their tags: catches references too
    print(f"{args.file}: OK ({len(io_map.devices)} devices, {len(io_map.tags)} tags, "
          f"{len(io_map.programs)} programs)")
    for note in site.notes:
        print(f"  {note}")
    return 0

def cmd_tags(args: argparse.Namespace) -> int:
    from runtime import tag_table
    from runtime.site import build_site

    site = build_site(_load(args.io_map), VirtualClock())
    specs = site.image.specs()
    render = {"table": tag_table.to_text, "csv": tag_table.to_csv, "markdown": tag_table.to_markdown,
              "json": tag_table.to_json}
    sys.stdout.write(render[args.format](specs))
    return 0

def cmd_sim(args: argparse.Namespace) -> int:
    from ems.scenario import load_scenario
    from ems.simulate import progress_bar, simulate

    for option, value in (("--hours", args.hours), ("--sample-rate-hz", args.sample_rate_hz)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CommandError(f"{option} must be a positive number, got {value:g}", EXIT_CONFIG)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scenario = load_scenario(args.scenario) if args.scenario else None
    info = scenario.info if scenario else None
    hours = args.hours if args.hours is not None else (info.hours if info and info.hours else 24.0)
    rate = args.sample_rate_hz or (info.sample_rate_hz if info and info.sample_rate_hz else 1.0)
    io_map = args.io_map or (info.io_map if info and info.io_map else DEFAULT_IO_MAP)
    summary = simulate(io_map, hours, args.out, scenario, args.profile, args.frequency_profile, rate,
                       args.plot, None if args.quiet else progress_bar())
    print(summary.text())
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0

def cmd_events(args: argparse.Namespace) -> int:
    from runtime.events import parse_kinds, parse_severity, parse_since, read_events

    try:
        since = parse_since(args.since) if args.since else None
        severity = parse_severity(args.severity)
        kinds = parse_kinds(args.kind)
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit {args.limit}: at least 1")
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_CONFIG) from None
    io_map = _load(args.io_map)
    path = Path(args.data_dir or io_map.site.data_dir) / io_map.event_log.file
    try:
        found = read_events(path, since, severity, kinds, args.limit)
    except FileNotFoundError as exc:
        raise CommandError(str(exc), EXIT_START) from None
    for event in found:
        print(event.text())
    if not found:
        print(f"no events in {path}" + (" that match" if since is not None or severity or kinds else ""))
    return 0

_SITE_LOCK: SiteLock | None = None  # `ems run`'s hold on its site, for the life of the process


def _claim_site(data_dir: Path) -> str | None:
    """Take the site's lock (one controller per site), in a data directory that can be written;
    None when held, else the reason in one line. The lock comes first when the directory
    exists, so that a second controller writes nothing at all, not even the storage probe."""
    from runtime.storage import check_data_dir

    global _SITE_LOCK
    lock = SiteLock(data_dir)
    try:
        if data_dir.is_dir():
            lock.acquire()
        problem = check_data_dir(data_dir)
        if problem is None and not lock.held:
            lock.acquire()
    except SiteBusy as busy:
        return str(busy)
    except OSError as exc:  # the lock file cannot be made: the directory check says why
        problem = check_data_dir(data_dir) or f"data directory {data_dir}: {exc.strerror or exc}"
    if problem is not None:
        lock.release()
        return problem
    _SITE_LOCK = lock  # held until the process ends
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from runtime import grid_log
    from runtime.servers.local_channel import SOCKET_FILE, LocalChannel
    from runtime.site import build_site

    io_map = _load(args.io_map)
    if args.status_every is not None and not args.status_every >= 0:
        print(f"ems run: --status-every {args.status_every:g}: seconds, 0 or more", file=sys.stderr)
        return EXIT_CONFIG
    data_dir = Path(args.data_dir or io_map.site.data_dir)
    problem = _claim_site(data_dir)  # before logging, which writes its file there
    if problem is not None:
        print(f"ems: cannot start site {io_map.site.id}: {problem}", file=sys.stderr)
        return EXIT_START
    setup_logging(args.log_level or io_map.logging.level, data_dir / "log" / io_map.logging.file,
                  io_map.logging.max_bytes, io_map.logging.backups)
    from ems.simulate import virtual_clock_for

    clock = virtual_clock_for(io_map) if args.virtual_time else RealClock()
    site = build_site(io_map, clock)
    site.attach_services(data_dir)
    grid_log.attach(site, data_dir)  # the grid operator's log
    channel = LocalChannel(site.image, data_dir / SOCKET_FILE, io_map.site.id)  # ems status / read / write
    site.mirrors.append(channel)
    every = args.status_every if args.status_every is not None else (10.0 if sys.stderr.isatty() else 0.0)
    if every > 0:
        from ems.live import StatusLine

        site.mirrors.append(StatusLine(site.image, every, sys.stderr))
    log.info("data directory %s: log %s, event log %s, retained values %s, local channel %s", data_dir,
             data_dir / "log" / io_map.logging.file, data_dir / io_map.event_log.file if io_map.event_log.enabled
             else "off", data_dir / io_map.retain.file if io_map.retain.enabled else "off", channel.path)
    log.info("site %s: %d tags, %d devices, %d programs, scan period %.3f s, %s clock",
             io_map.site.id, len(site.image), len(site.drivers), len(site.programs),
             site.period_s, "virtual" if clock.virtual else "real")

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        site.engine.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # Everything built so far (the site, its programs and tags, the libraries) lives as long as the
    # process: out of the cyclic collector's way, a full collection never has to walk it in a scan.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    try:
        site.start()
        site.run(args.duration)
    except OSError as exc:  # a port in use, a device path that is missing: say so, no traceback
        log.error("cannot start site %s: %s", io_map.site.id, exc)
        return EXIT_START
    finally:
        site.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    wall = time.perf_counter() - started
    code = site.actions.exit_code
    if code:
        log.warning("exit %d: %s requested through the site state", code,
                    "restart" if code == site.actions.RESTART_EXIT else "reboot")
        if code == site.actions.REBOOT_EXIT and io_map.site.reboot_command:
            subprocess.run(list(io_map.site.reboot_command), check=False)
    summary = site.engine.stats.summary()
    simulated = summary["scans"] * site.period_s
    log.info("stopped after %d scans (%.1f s of site time in %.1f s wall, %.0fx), %d overruns, "
             "scan p99 %.3f ms, jitter p99 %.3f ms", summary["scans"], simulated, wall,
             simulated / wall if wall > 0 else 0.0, summary["overruns"], summary["duration_p99_s"] * 1e3,
             summary["jitter_p99_s"] * 1e3)
    return code

if __name__ == "__main__":
    sys.exit(main())
