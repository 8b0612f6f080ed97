"""Discovery by UDP multicast beacons, inside a private network namespace (`unshare -n`), where
loopback gets a multicast route: beacons never leave the machine. Skipped, with the reason,
where a namespace cannot be made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare -n)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (iproute2) is not installed"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", SETUP], capture_output=True, text=True, timeout=10)
    return None if probe.returncode == 0 else f"unshare -n refused: {probe.stderr.strip()}"


WHY_NOT = why_not()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"discovery not run: {WHY_NOT}")
@pytest.mark.timeout(60)
def test_a_node_finds_an_unlisted_node_of_its_cluster_and_hears_its_state() -> None:
    script = f"{SETUP} && exec {sys.executable} {HERE / 'discovery_probe.py'}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=45)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["found"] == ["x"]  # b is in the io_map already; y belongs to another cluster; z is no member
    assert result["states"] == ["x"]
    assert result["a_saw"] == ["x"]
    assert result["refused"] >= 2  # the impostor's beacons, with a MAC not made with the secret
