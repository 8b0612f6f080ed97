"""`cluster_control`: the site program (the mode manager) for the whole cluster.

It runs `SiteControl` against the site meter with the cluster's power, SOC and limits as its
battery. Every node runs it (followers in the shadow, on the same inputs), so a new leader
takes over bumplessly; it writes `cluster_baseline_p_w`, which the master splits.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from plc.program import Program, ScanContext, TagLookup, TagRef
from plc.tags import TagSpec
from programs.cluster.aggregate import outside_p_w
from programs.cluster.link import ClusterLink
from programs.site_control import Params as SiteControlParams
from programs.site_control import SiteControl

log = logging.getLogger(__name__)

PREFIX = "cluster_"
# The cluster control's battery is the cluster: these inputs of the site program are mapped.
CLUSTER_INPUTS = {"inverter_p_w": "cluster_p_w", "soc_pct": "cluster_soc_pct", "site_state": "cluster_site_state",
                  "limit_charge_w": "cluster_limit_charge_w", "limit_discharge_w": "cluster_limit_discharge_w"}
SHARED_INPUTS = ("grid_power_w",)  # the site meter: the same for the cluster as for each node


@attrs.frozen
class ControlParams(SiteControlParams):
    """The site program's parameters (see `site_control`), placed elsewhere in the register map."""

    modbus_holding_base: int | None = 2000
    modbus_input_base: int | None = 2000


class _ClusterTags:
    """The tag lookup the wrapped site program sees: its own tags carry the `cluster_` prefix,
    its battery inputs are the cluster's, the site meter is shared; any other input it looks
    for is the cluster's (`cluster_<name>`), so a node-level value never leaks in."""

    def __init__(self, tags: TagLookup, own: set[str]):
        self.tags = tags
        self.own = own

    def name(self, name: str) -> str:
        if name in SHARED_INPUTS:
            return name
        return CLUSTER_INPUTS.get(name, PREFIX + name)

    def __getitem__(self, name: str) -> TagRef:
        return self.tags[self.name(name)]

    def __contains__(self, name: str) -> bool:
        return self.name(name) in self.tags

    def get(self, name: str) -> TagRef | None:
        return self.tags.get(self.name(name))


class ClusterControl(Program):
    """Runs `SiteControl` on cluster-level tags; writes `cluster_baseline_p_w` on every node."""

    kind = "cluster_control"
    params_type = ControlParams

    def __init__(self, name: str, params: ControlParams):
        super().__init__(name)
        self.p = params
        self.inner = SiteControl(name, params)
        self.link: ClusterLink | None = None
        self.commanding = False

    def attach_cluster(self, link: ClusterLink) -> None:
        self.link = link

    def declare(self) -> list[TagSpec]:
        specs = self.inner.declare()
        self.own = {spec.name for spec in specs}
        return [attrs.evolve(spec, name=PREFIX + spec.name, description=f"Cluster: {spec.description}")
                for spec in specs]

    def bind(self, tags: TagLookup) -> None:
        if not hasattr(self, "own"):
            self.own = {spec.name for spec in self.inner.declare()}
        self.inner.bind(_ClusterTags(tags, self.own))

    def replace_schedule(self, schedule: Any) -> None:
        self.inner.replace_schedule(schedule)

    def execute(self, ctx: ScanContext) -> None:
        if self.link is not None:
            self._takeover(self.link)
        self.inner.execute(ctx)

    def _takeover(self, link: ClusterLink) -> None:
        """On becoming the commanding leader, the baseline continues from what the cluster does
        now: the setpoints the nodes it will command (usable, reachable) apply, plus what the
        others deliver by themselves (a dead unit's inverter, until its revert timer runs out).
        The master splits the baseline less the latter, so the commanded nodes' setpoints do not
        jump; the shadow run keeps the filters and trims warm, and the feedback does the rest."""
        commanding = link.view.commanding
        if commanding and not self.commanding:
            members = link.membership
            commanded = [m for m in members.usable() if m.reachable and m.last is not None]
            if commanded:
                others = outside_p_w(members.members.values(), {m.id for m in commanded}, members.now_s)
                applied = sum(m.last.setpoint_w for m in commanded if m.last is not None)
                self.inner.hand_over(applied + others)
                log.info("cluster control: taking over from the %.0f W the nodes apply and the %.0f W the "
                         "others deliver by themselves", applied, others)
        self.commanding = commanding

