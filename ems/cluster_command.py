"""`ems cluster ...` subcommands (registered on the `ems` parser by ems/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from programs.cluster.messages import STATE_COMMANDS

DEFAULT_IO_MAP = "io_maps/sim_cluster/node1.toml"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("cluster", help="cluster of battery units: keys, status, state commands",
                            description="A cluster of battery units acting as one (docs/cluster.md).")
    commands = parser.add_subparsers(metavar="COMMAND")
    keys = commands.add_parser(
        "keys", help="make the cluster's secret file and every node's and tool's CURVE key pair",
        description="Makes [cluster] secret_file (the Raft password, mode 0600) and a CURVE key pair in keys_dir "
                    "for every node and every command_keys name; keeps files that exist. Copy the folder to "
                    "every node.")
    keys.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"a node's io_map (default {DEFAULT_IO_MAP})")
    keys.set_defaults(handler=cmd_keys)
    status = commands.add_parser("status", help="members, roles, terms, SOCs and setpoints, as seen from a node")
    _common(status)
    status.add_argument("--json", action="store_true", help="one JSON object (leader, term, members, ...)")
    status.set_defaults(handler=cmd_status)
    state = commands.add_parser("state", help="a state command for every node, through the leader",
                                description="Sends a state command (run, idle, maintenance, reset) to the leader, which "
                                            "passes it to every node with its setpoints.")
    state.add_argument("value", choices=STATE_COMMANDS, help="the state command")
    _common(state)
    state.set_defaults(handler=cmd_state)
    add = commands.add_parser(
        "add", help="add a unit to the running cluster, as a member or a Raft voter (through the leader, committed "
                    "by Raft)",
        description="Adds the unit whose io_map is given (its own [[cluster.nodes]] entry and its public key in "
                    "keys_dir, made with `ems cluster keys --io-map` on that io_map) to the running cluster, "
                    "without restarting the others; then start its controller.")
    _common(add)
    add.add_argument("--voter", action="store_true",
                     help="as a Raft voter (its io_map says voter = true): it counts toward the quorum from the "
                          "commit on, so start it at once")
    add.set_defaults(handler=cmd_add)
    remove = commands.add_parser(
        "remove", help="remove a member from the running cluster (it leaves the split and the status table)",
        description="Removes a member through the leader (committed by Raft): it gets no share, leaves "
                    "the status table, and a voter leaves the quorum.")
    remove.add_argument("member", help="the member's id")
    _common(remove)
    remove.set_defaults(handler=cmd_remove)
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--io-map", default=DEFAULT_IO_MAP, help=f"a node's io_map (default {DEFAULT_IO_MAP})")
    parser.add_argument("--node", help="ask this node of the io_map (default: the io_map's own node)")
    parser.add_argument("--key", default="cli", help="the command key to sign with, one of [cluster] command_keys "
                                                    "(default cli)")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                        help="wait this long for an answer (default 1 s)")


def cmd_keys(args: argparse.Namespace) -> int:
    from runtime.cluster.security import generate
    from runtime.config.io_map import load_io_map

    io_map = load_io_map(args.io_map)
    made = generate(io_map.cluster, Path(io_map.path).parent)
    for path in made:
        print(path)
    print(f"ems cluster keys: {len(made)} files made" if made else "ems cluster keys: every file exists already")
    return 0


def _ask(args: argparse.Namespace, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    from ems.cluster_status import ask
    from runtime.cluster.security import SecurityError, load
    from runtime.config.io_map import load_io_map

    name = f"ems cluster {args.handler.__name__.removeprefix('cmd_')}"
    io_map = load_io_map(args.io_map)
    if not io_map.cluster.nodes:
        print(f"{name}: {args.io_map} has no [[cluster.nodes]]", file=sys.stderr)
        return 2, {}
    try:
        secrets = load(io_map.cluster, Path(io_map.path).parent, client=args.key)
        return 0, ask(io_map.cluster, args.node, args.timeout, secrets, body)
    except SecurityError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2, {}
    except (LookupError, TimeoutError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1, {}


def cmd_status(args: argparse.Namespace) -> int:
    from ems.cluster_status import as_json, render

    code, status = _ask(args, None)
    if not code:
        print(as_json(status) if args.json else render(status))
    return code


def cmd_state(args: argparse.Namespace) -> int:
    code, reply = _ask(args, {"cmd": "state", "value": args.value})
    if code:
        return code
    if not reply.get("ok"):
        leader = f" (the leader is {reply['leader']})" if reply.get("leader") else ""
        print(f"ems cluster state: refused: {reply.get('error')}{leader}", file=sys.stderr)
        return 1
    print(f"ems cluster state: {args.value} queued by the leader (term {reply.get('term')})")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from runtime.cluster.roster import entry

    return _change_members(args, "add", lambda cfg, secrets: {
        "cmd": "add", "node": cfg.node_id, "voter": args.voter,
        "entry": entry(next(n for n in cfg.nodes if n.id == cfg.node_id), secrets.member_keys.get(cfg.node_id))})


def cmd_remove(args: argparse.Namespace) -> int:
    return _change_members(args, "remove", lambda _cfg, _secrets: {"cmd": "remove", "node": args.member})


def _change_members(args: argparse.Namespace, what: str, body: Any) -> int:
    """Ask the leader (found through the io_map's other nodes) to add or remove a member, then
    wait until its status shows the change: committed by Raft and applied by the leader."""
    from ems.cluster_status import ask_leader, wait_for_member
    from runtime.cluster.security import SecurityError, load
    from runtime.config.io_map import load_io_map

    name = f"ems cluster {what}"
    io_map = load_io_map(args.io_map)
    cfg = io_map.cluster
    try:
        secrets = load(cfg, Path(io_map.path).parent, client=args.key)
        request = body(cfg, secrets)
        leader, reply = ask_leader(cfg, secrets, request, args.timeout)
        if not reply.get("ok"):
            print(f"{name}: refused by {leader}: {reply.get('error')}", file=sys.stderr)
            return 1
        node = request["node"]
        term = wait_for_member(cfg, secrets, leader, node, present=what == "add", timeout_s=max(5.0, args.timeout))
    except SecurityError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except (LookupError, TimeoutError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if what == "add" and reply.get("voter"):
        print(f"{name}: {node} is a Raft voter (committed in term {term}, leader {leader}); the quorum counts it "
              f"from now on: start its controller at once: ems run --io-map {args.io_map}")
    elif what == "add":
        print(f"{name}: {node} is a member (committed in term {term}, leader {leader}); start its controller: "
              f"ems run --io-map {args.io_map}")
    else:
        print(f"{name}: {node} is no longer a member (committed in term {term}, leader {leader}); stop its controller")
    return 0
