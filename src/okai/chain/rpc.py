"""JSON-RPC over HTTP with retries for the failures public endpoints produce under load.

Retried (with exponential backoff, `okai.retry`): connection errors and timeouts, HTTP 429/502/503/504,
and JSON-RPC errors that mean "busy, try later" (-32005 limit exceeded; -32000 or -32603
saying too many requests, rate limit or timeout). Everything else is returned to the
caller at once. Messages name the endpoint without its query string, which may hold an
API key. Plain httpx, no web3: reads (`okai verify`) use it directly, and the web3
provider of `RegistryClient` sends through it, so both share one retry policy.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from okai.chain.errors import ChainError, RpcUnavailable
from okai.retry import Backoff, Sleep, call
from okai.tls import tls_context

TRANSIENT_HTTP_STATUS = frozenset({429, 502, 503, 504})
_BUSY = re.compile(
    r"too many requests|rate.?limit|limit exceeded|timed? ?out|timeout|try again|overloaded",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient RPC failure."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    request_timeout: float = 20.0

    @property
    def schedule(self) -> Backoff:
        """The waits between attempts: doubling from `backoff`, capped, without jitter."""
        return Backoff(self.attempts, self.backoff, self.max_backoff)


def redact_url(url: str) -> str:
    """The URL without query, fragment or credentials (API keys hide there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_busy_error(response: dict[str, Any]) -> bool:
    """True for a JSON-RPC error that means "overloaded, try again later"."""
    error = response.get("error")
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    message = str(error.get("message", ""))
    return code == -32005 or (code in (-32000, -32603) and bool(_BUSY.search(message)))


class _Transient(Exception):
    """A failure worth another attempt; its text is what the final error says came last."""


class JsonRpc:
    """One JSON-RPC endpoint, retried per `RetryPolicy`."""

    def __init__(self, url: str, policy: RetryPolicy, sleep: Sleep = time.sleep) -> None:
        self.url = url
        self.policy = policy
        self.public_url = redact_url(url)
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._http = httpx.Client(timeout=policy.request_timeout, verify=tls_context())

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """The endpoint's JSON-RPC response object (with `result` or `error`)."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        return self.send(method, body.encode())

    def send(self, method: str, body: bytes) -> dict[str, Any]:
        """POST an encoded request; retry what is transient, refuse what is not JSON-RPC."""

        def exhausted(error: Exception) -> Exception:
            return RpcUnavailable(
                f"{self.public_url} failed {method} {self.policy.attempts} times; last: {error}",
                hint="the endpoint may be down or rate-limiting; retry later or set OKAI_RPC_URL",
            )

        return call(
            lambda: self._once(method, body),
            self.policy.schedule,
            retryable=lambda error: isinstance(error, _Transient),
            sleep=self._sleep,
            exhausted=exhausted,
        )

    def _once(self, method: str, body: bytes) -> dict[str, Any]:
        """One POST: the response, `_Transient` for what a later attempt may not meet."""
        try:
            reply = self._http.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:  # refused, reset, timed out
            raise _Transient(type(exc).__name__) from exc
        if reply.status_code in TRANSIENT_HTTP_STATUS:
            raise _Transient(f"HTTP {reply.status_code}")
        if reply.status_code != 200:
            raise RpcUnavailable(
                f"{self.public_url} answered {method} with HTTP {reply.status_code}"
            )
        response = self._decode(method, reply.content)
        if is_busy_error(response):
            raise _Transient(str(response["error"].get("message", "busy"))[:200])
        return response

    def _decode(self, method: str, content: bytes) -> dict[str, Any]:
        try:
            response = json.loads(content)
        except ValueError:
            response = None
        if not isinstance(response, dict) or not ("result" in response or "error" in response):
            raise ChainError(f"{self.public_url} answered {method} with no JSON-RPC response")
        return response
