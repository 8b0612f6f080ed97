"""The scan on the real clock against a notify socket: a receiver that stops reading never slows
the scan, pings resume within one scan after a stall (none during it), and the scan thread's
priority is what the tags say."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from site_run import HOME

from runtime import systemd
from runtime.clock import RealClock
from runtime.config.io_map import load_io_map
from runtime.site import POLICY_NAMES, Site, build_site, thread_priority
from runtime.systemd import SdNotifier, ServiceWatchdog


def real_site(tmp_path: Path, **site: Any) -> Site:
    """The home site on the real clock, without its Modbus server (no port shared between tests)."""
    io_map = tmp_path / "site.toml"
    io_map.write_text(HOME.read_text().replace("enabled = true", "enabled = false", 1))
    cfg = load_io_map(io_map)
    if site:
        cfg = attrs.evolve(cfg, site=attrs.evolve(cfg.site, **site))
    return build_site(cfg, RealClock())


def run_in_thread(site: Site, duration_s: float) -> float:
    """Run the site for `duration_s` in a thread; the wall time it took (fails if it does not end)."""
    started = time.monotonic()
    thread = threading.Thread(target=site.run, args=(duration_s,), daemon=True)
    thread.start()
    thread.join(duration_s + 5.0)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"the site ignored its duration of {duration_s} s"
    site.stop()
    return took


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.bind(str(path))
    yield path, sock
    sock.close()


def test_a_notify_socket_nobody_reads_never_slows_the_scan(tmp_path, notify_socket, monkeypatch):
    path, _receiver = notify_socket
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    with pytest.raises(BlockingIOError):  # fill the receiver's queue: every later send would wait
        for _ in range(10_000):
            filler.sendto(b"WATCHDOG=1", str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s: every scan
    site = real_site(tmp_path)
    watchdog = systemd.attach(site, site.io_map.watchdog)
    assert watchdog is not None
    duration = 3.0
    took = run_in_thread(site, duration)
    stats = site.engine.stats
    expected = duration / site.period_s
    assert expected - 2 <= stats.count <= expected + 1
    assert took < duration + 1.5
    assert stats.summary()["jitter_p99_s"] < 0.05
    assert stats.overruns == 0
    assert watchdog.notifier.dropped >= stats.count - 2  # READY=1 and the pings: dropped, not waited for
    assert site.image["watchdog_pings_dropped"].value >= stats.count - 3
    filler.close()


def test_pings_resume_within_one_scan_after_a_stall_and_none_during_it(tmp_path, notify_socket):
    path, receiver = notify_socket
    arrivals: list[tuple[float, str]] = []
    receiver.settimeout(0.2)
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            try:
                message = receiver.recv(4096).decode()
                arrivals.append((time.monotonic(), message))
            except (TimeoutError, OSError):
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    site = real_site(tmp_path)
    engine = site.engine
    watchdog = ServiceWatchdog(engine, SdNotifier(str(path)), interval_s=0.0,
                               late_s=site.io_map.supervisor.missed_scans * engine.period_s)
    engine.after_scan.append(watchdog)
    scans: list[tuple[float, bool, int]] = []  # (finished, outputs held safe, pings so far)
    engine.after_scan.append(lambda ctx: scans.append((time.monotonic(), engine.safe_mode, watchdog.pings)))
    stall: dict[str, float] = {}
    program = site.programs[0]
    execute = program.execute

    def stalling(ctx: Any) -> None:
        if ctx.scan == 10:
            stall["start"] = time.monotonic()
            time.sleep(4.0)
            stall["end"] = time.monotonic()
        execute(ctx)

    program.execute = stalling  # type: ignore[method-assign]
    run_in_thread(site, 7.0)
    time.sleep(0.3)
    listening.clear()
    listener.join(2.0)
    pings = [t for t, message in arrivals if message == "WATCHDOG=1"]
    assert site.supervisor is not None and site.supervisor.trips == 1
    assert not [t for t in pings if stall["start"] + 0.01 < t < stall["end"]]  # none while the scan hangs
    after = [t for t in pings if t >= stall["end"]]
    assert after and after[0] - stall["end"] <= 2 * engine.period_s + 0.1  # the first on-time scan pings
    held = [pings_so_far for _, safe, pings_so_far in scans if safe]
    assert held and held[-1] > held[0]  # pinging while the supervisor still holds the outputs safe
    assert engine.safe_mode  # (site.stop sets it; the recovery window of 5 s had not ended before)


def test_the_tags_say_which_priority_the_scan_thread_got(tmp_path, caplog):
    site = real_site(tmp_path, realtime_priority=50)
    seen: list[tuple[int, int]] = []
    site.engine.after_scan.append(lambda ctx: seen.append(thread_priority()) if not seen else None)
    with caplog.at_level(logging.INFO, logger="runtime.site"):
        run_in_thread(site, 0.5)
    policy, got = seen[0]  # what the kernel says of the scan thread
    assert site.image["scan_sched_policy"].value == policy
    assert site.image["scan_sched_priority"].value == got
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == "runtime.site")
    if site.realtime:
        assert "real-time priority SCHED_FIFO 50" in messages
    else:  # refused (unprivileged, or a cgroup without a real-time budget): the warning names both
        assert f"asked for SCHED_FIFO 50 ([site] realtime_priority) but got {POLICY_NAMES[policy]} {got}" in messages


def test_a_priority_refused_without_an_error_is_read_back_and_warned_about(tmp_path, caplog, monkeypatch):
    """Some cgroup set-ups refuse SCHED_FIFO silently: what counts is what the thread got."""
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: None)  # "succeeds", changes nothing
    site = real_site(tmp_path, realtime_priority=50)
    with caplog.at_level(logging.INFO, logger="runtime.site"):
        run_in_thread(site, 0.3)
    assert not site.realtime
    assert site.image["scan_sched_policy"].value == os.SCHED_OTHER
    assert site.image["scan_sched_priority"].value == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "runtime.site" and r.levelno == logging.WARNING]
    assert any("asked for SCHED_FIFO 50 ([site] realtime_priority) but got SCHED_OTHER 0 (refused without an error)"
               in w for w in warnings)
