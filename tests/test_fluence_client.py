"""The Fluence HTTP client against the fake API: auth, typed errors, retries, pagination."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from conftest import free_port
from fakes.fluence_fake import Fault, FluenceFake
from fakes.fluence_support import checked_fake, client_for
from okai.compute.fluence import (
    FluenceAuthError,
    FluenceClient,
    FluenceConfig,
    FluenceConflict,
    FluenceNotFound,
    FluenceRequestError,
    FluenceUnavailable,
    InsufficientBalance,
)
from okai.compute.fluence.discovery import list_clusters, list_datacenters
from okai.errors import ConfigError, ExitCode, OkaiError, OperationalError, UsageError

WRONG_KEY = "wrong-key-must-never-show-9f8e7d"


@pytest.fixture
def fake() -> Iterator[FluenceFake]:
    with checked_fake() as running:
        yield running


def leaked(exc: BaseException, *secrets: str) -> bool:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    return any(secret in text for secret in secrets)


def test_sends_the_key_in_both_documented_headers(fake: FluenceFake) -> None:
    with client_for(fake) as client:
        assert client.get("/v1/clusters")["items"]
    headers = fake.log[-1].headers
    assert headers["X-API-KEY"] == fake.api_key
    assert headers["Authorization"] == f"X-API-KEY {fake.api_key}"
    assert fake.api_key not in repr(client)


def test_empty_key_is_a_config_error_before_any_request(fake: FluenceFake) -> None:
    with pytest.raises(ConfigError, match="empty"):
        FluenceClient(SecretStr("  "), FluenceConfig(base_url=fake.url))
    assert fake.log == []


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_is_a_config_error_with_a_next_step(fake: FluenceFake, status: int) -> None:
    fake.unknown_key_status = status
    with client_for(fake, key=WRONG_KEY) as client, pytest.raises(FluenceAuthError) as caught:
        client.get("/v2/vms")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.exit_code == ExitCode.USAGE_ERROR
    assert error.status == status
    assert "OKAI_FLUENCE_API_KEY" in str(error)
    assert not leaked(error, WRONG_KEY, fake.api_key)
    assert len(fake.log) == 1, "auth failures are never retried"


def test_a_missing_scope_names_the_call(fake: FluenceFake) -> None:
    fake.keys["read-only-key"] = {"clusters:read"}
    with client_for(fake, key="read-only-key") as client:
        assert client.get("/v1/clusters")
        with pytest.raises(FluenceAuthError) as caught:
            client.post(
                "/v1/public_ips",
                {"clusterId": fake.clusters[0]["id"], "name": "x", "addressType": "V4"},
            )
    assert "refused POST /v1/public_ips" in str(caught.value)
    assert "lacks the permission" in str(caught.value)
    assert caught.value.code == "forbidden"


def test_an_error_without_code_from_an_older_server_is_still_typed(fake: FluenceFake) -> None:
    fake.inject(
        Fault("GET", "/v1/clusters", status=403, raw_body={"error": "Auth failed. No such API Key"})
    )
    with client_for(fake) as client, pytest.raises(FluenceAuthError, match="No such API Key"):
        client.get("/v1/clusters")


@pytest.mark.parametrize(
    ("status", "code", "kind", "parent"),
    [
        (422, "unprocessable_entity", FluenceRequestError, UsageError),
        (400, "bad_request", FluenceRequestError, UsageError),
        (404, "not_found", FluenceNotFound, UsageError),
        (409, "conflict", FluenceConflict, OperationalError),
        (406, "not_acceptable", FluenceConflict, OperationalError),
        (500, "internal_server_error", FluenceUnavailable, OperationalError),
        (503, "service_unavailable", FluenceUnavailable, OperationalError),
        (402, "insufficient_balance", InsufficientBalance, OperationalError),
        (422, "insufficient_balance", InsufficientBalance, OperationalError),
    ],
)
def test_error_codes_map_to_typed_errors_with_the_server_message(
    fake: FluenceFake, status: int, code: str, kind: type[OkaiError], parent: type[OkaiError]
) -> None:
    message = f"the server says {code} here"
    fake.inject(Fault("POST", "/v1/public_ips", status=status, code=code, message=message))
    body = {"clusterId": fake.clusters[0]["id"], "name": "job-r0-ip", "addressType": "V4"}
    with client_for(fake) as client, pytest.raises(kind) as caught:
        client.post("/v1/public_ips", body)
    assert isinstance(caught.value, parent)
    assert message in str(caught.value)
    assert "POST /v1/public_ips" in str(caught.value)
    assert len(fake.mutations()) == 1, "a create is never re-sent by the client"
    if code == "insufficient_balance":
        assert "top up" in str(caught.value)
    if status == 503:
        assert "/v1/service/status" in str(caught.value)


def test_reads_are_retried_on_5xx_with_backoff(fake: FluenceFake) -> None:
    fake.inject(Fault("GET", "/v1/clusters", status=503, code="service_unavailable", times=2))
    waits: list[float] = []
    config = FluenceConfig(base_url=fake.url, retries=2, backoff_s=0.25)
    with FluenceClient(SecretStr(fake.api_key), config, sleep=waits.append) as client:
        assert len(client.get("/v1/clusters")["items"]) == 2
    assert waits == [0.25, 0.5]
    assert [entry.status for entry in fake.log] == [503, 503, 200]


def test_reads_give_up_after_the_configured_retries(fake: FluenceFake) -> None:
    fake.inject(Fault("GET", "/v1/clusters", times=10))
    with client_for(fake, retries=1) as client, pytest.raises(FluenceUnavailable):
        client.get("/v1/clusters")
    assert len(fake.log) == 2


def test_rate_limiting_is_retried_even_for_a_create(fake: FluenceFake) -> None:
    fake.inject(Fault("POST", "/v1/public_ips", status=429, raw_body={"error": "slow down"}))
    body = {"clusterId": fake.clusters[0]["id"], "name": "job-r0-ip", "addressType": "V4"}
    with client_for(fake) as client:
        assert client.post("/v1/public_ips", body)["name"] == "job-r0-ip"
    assert [e.status for e in fake.mutations()] == [429, 200]


def test_a_dropped_answer_is_an_ambiguous_operational_error(fake: FluenceFake) -> None:
    fake.inject(Fault("POST", "/v1/public_ips", drop=True))
    body = {"clusterId": fake.clusters[0]["id"], "name": "job-r0-ip", "addressType": "V4"}
    with client_for(fake) as client, pytest.raises(FluenceUnavailable) as caught:
        client.post("/v1/public_ips", body)
    assert caught.value.status is None
    assert [ip["name"] for ip in fake.of_kind("public_ip")] == ["job-r0-ip"], "it was committed"


def test_an_unreachable_server_is_operational_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = FluenceClient(
        SecretStr(WRONG_KEY), FluenceConfig(base_url=url, retries=0, timeout_s=2)
    )
    with client, pytest.raises(FluenceUnavailable) as caught:
        client.get("/v1/clusters")
    assert url in str(caught.value)
    assert caught.value.exit_code == ExitCode.OPERATIONAL_FAILURE
    assert not leaked(caught.value, WRONG_KEY)


@pytest.mark.parametrize("first_page", [0, 1])
def test_pagination_walks_every_page_whatever_the_base(fake: FluenceFake, first_page: int) -> None:
    fake.first_page = first_page
    fake.max_per_page = 2
    with client_for(fake) as client:
        for rank in range(5):
            body = {
                "clusterId": fake.clusters[0]["id"],
                "name": f"job-r{rank}-ip",
                "addressType": "V4",
            }
            client.post("/v1/public_ips", body)
        items = client.paginate("/v1/public_ips")
    assert sorted(i["name"] for i in items) == [f"job-r{r}-ip" for r in range(5)]
    pages = [
        dict(e.query).get("page")
        for e in fake.log
        if e.path == "/v1/public_ips" and e.method == "GET"
    ]
    assert pages == [None, str(first_page + 1), str(first_page + 2)]


def test_catalogues_decode_as_bare_arrays_and_snake_case(fake: FluenceFake) -> None:
    fake.bare_catalogues = True
    fake.snake_dc_id = True
    with client_for(fake) as client:
        clusters = list_clusters(client)
        datacenters = list_datacenters(client)
    assert {c.dc_id for c in clusters} == {d.id for d in datacenters}


def test_the_key_never_reaches_the_logs(
    fake: FluenceFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.inject(Fault("GET", "/v2/vms", status=500))
    with client_for(fake) as client:
        client.get("/v1/clusters")
        client.get("/v2/vms")
    with client_for(fake, key=WRONG_KEY) as client, pytest.raises(FluenceAuthError):
        client.get("/v2/vms")
    assert "GET /v1/clusters -> 200" in caplog.text
    assert fake.api_key not in caplog.text
    assert WRONG_KEY not in caplog.text


def test_a_server_echoing_the_key_has_it_scrubbed(fake: FluenceFake) -> None:
    fake.inject(Fault("GET", "/v1/clusters", status=422, code="unprocessable_entity",
                      message=f"bad key {fake.api_key} given"))  # fmt: skip
    with client_for(fake) as client, pytest.raises(FluenceRequestError) as caught:
        client.get("/v1/clusters")
    assert "<redacted>" in str(caught.value)
    assert not leaked(caught.value, fake.api_key)


def test_the_package_exports_what_it_lists() -> None:
    import okai.compute.fluence as package

    assert sorted(package.__all__) == sorted(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name) is not None, name
