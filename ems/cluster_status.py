"""`ems cluster status`: members, roles, terms, SOCs and setpoints of a running cluster, as seen
from one node (asked over its REP socket)."""

from __future__ import annotations

import json
import time
from typing import Any

from runtime.cluster.security import ClusterSecrets
from runtime.cluster.transport import endpoint, request
from runtime.config.schema import ClusterConfig

COLUMNS = (("id", "node", "{}"), ("state", "state", "{}"), ("role", "role", "{}"), ("term", "term", "{}"),
           ("site_state", "site", "{}"), ("soc_pct", "SOC %", "{:.1f}"), ("p_w", "P W", "{:.0f}"),
           ("setpoint_w", "setpoint W", "{:.0f}"), ("setpoint_term", "sp term", "{}"),
           ("setpoint_seq", "sp seq", "{}"), ("fallback", "fallback", "{}"), ("age_s", "last state", "{:.1f} s ago"))
SILENT = ("stale", "offline")  # a member in these states says nothing now: its last role is history


def ask(cfg: ClusterConfig, node: str | None = None, timeout_s: float = 1.0,
        secrets: ClusterSecrets | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send `body` (default: a status request) to `node` (default: the io_map's own node, else
    the first that answers), with the command tool's CURVE key from `secrets`."""
    nodes = [n for n in cfg.nodes if n.id == (node or cfg.node_id)] or (list(cfg.nodes) if node is None else [])
    if not nodes:
        raise LookupError(f"no node {node!r} in this io_map; nodes: {', '.join(n.id for n in cfg.nodes)}")
    errors = []
    for n in nodes:
        server_key = secrets.member_keys.get(n.id) if secrets is not None else None
        try:
            return request(endpoint(n.host, n.rep_port), body or {"cmd": "status"}, timeout_s, secrets, server_key)
        except (TimeoutError, ValueError) as exc:
            errors.append(str(exc))
    raise TimeoutError("; ".join(errors))


def ask_leader(cfg: ClusterConfig, secrets: ClusterSecrets, body: dict[str, Any],
               timeout_s: float = 1.0) -> tuple[str, dict[str, Any]]:
    """Send `body` to the leader, found by asking the io_map's other nodes; (leader, reply)."""
    errors = []
    for n in cfg.nodes:
        if n.id == cfg.node_id and len(cfg.nodes) > 1:
            continue  # the io_map of a unit being added: that unit does not run yet
        try:
            leader = ask(cfg, n.id, timeout_s, secrets).get("leader")
        except (TimeoutError, ValueError) as exc:
            errors.append(f"{n.id}: {exc}")
            continue
        if leader:
            return leader, ask(cfg, leader, timeout_s, secrets, body)
        errors.append(f"{n.id}: knows no leader")
    raise TimeoutError("no leader found: " + "; ".join(errors))


def wait_for_member(cfg: ClusterConfig, secrets: ClusterSecrets, leader: str, node: str, present: bool,
                    timeout_s: float) -> int:
    """Until the leader's status lists `node` (or no longer does); returns the term."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = ask(cfg, leader, 1.0, secrets)
        if (node in {m["id"] for m in status.get("members", [])}) == present:
            return int(status.get("term", 0))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node} {'not yet listed' if present else 'still listed'} by the leader {leader} "
                               f"after {timeout_s:.0f} s: the change was proposed but not seen committed")
        time.sleep(0.1)


def render(status: dict[str, Any]) -> str:
    """The status as a table for people."""
    quorum = "yes" if status.get("has_quorum") else "no"
    lines = [f"as seen from {status['node']}: leader {status.get('leader') or 'none'}, term {status['term']}, "
             f"role {status.get('role')}, quorum {quorum}, commanding {'yes' if status.get('commanding') else 'no'}"]
    rows = [[title for _, title, _ in COLUMNS]]
    for member in status.get("members", []):
        shown = dict(member)
        if member.get("state") in SILENT or (member.get("source") != "self" and member.get("reachable") is False):
            shown["role"] = "unreachable"  # not the "leader" of its last word
        rows.append([_cell(shown.get(key), fmt) for key, _, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    cluster, site, sp = status.get("cluster", {}), status.get("site", {}), status.get("setpoint", {})
    lines.append(f"cluster: SOC {_cell(cluster.get('soc_pct'), '{:.1f}')} %, "
                 f"P {_cell(cluster.get('p_w'), '{:.0f}')} W, "
                 f"limits charge {_cell(cluster.get('limit_charge_w'), '{:.0f}')} W / discharge "
                 f"{_cell(cluster.get('limit_discharge_w'), '{:.0f}')} W")
    lines.append(f"site: grid {_cell(site.get('grid_power_w'), '{:.0f}')} W (target "
                 f"{_cell(site.get('cluster_grid_setpoint_w'), '{:.0f}')} W), cluster baseline "
                 f"{_cell(site.get('cluster_baseline_p_w'), '{:.0f}')} W")
    lines.append(f"this node applies {_cell(sp.get('p_w'), '{:.0f}')} W (term {sp.get('term')}, seq {sp.get('seq')}"
                 f"{', FALLBACK' if sp.get('fallback') else ''}); setpoints dropped {status.get('dropped', 0)}")
    return "\n".join(lines)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def as_json(status: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in status.items() if k != "ok"}, indent=2, sort_keys=True)
