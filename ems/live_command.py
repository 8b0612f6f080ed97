"""`ems status`, `ems read` and `ems write`: the running controller of a site, from its shell.

They reach the controller through its local channel (runtime/servers/local_channel.py), found
in the site's data directory (the io_map's `data_dir`, or `--data-dir` as `ems run` was given).
Exit codes: 0 done, 1 no controller answers, 2 refused (an unknown tag, a read-only tag, a bad
value: one line saying which).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ems.live import NoController, Refused, ask, render, render_read
from runtime.config.io_map import load_io_map
from runtime.paths import DEFAULT_IO_MAP

EXIT_NO_CONTROLLER, EXIT_REFUSED = 1, 2


def add_parser(sub: Any) -> None:
    def site_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"the site's io_map (default {DEFAULT_IO_MAP})")
        p.add_argument("--data-dir", help="the data directory `ems run` was given (default: the io_map's data_dir)")

    status = sub.add_parser(
        "status", help="the running controller at a glance: state, mode, power, limits, errors, cluster, scan",
        description="State and mode with their reasons, SOC, grid/PV/load/battery power, the charge and discharge "
                    "limits and which binds, active errors, the cluster role, the cloud link and the scan "
                    "statistics of the running controller, with the age of the data.",
        epilog="exit codes: 0 shown, 1 no controller answers")
    site_options(status)
    status.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until Ctrl-C")
    status.set_defaults(handler=cmd_status)

    read = sub.add_parser("read", help="read tags of the running controller",
                          description="Each tag's value, quality and age, from the running controller's local channel.",
                          epilog="exit codes: 0 read, 1 no controller answers, 2 an unknown tag")
    read.add_argument("tags", nargs="+", metavar="TAG", help="tag names (`ems tags` lists them)")
    site_options(read)
    read.set_defaults(handler=cmd_read)

    write = sub.add_parser(
        "write", help="write a tag of the running controller (as a Modbus write: checked, logged, stored)",
        description="Writes a writable (rw) tag through the same guarded path as a Modbus write: checked "
                    "against the tag's type and range, recorded in the event log with origin 'cli' and applied "
                    "at a scan boundary; answered once applied and stored. Enums take their label or number, "
                    "bools true/false.",
        epilog="exit codes: 0 written, 1 no controller answers, 2 refused")
    write.add_argument("tag", help="a writable (rw) tag")
    write.add_argument("value", help="its new value: a number, true/false, or an enum's label or number")
    site_options(write)
    write.set_defaults(handler=cmd_write)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or load_io_map(args.io_map).site.data_dir)


def _run(args: argparse.Namespace, request: dict[str, Any], show: Any) -> int:
    try:
        answer = ask(_data_dir(args), request)
    except NoController as exc:
        print(f"ems: {exc}", file=sys.stderr)
        return EXIT_NO_CONTROLLER
    except Refused as exc:
        print(f"ems: {args.handler.__name__[4:]}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(show(answer))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        return _run(args, {"op": "snapshot"}, render)
    if args.watch <= 0:
        print(f"ems: status: --watch {args.watch:g}: the refresh period must be above 0 s", file=sys.stderr)
        return EXIT_REFUSED
    try:
        while True:
            code = _run(args, {"op": "snapshot"}, lambda a: "\033[H\033[J" + render(a) if sys.stdout.isatty() else render(a))
            if code:
                return code
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def cmd_read(args: argparse.Namespace) -> int:
    return _run(args, {"op": "read", "tags": args.tags}, render_read)


def cmd_write(args: argparse.Namespace) -> int:
    return _run(args, {"op": "write", "tag": args.tag, "value": args.value},
                lambda a: f"{a['tag']} = {a['label']} (applied and stored)")
