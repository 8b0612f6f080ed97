"""Program kinds an io_map can name in [[programs]]: kind name -> "module:class", imported on use."""

from __future__ import annotations

from plc.kinds import Kinds
from plc.program import ProgramKind

PROGRAMS: Kinds[ProgramKind] = Kinds({
    "site_state": "programs.site_state:SiteStateProgram",
    "power_limits": "programs.power_limits:PowerLimits",
    "site_control": "programs.site_control:SiteControl",
    "dispatch": "programs.dispatch:Dispatch",
    "monitor": "programs.monitor:Monitor",
    "safety": "programs.safety:Safety",
    "grid_services": "programs.grid_services:GridServices",
    "cluster": "programs.cluster.node:ClusterNode",
    "cluster_control": "programs.cluster.control:ClusterControl",
    "cluster_master": "programs.cluster.master:ClusterMaster",
})
