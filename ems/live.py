"""`ems status`, `ems read`, `ems write`: the running controller through its local channel.

The client side of runtime/servers/local_channel.py: one JSON request per connection to
`<data_dir>/ems.sock`, and the status screen rendered from a snapshot of every tag.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from runtime.servers.local_channel import SOCKET_FILE, WRITE_TIMEOUT_S


class NoController(Exception):
    """No controller answers on the site's local channel."""


class Refused(Exception):
    """The controller answered with an error (one line)."""


def ask(data_dir: Path, request: dict[str, Any], timeout_s: float = WRITE_TIMEOUT_S + 1.0) -> dict[str, Any]:
    """One request to the controller of the site whose data directory is `data_dir`."""
    path = Path(data_dir) / SOCKET_FILE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoController(f"no controller is running for this site (nothing answers on {path})") from None
        except PermissionError:
            raise NoController(f"not allowed to reach the controller on {path}: run as its user or root") from None
        sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise NoController(f"the controller on {path} did not answer within {timeout_s:g} s") from None
    if not data:
        raise NoController(f"the controller on {path} closed the connection without an answer")
    answer = json.loads(data.decode("utf-8"))
    if not answer.get("ok"):
        raise Refused(str(answer.get("error", "refused")))
    return dict(answer)


# --- the status screen ------------------------------------------------------------------------
def _show(tags: dict[str, Any], name: str) -> str | None:
    """A tag of a snapshot answer as the status shows it: powers in whole W, other numbers to 0.1."""
    row = tags.get(name)
    if row is None:
        return None
    if row["quality"] != "good":
        return f"- ({row['quality']})"
    value, unit = row["value"], row["unit"]
    if isinstance(value, float):
        return (f"{value:.0f} {unit}" if unit in ("W", "var", "Wh") else f"{value:.1f} {unit}").rstrip()
    return str(row["label"])


def _line(label: str, *parts: str | None) -> str | None:
    shown = [p for p in parts if p]
    return f"{label:<10} {'  '.join(shown)}" if shown else None


def render(answer: dict[str, Any], now_wall_s: float | None = None) -> str:
    """The status screen of one snapshot answer: what an operator checks first."""
    tags: dict[str, Any] = answer["tags"]
    age = (now_wall_s if now_wall_s is not None else time.time()) - float(answer["wall_s"])

    def reason(name: str) -> str | None:
        row = tags.get(name)
        return f"({row['value']})" if row and row["quality"] == "good" and row["value"] else None

    errors = sorted(n[len("error_"):] for n, r in tags.items()
                    if n.startswith("error_") and r["value"] is True and n not in ("error_active", "error_critical_active"))
    scan = [f"{int(tags['scan_count']['value'])} scans"] if "scan_count" in tags and tags["scan_count"]["value"] is not None else []
    for name, what in (("scan_overruns", "overruns"), ("scan_duration_p99_s", "duration p99"),
                       ("scan_jitter_p99_s", "jitter p99")):
        row = tags.get(name)
        if row is not None and row["value"] is not None:
            scan.append(f"{what} {row['value'] * 1e3:.2f} ms" if name.endswith("_s") else f"{row['value']} {what}")
    lines = [
        f"site {answer['site']}: scan {answer['scan']}, data {age:.1f} s old",
        _line("state", _show(tags, "site_state"), reason("site_state_reason")),
        _line("mode", _show(tags, "mode_active") or _show(tags, "mode"), reason("mode_reason")),
        _line("battery", _show(tags, "soc_pct") and f"SOC {_show(tags, 'soc_pct')}",
              _show(tags, "inverter_p_w") and f"power {_show(tags, 'inverter_p_w')} (+ discharge)",
              _show(tags, "inverter_p_setpoint_w") and f"setpoint {_show(tags, 'inverter_p_setpoint_w')}"),
        _line("site", _show(tags, "grid_power_w") and f"grid {_show(tags, 'grid_power_w')} (+ import)",
              _show(tags, "pv_power_w") and f"PV {_show(tags, 'pv_power_w')}",
              _show(tags, "load_power_w") and f"load {_show(tags, 'load_power_w')}"),
        _line("limits", _show(tags, "limit_charge_w") and f"charge {_show(tags, 'limit_charge_w')} "
              f"({_show(tags, 'limit_charge_source')})",
              _show(tags, "limit_discharge_w") and f"discharge {_show(tags, 'limit_discharge_w')} "
              f"({_show(tags, 'limit_discharge_source')})"),
        _line("errors", ", ".join(errors) if errors else "none"),
        _line("safety", _show(tags, "safety_reaction")),
        _line("cluster", _show(tags, "cluster_role") and f"role {_show(tags, 'cluster_role')}",
              _show(tags, "cluster_leader") and f"leader {_show(tags, 'cluster_leader')}"),
        _line("cloud", "not configured" if "cloud_link_state" not in tags else _show(tags, "cloud_link_state")),
        _line("scan", *scan),
    ]
    return "\n".join(line for line in lines if line)


def render_read(answer: dict[str, Any]) -> str:
    rows = []
    for name, row in answer["tags"].items():
        age = "" if row["age_s"] is None else f", {row['age_s']:.1f} s old"
        rows.append(f"{name} = {row['label']} ({row['quality']}{age})")
    return "\n".join(rows)


class StatusLine:
    """`ems run`'s one-line status every `every_s` seconds on a stream (a terminal by default):
    state, mode, SOC, battery/grid/PV/load power, active errors, the scan's p99. Reads the
    published snapshots (a subscriber that keeps a reference) from its own thread."""

    FIELDS = (("soc_pct", "SOC"), ("inverter_p_w", "battery"), ("grid_power_w", "grid"), ("pv_power_w", "PV"),
              ("load_power_w", "load"))

    def __init__(self, image: Any, every_s: float, stream: Any):
        import threading

        self.image, self.every_s, self.stream = image, every_s, stream
        self._latest: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-line", daemon=True)
        image.subscribe(self._keep)

    def _keep(self, snapshot: Any) -> None:
        self._latest = snapshot

    def line(self) -> str | None:
        snap = self._latest
        if snap is None:
            return None

        def label(name: str) -> str | None:
            if name not in snap.index or snap.quality(name).name != "GOOD":
                return None
            spec, value = self.image[name].spec, snap.value(name)
            if isinstance(value, float):
                return f"{value:.0f} {spec.unit}" if spec.unit in ("W", "var") else f"{value:.1f} {spec.unit}"
            return str(spec.label(value))

        parts = [time.strftime("%H:%M:%S", time.localtime(snap.wall_s)), label("site_state"),
                 label("mode_active") or label("mode")]
        parts += [f"{title} {shown}" for name, title in self.FIELDS if (shown := label(name))]
        errors = [n[6:] for n in snap.names if n.startswith("error_") and snap.value(n) is True
                  and n not in ("error_active", "error_critical_active")]
        parts.append(f"errors {', '.join(errors) if errors else 'none'}")
        if "scan_duration_p99_s" in snap.index and snap.value("scan_duration_p99_s") is not None:
            parts.append(f"scan p99 {snap.value('scan_duration_p99_s') * 1e3:.1f} ms")
        return "  ".join(p for p in parts if p)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            text = self.line()
            if text is not None:
                print(text, file=self.stream, flush=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
