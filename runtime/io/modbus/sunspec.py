"""SunSpec model chains: where a device really places the models its profile reads.

A SunSpec device starts its map with the marker "SunS" (at 40000, 50000 or 0), then one model
after the other, each an ID and a length (in registers, not counting those two), and ends with
ID 0xFFFF. Devices differ: a SolarEdge's common model 1 is 65 registers long, not 66, so its
model 103 starts at 40069; others add models in between (nameplate 120, settings 121, MPPT 160).
A profile's `[sunspec]` table says where its own layout puts each model it reads; at connect
the driver walks the device's chain (`discover`) and shifts each register by its model's offset
(`rebase`). A model the profile needs and the device lacks refuses the device, naming the
models found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from runtime.io.modbus.profile import Profile

MARKER = [0x5375, 0x6E53]  # "SunS"
BASES = (40000, 50000, 0)
END_ID = 0xFFFF
MAX_MODELS = 64  # a chain longer than this is taken for garbage
FLOAT_TWINS = {101: 111, 102: 112, 103: 113}  # integer + SF models and their float versions


class ChainError(Exception):
    """The device's SunSpec chain does not hold what the profile reads (one line, naming it)."""


@attrs.frozen
class Model:
    id: int
    start: int  # address of its ID register
    length: int  # registers after the ID and length


@attrs.frozen
class Chain:
    base: int  # address of "SunS"
    models: tuple[Model, ...]

    def find(self, model_id: int) -> Model | None:
        return next((m for m in self.models if m.id == model_id), None)

    def describe(self) -> str:
        return ", ".join(f"{m.id} at {m.start} ({m.length})" for m in self.models) or "none"


Reader = Callable[[int, int], list[int]]  # (address, count) -> registers; raises on an exception reply


def discover(read: Reader, bases: Iterable[int] = BASES) -> Chain:
    """Walk the device's model chain from the first base that holds "SunS"."""
    for base in bases:
        try:
            if list(read(base, 2)) == MARKER:
                break
        except Exception:  # noqa: BLE001, S112 - an exception reply: no map there, try the next base
            continue
    else:
        raise ChainError(f"no SunSpec marker \"SunS\" at {', '.join(map(str, bases))}: not a SunSpec device")
    models: list[Model] = []
    address = base + 2
    for _ in range(MAX_MODELS):
        model_id, length = read(address, 2)
        if model_id == END_ID:
            return Chain(base, tuple(models))
        models.append(Model(model_id, address, length))
        address += 2 + length
    raise ChainError(f"the SunSpec model chain from {base} has no end marker within {MAX_MODELS} models")


def rebase(profile: Profile, chain: Chain, needed: Iterable[str]) -> Profile:
    """The profile with each register moved to where the device's chain puts its model.
    Registers past the end of a shorter model are left out; one of them in `needed` (bound to a
    tag) refuses the device, as does a model the profile reads and the chain lacks."""
    layout = profile.sunspec
    assert layout is not None
    shifts: dict[int, int] = {}
    lengths: dict[int, int] = {}
    for model_id, start, _length in layout.models:
        found = chain.find(model_id)
        if found is None:
            twin = FLOAT_TWINS.get(model_id)
            hint = (f" (the device has the float model {twin}; this profile reads {model_id}, integer + scale "
                    "factor)") if twin is not None and chain.find(twin) else ""
            raise ChainError(f"SunSpec model {model_id} is not in the device's chain{hint}; found {chain.describe()}")
        shifts[model_id], lengths[model_id] = found.start - start, found.length
    registers, missing = {}, []
    for name, reg in profile.registers.items():
        owner = layout.model_of(reg.address)
        if owner is None:  # the marker or the end of the chain
            shift = chain.base - layout.base if reg.address < layout.base + 2 else _end(chain) - layout.end
            registers[name] = attrs.evolve(reg, address=reg.address + shift)
            continue
        model_id, start = owner
        if reg.address + reg.words - start - 2 > lengths[model_id]:
            missing.append(name)
            continue
        registers[name] = attrs.evolve(reg, address=reg.address + shifts[model_id])
    wanted = sorted(set(needed) & set(missing))
    if wanted:
        raise ChainError(f"register(s) {', '.join(wanted)} lie past the end of their model in the device's chain "
                         f"({chain.describe()})")
    return attrs.evolve(profile, registers=registers)


def _end(chain: Chain) -> int:
    last = chain.models[-1] if chain.models else None
    return last.start + 2 + last.length if last is not None else chain.base + 2

