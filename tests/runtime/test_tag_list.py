"""`ems tags` for the SCADA engineer (issue 15): every enum with the numbers it takes, and JSON."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "io_maps" / "sim_home.toml"


def tags(fmt: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ems.cli", "tags", "--io-map", str(HOME), "--format", fmt],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_json_lists_every_tag_with_numbers_as_numbers_and_enum_values_as_a_map() -> None:
    rows = {row["name"]: row for row in json.loads(tags("json"))}
    cmd = rows["site_state_cmd"]
    assert (cmd["modbus_table"], cmd["address"], cmd["reference"], cmd["access"]) == ("holding", 1000, 41001, "rw")
    assert cmd["values"] == {"0": "none", "1": "run", "2": "idle", "3": "maintenance", "4": "reset", "5": "reboot",
                             "6": "restart"}
    assert rows["mode"]["values"]["2"] == "peak_shaving"
    assert rows["soc_pct"]["values"] is None and rows["soc_pct"]["unit"] == "%"


def test_csv_gives_each_enum_its_values() -> None:
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(tags("csv")))}
    assert rows["safety_reaction"]["values"].startswith("0 = none, 1 = warn, 2 = derate")
    assert rows["limit_charge_source"]["values"].split(", ")[1] == "1 = bms"
    assert rows["soc_pct"]["values"] == ""


def test_the_table_and_the_markdown_end_with_the_enum_values() -> None:
    assert "  site_state: 0 = init, 1 = run, 2 = idle, 3 = maintenance, 4 = error" in tags("table")
    markdown = tags("markdown")
    assert "| mode | 0 = passive, 1 = self_consumption, 2 = peak_shaving, 3 = external" in markdown
    assert markdown.index("Enum values") > markdown.index("| soc_pct |")
