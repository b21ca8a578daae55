"""JSON-RPC over HTTP with retries for the failures public endpoints produce under load.

Retried (with exponential backoff): connection errors and timeouts, HTTP 429/502/503/504,
and JSON-RPC errors that mean "busy, try later" (-32005 limit exceeded; -32000 or -32603
saying too many requests, rate limit or timeout). Everything else is returned to web3 at
once. Messages name the endpoint without its query string, which may hold an API key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from web3 import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from okai.chain.errors import RpcUnavailable

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

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * 2**attempt))


def redact_url(url: str) -> str:
    """The URL without query, fragment or credentials (API keys hide there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_busy_error(response: RPCResponse) -> bool:
    """True for a JSON-RPC error that means "overloaded, try again later"."""
    error = response.get("error")
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    message = str(error.get("message", ""))
    return code == -32005 or (code in (-32000, -32603) and bool(_BUSY.search(message)))


class RetryingHTTPProvider(HTTPProvider):
    """An HTTPProvider that retries transient failures itself (web3's own retry is off)."""

    def __init__(
        self,
        url: str,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            url,
            request_kwargs={"timeout": policy.request_timeout},
            exception_retry_configuration=None,
        )
        self.policy = policy
        self._sleep = sleep
        self.public_url = redact_url(url)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        last = "no attempt made"
        for attempt in range(self.policy.attempts):
            if attempt:
                self._sleep(self.policy.delay(attempt - 1))
            try:
                response = super().make_request(method, params)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}"
                continue
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status not in TRANSIENT_HTTP_STATUS:
                    raise RpcUnavailable(
                        f"{self.public_url} answered {method} with HTTP {status}"
                    ) from None
                last = f"HTTP {status}"
                continue
            if is_busy_error(response):
                last = str(response.get("error", {}).get("message", "busy"))[:200]
                continue
            return response
        raise RpcUnavailable(
            f"{self.public_url} failed {method} {self.policy.attempts} times; last: {last}",
            hint="the endpoint may be down or rate-limiting; retry later or set OKAI_RPC_URL",
        )
