"""Which units do not follow their setpoints: the leader takes them out of the split.

A unit in Run whose measured power stays further from the setpoint it applies than the
tolerance (`tolerance_w`, or `tolerance_pct` of the setpoint when that is larger) for
`after_s` is excluded: its share goes to the others, and the site control makes up for what
it does or does not deliver. It is tried again after `retry_s` (an inverter that recovered
takes its share back; one still broken is excluded again after `after_s`). An inverter in
fault needs no watch: its node reports itself in error and is not usable at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import attrs

from programs.cluster.membership import Member
from programs.enums import SiteState

log = logging.getLogger(__name__)


@attrs.define
class FollowWatch:
    tolerance_w: float
    tolerance_pct: float
    after_s: float
    retry_s: float
    off_since: dict[str, float] = attrs.field(factory=dict)
    excluded_at: dict[str, float] = attrs.field(factory=dict)

    def update(self, members: Iterable[Member], now_s: float) -> set[str]:
        """The units to leave out of this scan's split."""
        for member in members:
            self._watch(member, now_s)
        for node, since in list(self.excluded_at.items()):
            if now_s - since >= self.retry_s:
                del self.excluded_at[node]
                log.info("cluster: %s is given a share again (tried after %.0f s out of the split)", node, self.retry_s)
        return set(self.excluded_at)

    def _watch(self, member: Member, now_s: float) -> None:
        state = member.last
        node = member.id
        if state is None or node in self.excluded_at or state.fallback or state.site_state != SiteState.RUN:
            self.off_since.pop(node, None)
            return
        error_w = abs(state.p_w - state.setpoint_w)
        if error_w <= max(self.tolerance_w, self.tolerance_pct / 100.0 * abs(state.setpoint_w)):
            self.off_since.pop(node, None)
            return
        since = self.off_since.setdefault(node, now_s)
        if now_s - since >= self.after_s:
            del self.off_since[node]
            self.excluded_at[node] = now_s
            log.warning("cluster: %s does not follow its setpoint (%.0f W measured, %.0f W set, for %.1f s): "
                        "out of the split, its share goes to the others", node, state.p_w, state.setpoint_w,
                        now_s - since)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the watch of units no longer in the cluster."""
        kept = set(keep)
        self.off_since = {n: t for n, t in self.off_since.items() if n in kept}
        self.excluded_at = {n: t for n, t in self.excluded_at.items() if n in kept}
