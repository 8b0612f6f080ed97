"""What the service sends after a scan: setpoints go out only while the lease still holds.

The scan reads Raft's view once, as it begins; a leader paused in the middle of a scan (SIGSTOP,
a VM stall) resumes with setpoints made under a lease that has run out meanwhile. The node here
is a real service started alone (its two peers never run), so Raft gives it no quorum and no
lease: it stands for the leader that resumed after the others moved on. The setpoints are put in
its outbox as the master's scan would have left them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_kit import free_ports
from test_security import cluster_config
from testkit.waiting import wait_until

from programs.cluster.messages import Setpoints, Share
from runtime.cluster import security
from runtime.cluster.service import ClusterService

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[ClusterService]:
    cfg = cluster_config(free_ports(9), applied_log="applied.jsonl")
    security.generate(cfg, tmp_path)
    service = ClusterService(cfg, "site", tmp_path / "data", tmp_path)
    service.start()
    yield service
    service.stop()


def records(service: ClusterService) -> list[dict[str, object]]:
    assert service.recorder is not None
    path = service.recorder.path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_setpoints_made_before_the_lease_ran_out_are_withheld_not_sent(alone: ClusterService) -> None:
    assert not alone.raft.view().commanding  # type: ignore[union-attr]
    message = Setpoints(leader="node1", term=2, seq=333, t_wall=0.0, shares={"node1": Share(3709.9)})
    alone.link.send(message)
    alone.link.record("sent", term=2, seq=333, shares={"node1": 3709.9})
    alone.flush()
    line = wait_until(lambda: records(alone), 5.0, "the record written")[0]
    assert line["kind"] == "withheld" and line["seq"] == 333
    assert alone.transport is not None and alone.transport.published == 0
