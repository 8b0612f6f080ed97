"""docs/io_map.md names every key the loader accepts, so the reference cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from plc.tags import ModbusAddress, TagSpec
from runtime.config import schema

DOC = (Path(__file__).resolve().parents[2] / "docs" / "io_map.md").read_text()
RECORDS = [schema.SiteConfig, schema.SupervisorConfig, schema.LoggingConfig, schema.DeviceConfig,
           TagSpec, schema.ProgramConfig, ModbusAddress, schema.IoConfig]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_key_is_documented(record: type) -> None:
    missing = [f.name for f in attrs.fields(record) if f"`{f.name}`" not in DOC and f" {f.name} =" not in DOC]
    assert missing == [], f"{record.__name__} keys missing from docs/io_map.md: {missing}"


def test_every_cloud_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cloud.md").read_text()
    missing = [f.name for f in attrs.fields(schema.CloudConfig) if f"`{f.name}`" not in doc]
    assert missing == [], f"CloudConfig keys missing from docs/cloud.md: {missing}"
