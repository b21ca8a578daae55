"""Helpers shared by the Fluence tests: a checked fake, a client for it, a test SSH key."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from fakes.fluence_fake import FluenceFake, Timing
from okai.compute.fluence import FluenceClient, FluenceConfig, PollConfig

FAST_POLL = PollConfig(interval_s=0.01, vm_launch_s=10, resource_s=10, teardown_s=10)


def ssh_public_key(seed: str = "operator", comment: str = "dev@laptop") -> str:
    """A well-formed ssh-ed25519 public key line (32 bytes derived from `seed`)."""
    kind = b"ssh-ed25519"
    point = hashlib.sha256(seed.encode()).digest()
    blob = len(kind).to_bytes(4, "big") + kind + len(point).to_bytes(4, "big") + point
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


@contextmanager
def checked_fake(**kwargs: Any) -> Iterator[FluenceFake]:
    """A running fake; on exit, fails the test if any request or response broke the spec."""
    with FluenceFake(**kwargs) as fake:
        yield fake
    assert fake.violations == [], "the fake saw traffic that breaks the spec:\n" + "\n".join(
        fake.violations
    )


def client_for(fake: FluenceFake, key: str | None = None, **config: Any) -> FluenceClient:
    settings = {"base_url": fake.url, "retries": 2, "backoff_s": 0.0, "timeout_s": 10.0, **config}
    return FluenceClient(SecretStr(key or fake.api_key), FluenceConfig(**settings))


__all__ = ["FAST_POLL", "FluenceFake", "Timing", "checked_fake", "client_for", "ssh_public_key"]
