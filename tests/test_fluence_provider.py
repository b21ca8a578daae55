"""FluenceProvider end to end against the fake API: up, down, rollback, dry run, secrecy.

Every test runs against a fake that validates each request and response against
the real spec and follows the documented lifecycles with (short) delays. After
each test, nothing the test captured (logs, output, state files, request
bodies) may contain the API key.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fakes.fluence_fake import Fault, FluenceFake, Logged
from fakes.fluence_support import FAST_POLL, checked_fake, client_for, ssh_public_key
from okai.compute.cloudinit import UserDataTooLarge, WriteFile, cloud_config_schema
from okai.compute.fluence import (
    BalanceTooLow,
    CostLimitExceeded,
    FluenceAuthError,
    FluenceClusterSpec,
    FluenceProvider,
    FluenceRequestError,
    FluenceUnavailable,
    InsufficientBalance,
    MissingScopes,
    NodeContext,
    NodeRequirements,
    PlannedRequest,
    VmFailed,
)
from okai.compute.state import ClusterState, ClusterStatus, state_path
from okai.errors import ExitCode, OperationalError, UsageError

IMAGE = "https://aggregator.example/v1/blobs/by-quilt-id/q1/okai-image.qcow2"


def cluster_files(ctx: NodeContext) -> list[WriteFile]:
    """What the cluster layer will put on each node: small, public facts only."""
    cluster = {"cluster": ctx.cluster, "rank": ctx.rank, "nodes": len(ctx.members),
               "rendezvous": f"{ctx.rendezvous_address}:29500"}  # fmt: skip
    return [WriteFile.json("/var/lib/okai/cluster.json", cluster)]


def make_spec(name: str = "job42", nodes: int = 2, **changes: Any) -> FluenceClusterSpec:
    fields: dict[str, Any] = {
        "name": name,
        "nodes": nodes,
        "image_url": IMAGE,
        "ssh_public_key": ssh_public_key(),
        "node_files": cluster_files,
        "hours": 2.0,
    }
    fields.update(changes)
    return FluenceClusterSpec(**fields)


@pytest.fixture
def fake(okai_home: Path) -> Iterator[FluenceFake]:
    with checked_fake() as running:
        yield running


@pytest.fixture
def provider(fake: FluenceFake) -> Iterator[FluenceProvider]:
    with client_for(fake) as client:
        yield FluenceProvider(client, poll=FAST_POLL)


@pytest.fixture(autouse=True)
def the_key_never_leaks(
    fake: FluenceFake, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    key = fake.api_key
    out = capsys.readouterr()
    assert key not in caplog.text + out.out + out.err
    for path in Path.cwd().rglob("*.json"):
        assert key not in path.read_text(), path
    for entry in fake.log:
        assert key not in json.dumps(entry.body), (
            f"{entry.method} {entry.path} body carries the key"
        )
        assert key not in entry.path + repr(entry.query)


def leaks(exc: BaseException, key: str) -> bool:
    return key in "".join(traceback.format_exception(exc)) + repr(exc)


def billed_names(fake: FluenceFake) -> list[str]:
    return sorted(name for _, name, _ in fake.billable())


def posts(fake: FluenceFake, path: str) -> list[Logged]:
    return [e for e in fake.mutations() if e.method == "POST" and e.path == path]


# --- the happy path -------------------------------------------------------------------------


def test_full_up_and_down(fake: FluenceFake, provider: FluenceProvider) -> None:
    state = provider.up(make_spec())

    # Everything that costs money was recorded, with the ids the API gave.
    assert billed_names(fake) == sorted(
        ["job42-r0", "job42-r1", "job42-r0-boot", "job42-r1-boot", "job42-r0-ip", "job42-r1-ip"]
    )
    on_disk = ClusterState.load("job42")
    assert on_disk.status == ClusterStatus.UP
    recorded = {(r.kind, r.name): r.id for r in on_disk.resources}
    for kind, name, resource_id in fake.billable():
        assert recorded[(kind, name)] == resource_id
    assert recorded[("security_group", "job42-sg")] is not None
    key_record = on_disk.resources[0]
    assert key_record.kind == "ssh_key" and key_record.keep and key_record.id

    # Addresses come from the API; every VM runs.
    ips = {ip["name"]: ip["address"] for ip in fake.of_kind("public_ip")}
    assert [n.address for n in state.nodes] == [ips["job42-r0-ip"], ips["job42-r1-ip"]]
    assert [n.name for n in state.nodes] == ["job42-r0", "job42-r1"]
    vms = {vm["name"]: vm for vm in fake.of_kind("vm")}
    assert {vm["status"] for vm in vms.values()} == {"launched"}
    assert not any(vm["restartRequired"] for vm in vms.values())
    assert [n.attrs["status"] for n in provider.nodes(state, refresh=True)] == ["launched"] * 2

    # Traffic between nodes is limited to the members: the group is on every interface.
    (group,) = fake.of_kind("security_group")
    for vm in vms.values():
        assert {iface["securityGroup"] for iface in vm["_interfaces"]} == {group["id"]}
    rules = group["ingressRules"]["rules"]
    remotes = [r["remote"] for r in rules]
    assert {"securityGroup": group["id"]} in remotes
    assert {f"{a}/32" for a in ips.values()} <= {r.get("address") for r in remotes}
    open_to_all = [r for r in rules if r["remote"].get("address") == "0.0.0.0/0"]
    assert [r["protocolKind"] for r in open_to_all] == [
        {"tcp": {"ports": {"exact": {"value": 22}}}}
    ]
    assert group["egressRules"] == {"type": "allowAll"}

    # Each VM got its own schema-valid user data naming rank 0 as the rendezvous.
    for create in posts(fake, "/v2/vms"):
        user_data = create.body["cloudInit"]["userData"]
        assert len(user_data.encode()) <= 16384
        document = yaml.safe_load(user_data)
        jsonschema.Draft4Validator(cloud_config_schema()).validate(document)
        (cluster_file,) = document["write_files"]
        facts = json.loads(cluster_file["content"])
        assert facts["rendezvous"] == f"{ips['job42-r0-ip']}:29500"
        assert document["hostname"] == create.body["name"]

    provider.down(state)
    assert fake.billable() == []
    assert fake.of_kind("security_group")[0]["status"] == "removed"
    final = ClusterState.load("job42")
    assert final.status == ClusterStatus.STOPPED
    assert final.live_resources() == []
    # The SSH key is account-wide and free: it stays registered for the next cluster.
    assert len(fake.of_kind("ssh_key")) == 1

    # down is safe to repeat.
    before = len(fake.mutations())
    provider.down(final)
    assert len(fake.mutations()) == before
    assert fake.accrued_usd() > 0


def test_the_dry_run_is_exactly_what_up_sends(fake: FluenceFake, provider: FluenceProvider) -> None:
    spec = make_spec()
    plan = provider.plan(spec)
    assert fake.mutations() == [], "a plan creates nothing"
    text = plan.render_requests(fake.url)
    assert "X-API-KEY: <redacted>" in text
    assert fake.api_key not in text + json.dumps(plan.to_json()) + plan.describe()
    assert plan.to_json()["estimate"]["totalUsd"] == str(plan.estimate.to_json()["totalUsd"])

    provider.up(spec, plan)
    sent = fake.mutations()
    planned = list(plan.requests)
    binds = [p for p in planned if p.method == "PATCH" and "/interfaces/" in p.path]
    ordered = [p for p in planned if p not in binds]
    for want, got in zip(ordered, sent, strict=False):
        assert_matches(want, got)
    rest = sent[len(ordered) :]
    for want in binds:
        assert any(matches(want, got) for got in rest), want.path
    # Beyond the plan: one bind per interface, and the restarts the binds asked for.
    assert all("/interfaces/" in e.path or e.path.endswith("/restart") for e in rest)


def matches(planned: PlannedRequest, actual: Logged) -> bool:
    try:
        assert_matches(planned, actual)
    except AssertionError:
        return False
    return True


def assert_matches(planned: PlannedRequest, actual: Logged) -> None:
    """Equal, where a `<...>` placeholder in the plan stands for any text."""
    assert planned.method == actual.method
    assert re.fullmatch(_pattern(planned.path), actual.path), (planned.path, actual.path)
    _match_json(planned.body, actual.body)


def _pattern(text: str) -> str:
    return "".join(
        ".+" if part.startswith("<") else re.escape(part) for part in re.split(r"(<[^>]+>)", text)
    )


def _match_json(want: Any, got: Any) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(want) == set(got), (want, got)
        for key in want:
            _match_json(want[key], got[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(want) == len(got), (want, got)
        for a, b in zip(want, got, strict=True):
            _match_json(a, b)
    elif isinstance(want, str) and "<" in want:
        assert isinstance(got, str) and re.fullmatch(_pattern(want), got, re.DOTALL), (want, got)
    else:
        assert want == got


# --- refused before anything is created -------------------------------------------------------


def assert_nothing_created(fake: FluenceFake, name: str = "job42") -> None:
    assert fake.mutations() == []
    assert not state_path(name).exists()


def test_max_usd_is_a_hard_limit(fake: FluenceFake, provider: FluenceProvider) -> None:
    with pytest.raises(CostLimitExceeded, match="nothing was created"):
        provider.up(make_spec(max_usd=Decimal("0.01")))
    assert_nothing_created(fake)


def test_insufficient_balance_is_caught_before_creating(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    fake.balance = Decimal("0.05")
    # The plan (a dry run) still shows everything, saying the balance is short...
    plan = provider.plan(make_spec())
    assert plan.balance_short is not None and "0.05 USD" in plan.balance_short
    assert "BALANCE TOO LOW" in plan.describe() and plan.to_json()["balanceShort"]
    assert any(r.path == "/v2/vms" for r in plan.requests)
    # ... and `up` refuses it, exit 2, before any write.
    with pytest.raises(BalanceTooLow, match="nothing was created") as caught:
        provider.up(make_spec())
    assert caught.value.exit_code == ExitCode.USAGE_ERROR and "top up" in str(caught.value)
    assert_nothing_created(fake)


def test_a_key_without_write_scopes_is_refused_before_any_write(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    fake.keys[fake.api_key] -= {"vms:write", "public_ip:write"}
    for attempt in (provider.plan, provider.up):
        with pytest.raises(MissingScopes, match="vms:write") as caught:
            attempt(make_spec())
        assert caught.value.exit_code == ExitCode.USAGE_ERROR
        assert "OKAI_FLUENCE_API_KEY" in str(caught.value)
    assert_nothing_created(fake)
    assert fake.of_kind("public_ip") == [] and fake.of_kind("security_group") == []


def test_a_presigned_image_url_is_sent_but_never_shown_or_stored(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    signature = "X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    signed = f"{IMAGE}?X-Amz-Credential=AKIA123&{signature}"
    spec = make_spec(image_url=signed)
    plan = provider.plan(spec)
    shown = plan.render_requests(fake.url) + json.dumps(plan.to_json()) + plan.describe()
    assert "X-Amz" not in shown and f"{IMAGE}?<redacted>" in shown
    fake.fail_vm("job42-r1")  # the failure's hint names the image URL too
    with pytest.raises(VmFailed) as caught:
        provider.up(spec)
    assert "X-Amz" not in str(caught.value) and IMAGE in str(caught.value)
    sent = {e.body["bootDisk"]["osImage"] for e in posts(fake, "/v2/vms")}
    assert sent == {signed}, "Fluence gets the URL as it is"
    stored = state_path("job42").read_text()
    assert "X-Amz" not in stored and f"{IMAGE}?<redacted>" in stored
    assert fake.billable() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"vcpu": 0}, "1 vCPU, not 0"), ({"ram_gb": -4}, "1 GB of RAM, not -4")],
)
def test_impossible_node_sizes_are_refused_before_any_request(
    fake: FluenceFake, provider: FluenceProvider, changes: dict[str, int], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        provider.plan(make_spec(requirements=NodeRequirements(**changes)))
    assert fake.log == []


def test_user_data_too_large_is_refused_before_creating(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    def big_files(ctx: NodeContext) -> list[WriteFile]:
        return [WriteFile("/var/lib/okai/job.json", "x" * 20000)]

    with pytest.raises(UserDataTooLarge, match="over SSH"):
        provider.up(make_spec(node_files=big_files))
    assert_nothing_created(fake)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_url": "https://example.org/okai.iso"}, "must end with one of"),
        ({"image_url": "https://user:pw@example.org/okai.qcow2"}, "credentials"),
        ({"image_url": "ftp://example.org/okai.qcow2"}, "http"),
        ({"name": "a-very-long-cluster-name"}, "cannot name Fluence resources"),
        ({"name": "Job42"}, "cannot name Fluence resources"),
        ({"ssh_public_key": "ssh-dss AAAA x"}, "OpenSSH public key"),
        ({"ssh_cidr": "10.0.0.0/33"}, "CIDR"),
        ({"nodes": 0}, "1 to 64 nodes"),
    ],
)
def test_bad_specs_are_refused_before_any_request(
    fake: FluenceFake, provider: FluenceProvider, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        provider.up(make_spec(**changes))
    assert fake.log == []


def test_a_bad_key_fails_fast_with_an_actionable_message(fake: FluenceFake) -> None:
    with client_for(fake, key="not-the-key") as client, pytest.raises(FluenceAuthError) as caught:
        FluenceProvider(client, poll=FAST_POLL).up(make_spec())
    assert "OKAI_FLUENCE_API_KEY" in str(caught.value)
    assert not leaks(caught.value, "not-the-key")
    assert_nothing_created(fake)


def test_a_name_already_taken_on_the_account_is_refused(
    fake: FluenceFake, provider: FluenceProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.up(make_spec())
    # Another machine (another state folder) asks for the same cluster name.
    before = len(fake.mutations())
    with monkeypatch.context() as elsewhere, pytest.raises(UsageError, match="already exist"):
        elsewhere.setenv("OKAI_HOME", str(tmp_path / "elsewhere"))
        provider.up(make_spec())
    assert len(fake.mutations()) == before
    # And on this machine the state file itself refuses a second `up`.
    with pytest.raises(UsageError, match="already exists"):
        ClusterState.create("job42", "fluence")


# --- failures after creating: everything is rolled back ----------------------------------------


def assert_rolled_back(fake: FluenceFake, name: str = "job42") -> ClusterState:
    assert fake.billable() == []
    state = ClusterState.load(name)
    assert state.status == ClusterStatus.STOPPED
    assert state.error
    assert state.live_resources() == []
    return state


def test_a_create_failing_half_way_rolls_back(fake: FluenceFake, provider: FluenceProvider) -> None:
    # The second VM create fails every time (its one retry included).
    fake.inject(Fault("POST", "/v2/vms", status=500, skip=1, times=10))
    with pytest.raises(FluenceUnavailable, match="POST /v2/vms failed") as caught:
        provider.up(make_spec())
    assert not leaks(caught.value, fake.api_key)
    assert_rolled_back(fake)
    creates = [e.body["name"] for e in posts(fake, "/v2/vms")]
    assert creates == ["job42-r0", "job42-r1", "job42-r1"]
    # Before the retry, the name was looked up: no blind re-send.
    second, retry = [
        i for i, e in enumerate(fake.log) if e.method == "POST" and e.path == "/v2/vms"
    ][1:]
    lookups = [e for e in fake.log[second:retry] if e.method == "GET" and e.path == "/v2/vms"]
    assert ("name", "job42-r1") in lookups[0].query


def test_an_ambiguous_create_is_adopted_not_repeated(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    # The second VM and first IP are created but their answers are lost.
    fake.inject(Fault("POST", "/v2/vms", skip=1, drop=True))
    fake.inject(Fault("POST", "/v1/public_ips", status=500, after_commit=True))
    state = provider.up(make_spec())
    assert [e.body["name"] for e in posts(fake, "/v2/vms")] == ["job42-r0", "job42-r1"]
    assert [e.body["name"] for e in posts(fake, "/v1/public_ips")] == ["job42-r0-ip", "job42-r1-ip"]
    assert sorted(vm["name"] for vm in fake.of_kind("vm")) == ["job42-r0", "job42-r1"]
    recorded = {r.name: r.id for r in state.resources}
    assert recorded["job42-r1-boot"] == next(
        s["id"] for s in fake.of_kind("storage") if s["name"] == "job42-r1-boot"
    )
    provider.down(state)
    assert fake.billable() == []


def test_insufficient_balance_at_the_server_rolls_back(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    fake.inject(Fault("POST", "/v2/vms", status=402, code="insufficient_balance", skip=1,
                      message="Insufficient balance to run the resources for 6 hours"))  # fmt: skip
    with pytest.raises(InsufficientBalance, match="6 hours"):
        provider.up(make_spec())
    assert_rolled_back(fake)
    assert len(posts(fake, "/v2/vms")) == 2, "a refused create is not retried"


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(403, "forbidden", FluenceAuthError), (422, "unprocessable_entity", FluenceRequestError)],
)
def test_a_refused_create_rolls_back_with_the_server_message(
    fake: FluenceFake, provider: FluenceProvider, status: int, code: str, error: type[Exception]
) -> None:
    fake.inject(Fault("POST", "/v2/vms", status=status, code=code, skip=1, message=f"said {code}"))
    with pytest.raises(error, match=f"said {code}") as caught:
        provider.up(make_spec())
    assert not leaks(caught.value, fake.api_key)
    assert_rolled_back(fake)


def test_a_vm_ending_failed_rolls_back(fake: FluenceFake, provider: FluenceProvider) -> None:
    fake.fail_vm("job42-r1")
    with pytest.raises(VmFailed) as caught:
        provider.up(make_spec())
    assert "job42-r1 ended failed" in str(caught.value)
    assert IMAGE in str(caught.value), "the hint points at the image URL"
    assert_rolled_back(fake)
    assert {vm["status"] for vm in fake.of_kind("vm")} == {"terminated"}


def test_ctrl_c_while_waiting_rolls_back(fake: FluenceFake, okai_home: Path) -> None:
    armed = {"now": False, "fired": False}

    def report(message: str) -> None:
        if message.startswith("waiting for"):
            armed["now"] = True

    def sleep(seconds: float) -> None:
        if armed["now"] and not armed["fired"]:
            armed["fired"] = True
            raise KeyboardInterrupt
        time.sleep(seconds)

    with client_for(fake) as client:
        provider = FluenceProvider(client, poll=FAST_POLL, report=report, sleep=sleep)
        with pytest.raises(KeyboardInterrupt):
            provider.up(make_spec())
    assert armed["fired"]
    state = assert_rolled_back(fake)
    assert state.error == "KeyboardInterrupt"
    assert len(fake.of_kind("vm")) == 2


def test_down_after_a_crash_finds_unrecorded_creates_by_name(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    provider.up(make_spec())
    # As if the process died after sending the creates but before recording their ids.
    state = ClusterState.load("job42")
    for record in state.resources:
        if record.kind in ("vm", "storage"):
            record.id = None
    state.status = ClusterStatus.STARTING
    state.save()
    provider.down(ClusterState.load("job42"))
    assert fake.billable() == []
    assert ClusterState.load("job42").status == ClusterStatus.STOPPED


def test_a_stuck_teardown_says_what_is_left_and_can_be_repeated(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    state = provider.up(make_spec())
    fake.inject(Fault("POST", r"/v2/vms/[^/]+/terminate", times=100))
    with pytest.raises(OperationalError, match="teardown of job42 is incomplete") as caught:
        provider.down(state)
    assert "okai cluster down job42" in str(caught.value)
    left = ClusterState.load("job42")
    assert left.status == ClusterStatus.FAILED
    assert {r.kind for r in left.live_resources()} >= {"vm"}
    fake.faults.clear()
    provider.down(left)
    assert fake.billable() == []


def test_plan_lists_a_registered_key_as_reused(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    first = provider.plan(make_spec())
    assert first.requests[0].path == "/v1/ssh_keys"
    provider.up(make_spec())
    second = provider.plan(make_spec(name="job43"))
    assert second.ssh_key_id == fake.of_kind("ssh_key")[0]["id"]
    assert all(r.path != "/v1/ssh_keys" for r in second.requests)
    assert "cpu-regular-2vcpu-4gb" in second.describe()


def test_a_failed_rollback_says_how_to_finish_it(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    fake.fail_vm("job42-r1")
    fake.inject(Fault("POST", r"/v2/vms/[^/]+/terminate", times=100))
    with pytest.raises(VmFailed) as caught:
        provider.up(make_spec())
    hint = caught.value.hint or ""
    assert "run `okai cluster down job42` to remove them" in hint
    # Said once: the teardown's own hint is not nested inside the rollback's note.
    assert hint.count("okai cluster down") == 1 and "hint:" not in hint, hint
    state = ClusterState.load("job42")
    assert state.status == ClusterStatus.FAILED
    assert {r.name for r in state.live_resources("vm")} == {"job42-r0", "job42-r1"}
    fake.faults.clear()
    provider.down(state)
    assert fake.billable() == []


def test_down_with_a_rejected_key_names_the_variable_and_sends_no_delete(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    state = provider.up(make_spec())
    before = len(fake.mutations())
    with (
        client_for(fake, key="a-revoked-key") as revoked,
        pytest.raises(FluenceAuthError) as caught,
    ):
        FluenceProvider(revoked, poll=FAST_POLL).down(ClusterState.load("job42"))
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
    assert "OKAI_FLUENCE_API_KEY" in str(caught.value)
    assert len(fake.mutations()) == before, "no terminate or delete was sent"
    assert len(fake.billable()) == 6
    provider.down(state)
    assert fake.billable() == []


def test_a_key_revoked_during_teardown_stops_it_at_once_and_records_what_is_left(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    state = provider.up(make_spec())
    fake.inject(Fault("POST", r"/v2/vms/[^/]+/terminate", status=401, code="unauthorized"))
    with pytest.raises(FluenceAuthError) as caught:
        provider.down(state)
    assert "okai cluster down job42" in str(caught.value)
    terminates = [e for e in fake.mutations() if e.path.endswith("/terminate")]
    assert len(terminates) == 1, "the next calls would be refused the same way"
    left = ClusterState.load("job42")
    error = left.error or ""
    assert left.status == ClusterStatus.FAILED and "still recorded:" in error
    assert "vm job42-r0" in error and "rejected the API key" in error
    provider.down(left)
    assert fake.billable() == []


def test_down_refuses_a_state_file_of_another_api_or_provider(
    fake: FluenceFake, provider: FluenceProvider
) -> None:
    state = provider.up(make_spec())
    state.details["baseUrl"] = "https://api.fluence.dev"
    with pytest.raises(UsageError, match="OKAI_FLUENCE_URL"):
        provider.down(state)
    state.provider = "local"
    with pytest.raises(UsageError, match="not on Fluence"):
        provider.down(state)
    assert len(fake.billable()) == 6, "nothing was marked gone by mistake"
    state.provider, state.details["baseUrl"] = "fluence", fake.url
    provider.down(state)
    assert fake.billable() == []
