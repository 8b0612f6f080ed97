"""Program kinds an io_map can name in [[programs]]."""

from __future__ import annotations

from runtime.program import Program


def program_kinds() -> dict[str, type[Program]]:
    from programs.cluster import ClusterControl, ClusterMaster, ClusterNode
    from programs.dispatch import Dispatch
    from programs.grid_services import GridServices
    from programs.monitor import Monitor
    from programs.power_limits import PowerLimits
    from programs.safety import Safety
    from programs.site_control import SiteControl
    from programs.site_state import SiteStateProgram

    kinds: list[type[Program]] = [SiteStateProgram, PowerLimits, SiteControl, Dispatch]
    kinds += [Monitor, Safety]
    kinds += [GridServices]
    kinds += [ClusterNode, ClusterControl, ClusterMaster]
    return {kind.kind: kind for kind in kinds}
