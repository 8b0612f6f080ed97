"""Mutated copies of the shipped io_maps never crash the loader.

Every shipped site (io_maps/*.toml, io_maps/sim_cluster/*.toml, the production template
deploy/site.toml) and every device profile a site loads (io_maps/devices/*.toml, as a site-local
copy named by `profile = "<path>"`) is mutated many times, deterministically from a fixed
seed: a line deleted, a value's type changed, a key or table duplicated, an unknown key added, a number made huge, negative, zero,
NaN or infinite, unicode put in a string. Each mutant is loaded the way `ems check-config`
loads it (load_io_map, then build_site on the virtual clock, which opens nothing) and must
either load or raise ConfigErrors, each error one line naming the file and a line or key.
Never another exception: that would be a traceback and exit 1 instead of a named error.

A failure prints the file and the mutation; `mutants()` rebuilds the same ones from SEED.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from runtime.clock import VirtualClock
from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.site import build_site

ROOT = Path(__file__).resolve().parents[2]
SITES = sorted([*ROOT.glob("io_maps/*.toml"), *ROOT.glob("io_maps/sim_cluster/*.toml"), ROOT / "deploy" / "site.toml"])
SEED = 20261202
PER_SITE = 60  # and the systematic pass: every key of a file once with another type, once with a bad number
PER_PROFILE = 30  # the 4 profiles the sites load, as a site-local copy

_KEY = r'(?:[A-Za-z0-9_-]+|"[^"\n]*")'
_VALUE = (r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|true|false|[-+]?(?:inf|nan)'
          r'|[-+]?[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][-+]?[0-9]+)?|\[[^\[\]\n]*\]|\{[^{}\n]*\}')
ATOM = re.compile(rf"(?P<key>{_KEY})\s*=\s*(?P<value>{_VALUE})")
HEADER = re.compile(r"^\s*\[\[?[^\]]+\]\]?")
KEY_LINE = re.compile(rf"^\s*{_KEY}(?:\.{_KEY})*\s*=")

TYPES = {"string": '"text"', "integer": "7", "float": "2.5", "array": '[1, "a"]', "table": "{ x = 1 }",
         "bool": "true", "empty array": "[]", "empty table": "{}"}
NUMBERS = ("1e308", "-1e308", "99999999999999999999999", "-99999999999999999999999", "-1", "0", "-0.0",
           "nan", "-nan", "inf", "-inf", "1e-9", "-9223372036854775808", "18446744073709551616", "0.5")
UNICODE = ("Zürich ☀ 日本", "\\u202eevil", "😀", "ß" * 300, "\\u0000", "Ω", "\\t\\n")


@attrs.frozen
class Mutant:
    file: Path  # the file mutated: a site, or a profile copy beside it
    mutation: str
    site_text: str  # the site to load (for a profile mutant: naming the mutated profile)
    profile_text: str | None = None

    def __str__(self) -> str:
        return f"{self.file.relative_to(ROOT) if self.file.is_relative_to(ROOT) else self.file.name}: {self.mutation}"


def _kind_of(value: str) -> str:
    if value.startswith(('"', "'")):
        return "string"
    if value in ("true", "false"):
        return "bool"
    if value.startswith("["):
        return "array"
    if value.startswith("{"):
        return "table"
    return "float" if re.search(r"[.eEn]", value) else "integer"


def _atoms(lines: list[str]) -> list[tuple[int, re.Match[str]]]:
    found = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#") or HEADER.match(line):
            continue
        found += [(i, m) for m in ATOM.finditer(line)]
    return found


def _replace(lines: list[str], i: int, match: re.Match[str], new: str) -> list[str]:
    line = lines[i]
    out = list(lines)
    out[i] = line[:match.start("value")] + new + line[match.end("value"):]
    return out


def _block_end(lines: list[str], start: int) -> int:
    for j in range(start + 1, len(lines)):
        if HEADER.match(lines[j]):
            return j
    return len(lines)


def mutate(text: str, rng: random.Random) -> tuple[str, str]:
    """One mutation of a TOML text: (what was done, the new text)."""
    lines = text.splitlines()
    content = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    atoms = _atoms(lines)
    while True:
        kind = rng.choice(("delete", "type", "type", "duplicate key", "duplicate table", "unknown key",
                           "number", "number", "unicode"))
        if kind == "delete":
            i = rng.choice(content)
            return f"delete line {i + 1}: {lines[i].strip()!r}", "\n".join(lines[:i] + lines[i + 1:])
        if kind == "type":
            i, m = rng.choice(atoms)
            now = _kind_of(m["value"])
            to = rng.choice([k for k in TYPES if k != now])
            return (f"line {i + 1}: {m['key']} = {TYPES[to]} ({to} instead of {m['value']!r})",
                    "\n".join(_replace(lines, i, m, TYPES[to])))
        if kind == "duplicate key":
            keyed = [i for i in content if KEY_LINE.match(lines[i])]
            i = rng.choice(keyed)
            return f"line {i + 1} twice: {lines[i].strip()!r}", "\n".join(lines[:i + 1] + lines[i:])
        if kind == "duplicate table":
            headers = [i for i in content if HEADER.match(lines[i])]
            i = rng.choice(headers)
            end = _block_end(lines, i)
            return (f"table at line {i + 1} ({lines[i].strip()}, {end - i} lines) twice",
                    "\n".join(lines[:end] + lines[i:end] + lines[end:]))
        if kind == "unknown key":
            headers = [i for i in content if HEADER.match(lines[i])]
            inline = [(i, m) for i, m in atoms if m["value"].startswith("{") and m["value"] != "{}"]
            if inline and rng.random() < 0.3:
                i, m = rng.choice(inline)
                new = "{ zz_unknown = 1, " + m["value"][1:].lstrip()
                return f"line {i + 1}: unknown key in {m['key']}", "\n".join(_replace(lines, i, m, new))
            i = rng.choice(headers)
            key = rng.choice(("zz_unknown_key = 1", '"ключ" = "x"', "scan_period = 0.1"))
            return (f"after line {i + 1} ({lines[i].strip()}): {key}",
                    "\n".join(lines[:i + 1] + [key] + lines[i + 1:]))
        if kind == "number":
            numeric = [(i, m) for i, m in atoms if _kind_of(m["value"]) in ("integer", "float")]
            if not numeric:
                continue
            i, m = rng.choice(numeric)
            new = rng.choice(NUMBERS)
            return f"line {i + 1}: {m['key']} = {new} (was {m['value']})", "\n".join(_replace(lines, i, m, new))
        strings = [(i, m) for i, m in atoms if m["value"].startswith('"')]
        if not strings:
            continue
        i, m = rng.choice(strings)
        extra = rng.choice(UNICODE)
        new = f'"{extra}"' if rng.random() < 0.5 else m["value"][:-1] + extra + '"'
        return f"line {i + 1}: {m['key']} = {new} (was {m['value']})", "\n".join(_replace(lines, i, m, new))


def systematic(text: str, rng: random.Random) -> Iterator[tuple[str, str]]:
    """Every distinct key of the file once with another type, and once more with a bad number
    when it holds a number (at one of its occurrences, picked at random)."""
    lines = text.splitlines()
    by_key: dict[str, list[tuple[int, re.Match[str]]]] = {}
    for i, m in _atoms(lines):
        by_key.setdefault(m["key"], []).append((i, m))
    for key, found in by_key.items():
        i, m = rng.choice(found)
        now = _kind_of(m["value"])
        to = rng.choice([k for k in TYPES if k != now])
        yield (f"line {i + 1}: {key} = {TYPES[to]} ({to} instead of {m['value']!r})",
               "\n".join(_replace(lines, i, m, TYPES[to])))
        numeric = [(i, m) for i, m in found if _kind_of(m["value"]) in ("integer", "float")]
        if numeric:
            i, m = rng.choice(numeric)
            new = rng.choice(NUMBERS)
            yield f"line {i + 1}: {key} = {new} (was {m['value']})", "\n".join(_replace(lines, i, m, new))


def _profiles() -> dict[str, tuple[Path, str]]:
    """Each device profile a shipped site loads by `model`, with the first site that loads it."""
    found: dict[str, tuple[Path, str]] = {}
    for site in SITES:
        for model in re.findall(r'^model = "([a-z0-9_]+)"', site.read_text(), re.MULTILINE):
            found.setdefault(model, (site, site.read_text()))
    return found


def mutants(profile_dir: Path) -> Iterator[Mutant]:
    for site in SITES:
        rng = random.Random(f"{SEED}:{site.relative_to(ROOT)}")
        text = site.read_text()
        for mutation, new in [*systematic(text, rng), *(mutate(text, rng) for _ in range(PER_SITE))]:
            yield Mutant(site, mutation, new)
    for model, (site, text) in sorted(_profiles().items()):
        source = (ROOT / "io_maps" / "devices" / f"{model}.toml").read_text()
        rng = random.Random(f"{SEED}:{model}")
        for n, (mutation, new) in enumerate([*systematic(source, rng), *(mutate(source, rng)
                                                                        for _ in range(PER_PROFILE))]):
            copy = profile_dir / f"{model}_{n}.toml"  # a file per mutant: profiles are cached by path
            site_text = text.replace(f'model = "{model}"', f'profile = "{copy}"')
            yield Mutant(copy, f"{mutation} (site {site.relative_to(ROOT)})", site_text, new)


def check(mutant: Mutant, site: Path) -> str | None:
    """None when the mutant loads or is refused properly; else what went wrong."""
    if mutant.profile_text is not None:
        mutant.file.write_text(mutant.profile_text, encoding="utf-8")
    try:
        build_site(parse_io_map(mutant.site_text, str(site)), VirtualClock())
    except ConfigErrors as exc:
        if not exc.errors:
            return "ConfigErrors without an error"
        for error in exc.errors:
            text = str(error)
            if "\n" in text or "\r" in text:
                return f"an error of more than one line: {text!r}"
            if error.file not in (str(site), str(mutant.file)):
                return f"an error naming another file: {text!r}"
            if error.line is None and not error.path:
                return f"an error naming neither line nor key: {text!r}"
    except Exception:  # noqa: BLE001 -- the point: anything but ConfigErrors is a crash
        return traceback.format_exc(limit=-4)
    return None


def _site_of(mutant: Mutant) -> Path:
    return mutant.file if mutant.profile_text is None else ROOT / mutant.mutation.rsplit("(site ", 1)[1][:-1]


def test_the_mutants_are_many_and_of_every_kind(tmp_path: Path) -> None:
    found = list(mutants(tmp_path))
    assert len(found) >= 1000
    assert len({(str(m.file), m.mutation) for m in found}) > 1000  # few repeats
    text = "\n".join(m.mutation for m in found)
    for word in ("delete line", "instead of", "twice:", ") twice", "zz_unknown", "nan", "inf", "1e308", "😀"):
        assert word in text
    assert sum(m.profile_text is not None for m in found) >= 4 * PER_PROFILE


def test_no_mutant_crashes_the_loader(tmp_path: Path) -> None:
    threads = threading.active_count()
    failures = []
    loaded = 0
    for mutant in mutants(tmp_path):
        problem = check(mutant, _site_of(mutant))
        if problem is not None:
            failures.append(f"{mutant}\n{problem}")
        loaded += problem is None
    assert threading.active_count() == threads, "check-config must not start anything"
    assert not failures, f"{len(failures)} of {loaded + len(failures)} mutants crash the loader:\n\n" + \
        "\n\n".join(failures[:40])


@pytest.mark.parametrize("pick", [3, 57])
def test_ems_check_config_exits_0_or_2_with_one_line_per_error(tmp_path: Path, pick: int) -> None:
    site = ROOT / "io_maps" / "sim_home.toml"
    rng = random.Random(f"{SEED}:cli")
    for _ in range(pick):
        mutation, text = mutate(site.read_text(), rng)
    mutant = tmp_path / "site.toml"
    mutant.write_text(text)
    done = subprocess.run([sys.executable, "-m", "ems.cli", "check-config", str(mutant)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 2), f"{mutation}: exit {done.returncode}\n{done.stderr}"
    assert "Traceback" not in done.stderr, mutation
    if done.returncode == 2:
        lines = done.stderr.splitlines()
        if len(lines) == 1:  # one error is one line: file:line: key: message
            assert lines[0].startswith(f"{mutant}:"), done.stderr
            return
        head, *errors = lines
        assert re.match(r"\d+ errors in configuration:", head), done.stderr
        assert errors and all(line.startswith(f"  {mutant}") for line in errors), done.stderr



def test_ems_check_config_names_a_bad_scan_period(tmp_path: Path) -> None:
    mutant = tmp_path / "site.toml"
    mutant.write_text((ROOT / "io_maps" / "sim_home.toml").read_text().replace("scan_period_s = 0.1",
                                                                                 "scan_period_s = 1e-9"))
    done = subprocess.run([sys.executable, "-m", "ems.cli", "check-config", str(mutant)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(rf"{re.escape(str(mutant))}:\d+: site\.scan_period_s: ", done.stderr), done.stderr


RANGES = [  # (site text replaced, the key path the error names)
    ("scan_period_s = 0.1", "scan_period_s = 0.0009", "site.scan_period_s"),
    ("scan_period_s = 0.1", "scan_period_s = 11", "site.scan_period_s"),
    ('unit = "%"', 'unit = "%"\nmin = nan', "min"),
    ('unit = "%"', 'unit = "%"\nmin = 5.0\nmax = 5.0', "min"),
    ('unit = "%"', 'unit = "%"\nmax = inf', "max"),
    ("stale_after_s = 1.0", "stale_after_s = 0.05", "devices[0].stale_after_s"),
    ("poll_period_s = 0.1", "poll_period_s = 1e300", "poll_period_s"),
    ("missed_scans = 5", "missed_scans = 99999999999999999999", "supervisor.missed_scans"),
]


@pytest.mark.parametrize(("old", "new", "key"), RANGES)
def test_nonsense_values_are_named_errors(old: str, new: str, key: str) -> None:
    site = ROOT / "io_maps" / "sim_home.toml"
    text = site.read_text()
    assert old in text
    with pytest.raises(ConfigErrors) as info:
        parse_io_map(text.replace(old, new, 1), str(site))
    assert any(key in str(e) and e.line is not None for e in info.value.errors), info.value


DURATIONS = [  # a key added to a table of a shipped site, out of its range; the key path the error names
    ("sim_cluster/node1.toml", "[cluster]", "lease_s = 86400.0", "cluster.lease_s"),
    ("sim_cluster/node1.toml", "[cluster]", "raft_max_timeout_s = 1e9", "cluster.raft_max_timeout_s"),
    ("sim_cluster/node1.toml", "[cluster]", "offline_after_s = 1e7", "cluster.offline_after_s"),
    ("sim_cluster/node1.toml", "[cluster]", "discovery_period_s = 1e5", "cluster.discovery_period_s"),
]


@pytest.mark.parametrize(("site", "table", "line", "key"), DURATIONS)
def test_durations_beyond_any_working_site_are_named_errors(site: str, table: str, line: str, key: str) -> None:
    path = ROOT / "io_maps" / site
    text = path.read_text()
    assert f"\n{table}\n" in text
    with pytest.raises(ConfigErrors) as info:
        parse_io_map(text.replace(f"\n{table}\n", f"\n{table}\n{line}\n", 1), str(path))
    assert any(key in str(e) and e.line is not None for e in info.value.errors), info.value


@pytest.mark.parametrize(("anchor", "line", "key"), [
    ('kind = "site_control"\n[programs.params]\n', "heartbeat_timeout_s = 1e300", "heartbeat_timeout_s"),
    ("[programs.params.interlocks]\n", "cell_imbalance = { debounce_s = 4e7 }", "interlocks.cell_imbalance.debounce_s"),
])
def test_a_program_parameter_of_more_than_a_year_in_seconds_is_a_named_error(anchor: str, line: str, key: str) -> None:
    path = ROOT / "io_maps" / "sim_home.toml"
    text = path.read_text()
    assert anchor in text
    with pytest.raises(ConfigErrors) as info:
        parse_io_map(text.replace(anchor, anchor + line + "\n", 1), str(path))
    named = [e for e in info.value.errors if key in str(e) and "more than a year" in str(e)]
    assert named and named[0].line is not None, info.value


@pytest.mark.parametrize(("table", "line", "key"), [("event_log", "max_age_days = 1e9", "event_log.max_age_days"),
                                                    ("retain", "save_interval_s = 1e9", "retain.save_interval_s")])
def test_store_settings_beyond_any_working_site_are_named_errors(table: str, line: str, key: str) -> None:
    path = ROOT / "io_maps" / "sim_home.toml"
    with pytest.raises(ConfigErrors) as info:
        parse_io_map(path.read_text() + f"\n[{table}]\n{line}\n", str(path))
    assert any(key in str(e) and e.line is not None for e in info.value.errors), info.value


def test_bad_after_s_is_at_least_stale_after_s() -> None:
    site = ROOT / "io_maps" / "sim_devices.toml"
    text = site.read_text().replace("bad_after_s = 5.0", "bad_after_s = 1.0")
    with pytest.raises(ConfigErrors, match=r"devices\[2\]\.can_bms\.bad_after_s: 1\.0 s is below"):
        parse_io_map(text, str(site))
