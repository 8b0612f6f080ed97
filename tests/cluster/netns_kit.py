"""Private network namespaces for the tests that need a real network: a partition, multicast.

Nothing here touches the machine's own network: every link lives inside namespaces created for
the test and deleted after it. Needs root and iproute2 (`ip netns`); `netns_unavailable()` says
why not, so that the tests can skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=20)


def netns_unavailable() -> str | None:
    """None when private namespaces with a bridge can be made here, else the reason."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"ems-probe-{uuid.uuid4().hex[:6]}"
    made = _run("ip", "netns", "add", probe)
    if made.returncode != 0:
        return f"ip netns add refused: {made.stderr.strip()}"
    try:
        bridge = _run("ip", "-n", probe, "link", "add", "br0", "type", "bridge")
        if bridge.returncode != 0:
            return f"no bridge in a namespace: {bridge.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", probe)
    return None


class Lab:
    """Namespaces n1..nN, each with one address on 10.77.0.0/24, joined by a bridge that lives
    in a namespace of its own. `cut(i)` takes node i off the bridge, `heal(i)` puts it back."""

    SUBNET = "10.77.0"

    def __init__(self, count: int):
        tag = uuid.uuid4().hex[:5]
        self.bridge_ns = f"ems-br-{tag}"
        self.names = [f"ems-n{i + 1}-{tag}" for i in range(count)]
        self.ports = [f"eb{i + 1}{tag}" for i in range(count)]
        self._made: list[str] = []

    def address(self, i: int) -> str:
        return f"{self.SUBNET}.{i + 1}"

    def up(self) -> None:
        self._ns(self.bridge_ns)
        self._ok("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        self._ok("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, ns in enumerate(self.names):
            self._ns(ns)
            self._ok("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", self.ports[i], "netns",
                     self.bridge_ns)
            self._ok("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            self._ok("ip", "-n", ns, "link", "set", "eth0", "up")
            self._ok("ip", "-n", ns, "link", "set", "lo", "up")
            self._ok("ip", "-n", self.bridge_ns, "link", "set", self.ports[i], "master", "br0")
            self._ok("ip", "-n", self.bridge_ns, "link", "set", self.ports[i], "up")

    def cut(self, i: int) -> None:
        self._ok("ip", "-n", self.bridge_ns, "link", "set", self.ports[i], "down")

    def heal(self, i: int) -> None:
        self._ok("ip", "-n", self.bridge_ns, "link", "set", self.ports[i], "up")

    def command(self, i: int, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.names[i], *args]

    def down(self) -> None:
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns)
        self._made = []

    def _ns(self, name: str) -> None:
        self._ok("ip", "netns", "add", name)
        self._made.append(name)

    @staticmethod
    def _ok(*args: str) -> None:
        done = _run(*args)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
