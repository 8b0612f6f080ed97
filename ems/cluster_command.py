"""`ems cluster ...` subcommands (registered on the `ems` parser by ems/cli.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_IO_MAP = "io_maps/sim_cluster/node1.toml"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("cluster", help="cluster of battery units: status of a running cluster")
    commands = parser.add_subparsers(metavar="COMMAND")
    status = commands.add_parser("status", help="members, roles, terms, SOCs and setpoints, as seen from a node")
    status.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"a node's io_map (default {DEFAULT_IO_MAP})")
    status.add_argument("--node", help="ask this node of the io_map (default: the io_map's own node)")
    status.add_argument("--json", action="store_true", help="one JSON object (leader, term, members, ...)")
    status.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="wait this long for an answer")
    status.set_defaults(handler=cmd_status)
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])


def cmd_status(args: argparse.Namespace) -> int:
    from ems.cluster_status import as_json, ask, render
    from runtime.config.io_map import load_io_map

    io_map = load_io_map(args.io_map)
    if not io_map.cluster.nodes:
        print(f"ems cluster status: {args.io_map} has no [[cluster.nodes]]", file=sys.stderr)
        return 2
    try:
        status = ask(io_map.cluster, args.node, args.timeout)
    except (LookupError, TimeoutError) as exc:
        print(f"ems cluster status: {exc}", file=sys.stderr)
        return 1
    print(as_json(status) if args.json else render(status))
    return 0
