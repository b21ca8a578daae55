"""A cluster whose publisher wants a token per store: `okai cluster up` hands the nodes
tokens, rank 0's node stores the outputs with them, and no token lands in a file or a log."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cluster_helpers import Stack, digits_stack
from conftest import run_okai
from okai.compute.cluster import NODE_TOKENS
from walrus_helpers import minted_tokens, token_command

pytestmark = pytest.mark.slow

SECRET = "cluster-publisher-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with digits_stack(tmp_path_factory.mktemp("tokens"), jwt_secret=SECRET) as ready:
        yield ready


def test_nodes_store_the_outputs_with_tokens_handed_over_by_up(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = stack.home / "up-tokens"
    issuer.mkdir()
    monkeypatch.setenv("OKAI_WALRUS_JWT_COMMAND", token_command(issuer, SECRET))
    done = run_okai(
        "--json", "cluster", "up", str(stack.job_file("tokens")), "--name", "tokens",
        timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    # Local nodes do not inherit this machine's secrets: the store worked with the handed-over
    # tokens, or the outputs would have come over the channel instead.
    assert outcome["fetchedFrom"] == "walrus"
    tokens = minted_tokens(issuer)
    assert len(tokens) == NODE_TOKENS, "made here, once, for the nodes"

    everything = [done.stdout, done.stderr]
    for root in (stack.home / ".okai", stack.home / "runs"):
        everything += [
            p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
        ]
    leaked = [t for t in tokens if any(t in text for text in everything)]
    assert leaked == [], "a token was written to a file or printed"
    run_okai("cluster", "down", "tokens", check=True)


def test_a_node_without_tokens_keeps_its_outputs_for_the_channel(stack: Stack) -> None:
    done = run_okai(
        "--json", "cluster", "up", str(stack.job_file("untokened")), "--name", "untokened",
        timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["fetchedFrom"] == "channel"
    status = json.loads(run_okai("--json", "cluster", "status", "untokened", check=True).stdout)
    errors = [
        n["agent"]["outputs"]["publishError"] for n in status["nodes"] if n["agent"]["hostsRank0"]
    ]
    assert errors and "authorization" in errors[0].lower()
    run_okai("cluster", "down", "untokened", check=True)
