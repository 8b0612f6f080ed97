"""The shipped device profiles against facts from public sources (tests/io/facts/*.toml): a
register at the published table and address, of the published type, word order and scale, the
identity codes and setup values the sources use. A profile error the simulators cannot catch
(they are built from the same profiles) fails here."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from io_kit import profile

from runtime.io.modbus.profile import Profile, Register

FACTS = sorted((Path(__file__).parent / "facts").glob("*.toml"))


def facts() -> list[dict[str, Any]]:
    out = []
    for path in FACTS:
        for fact in tomllib.loads(path.read_text())["fact"]:
            out.append({**fact, "file": path.name})
    return out


def _id(fact: dict[str, Any]) -> str:
    bits = f"[{fact['bits'][0]}]" if "bits" in fact else ""
    return f"{fact['profile']}@{fact['table']}:0x{fact['address']:04X}{bits}"


def register_at(prof: Profile, fact: dict[str, Any]) -> tuple[str, Register]:
    """The register at the fact's address (the one read alone, for an identity code; the
    field, for a fact about bits)."""
    table, address, alone = fact["table"], fact["address"], "identity" in fact
    bits = tuple(fact["bits"]) if "bits" in fact else None
    found = [(n, r) for n, r in prof.registers.items() if r.table.value == table and r.address == address
             and r.bits == bits and r.alone == alone]
    assert found, f"{prof.name}: no {table} register at 0x{address:04X}{f' with bits {bits}' if bits else ''}"
    return found[0]


@pytest.mark.parametrize("fact", facts(), ids=_id)
def test_the_profile_agrees_with_the_public_fact(fact: dict[str, Any]) -> None:
    prof = profile(fact["profile"])
    name, reg = register_at(prof, fact)
    if "identity" in fact:
        assert prof.identity is not None and prof.identity.register == name, fact["source"]
        assert set(fact["identity"]) <= set(prof.identity.accept), fact["source"]
    assert reg.dtype == fact["dtype"], f"{name}: {fact['source']}"
    if "scale" in fact:
        assert reg.scale == pytest.approx(fact["scale"]), f"{name}: {fact['source']}"
    if "length" in fact:
        assert reg.length == fact["length"], f"{name}: {fact['source']}"
    if "word_order" in fact:
        assert prof.device.word_order == fact["word_order"], fact["source"]
    if "setup" in fact:
        assert prof.setup.get(name) == fact["setup"], f"{name}: {fact['source']}"


def test_every_fact_names_its_source_and_quantity() -> None:
    for fact in facts():
        assert fact.get("source") and fact.get("quantity"), f"{fact['file']}: {_id(fact)}"
