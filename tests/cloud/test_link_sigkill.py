"""A controller SIGKILLed with messages queued for the cloud loses none of them.

`ems run` (a process of its own, on the virtual clock so that minutes of site time pass in
seconds) with the hub away queues its spot messages and events; it is killed with SIGKILL; the
hub comes back and the next `ems run` sends every message that was queued, each with its id
(`<queue id>-<seq>`). Delivery is at least once: a message the hub got but whose acknowledgement
was lost would come again with the same id, for the back end to drop. Mosquitto and the hub
emulator stand in for Azure IoT Hub (tests/cloud/conftest.py): no real hub can run here.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cloud_kit import entries, site_io_map
from testkit.waiting import wait_until

from ems.hubsim.broker import Broker
from ems.hubsim.hub import Hub
from ems.hubsim.local import LocalHub

pytestmark = [pytest.mark.timeout(180)]


def queued(path: Path) -> tuple[str, list[int]]:
    """(queue id, seqs) of a queue file, read without writing to it."""
    if not path.exists():
        return "", []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        queue_id = db.execute("SELECT value FROM meta WHERE key = 'queue_id'").fetchone()[0]
        return queue_id, [row[0] for row in db.execute("SELECT seq FROM messages ORDER BY seq")]
    except sqlite3.OperationalError:  # created, not yet made a queue
        return "", []
    finally:
        db.close()


def controller(io_map: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--data-dir",
                             str(data_dir), "--virtual-time", "--status-every", "0", "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_messages_queued_when_the_controller_is_killed_all_arrive_after_its_restart(
        tmp_path: Path, local: LocalHub, broker: Broker, hub: Hub, device_id: str) -> None:
    io_map, data = site_io_map(tmp_path, local, device_id), tmp_path / "data"
    queue_file = data / "cloud_queue.sqlite"
    broker.stop()
    try:
        process = controller(io_map, data)
        try:
            wait_until(lambda: len(queued(queue_file)[1]) >= 30, 60.0, "30 messages queued while the hub is away")
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        queue_id, at_kill = queued(queue_file)
    finally:
        broker.start()
        hub.wait_connected()
    assert len(at_kill) >= 30
    process = controller(io_map, data)
    try:
        expected = {f"{queue_id}-{seq}" for seq in at_kill}
        wait_until(lambda: expected <= {e["id"] for e in entries(hub.telemetry(device_id))}, 60.0,
                   f"the {len(expected)} messages queued at the kill at the hub")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    got = [e["id"] for e in entries(hub.telemetry(device_id))]
    first_seen = [got.index(message_id) for message_id in sorted(expected, key=lambda m: int(m.rsplit("-", 1)[1]))]
    assert first_seen == sorted(first_seen), "in queue order"
