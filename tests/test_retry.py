"""The one retry policy (okai.retry), alone and as Walrus, chain RPC and Fluence use it.

Nothing here really sleeps: every wait goes to a recorder. The endpoints are
real: the local Walrus server with injected 503s, and loopback ports where
nothing listens.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from okai.chain.errors import RpcUnavailable
from okai.chain.rpc import JsonRpc
from okai.chain.rpc import RetryPolicy as RpcRetry
from okai.compute.fluence.client import FluenceConfig
from okai.retry import Backoff, call
from okai.walrus import RetryPolicy as WalrusRetry
from okai.walrus.errors import WalrusRequestError, WalrusUnavailable, WalrusUnreachable
from walrus_helpers import dead_url, local_server, make_client


class Flaky:
    """Fails with the given errors in turn, then answers "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Transient(Exception):
    pass


def transient(error: Exception) -> bool:
    return isinstance(error, Transient)


def never_sleep(seconds: float) -> None:
    pytest.fail(f"waited {seconds} s where no wait was due")


# ---------------------------------------------------------------- the schedule


def test_waits_double_from_the_first_up_to_the_cap() -> None:
    backoff = Backoff(attempts=8, first=0.5, cap=3.0)
    assert [backoff.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jittered_waits_stay_between_half_and_the_whole_delay() -> None:
    backoff = Backoff(attempts=5, first=0.25, cap=4.0, jitter=True)
    rng = random.Random(7)
    for retry in range(8):
        ceiling = min(4.0, 0.25 * 2**retry)
        waits = {backoff.delay(retry, rng) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1, "jitter spreads the waits"


def test_rounds_wait_between_rounds_and_never_after_the_last() -> None:
    waits: list[float] = []
    assert list(Backoff(4, 1.0, 10.0).rounds(waits.append)) == [0, 1, 2, 3]
    assert waits == [1.0, 2.0, 4.0]


def test_leaving_the_rounds_early_skips_the_waits_to_come() -> None:
    waits: list[float] = []
    for index in Backoff(5, 1.0, 10.0).rounds(waits.append):
        if index == 1:
            break
    assert waits == [1.0]


def test_a_policy_of_no_attempts_still_makes_one() -> None:
    flaky = Flaky(Transient("busy"))
    with pytest.raises(Transient):
        call(flaky, Backoff(0, 1.0, 1.0), retryable=transient, sleep=never_sleep)
    assert flaky.calls == 1
    assert list(Backoff(0, 1.0, 1.0).rounds(never_sleep)) == [0]


# ---------------------------------------------------------------- the loop


def test_transient_failures_are_retried_until_an_answer() -> None:
    waits: list[float] = []
    flaky = Flaky(Transient("busy"), Transient("busy"))
    assert call(flaky, Backoff(3, 0.1, 1.0), retryable=transient, sleep=waits.append) == "done"
    assert flaky.calls == 3
    assert waits == [0.1, 0.2]


def test_a_permanent_failure_is_raised_at_once_without_waiting() -> None:
    flaky = Flaky(Transient("busy"), ValueError("bad request"))
    waits: list[float] = []
    with pytest.raises(ValueError, match="bad request"):
        call(flaky, Backoff(5, 0.1, 1.0), retryable=transient, sleep=waits.append)
    assert flaky.calls == 2
    assert waits == [0.1]


def test_after_the_last_attempt_the_caller_words_the_error() -> None:
    flaky = Flaky(*(Transient(f"busy {i}") for i in range(3)))
    with pytest.raises(RuntimeError, match="gave up: busy 2") as caught:
        call(
            flaky,
            Backoff(3, 0.0, 0.0),
            retryable=transient,
            sleep=lambda _: None,
            exhausted=lambda last: RuntimeError(f"gave up: {last}"),
        )
    assert isinstance(caught.value.__cause__, Transient), "the last failure stays attached"
    assert flaky.calls == 3


def test_without_wording_the_last_failure_itself_is_raised() -> None:
    last = Transient("still busy")
    waits: list[float] = []
    with pytest.raises(Transient) as caught:
        call(
            Flaky(Transient("busy"), last),
            Backoff(2, 0.2, 1.0),
            retryable=transient,
            sleep=waits.append,
        )
    assert caught.value is last
    assert waits == [0.2]


def test_a_wait_the_server_asked_for_replaces_the_backoff_but_not_the_cap() -> None:
    waits: list[float] = []
    asked = {"first": 7.0, "second": 600.0, "third": None}
    flaky = Flaky(Transient("first"), Transient("second"), Transient("third"))
    call(
        flaky,
        Backoff(4, 0.5, 30.0),
        retryable=transient,
        sleep=waits.append,
        server_wait=lambda error: asked[str(error)],
    )
    assert waits == [7.0, 30.0, 2.0]


# ---------------------------------------------------------------- per-endpoint settings


def test_each_endpoint_keeps_its_defaults() -> None:
    assert WalrusRetry().schedule == Backoff(5, 0.25, 4.0, jitter=True)
    assert RpcRetry().schedule == Backoff(5, 0.5, 8.0)
    assert FluenceConfig().schedule == Backoff(4, 0.5, 30.0)
    assert FluenceConfig(retries=-2).schedule.attempts == 1


# ---------------------------------------------------------------- the three callers


def test_walrus_store_retries_a_503_with_injected_waits(tmp_path: Path) -> None:
    waits: list[float] = []
    with local_server(tmp_path / "w") as server:
        server.faults.set(fail=2, fail_status=503, fail_scope="store")
        with make_client(server.url, sleep=waits.append) as client:
            assert client.store_bytes(b"stored on the third try").size == 23
        assert server.faults.counts()["PUT blobs"] == 3
    assert len(waits) == 2
    assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02  # FAST_RETRY: 0.01 doubling


def test_walrus_store_that_never_succeeds_says_how_often_it_tried(tmp_path: Path) -> None:
    waits: list[float] = []
    with local_server(tmp_path / "w") as server:
        server.faults.set(fail=-1, fail_status=503, fail_scope="store")
        with (
            make_client(server.url, sleep=waits.append) as client,
            pytest.raises(WalrusUnavailable, match=r"failed after 3 attempts") as caught,
        ):
            client.store_bytes(b"never stored")
    assert caught.value.status == 503
    assert len(waits) == 2


def test_walrus_reads_wait_between_rounds_over_dead_aggregators() -> None:
    waits: list[float] = []
    with (
        make_client(dead_url(), dead_url(), publisher=dead_url(), sleep=waits.append) as client,
        pytest.raises(WalrusUnreachable, match="after 3 rounds over the aggregators") as caught,
    ):
        client.unreachable_hint = "start the local stack"
        client.read_bytes("A" * 43, None, verify_blob_id=False)
    assert len(waits) == 2
    assert caught.value.hint == "start the local stack", "a refused connection says what to do"


def test_a_walrus_request_refused_before_sending_is_never_retried() -> None:
    with (
        make_client(dead_url(), sleep=never_sleep) as client,
        pytest.raises(WalrusRequestError, match="epochs"),
    ):
        client.store_bytes(b"x", epochs=99)


def test_chain_rpc_waits_per_its_policy_and_names_the_last_failure() -> None:
    waits: list[float] = []
    rpc = JsonRpc(f"{dead_url()}/?key=secret", RpcRetry(attempts=3), sleep=waits.append)
    with pytest.raises(RpcUnavailable, match=r"failed eth_chainId 3 times; last: ConnectError"):
        rpc.request("eth_chainId", [])
    assert waits == [0.5, 1.0]
    assert "secret" not in rpc.public_url
