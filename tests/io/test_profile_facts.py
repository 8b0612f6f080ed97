"""The shipped device profiles against facts from public sources (tests/io/facts/*.toml): a
register at the published table and address, of the published type, word order, scale, unit,
range and codes, the identity codes and setup values the sources use. A SunSpec fact places a
point by its model and offset within the model (the profile's [sunspec] layout says where the
model starts) and names its SunSpec type, access and scale-factor point. A profile error the
simulators cannot catch (they are built from the same profiles) fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from io_kit import profile

from runtime.io.modbus.profile import Profile, Register

FACTS = sorted((Path(__file__).parent / "facts").glob("*.toml"))
SUNSPEC_TYPES = {"uint16": "uint16", "int16": "int16", "bitfield16": "uint16", "enum16": "uint16",
                 "sunssf": "sunssf", "uint32": "uint32", "int32": "int32", "acc32": "acc32", "bitfield32": "uint32"}


def facts() -> list[dict[str, Any]]:
    out = []
    for path in FACTS:
        for fact in tomllib.loads(path.read_text())["fact"]:
            out.append({**fact, "file": path.name})
    return out


def address_of(fact: dict[str, Any]) -> int:
    """The fact's address: given, or its SunSpec model's start in the profile's layout + offset."""
    if "model" not in fact:
        return int(fact["address"])
    layout = profile(fact["profile"]).sunspec
    assert layout is not None, f"{fact['profile']} has no [sunspec] layout"
    start = next(start for model_id, start, _ in layout.models if model_id == fact["model"])
    return int(start + fact["offset"])


def _id(fact: dict[str, Any]) -> str:
    bits = f"[{fact['bits'][0]}]" if "bits" in fact else ""
    model = f"{fact['model']}+{fact['offset']}=" if "model" in fact else ""
    return f"{fact['profile']}@{fact['table']}:{model}0x{address_of(fact):04X}{bits}"


def register_at(prof: Profile, fact: dict[str, Any]) -> tuple[str, Register]:
    """The register at the fact's address (the one read alone, for an identity code; the
    field, for a fact about bits)."""
    table, address, alone = fact["table"], address_of(fact), "identity" in fact
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
    assert reg.dtype == (SUNSPEC_TYPES[fact["sunspec_type"]] if "sunspec_type" in fact else fact["dtype"]), \
        f"{name}: {fact['source']}"
    if "point" in fact:  # a SunSpec point: the register's description starts with its name
        assert re.match(rf"{fact['point']}\b", reg.description), f"{name}: {fact['source']}"
    if "access" in fact:
        assert reg.access == fact["access"].lower(), f"{name}: {fact['source']}"
    if "sf_offset" in fact:
        sf_name, _ = register_at(prof, {**fact, "offset": fact["sf_offset"]})
        assert reg.scale_register == sf_name, f"{name}: {fact['source']}"
    elif "sunspec_type" in fact:
        assert not reg.scale_register, f"{name}: {fact['source']} (no scale factor)"
    if fact.get("sunspec_type") == "enum16" and "symbols" in fact:  # the codes, by name
        assert {int(code): state for code, state in reg.states.items()} == \
            {code: symbol.lower() for symbol, code in fact["symbols"].items()}, f"{name}: {fact['source']}"
    if fact.get("sunspec_type") == "bitfield16" and "symbols" in fact:  # StorCtl_Mod: the bits a window sets
        windows = [r for r in prof.registers.values() if r.mode_register == name]
        assert windows, f"{name}: no window sets its bits"
        discharge, charge = fact["symbols"]["DiSCHARGE"], fact["symbols"]["CHARGE"]
        assert all(r.mode_bits == (discharge, charge) for r in windows), \
            f"{name}: a window's own limit is the discharge side (+), its mirror the charge side: {fact['source']}"
    if "scale" in fact:
        assert reg.scale == pytest.approx(fact["scale"]), f"{name}: {fact['source']}"
    if "unit" in fact:
        assert reg.unit == fact["unit"], f"{name}: {fact['source']}"
    for bound in ("min", "max"):  # the published range, in the register's (engineering) unit
        if bound in fact:
            assert getattr(reg, bound) == pytest.approx(fact[bound]), f"{name} {bound}: {fact['source']}"
    if "states" in fact and "sunspec_type" not in fact:  # the codes and what they mean
        assert {int(code): state for code, state in reg.states.items()} == \
            {int(code): state for code, state in fact["states"].items()}, f"{name}: {fact['source']}"
    if "length" in fact:
        assert reg.length == fact["length"], f"{name}: {fact['source']}"
    if "word_order" in fact:
        assert prof.device.word_order == fact["word_order"], fact["source"]
    if "setup" in fact:
        assert prof.setup.get(name) == fact["setup"], f"{name}: {fact['source']}"


def test_every_fact_names_its_source_and_quantity() -> None:
    for fact in facts():
        assert fact.get("source") and fact.get("quantity"), f"{fact['file']}: {_id(fact)}"
