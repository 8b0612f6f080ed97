"""Members added and removed at run time (`ems cluster add`, `ems cluster remove`).

The io_map lists the units a node starts with. The roster is what changed since: node id ->
the member's `[[cluster.nodes]]` entry with its CURVE public key, or None once removed. The
leader proposes a change through the Raft log (runtime/cluster/raft.py); every node applies it
when it is committed, and also keeps it in `data_dir/cluster_roster.json`, so that a node
restarted with its old io_map still knows who joined and who left, even if the whole cluster
restarted (the Raft log is in memory). A Raft voter's entry (`"voter": true`) is set only once
pysyncobj's own membership change (which makes it count toward the quorum) is committed; a
voter's removal likewise (runtime/cluster/raft.py).

Keys are only ever set, never deleted: a removal is a None entry. So a roster that has not
caught up yet (a node just started, before the leader's log reached it) removes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from runtime.config.schema import ClusterConfig, ClusterNodeConfig

ENTRY_KEYS = ("host", "raft_port", "pub_port", "rep_port", "public_key", "voter")
KEY_CHARS = 40  # a CURVE public key in Z85


class RosterError(OSError):
    """The saved roster cannot be read: one line naming the file; the node does not start
    (an OSError, like a port in use: `ems run` says so and exits)."""


@attrs.frozen
class Joined:
    node: ClusterNodeConfig
    public_key: bytes | None


def entry(node: ClusterNodeConfig, public_key: bytes | None) -> dict[str, Any]:
    """The roster entry of a member that joins (as a Raft voter if `node.voter`)."""
    return {"host": node.host, "raft_port": node.raft_port, "pub_port": node.pub_port, "rep_port": node.rep_port,
            "public_key": public_key.decode() if public_key else "", "voter": node.voter}


def parse(node_id: str, value: Any, secure: bool) -> Joined:
    """A roster entry back to a member; ValueError naming the field that is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f"the entry of {node_id!r} must be an object with {', '.join(ENTRY_KEYS)}")
    unknown = sorted(set(value) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(f"{node_id}: unknown field(s) {', '.join(unknown)}; known: {', '.join(ENTRY_KEYS)}")
    key = value.get("public_key", "")
    if not isinstance(key, str) or (secure and len(key) != KEY_CHARS):
        raise ValueError(f"{node_id}: public_key must be its {KEY_CHARS}-character CURVE key (Z85), "
                         f"as in keys_dir/{node_id}.key")
    ports: dict[str, int] = {}
    for name in ("raft_port", "pub_port", "rep_port"):
        port = value.get(name)
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"{node_id}: {name} must be an integer port, got {port!r}")
        ports[name] = port
    host = value.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ValueError(f"{node_id}: host must be the node's address, got {host!r}")
    voter = value.get("voter", False)  # entries saved before voters could join have no such key
    if not isinstance(voter, bool):
        raise ValueError(f"{node_id}: voter must be true or false, got {voter!r}")
    try:
        node = ClusterNodeConfig(id=node_id, host=host, voter=voter, raft_port=ports["raft_port"],
                                 pub_port=ports["pub_port"], rep_port=ports["rep_port"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{node_id}: {exc}") from None
    return Joined(node, key.encode() if key else None)


def members(cfg: ClusterConfig, roster: dict[str, Any]) -> dict[str, ClusterNodeConfig]:
    """The cluster's members now: the io_map's, less the removed, plus the added."""
    out = {n.id: n for n in cfg.nodes}
    for node_id, value in roster.items():
        if value is None:
            out.pop(node_id, None)
        else:
            try:
                out[node_id] = parse(node_id, value, secure=False).node
            except ValueError:
                continue
    return out


def conflict(cfg: ClusterConfig, roster: dict[str, Any], new: ClusterNodeConfig) -> str | None:
    """Why `new` cannot join (its id or one of its ports taken), or None."""
    current = members(cfg, roster)
    if new.id in current:
        return f"{new.id} is a member already"
    taken = {(n.host, port): n.id for n in current.values() for port in (n.raft_port, n.pub_port, n.rep_port)}
    for port in (new.raft_port, new.pub_port, new.rep_port):
        if (new.host, port) in taken:
            return f"{new.host}:{port} is {taken[(new.host, port)]}'s"
    return None


class RosterFile:
    """The roster as this node last applied it, in a JSON file replaced atomically."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Any]:
        """The saved roster, {} when there is none; RosterError naming the file when it is unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RosterError(f"{self.path}: cannot be read as the cluster roster: {exc}") from None
        if not isinstance(data, dict):
            raise RosterError(f"{self.path}: the cluster roster must be a JSON object")
        return data

    def save(self, roster: dict[str, Any]) -> None:
        """Write and fsync a new file, then rename it over the old one (survives SIGKILL)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(roster, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
