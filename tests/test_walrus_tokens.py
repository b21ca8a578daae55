"""Publisher tokens: a list used in order, a command for more, and never a token in a message;
then against the local server requiring JWTs: one token per request, whatever happens."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from okai.config import Secrets
from okai.errors import OperationalError, UsageError
from okai.walrus.dataset import push_dataset
from okai.walrus.errors import PublisherAuthError
from okai.walrus.server import make_token
from okai.walrus.tokens import PublisherTokens, TokenCommandFailed, TokensUsedUp
from walrus_helpers import local_server, make_client, minted_tokens, token_command

SECRET = "publisher-secret"


def token(jti: str) -> str:
    return make_token(SECRET, {"exp": int(time.time()) + 600, "jti": jti})


def test_nothing_set_means_no_tokens() -> None:
    assert PublisherTokens.parse(None) is None
    assert PublisherTokens.parse(" , ") is None
    assert PublisherTokens.from_secrets(Secrets()) is None


def test_listed_tokens_are_used_once_each_in_order() -> None:
    first, second = token("a"), token("b")
    tokens = PublisherTokens.parse(f" {first},\n{second} ")
    assert tokens is not None and tokens.listed == 2
    assert [tokens.take(), tokens.take()] == [first, second]
    with pytest.raises(TokensUsedUp) as caught:
        tokens.take()
    message = str(caught.value)
    assert "2 publisher token(s) in OKAI_WALRUS_JWT are used up" in message
    assert "OKAI_WALRUS_JWT_COMMAND" in (caught.value.hint or "")
    assert first not in message and second not in message


def test_something_that_is_not_a_jwt_is_refused_without_showing_it() -> None:
    with pytest.raises(UsageError) as caught:
        PublisherTokens.parse("hunter2-my-password")
    assert "not a JWT" in str(caught.value) and "hunter2" not in str(caught.value)


def test_the_command_makes_a_token_once_the_list_is_used_up(tmp_path: Path) -> None:
    listed = token("listed")
    tokens = PublisherTokens.parse(listed, token_command(tmp_path, SECRET))
    assert tokens is not None
    assert tokens.take() == listed and len(minted_tokens(tmp_path)) == 0
    fresh = {tokens.take(), tokens.take()}
    assert len(fresh) == 2 and listed not in fresh and len(minted_tokens(tmp_path)) == 2


def test_a_handover_gives_the_listed_tokens_topped_up_by_the_command(tmp_path: Path) -> None:
    listed = token("listed")
    tokens = PublisherTokens.parse(listed, token_command(tmp_path, SECRET))
    assert tokens is not None
    handed = tokens.handover(3).split(",")
    assert handed[0] == listed and len(set(handed)) == 3 and len(minted_tokens(tmp_path)) == 2
    assert tokens.take() == listed, "the listed ones stay usable here"
    only_listed = PublisherTokens.parse(f"{token('x')} {token('y')}")
    assert only_listed is not None and len(only_listed.handover(6).split(",")) == 2


@pytest.mark.parametrize(
    ("script", "error", "words"),
    [
        ("print('secret-ish output'); raise SystemExit(3)", TokenCommandFailed, "exit status 3"),
        ("print('')", UsageError, "is not a JWT"),
        ("print('not a token at all')", UsageError, "is not a JWT"),
    ],
    ids=["fails", "prints-nothing", "prints-garbage"],
)
def test_a_failing_token_command_is_a_clear_error_that_shows_no_output(
    script: str, error: type[Exception], words: str
) -> None:
    command = shlex.join([sys.executable, "-c", script])
    tokens = PublisherTokens.parse(None, command)
    assert tokens is not None
    with pytest.raises(error) as caught:
        tokens.take()
    assert words in str(caught.value) and "OKAI_WALRUS_JWT_COMMAND" in str(caught.value)
    assert "secret-ish" not in str(caught.value) and "not a token" not in str(caught.value)


def test_a_missing_token_command_is_a_usage_error() -> None:
    tokens = PublisherTokens.parse(None, "/nonexistent/okai-token-issuer --fresh")
    assert tokens is not None
    with pytest.raises(UsageError, match="no such command"):
        tokens.take()


def test_a_hanging_token_command_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("okai.walrus.tokens.COMMAND_TIMEOUT_S", 0.5)
    tokens = PublisherTokens.parse(None, shlex.join(["sleep", "30"]))
    assert tokens is not None
    with pytest.raises(OperationalError, match="printed no token within"):
        tokens.take()


# --- against a publisher that requires tokens -------------------------------------------------


def test_each_store_spends_one_listed_token(tmp_path: Path) -> None:
    listed = [token(f"t{i}") for i in range(3)]
    with (
        local_server(tmp_path / "walrus", jwt_secret=SECRET) as server,
        make_client(server.url, tokens=PublisherTokens(listed)) as client,
    ):
        for i in range(3):
            client.store_bytes(f"blob {i}".encode())
        with pytest.raises(TokensUsedUp):
            client.store_bytes(b"one too many")
        assert server.faults.counts()["PUT blobs"] == 3, "nothing sent without a token"


def test_a_retried_store_takes_a_fresh_token(tmp_path: Path) -> None:
    with (
        local_server(tmp_path / "walrus", jwt_secret=SECRET) as server,
        make_client(server.url, tokens=PublisherTokens([token("a"), token("b")])) as client,
    ):
        server.faults.set(fail=1, fail_scope="store")
        assert client.store_bytes(b"after a 503").size == 11
        assert client._tokens is not None and client._tokens.listed == 0


def test_listed_tokens_another_process_used_are_skipped(tmp_path: Path) -> None:
    listed = [token("used-1"), token("used-2"), token("fresh")]
    with local_server(tmp_path / "walrus", jwt_secret=SECRET) as server:
        with make_client(server.url, tokens=PublisherTokens(listed[:2])) as node:
            node.store_bytes(b"model")
            node.store_bytes(b"receipt")
        with make_client(server.url, tokens=PublisherTokens(listed)) as here:
            assert here.store_bytes(b"attestation").size == 11
        with (
            make_client(server.url, tokens=PublisherTokens(listed[:1])) as late,
            pytest.raises(PublisherAuthError) as caught,
        ):
            late.store_bytes(b"nothing fresh left")
    assert caught.value.reason == "TOKEN_ALREADY_USED"
    assert listed[0] not in str(caught.value)


def test_a_dataset_push_runs_the_token_command_once_per_blob(tmp_path: Path) -> None:
    files = tmp_path / "data"
    files.mkdir()
    for i in range(4):
        (files / f"part-{i}.bin").write_bytes(bytes([i]) * 3000)
    tokens = PublisherTokens.parse(None, token_command(tmp_path, SECRET))
    with (
        local_server(tmp_path / "walrus", jwt_secret=SECRET) as server,
        make_client(server.url, tokens=tokens) as client,
    ):
        pushed = push_dataset(
            client, [files], name="tokens", journal_dir=tmp_path / "journal", shard_size=4096
        )
        puts = server.faults.counts()["PUT blobs"]
    assert len(pushed.manifest.shards) >= 2
    assert (
        len(minted_tokens(tmp_path)) == puts == len(pushed.manifest.shards) + 1
    )  # the shards + manifest
