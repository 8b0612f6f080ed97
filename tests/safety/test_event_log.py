"""The event log: what it records from a running site, its retention limits, and `ems events`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from site_run import HOME, ROOT, SiteRun

from programs.enums import Mode
from runtime.events import Event, EventLog, parse_since, read_events


def event(wall_s: float, severity: int = 0, name: str = "x", kind: str = "error") -> Event:
    return Event(wall_s, 0.0, kind, severity, "bms", 0, name, f"{name} at {wall_s}")


def test_state_and_mode_changes_are_logged_with_their_reasons(tmp_path):
    run = SiteRun(tmp_path)
    run.run(5.0)
    run.image.request_writes([("mode", int(Mode.PEAK_SHAVING))], "modbus 127.0.0.1")
    run.run(1.0)
    states = [e.message for e in run.logged("state")]
    modes = [e.message for e in run.logged("mode")]
    assert states == ["init", "init -> run (inputs valid)"]
    assert modes[-1] == "self_consumption -> peak_shaving (configured)"
    run.stop()


def test_parameter_and_setpoint_writes_are_logged_with_who_wrote_them_but_not_heartbeats(tmp_path):
    run = SiteRun(tmp_path)
    run.image.request_writes([("soc_reserve_pct", 30.0)], "modbus 10.0.0.7")
    run.image.request_writes([("ext_heartbeat", 1)], "modbus 10.0.0.7")
    run.run(1.0)
    writes = run.logged("write")
    assert [(e.name, e.source, e.message) for e in writes] == [
        ("soc_reserve_pct", "modbus 10.0.0.7", "soc_reserve_pct = 30 % (by modbus 10.0.0.7)")]
    run.stop()


def test_start_and_clean_stop_of_the_controller_are_logged(tmp_path):
    run = SiteRun(tmp_path)
    run.run(1.0)
    run.stop()
    service = [e.name for e in read_events(tmp_path / "events.sqlite", kinds=["service"])]
    assert service == ["started", "stopped"]


def test_the_log_keeps_at_most_max_rows_and_the_newest_of_them(tmp_path):
    log = EventLog(tmp_path / "events.sqlite", max_rows=100)
    now = time.time()
    for i in range(250):
        log.append(event(now + i, name=f"e{i}"))
    log.close(now + 250)
    events = read_events(tmp_path / "events.sqlite")
    assert len(events) == 100
    assert events[0].name == "e150" and events[-1].name == "e249"


def test_the_log_forgets_events_older_than_max_age(tmp_path):
    log = EventLog(tmp_path / "events.sqlite", max_age_days=30.0)
    now = time.time()
    log.append(event(now - 40 * 86400, name="old"))
    log.append(event(now - 20 * 86400, name="recent"))
    log.append(event(now, name="now"))
    log.close(now)
    assert [e.name for e in read_events(tmp_path / "events.sqlite")] == ["recent", "now"]


def test_since_takes_durations_and_dates():
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2026-01-31T12:00", now) == 1_769_860_800.0


def ems_events(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ems.cli", "events", "--io-map", str(HOME), "--data-dir",
                           str(data_dir), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_ems_events_filters_by_time_and_severity(tmp_path):
    log = EventLog(tmp_path / "events.sqlite")
    now = time.time()
    log.append(event(now - 3 * 3600, 3, "estop"))
    log.append(event(now - 600, 1, "humidity_high"))
    log.append(event(now - 300, 2, "grid_loss"))
    log.append(event(now - 60, 0, "grid_loss_cleared"))
    log.close(now)

    everything = ems_events(tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert len(everything.stdout.splitlines()) == 4
    recent_errors = ems_events(tmp_path, "--since", "1h", "--severity", "error")
    assert recent_errors.returncode == 0, recent_errors.stderr
    lines = recent_errors.stdout.splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "grid_loss" in lines[0]
    warnings_up = ems_events(tmp_path, "--since", "4h", "--severity", "warning")
    assert [line.split()[4].rstrip(":") for line in warnings_up.stdout.splitlines()] == \
        ["estop", "humidity_high", "grid_loss"]


def test_ems_events_says_what_is_wrong_with_its_arguments(tmp_path):
    EventLog(tmp_path / "events.sqlite").close()
    bad = ems_events(tmp_path, "--severity", "loud")
    assert bad.returncode == 2 and "info, warning, error, critical" in bad.stderr
    missing = ems_events(tmp_path / "nowhere")
    assert missing.returncode == 1 and "no database" in missing.stderr


class Sink(list):  # type: ignore[type-arg]
    """An event log that keeps what it is given, in memory."""

    def append(self, event: Event, on_done: object = None) -> None:  # type: ignore[override]
        super().append(event)


def recorded(changes: list[dict[str, object]]) -> list[Event]:
    """The events of a recorder watching an AEM flag and a node's cluster tags through `changes`."""
    from types import SimpleNamespace

    from plc.tags import Area, DType, TagSpec
    from programs.cluster.node import Role
    from programs.enums import labels
    from runtime.events import EventRecorder
    from runtime.image import ProcessImage

    image = ProcessImage([
        TagSpec("aem_active_fcr_n", DType.BOOL, Area.MEMORY, initial=False),
        TagSpec("cluster_role", DType.ENUM, Area.MEMORY, enum_labels=labels(Role), initial=0),
        TagSpec("cluster_leader", DType.STRING, Area.MEMORY, length=16, initial=""),
        TagSpec("cluster_term", DType.UINT32, Area.MEMORY, initial=0)])
    sink = Sink()
    recorder = EventRecorder(image, [], sink, lambda: 0.0)  # type: ignore[arg-type]
    for i, change in enumerate([{}, *changes]):
        for name, value in change.items():
            image[name].set(value)
        recorder(SimpleNamespace(wall_s=float(i), t_s=float(i)))  # type: ignore[arg-type]
    return [e for e in sink if e.wall_s > 0]  # not the first scan's starting values


def test_aem_on_and_off_are_logged_the_on_as_a_warning() -> None:
    events = recorded([{"aem_active_fcr_n": True}, {"aem_active_fcr_n": False}])
    assert [(e.kind, e.severity, e.message) for e in events] == [
        ("aem", 1, "aem_active_fcr_n: off -> on"), ("aem", 0, "aem_active_fcr_n: on -> off")]


def test_a_new_leader_and_term_are_logged_as_cluster_events() -> None:
    events = recorded([{"cluster_term": 4, "cluster_leader": "node2"}])
    assert sorted((e.kind, e.message) for e in events) == [
        ("cluster", "cluster_leader: none -> node2"), ("cluster", "cluster_term: 0 -> 4")]
