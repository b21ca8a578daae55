"""Aggregators as adversaries: lying, cutting short, stalling, crawling, flooding.

Two real local servers share one store; the one listed first misbehaves through its
fault switches. Reads must take only checked answers, fall over, demote the culprit for
the rest of the client's life, say what it did, and waste seconds, not minutes. Timings
are never asserted: request counts and events show what happened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import call_okai, run_okai
from okai.errors import ConfigError
from okai.walrus.aggregators import ReadEvent
from okai.walrus.client import WalrusClient
from okai.walrus.dataset import parse_ref, pull_dataset, push_dataset
from okai.walrus.errors import (
    AnswerRefused,
    ReadLimitExceeded,
    WalrusProtocolError,
    WalrusShortBody,
    WalrusStalled,
)
from okai.walrus.pacing import ReadPacing
from okai.walrus.server import WalrusServer
from walrus_helpers import MiB, local_server, make_client

# Fast enough for tests, slow enough for two loaded CPUs not to trip on honest servers.
PACING = ReadPacing(first_byte=3.0, hedge_after=0.3, min_throughput=64 * 1024, throughput_window=1)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[WalrusServer, WalrusServer]]:
    """(bad, good): two servers over one store; the bad one is listed first."""
    with local_server(tmp_path / "walrus") as bad, local_server(tmp_path / "walrus") as good:
        yield bad, good


def client_for(*urls: str, **options: object) -> WalrusClient:
    options.setdefault("read_pacing", PACING)
    return make_client(*urls, publisher=urls[-1], **options)


def kinds(client: WalrusClient, aggregator: str) -> list[str]:
    return [e.kind for e in client.book.events() if e.aggregator == aggregator]


def reads(server: WalrusServer) -> int:
    return server.faults.counts().get("GET blob", 0)


def test_a_lying_aggregator_is_fallen_over_from_reported_and_demoted(
    pair: tuple[WalrusServer, WalrusServer], tmp_path: Path
) -> None:
    bad, good = pair
    seen: list[ReadEvent] = []
    with client_for(bad.url, good.url) as client:
        client.book.on_event = seen.append
        stored = [client.store_bytes(os.urandom(50_000)) for _ in range(3)]
        bad.faults.set(corrupt=-1)
        dest = tmp_path / "first.bin"
        assert client.read_to_file(stored[0].blob_id, stored[0].sha256, dest) == stored[0].sha256
        for blob in stored[1:]:
            client.read_bytes(blob.blob_id, blob.sha256)
    assert kinds(client, bad.url) == ["failure", "demotion"]
    assert kinds(client, good.url) == ["fallback"]
    failure = client.book.events()[0]
    assert "wrong bytes from " + bad.url in failure.detail and "SHA-256" in failure.detail
    assert seen == client.book.events()
    # Demoted after its lie: the next reads go to the honest one first.
    assert reads(bad) == 1 and reads(good) == 3
    report = client.book.report()
    assert list(report["demoted"]) == [bad.url] and report["eventsLeftOut"] == 0


def test_a_stalling_aggregator_costs_one_hedge_then_is_passed_over(
    pair: tuple[WalrusServer, WalrusServer], tmp_path: Path
) -> None:
    bad, good = pair
    files = tmp_path / "data"
    files.mkdir()
    for index in range(4):
        (files / f"part-{index}.bin").write_bytes(os.urandom(300_000))
    with client_for(bad.url, good.url) as client:
        pushed = push_dataset(
            client, [files], name="parts", shard_size=100_000, journal_dir=tmp_path / "j"
        )
        bad.faults.set(stall=-1)
        pull_dataset(client, parse_ref(pushed.ref), tmp_path / "out", cache_dir=tmp_path / "c")
    assert pushed.manifest.totals.shards == 12
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == {
        p.name: p.read_bytes() for p in files.iterdir()
    }
    # The manifest read raced it and lost; demoted, it is not asked for the 12 shards.
    assert reads(bad) == 1
    assert reads(good) == 13
    assert kinds(client, bad.url) == ["hedge", "demotion"] or kinds(client, bad.url) == ["demotion"]
    assert [e.kind for e in client.book.events() if e.kind == "demotion"] == ["demotion"]
    assert "slow: no first byte" in client.book.report()["demoted"][bad.url]


def test_a_stalling_aggregator_alone_is_a_clear_stall_error(tmp_path: Path) -> None:
    with local_server(tmp_path / "walrus") as only, client_for(only.url) as client:
        stored = client.store_bytes(b"held back")
        only.faults.set(stall=-1)
        client.unreachable_hint = "start the local stack with `okai dev up`"
        with pytest.raises(WalrusStalled, match="stalled: no first byte in 3 s") as stalled:
            client.read_bytes(stored.blob_id, stored.sha256)
    # Given up once, not retried for every round: the wait is already spent.
    assert reads(only) == 1
    assert "cannot reach" not in str(stalled.value)
    assert kinds(client, only.url) == ["failure", "demotion"]


def test_a_crawling_aggregator_is_dropped_for_too_slow(
    pair: tuple[WalrusServer, WalrusServer],
) -> None:
    bad, good = pair
    # Hedged late: the crawl starts at once, so the throughput check must catch it.
    crawl = ReadPacing(
        first_byte=3, hedge_after=2.5, min_throughput=64 * 1024, throughput_window=0.5
    )
    with client_for(bad.url, good.url, read_pacing=crawl) as client:
        data = os.urandom(200_000)
        stored = client.store_bytes(data)
        bad.faults.set(trickle=-1, trickle_rate=8 * 1024)
        assert client.read_bytes(stored.blob_id, stored.sha256) == data
    failure = next(e for e in client.book.events() if e.kind == "failure")
    assert failure.aggregator == bad.url and "too slow" in failure.detail
    assert bad.url in client.book.report()["demoted"]


def test_a_short_body_is_named_as_such_and_fallen_over_from(
    pair: tuple[WalrusServer, WalrusServer],
) -> None:
    bad, good = pair
    with client_for(bad.url, good.url) as client:
        data = os.urandom(100_000)
        stored = client.store_bytes(data)
        bad.faults.set(truncate=-1)
        assert client.read_bytes(stored.blob_id, stored.sha256) == data
        failure = client.book.events()[0]
        assert failure.kind == "failure" and failure.detail.startswith("short body from")
        good.faults.set(truncate=-1)
        with pytest.raises(WalrusShortBody, match="short body") as cut:
            client.read_bytes(stored.blob_id, stored.sha256)
    assert cut.value.hint is None and "cannot reach" not in cut.value.message


def test_an_answer_of_the_wrong_size_is_not_taken(
    pair: tuple[WalrusServer, WalrusServer], tmp_path: Path
) -> None:
    bad, good = pair
    with client_for(bad.url, good.url) as client:
        stored = client.store_bytes(b"x" * 1000)
        dest = tmp_path / "x.bin"
        # The caller expects another size than the blob has: every answer is refused.
        with pytest.raises(WalrusProtocolError, match="wrong size") as refused:
            client.read_to_file(stored.blob_id, stored.sha256, dest, expected_size=999)
    assert refused.value.message.count("announced 1000 bytes") == 2
    assert not dest.exists()


def test_a_size_limit_stops_a_read_early(pair: tuple[WalrusServer, WalrusServer]) -> None:
    bad, good = pair
    with client_for(bad.url, good.url) as client:
        stored = client.store_bytes(os.urandom(2 * MiB))
        with pytest.raises(ReadLimitExceeded, match="too large") as flood:
            client.read_bytes(stored.blob_id, stored.sha256, max_bytes=64 * 1024)
        # Each aggregator announced more than allowed: abandoned before the body.
        assert flood.value.message.count("announced 2097152") == 2
        assert client.book.report()["demoted"] == {}


def test_an_acceptor_refusing_every_answer_hands_back_the_last(
    pair: tuple[WalrusServer, WalrusServer],
) -> None:
    bad, good = pair
    with client_for(bad.url, good.url) as client:
        stored = client.store_bytes(b'{"a": 1}')

        def only_b(data: bytes) -> str | None:
            return None if b'"b"' in data else "no b in it"

        with pytest.raises(AnswerRefused) as refused:
            client.read_bytes(stored.blob_id, None, verify_blob_id=False, accept=only_b)
        assert refused.value.data == b'{"a": 1}' and refused.value.actual == "no b in it"
        # An acceptor that likes the honest answer only: the lie is fallen over from.
        bad.faults.set(corrupt=-1)
        assert (
            client.read_bytes(
                stored.blob_id,
                None,
                verify_blob_id=False,
                accept=lambda data: None if data == b'{"a": 1}' else "not it",
            )
            == b'{"a": 1}'
        )


def test_pacing_comes_from_the_environment() -> None:
    pacing = ReadPacing.from_env(
        {"OKAI_WALRUS_FIRST_BYTE_TIMEOUT": "4", "OKAI_WALRUS_HEDGE_AFTER": "0"}
    )
    assert pacing == ReadPacing(first_byte=4, hedge_after=0)
    with pytest.raises(ConfigError, match="OKAI_WALRUS_MIN_THROUGHPUT"):
        ReadPacing.from_env({"OKAI_WALRUS_MIN_THROUGHPUT": "fast"})
    with pytest.raises(ConfigError):
        ReadPacing.from_env({"OKAI_WALRUS_FIRST_BYTE_TIMEOUT": "0"})


def test_data_pull_reports_the_fall_over_on_stderr_and_in_json(
    pair: tuple[WalrusServer, WalrusServer],
    tmp_path: Path,
    okai_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad, good = pair
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(250_000))
    with client_for(good.url) as client:
        pushed = push_dataset(
            client, [source], name="weights", shard_size=100_000, journal_dir=tmp_path / "j"
        )
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", f"{bad.url},{good.url}")
    monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", good.url)
    monkeypatch.setenv("OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO", "0")
    bad.faults.set(corrupt=-1)

    done = run_okai("--json", "data", "pull", pushed.ref, "--to", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["aggregators"]
    assert list(report["demoted"]) == [bad.url]
    # Reads run in parallel (and a loaded machine may hedge one), so only the order that
    # matters is held: the liar's failure, then its demotion; the honest one served.
    events = [(e["event"], e["aggregator"]) for e in report["events"]]
    assert events.index(("failure", bad.url)) < events.index(("demotion", bad.url))
    assert ("fallback", good.url) in events
    assert (tmp_path / "a" / "weights.bin").read_bytes() == source.read_bytes()

    # For people: the same, on stderr, as it happens (a fresh cache: the shards are read).
    monkeypatch.setenv("OKAI_HOME", str(tmp_path / "other-home"))
    human = call_okai("data", "pull", pushed.ref, "--to", str(tmp_path / "b"))
    assert human.returncode == 0, human.stderr
    assert f"walrus: {bad.url} demoted for the rest of this command" in human.stderr
    assert "wrong bytes from" in human.stderr and f"served by {good.url}" in human.stderr


def test_blob_get_alone_on_a_stalling_aggregator_says_stalled(
    tmp_path: Path, okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_server(tmp_path / "walrus") as only:
        with client_for(only.url) as client:
            stored = client.store_bytes(b"never sent")
        only.faults.set(stall=-1)
        monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", only.url)
        monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", only.url)
        monkeypatch.setenv("OKAI_WALRUS_FIRST_BYTE_TIMEOUT", "2")
        done = run_okai(
            "blob", "get", stored.blob_id, "--sha256", str(stored.sha256), "-o", "out.bin"
        )
    assert done.returncode == 1, done.stderr
    assert "stalled: no first byte in 2 s" in done.stderr
    assert "okai dev up" not in done.stderr and "cannot reach" not in done.stderr
