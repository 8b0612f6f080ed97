"""The committed Modbus documents are what the code generates today."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.cli import main as ems
from runtime.servers.doc import DEFAULT_IO_MAP, meter_gateway_doc, modbus_doc

ROOT = Path(__file__).resolve().parents[2]


def test_docs_modbus_md_is_up_to_date(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    committed = (ROOT / "docs" / "modbus.md").read_text(encoding="utf-8")
    assert modbus_doc(DEFAULT_IO_MAP) == committed, (
        "docs/modbus.md is out of date: python -m runtime.servers.doc modbus > docs/modbus.md")


def test_docs_meter_gateway_md_is_up_to_date():
    committed = (ROOT / "docs" / "meter_gateway.md").read_text(encoding="utf-8")
    assert meter_gateway_doc() == committed, (
        "docs/meter_gateway.md is out of date: python -m runtime.servers.doc meter-gateway > docs/meter_gateway.md")


def test_the_documented_map_is_what_ems_tags_prints(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.chdir(ROOT)
    assert ems(["tags", "--format", "markdown", "--io-map", DEFAULT_IO_MAP]) == 0
    printed = capsys.readouterr().out
    document = (ROOT / "docs" / "modbus.md").read_text(encoding="utf-8")
    assert document.endswith(printed)
    assert "| ext_heartbeat | uint16 |  | rw | memory | holding |" in printed
