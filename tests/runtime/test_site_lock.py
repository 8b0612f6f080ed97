"""One controller per site (issue 15): the data directory's lock.

A second `ems run` on a running site exits 1 with one line naming the process that holds it,
and writes nothing: no log line, no event, no boot count, no output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.waiting import wait_until

from runtime.site_lock import SiteBusy, SiteLock

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_lock_on_the_same_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = SiteLock(tmp_path)
    first.acquire()
    with pytest.raises(SiteBusy) as busy:
        SiteLock(tmp_path).acquire()
    assert busy.value.pid == os.getpid()
    assert f"process {os.getpid()} is running this site" in str(busy.value)
    first.release()
    SiteLock(tmp_path).acquire()  # free again


def test_a_holder_killed_with_sigkill_leaves_the_site_free(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from runtime.site_lock import SiteLock; SiteLock(sys.argv[2]).acquire();"
                               "print('held', flush=True); time.sleep(60)", str(ROOT), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SiteBusy) as busy:
            SiteLock(tmp_path).acquire()
        assert busy.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    SiteLock(tmp_path).acquire()  # the kernel released it; the stale PID in the file does not matter
    assert (tmp_path / "ems.lock").read_text().strip() == str(os.getpid())


def test_a_second_ems_run_on_a_running_site_exits_1_naming_the_pid_and_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site.write_text((ROOT / "io_maps" / "sim_home.toml").read_text().replace("port = 5020", f"port = {port}", 1))
    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(site), "--data-dir", str(data)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = data / "log" / "ems.log"
        wait_until(lambda: log.exists() and "site state init -> run" in log.read_text(), 30.0, "the first controller running")
        wait_until(lambda: (data / "ems.lock").exists() and (data / "ems.lock").read_text().strip() == str(first.pid),
                   5.0, "the lock naming the first controller")
        second = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--io-map", str(site), "--data-dir", str(data)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 1, second.stderr
        assert len(lines) == 1 and f"process {first.pid} is running this site" in lines[0], second.stderr
        text = log.read_text()
        assert "did not stop cleanly" not in text and text.count("devices,") == 1  # one start logged: the first's
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
