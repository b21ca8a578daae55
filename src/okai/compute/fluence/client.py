"""The HTTP client of the Fluence CPU Cloud API (spec 0.10.0).

One place talks HTTP: it sets the auth headers, maps every non-2xx answer to a
typed error from the answer's `code` field (falling back to the HTTP status),
retries only what is safe to retry, and walks paginated lists. It never logs or
raises anything that contains the API key.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from okai.compute.fluence.errors import (
    FluenceAuthError,
    FluenceConflict,
    FluenceError,
    FluenceNotFound,
    FluenceRequestError,
    FluenceUnavailable,
    InsufficientBalance,
)
from okai.config import Settings
from okai.errors import ConfigError
from okai.retry import Backoff, Sleep, call
from okai.tls import tls_context

log = logging.getLogger("okai.compute.fluence")

DEFAULT_BASE_URL = "https://api.fluence.dev"
API_KEY_HINT = "create a key in the Fluence Console (Settings → API Keys) and export it as OKAI_FLUENCE_API_KEY"
MAX_WAIT_S = 30.0
"""The longest wait between attempts, Retry-After included."""
MAX_PAGES = 1000
"""Bound on list walks: a server that never stops paging is a server bug."""

Params = Sequence[tuple[str, str]]


def indexed(name: str, values: Iterable[str]) -> list[tuple[str, str]]:
    """An array query parameter in the bracket form the spec documents: `name[0]=a&name[1]=b`."""
    return [(f"{name}[{i}]", value) for i, value in enumerate(values)]


def repeated(name: str, values: Iterable[str]) -> list[tuple[str, str]]:
    """An array query parameter repeated: `ids=a&ids=b` (the form `ids` accepts)."""
    return [(name, value) for value in values]


@dataclass(frozen=True, kw_only=True)
class FluenceConfig:
    """Where the API is and how patient to be with it."""

    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 60.0
    """HTTP timeout of one call (the official Terraform provider uses 60 s)."""
    retries: int = 3
    """Extra attempts for calls that are safe to repeat (reads, deletes, terminate)."""
    backoff_s: float = 0.5
    """First retry delay; doubles on each attempt."""
    per_page: int = 100

    @property
    def schedule(self) -> Backoff:
        """The waits between attempts: doubling from `backoff_s`, a server's Retry-After
        instead where it gave one, none over 30 s."""
        return Backoff(1 + max(0, self.retries), self.backoff_s, MAX_WAIT_S)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> FluenceConfig:
        """The defaults, with `OKAI_FLUENCE_URL` overriding the base URL."""
        env = dict(os.environ if env is None else env)
        url = env.get("OKAI_FLUENCE_URL")
        return cls(base_url=url.rstrip("/")) if url else cls()


REDACTED = "<redacted>"
SECRET_URL_FIELDS = frozenset({"osImage"})
"""Body fields holding a URL whose query may be a signature (a presigned image URL)."""


def redact_url(url: str) -> str:
    """`url` as okai prints and stores it: a query string (a presigned URL's signature) hidden."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=REDACTED, fragment=""))


def _shown(value: Any) -> Any:
    """A request body as printed: URL fields redacted."""
    if isinstance(value, dict):
        return {
            key: redact_url(item)
            if key in SECRET_URL_FIELDS and isinstance(item, str)
            else _shown(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


@dataclass(frozen=True)
class PlannedRequest:
    """One API request as it will be (or was) sent; credentials are never part of it.

    `body` is what is sent; `to_json` and `render` (what is printed) redact
    the query of URLs that may carry a signature.
    """

    method: str
    path: str
    body: Any = None
    params: tuple[tuple[str, str], ...] = field(default=())
    purpose: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.params:
            data["params"] = [list(pair) for pair in self.params]
        if self.body is not None:
            data["body"] = _shown(self.body)
        if self.purpose:
            data["purpose"] = self.purpose
        return data

    def render(self, base_url: str = DEFAULT_BASE_URL) -> str:
        """The request as text: line, the (redacted) auth headers, the JSON body."""
        query = "&".join(f"{key}={value}" for key, value in self.params)
        lines = [f"{self.method} {base_url}{self.path}{'?' + query if query else ''}"]
        lines.append("X-API-KEY: <redacted>")
        lines.append("Authorization: X-API-KEY <redacted>")
        if self.body is not None:
            lines.append("Content-Type: application/json")
            lines.append("")
            lines.append(json.dumps(_shown(self.body), indent=2, ensure_ascii=False))
        return "\n".join(lines)


class FluenceClient:
    """A Fluence API client; a context manager that closes its connection pool.

    The API key is sent as `X-API-KEY: <key>` and also as
    `Authorization: X-API-KEY <key>` (the spec declares the first; its own
    examples and the official provider send the second too).
    """

    def __init__(
        self,
        api_key: SecretStr,
        config: FluenceConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not api_key.get_secret_value().strip():
            raise ConfigError("the Fluence API key is empty", hint=API_KEY_HINT)
        self.config = config or FluenceConfig()
        self._key = api_key
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            transport=transport,
            verify=tls_context(),
            headers={"Accept": "application/json", "User-Agent": "okai"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, config: FluenceConfig | None = None) -> Self:
        """A client for the API key of `settings` (OKAI_FLUENCE_API_KEY)."""
        key = settings.secrets.fluence_api_key
        if key is None:
            raise ConfigError("OKAI_FLUENCE_API_KEY is not set", hint=API_KEY_HINT)
        return cls(key, config or FluenceConfig.from_env())

    def __repr__(self) -> str:
        return f"FluenceClient(base_url={self.config.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- verbs -----------------------------------------------------------------------------

    def get(self, path: str, params: Params = ()) -> Any:
        return self.request("GET", path, params=params, retry=True)

    def post(self, path: str, body: Any = None, *, retry: bool = False) -> Any:
        """POST; `retry` only for actions that converge (terminate), never for creates."""
        return self.request("POST", path, body=body, retry=retry)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body, retry=False)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path, retry=True)

    def send(self, planned: PlannedRequest, *, retry: bool = False) -> Any:
        """Send a request built in advance (so a dry run shows exactly what is sent)."""
        return self.request(
            planned.method, planned.path, params=planned.params, body=planned.body, retry=retry
        )

    def paginate(self, path: str, params: Params = ()) -> list[dict[str, Any]]:
        """Every item of a paginated list, deduplicated by `id`.

        Whether pages count from 0 or 1 is not documented: the first page is
        asked for without a number and the next ones follow its `currentPage`;
        the walk also stops on an empty page or one that adds no new ids.
        """
        items: list[dict[str, Any]] = []
        seen: set[Any] = set()
        page: int | None = None
        first: int | None = None
        for _ in range(MAX_PAGES):
            query = [*params, ("perPage", str(self.config.per_page))]
            if page is not None:
                query.append(("page", str(page)))
            payload = self.get(path, query)
            batch = item_list(payload, path)
            fresh = [item for item in batch if item.get("id") not in seen]
            seen.update(item.get("id") for item in fresh)
            items.extend(fresh)
            info = payload.get("pagination") if isinstance(payload, dict) else None
            if not fresh or not isinstance(info, dict):
                return items
            try:
                current, total = int(info["currentPage"]), int(info["totalPages"])
            except (KeyError, TypeError, ValueError):
                return items
            first = current if first is None else first
            if current - first + 1 >= total:
                return items
            page = current + 1
        raise FluenceUnavailable(f"GET {path} returned more than {MAX_PAGES} pages", path=path)

    # --- the one place that does HTTP ------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        body: Any = None,
        retry: bool = False,
    ) -> Any:
        """Send one call; retry (with backoff) only if `retry` or the server rate-limited us."""

        def retryable(error: Exception) -> bool:
            if not isinstance(error, FluenceUnavailable) or not (retry or error.status == 429):
                return False
            log.debug("%s %s failed (%s)", method, path, error.code)
            return True

        return call(
            lambda: self._once(method, path, params, body),
            self.config.schedule,
            retryable=retryable,
            sleep=self._sleep,
            server_wait=_asked_wait,
        )

    def _headers(self, has_body: bool) -> dict[str, str]:
        key = self._key.get_secret_value()
        headers = {"X-API-KEY": key, "Authorization": f"X-API-KEY {key}"}
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _once(self, method: str, path: str, params: Params, body: Any) -> Any:
        content = None if body is None else json.dumps(body).encode("utf-8")
        try:
            response = self._http.request(
                method,
                path,
                params=list(params),
                content=content,
                headers=self._headers(content is not None),
            )
        except httpx.TimeoutException as exc:
            raise FluenceUnavailable(
                f"Fluence {method} {path}: no answer within {self.config.timeout_s:g} s",
                method=method,
                path=path,
                hint="check your connection; a create may still have happened: list before retrying",
            ) from exc
        except httpx.TransportError as exc:
            raise FluenceUnavailable(
                f"cannot reach {self.config.base_url} for {method} {path}: "
                f"{self._scrub(str(exc)) or type(exc).__name__}",
                method=method,
                path=path,
            ) from exc
        log.debug("%s %s -> %d", method, path, response.status_code)
        if response.is_success:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise FluenceUnavailable(
                    f"Fluence {method} {path} answered {response.status_code} with a body that "
                    "is not JSON",
                    method=method,
                    path=path,
                    status=response.status_code,
                ) from exc
        raise self._error(method, path, response)

    def leaks_key(self, text: str) -> bool:
        """Whether `text` contains the API key (to refuse sending it anywhere else)."""
        key = self._key.get_secret_value()
        return bool(key) and key in text

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that came from elsewhere (server messages, exceptions)."""
        key = self._key.get_secret_value()
        return text.replace(key, "<redacted>") if key else text

    def _error(self, method: str, path: str, response: httpx.Response) -> FluenceError:
        status = response.status_code
        code: str | None = None
        text = ""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            code = payload.get("code") if isinstance(payload.get("code"), str) else None
            text = str(payload.get("error") or payload.get("message") or "")
        if not text:
            text = response.reason_phrase or "no message"
        text = self._scrub(text)[:500]
        where = f"Fluence {method} {path}"
        said = f"{status} {code or 'error'}: {text}"
        common: dict[str, Any] = {"method": method, "path": path, "status": status, "code": code}

        if code == "insufficient_balance":
            return InsufficientBalance(
                f"{where}: the account balance is too low ({said})",
                hint="Fluence only creates resources that the balance can run for 6 hours; "
                "top up in the Fluence Console (Billing) or ask for fewer or smaller nodes",
                **common,
            )
        if code == "unauthorized" or status == 401:
            return FluenceAuthError(
                f"Fluence rejected the API key ({said})", hint=API_KEY_HINT, **common
            )
        if code == "forbidden" or status == 403:
            return FluenceAuthError(
                f"Fluence refused {method} {path} ({said}): the API key is unknown or lacks "
                "the permission",
                hint="set OKAI_FLUENCE_API_KEY to a full-access key from the Fluence Console "
                "(Settings → API Keys); docs/fluence.md lists the scopes okai needs",
                **common,
            )
        if code == "not_found" or status == 404:
            return FluenceNotFound(f"{where}: not found ({said})", **common)
        if code in ("bad_request", "unprocessable_entity") or status in (400, 422):
            return FluenceRequestError(f"{where} was refused ({said})", **common)
        if code in ("conflict", "not_acceptable") or status in (406, 409):
            return FluenceConflict(f"{where}: not allowed in the current state ({said})", **common)
        error = FluenceUnavailable(
            f"{where} failed ({said})",
            hint="Fluence may be in maintenance: see GET /v1/service/status"
            if status == 503 or code == "service_unavailable"
            else None,
            **common,
        )
        error.retry_after = _retry_after(response)
        return error


def _asked_wait(error: Exception) -> float | None:
    """The wait the server asked for (Retry-After); none, or 0: the backoff's own."""
    return (error.retry_after or None) if isinstance(error, FluenceUnavailable) else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def item_list(payload: Any, path: str) -> list[dict[str, Any]]:
    """The items of a list answer: `{items: [...]}` per the spec, or a bare array.

    The official provider decodes several catalogues as bare arrays, so both
    shapes are accepted.
    """
    items = payload.get("items") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise FluenceUnavailable(f"GET {path} answered with an unexpected shape", path=path)
    return items
