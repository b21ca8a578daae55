"""Errors of the Fluence provider, grouped by what the user can do about them::

    FluenceError                      (mixin: method, path, status, code of the failed call)
    ├── FluenceAuthError       ConfigError       401/403: the API key is missing, wrong or lacks a scope
    ├── FluenceRequestError    UsageError        400/422: the server refused the request as invalid
    │   └── FluenceNotFound                      404: unknown id, or a configuration not sold there
    ├── FluenceConflict        OperationalError  406/409: the resource is not in a state that allows it
    ├── FluenceUnavailable     OperationalError  5xx, 429, network failure, unreadable answer
    ├── InsufficientBalance    OperationalError  the account cannot pay for the cluster: top up
    ├── ResourceFailed         OperationalError  a public IP, disk or group ended `failed`
    │   └── VmFailed                             a VM ended `failed` (bad image URL or user data)
    └── FluenceTimeout         OperationalError  a resource did not reach its status in time

Plus, raised by the pre-flight, before anything is created (all UsageError, exit 2):
`CostLimitExceeded`, `NoOfferError`, `BalanceTooLow`, `MissingScopes`.
Messages carry the server's text (its `error` field) but never the API key.
"""

from __future__ import annotations

from decimal import Decimal

from okai.errors import ConfigError, OkaiError, OperationalError, UsageError


class FluenceError(OkaiError):
    """A Fluence API call failed; says which call and how the server answered."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.method = method
        self.path = path
        self.status = status
        self.code = code


class FluenceAuthError(FluenceError, ConfigError):
    """The API key is missing, invalid, or lacks the scope the call needs (401/403)."""


class FluenceRequestError(FluenceError, UsageError):
    """The server refused the request as invalid (400 bad_request, 422 unprocessable_entity)."""


class FluenceNotFound(FluenceRequestError):
    """404: an unknown id, or a configuration that is not priced in that cluster."""


class FluenceConflict(FluenceError, OperationalError):
    """406/409: the resource's current state does not allow the action; re-read it."""


class FluenceUnavailable(FluenceError, OperationalError):
    """5xx, 429, a network failure or an unreadable answer: the outcome is unknown."""

    retry_after: float | None = None
    """Seconds the server asked us to wait (`Retry-After`), if it said."""


class InsufficientBalance(FluenceError, OperationalError):
    """The account balance cannot run the cluster (Fluence wants 6 hours of all resources)."""


class ResourceFailed(FluenceError, OperationalError):
    """A resource ended `failed` (or another dead status) instead of becoming usable."""


class VmFailed(ResourceFailed):
    """A VM ended in `failed` (or another dead status) instead of `launched`."""


class FluenceTimeout(FluenceError, OperationalError):
    """A resource did not reach the awaited status before the deadline."""


class CostLimitExceeded(UsageError):
    """The estimated cost is above the `max_usd` limit; nothing was created."""

    def __init__(self, estimate: Decimal, limit: Decimal, hours: float) -> None:
        self.estimate = estimate
        self.limit = limit
        super().__init__(
            f"the estimated cost of {estimate:.2f} USD for {hours:g} h is above the limit of "
            f"{limit:.2f} USD; nothing was created",
            hint="raise --max-usd, shorten the duration, or ask for fewer or smaller nodes",
        )


class NoOfferError(UsageError):
    """No cluster sells what the requirements ask for."""


class BalanceTooLow(UsageError):
    """The balance cannot start the cluster (Fluence's 6-hour rule); nothing was created."""


class MissingScopes(FluenceAuthError):
    """The API key lacks scopes `up` or `down` need (a ConfigError: exit 2)."""
