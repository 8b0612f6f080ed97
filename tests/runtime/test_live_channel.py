"""`ems status`, `ems read`, `ems write` against a running `ems run` (issue 15).

One controller on the simulated home site, in its own process, shared by the tests of this
module; each command is run as an operator would, and checked for its output, its one line on
refusal and its exit code (0 done, 1 no controller, 2 refused).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.waiting import wait_until

from plc.tags import Area as A
from plc.tags import DType, TagSpec
from runtime.events import read_events
from runtime.servers.local_channel import MAX_REQUEST, SOCKET_FILE, parse_value

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("live")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    io_map = tmp / "site.toml"
    io_map.write_text((ROOT / "io_maps" / "sim_home.toml").read_text().replace("port = 5020", f"port = {port}", 1))
    data = tmp / "data"
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--data-dir", str(data)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (data / SOCKET_FILE).exists() and ems("status", io_map, data).returncode == 0
                   and "state      run" in ems("status", io_map, data).stdout, 30.0, "the controller in Run")
        yield io_map, data
    finally:
        proc.terminate()
        proc.wait(20)


def ems(command: str, io_map: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ems.cli", command, *args, "--io-map", str(io_map),
                           "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_status_shows_state_mode_power_limits_errors_and_the_scan(site: tuple[Path, Path]) -> None:
    done = ems("status", *site)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("site sim-home: scan ") and " s old" in out.splitlines()[0]
    for line in ("state      run  (inputs valid)", "mode       ", "battery    SOC ", "site       grid ",
                 "limits     charge ", "errors     none", "cloud      not configured", "scan       "):
        assert line in out, out
    assert re.search(r"limits     charge \d+ W \(\w+\)  discharge \d+ W \(\w+\)", out), out  # which limit binds


def test_read_gives_each_tags_value_quality_and_age(site: tuple[Path, Path]) -> None:
    done = ems("read", *site, "soc_pct", "site_state")
    assert done.returncode == 0, done.stderr
    soc, state = done.stdout.splitlines()
    assert soc.startswith("soc_pct = ") and soc.endswith(" s old)") and "(good, " in soc
    assert state.startswith("site_state = run (good")


def test_a_write_is_applied_stored_and_logged_with_origin_cli(site: tuple[Path, Path]) -> None:
    done = ems("write", *site, "soc_reserve_pct", "25")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "soc_reserve_pct = 25 % (applied and stored)"
    assert ems("read", *site, "soc_reserve_pct").stdout.startswith("soc_reserve_pct = 25 %")  # answered once applied
    writes = [e for e in read_events(site[1] / "events.sqlite") if e.kind == "write" and e.name == "soc_reserve_pct"]
    assert writes and writes[-1].message.endswith("(by cli)")  # committed before the answer


def test_an_enum_takes_its_label(site: tuple[Path, Path]) -> None:
    assert ems("write", *site, "mode", "peak_shaving").returncode == 0
    assert ems("read", *site, "mode").stdout.startswith("mode = peak_shaving")
    assert ems("write", *site, "mode", "self_consumption").returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (("soc_pct", "5"), "ems: write: tag 'soc_pct' is read-only: only writable (rw) tags take writes"),
    (("mode", "bogus"), "ems: write: tag 'mode' takes one of passive, self_consumption"),
    (("soc_reserve_pct", "250"), "ems: write: tag 'soc_reserve_pct': 250.0 is outside its range [0, 100] %"),
    (("soc_reserve_pct", "lots"), "ems: write: tag 'soc_reserve_pct' is a float32 number, not 'lots'"),
    (("nope", "1"), "ems: write: no tag named 'nope'"),
])
def test_a_refused_write_is_one_line_and_exit_2(site: tuple[Path, Path], args: tuple[str, str], message: str) -> None:
    done = ems("write", *site, *args)
    assert done.returncode == 2
    assert one_line(done).startswith(message)


def test_reading_an_unknown_tag_is_one_line_and_exit_2(site: tuple[Path, Path]) -> None:
    done = ems("read", *site, "soc_pct", "nope")
    assert done.returncode == 2 and one_line(done) == "ems: read: no tag named 'nope'"


def test_without_a_controller_status_says_so_and_exits_1(site: tuple[Path, Path], tmp_path: Path) -> None:
    done = ems("status", site[0], tmp_path)
    assert done.returncode == 1
    assert one_line(done) == f"ems: no controller is running for this site (nothing answers on {tmp_path / SOCKET_FILE})"


def _raw(data: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(data / SOCKET_FILE))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read it all
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""


def test_garbage_and_oversized_requests_are_refused_and_the_channel_goes_on(site: tuple[Path, Path]) -> None:
    assert json.loads(_raw(site[1], b"\xff\xfe not json\n"))["ok"] is False
    assert json.loads(_raw(site[1], b"[1, 2]\n"))["error"] == "not a request: a request is a JSON object"
    assert json.loads(_raw(site[1], b'{"op": "format_disk"}\n'))["error"].startswith("unknown op 'format_disk'")
    answer = _raw(site[1], b"x" * (MAX_REQUEST + 10))
    assert answer == b"" or json.loads(answer)["error"] == f"request longer than {MAX_REQUEST} bytes"
    assert ems("status", *site).returncode == 0


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin")  # one another user may run


def test_a_request_sent_a_byte_at_a_time_is_dropped_after_2_s(site: tuple[Path, Path]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(site[1] / SOCKET_FILE))
        started = time.monotonic()
        try:
            while time.monotonic() - started < 6.0:
                sock.sendall(b" ")
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        dropped_after = time.monotonic() - started
    assert 1.5 <= dropped_after <= 3.5  # TIMEOUT_S for the whole request, not per byte
    assert ems("status", *site).returncode == 0


@pytest.mark.skipif(os.getuid() != 0 or SYSTEM_PYTHON is None, reason="needs root and a system python3")
def test_another_user_is_not_let_in(site: tuple[Path, Path]) -> None:
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "print(s.recv(4096).decode())")  # refused at once, before it sends anything
    path = site[1] / SOCKET_FILE
    # even with the way to the socket and the socket itself open to all, the peer's uid is checked
    opened = {p: p.stat().st_mode & 0o7777 for p in [*path.parents][:-1] if not p.stat().st_mode & 0o001}
    for p, mode in opened.items():
        os.chmod(p, mode | 0o001)
    os.chmod(path, 0o666)
    try:
        done = subprocess.run([str(SYSTEM_PYTHON), "-c", code, str(path)], capture_output=True,
                              text=True, timeout=30, user=65534, group=65534, extra_groups=[], cwd="/")
    finally:
        os.chmod(path, 0o600)
        for p, mode in opened.items():
            os.chmod(p, mode)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["error"] == "not allowed: only root and the controller's user", done.stderr


def test_the_socket_is_for_the_controllers_user_only(site: tuple[Path, Path]) -> None:
    assert (site[1] / SOCKET_FILE).stat().st_mode & 0o777 == 0o600


def spec(dtype: DType, **kw: object) -> TagSpec:
    return TagSpec(name="t", dtype=dtype, area=A.MEMORY, **kw)  # type: ignore[arg-type]


def test_values_from_the_command_line() -> None:
    assert parse_value(spec(DType.BOOL), "on") is True and parse_value(spec(DType.BOOL), "0") is False
    assert parse_value(spec(DType.ENUM, enum_labels=("a", "b")), "b") == 1
    assert parse_value(spec(DType.ENUM, enum_labels=("a", "b")), "1") == 1
    assert parse_value(spec(DType.FLOAT32), "2.5e3") == 2500.0
    assert parse_value(spec(DType.INT16), "0x10") == 16
    with pytest.raises(ValueError, match="not a finite number"):
        parse_value(spec(DType.FLOAT32), "nan")


def test_ems_run_prints_a_one_line_status_every_n_seconds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    io_map = tmp_path / "site.toml"
    io_map.write_text((ROOT / "io_maps" / "sim_home.toml").read_text().replace("port = 5020", f"port = {port}", 1))
    done = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--duration", "3",
                           "--status-every", "0.5", "--data-dir", str(data)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # the real clock: the status line keeps wall time
    assert done.returncode == 0, done.stderr
    assert f"data directory {data}: log {data / 'log' / 'ems.log'}, event log {data / 'events.sqlite'}" in done.stderr
    status = [line for line in done.stderr.splitlines() if "  errors " in line]
    assert status, done.stderr
    assert re.search(r"^\d\d:\d\d:\d\d  (init|run)  \w+  SOC [\d.]+ %  battery -?\d+ W  grid -?\d+ W", status[-1]), status


def test_a_negative_status_period_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--status-every", "-1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and one_line(done) == "ems run: --status-every -1: seconds, 0 or more"
