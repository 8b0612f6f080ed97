"""Program kinds an io_map can name in [[programs]]."""

from __future__ import annotations

from runtime.program import Program


def program_kinds() -> dict[str, type[Program]]:
    from programs.dispatch import Dispatch
    from programs.power_limits import PowerLimits
    from programs.site_control import SiteControl
    from programs.site_state import SiteStateProgram

    kinds: list[type[Program]] = [SiteStateProgram, PowerLimits, SiteControl, Dispatch]
    return {kind.kind: kind for kind in kinds}
