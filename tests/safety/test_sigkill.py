"""Kill a running controller with SIGKILL at random moments and find its stores intact every time.

The controller is the real `ems run` process on the virtual clock (so it races through
simulated hours: state and mode changes at start, a humidity warning raised and cleared every
few simulated minutes, retained values saved every 5 s of site time, i.e. every few
milliseconds of wall time). Each kill lands somewhere in start-up, a transaction or a scan.
After each kill the test opens both SQLite files and checks: the integrity check passes, every
event is readable, nothing that was committed before has gone missing, the boot count and the
total run time never go backwards, and every retained value is accepted by its tag again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from site_run import HOME, ROOT
from testkit.waiting import wait_until

from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.events import read_events
from runtime.site import build_site

KILLS = 22


def killable_site(tmp_path: Path) -> Path:
    """The home site without its Modbus server, with a humidity fault every 3 simulated minutes."""
    toggles = ", ".join(f'{{ t_s = {90.0 * k + 30.0}, variable = "site.humidity_pct", '
                        f'value = {95.0 if k % 2 == 0 else 40.0} }}' for k in range(400))
    text = HOME.read_text().replace("enabled = true", "enabled = false", 1)
    text = text.replace("seed = 1\n", f"seed = 1\nevents = [{toggles}]\n", 1)
    text += "\n[retain]\nsave_interval_s = 5.0\n"
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def start(io_map: Path, data_dir: Path, notify: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    return subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--virtual-time",
                             "--data-dir", str(data_dir), "--log-level", "WARNING", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(sock: socket.socket) -> None:
    """Until the controller says READY=1 (its first scan is done): from then on it is running."""
    while not sock.recv(4096).startswith(b"READY=1"):
        pass


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def event_count(path: Path) -> int:
    """Events in the log so far (0 before it exists), read while the controller writes it."""
    try:
        return len(read_events(path)) if path.exists() else 0
    except sqlite3.OperationalError:  # created, its table not yet
        return 0


def grown(path: Path, known: int) -> bool:
    return event_count(path) > known


def retained(path: Path) -> dict[str, object]:
    db = sqlite3.connect(path)
    try:
        return {name: json.loads(value) for name, value in db.execute("SELECT name, value FROM retain")}
    finally:
        db.close()


def test_sigkill_at_random_moments_never_loses_or_corrupts_the_event_log_or_retained_state(tmp_path):
    rng = random.Random(20260131)
    io_map = killable_site(tmp_path)
    data = tmp_path / "data"
    image = build_site(load_io_map(io_map), VirtualClock()).image  # the tags' own checks
    events_seen: list[int] = []
    boots, runtime = 0, 0
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30.0)
    for kill in range(KILLS):
        proc = start(io_map, data, tmp_path / "notify.sock")
        wait_ready(notify)
        if kill % 2:  # every other life writes to the log before the kill can land; the rest may die young
            wait_until(partial(grown, data / "events.sqlite", len(events_seen)), 30.0,
                       f"life {kill} adds an event to the log")
        # Deliberately a random delay, not a wait for anything: it picks *when* the kill lands (in a
        # transaction, a scan, between them), which is what this test varies.
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

        events_db, retain_db = data / "events.sqlite", data / "retain.sqlite"
        assert integrity(retain_db) == "ok", f"kill {kill}: retain store corrupt"
        values = retained(retain_db)
        for name, value in values.items():
            image[name].check(value)  # raises if a value is torn or of the wrong type
        assert values["sys_boot_count"] >= boots and values["sys_runtime_total_s"] >= runtime
        boots, runtime = values["sys_boot_count"], values["sys_runtime_total_s"]

        if events_db.exists():
            assert integrity(events_db) == "ok", f"kill {kill}: event log corrupt"
            ids = [e.id for e in read_events(events_db)]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            assert set(events_seen) <= set(ids), f"kill {kill}: committed events went missing"
            events_seen = ids
    assert boots == KILLS  # every start counted itself durably before its first scan
    assert len(events_seen) > KILLS // 2  # the log really was being written as the kills landed
    assert any("humidity_high" in e.name for e in read_events(data / "events.sqlite", kinds=["error"]))

    clean = start(io_map, data, tmp_path / "notify.sock", "--duration", "60")
    assert clean.wait(60) == 0
    values = retained(data / "retain.sqlite")
    assert values["sys_boot_count"] == boots + 1 and values["sys_last_stop_clean"] is True
    started = read_events(data / "events.sqlite", kinds=["service"])
    assert "the previous run did not stop cleanly" in [e for e in started if e.name == "started"][-1].message
    assert started[-1].name == "stopped"
    notify.close()
