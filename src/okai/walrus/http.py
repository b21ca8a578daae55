"""Plain requests to a Walrus endpoint: httpx failures as okai errors, bounded bodies, JSON.

The one place where httpx exceptions become okai ones; which error an
error status is comes from `okai.walrus.retry.status_error`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from okai.manifest import BLOB_ID_PATTERN
from okai.walrus.errors import (
    WalrusProtocolError,
    WalrusRequestError,
    WalrusShortBody,
    WalrusStalled,
    WalrusTimeout,
    WalrusUnreachable,
)
from okai.walrus.retry import status_error

MiB = 1 << 20
ERROR_BODY_LIMIT = 64 * 1024
"""The most of an error answer kept (its message goes into the error)."""
JSON_BODY_LIMIT = 64 * MiB
_PATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def checked_blob_id(blob_id: str) -> str:
    """`blob_id`, refused unless it is one (it goes into a URL path)."""
    if not isinstance(blob_id, str) or not re.fullmatch(BLOB_ID_PATTERN, blob_id):
        raise WalrusRequestError(
            f"not a Walrus blob ID: {str(blob_id)[:80]!r} (43 URL-safe base64 characters)"
        )
    return blob_id


def checked_patch_id(patch_id: str) -> str:
    """`patch_id`, refused unless it is a quilt patch ID (it goes into a URL path)."""
    if not _PATCH_ID.fullmatch(patch_id):
        raise WalrusRequestError(f"not a quilt patch ID: {patch_id[:80]!r}")
    return patch_id


@contextmanager
def as_walrus_errors(url: str, hint: str | None = None, *, reading: bool = False) -> Iterator[None]:
    """Turn httpx exceptions into okai ones.

    `hint` (how to start the local stack) goes only with connections refused:
    an endpoint that answered and then hung up or went quiet is up.
    """
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise WalrusUnreachable(f"cannot reach {url}: {exc}", hint=hint) from exc
    except httpx.TimeoutException as exc:
        if reading:
            raise WalrusStalled(f"{url} stalled: nothing received in time ({exc})") from exc
        raise WalrusTimeout(f"{url} did not answer in time") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if reading:
            raise WalrusShortBody(f"short body from {url}: {exc}") from exc
        # A publisher that hung up mid-store (restarted, killed) is retried like a reset
        # connection, without the hint: it was up.
        raise WalrusUnreachable(f"{url} hung up before answering: {exc}") from exc
    except httpx.TransportError as exc:
        raise WalrusUnreachable(f"cannot reach {url}: {exc}", hint=hint) from exc


def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body of `response`, refused as soon as it passes `limit` bytes."""
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > limit:
            raise WalrusProtocolError(f"{response.request.url} sent an answer over {limit} bytes")
    return bytes(data)


def json_answer(http: httpx.Client, request: httpx.Request, hint: str | None) -> Any:
    """Send a request; the JSON of a 200 answer, an okai error for anything else."""
    url = str(request.url.copy_with(query=None))
    with as_walrus_errors(url, hint):
        response = http.send(request, stream=True)
        try:
            limit = ERROR_BODY_LIMIT if response.status_code != 200 else JSON_BODY_LIMIT
            raw = read_limited(response, limit)
        finally:
            response.close()
    if response.status_code != 200:
        raise status_error(response.status_code, raw, url)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WalrusProtocolError(f"{url} answered 200 with a body that is not JSON") from exc
