"""The cluster state file: atomic, complete, refusing to lose track of live resources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from okai.compute.state import (
    SCHEMA,
    ClusterState,
    ClusterStatus,
    NodeRecord,
    list_states,
    state_path,
)
from okai.errors import DocumentError, UsageError


def test_every_change_is_on_disk_before_the_call_returns(okai_home: Path) -> None:
    state = ClusterState.create("job42", "fluence", details={"clusterId": "c-1"})
    path = okai_home / ".okai" / "clusters" / "job42.json"
    assert state.path == path == state_path("job42")

    def on_disk() -> ClusterState:
        return ClusterState.load("job42")

    intent = state.intend("vm", "job42-r0")
    assert on_disk().resources[0].id is None, "the intent is recorded before the create"
    state.created(intent, "vm-1", publicIpId="ip-1")
    assert on_disk().resources[0].id == "vm-1"
    assert on_disk().resources[0].attrs == {"publicIpId": "ip-1"}
    state.add("storage", "job42-r0-boot", "disk-1")
    key = state.intend("ssh_key", "okai-key")
    key.keep = True
    state.save()
    assert [r.name for r in on_disk().live_resources()] == ["job42-r0", "job42-r0-boot"]
    state.removed(intent)
    assert [r.name for r in on_disk().live_resources()] == ["job42-r0-boot"]
    state.set_nodes([NodeRecord(rank=0, name="job42-r0", address="203.0.113.7")])
    state.set_status(ClusterStatus.UP)
    loaded = on_disk()
    assert loaded.status == ClusterStatus.UP and loaded.nodes[0].address == "203.0.113.7"
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA
    assert raw["resources"][0]["createdAt"] and raw["resources"][0]["requestedAt"]
    assert sorted(os.listdir(path.parent)) == ["job42.json"], "no temporary files left"


def test_a_failed_write_keeps_the_previous_file(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ClusterState.create("job42", "fluence")
    state.intend("vm", "job42-r0")
    before = state.path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        state.intend("vm", "job42-r1")
    assert state.path.read_bytes() == before
    assert sorted(os.listdir(state.path.parent)) == ["job42.json"]


def test_a_cluster_with_live_resources_cannot_be_created_again(okai_home: Path) -> None:
    state = ClusterState.create("job42", "fluence")
    record = state.intend("vm", "job42-r0")
    state.set_status(ClusterStatus.STOPPED)
    with pytest.raises(UsageError, match="1 resource"):
        ClusterState.create("job42", "fluence")
    state.removed(record)
    assert ClusterState.create("job42", "local").provider == "local"
    assert [s.name for s in list_states()] == ["job42"]


def test_broken_files_name_the_file_and_field(okai_home: Path) -> None:
    path = state_path("job42")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(DocumentError, match=r"job42\.json"):
        ClusterState.load("job42")
    path.write_text(
        json.dumps({"schema": SCHEMA, "name": "job42", "provider": "x", "status": "sideways"})
    )
    with pytest.raises(DocumentError, match="status"):
        ClusterState.load("job42")
    path.write_text(
        json.dumps({"schema": "okai.cluster-state/v9", "name": "job42", "provider": "x"})
    )
    with pytest.raises(DocumentError, match=r"expected okai\.cluster-state/v1"):
        ClusterState.load("job42")
    with pytest.raises(UsageError, match="no cluster named 'other'"):
        ClusterState.load("other")


@pytest.mark.parametrize("name", ["", "a", "Job", "-job", "job-", "job_42", "../etc", "j" * 33])
def test_cluster_names_are_plain(okai_home: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid cluster name"):
        ClusterState.create(name, "fluence")
