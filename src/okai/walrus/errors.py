"""Errors of the Walrus client, grouped by what the caller can do about them.

::

    OperationalError (okai.errors)
    └── WalrusError                  an endpoint failed or answered something we cannot use
        ├── WalrusUnreachable        no connection (refused, reset, DNS): transient
        ├── WalrusTimeout            no answer in time: transient
        │   └── WalrusStalled        no first byte in time, or bytes slower than the minimum
        ├── WalrusShortBody          the connection closed before the whole body: transient
        ├── ReadLimitExceeded        an answer larger than the caller allows
        ├── WalrusProtocolError      an answer we do not understand (bad JSON, wrong size)
        ├── WalrusStatusError        an error status; `status` and `reason` say which
        │   ├── BlobNotFound         404: unknown, expired or deleted blob or quilt patch
        │   ├── BlobTooLarge         403 from an aggregator's size cap, 413 from a publisher
        │   ├── BlobBlocked          451: the endpoint refuses this content
        │   ├── PublisherAuthError   401, or a JWT that is expired, reused or does not match
        │   └── WalrusUnavailable    503, 504, 429, 5xx that outlasted every retry
        └── StoreFailed              the publisher answered 200 but the store did not happen
    UsageError (okai.errors)
    └── WalrusRequestError           refused before sending: epochs, size, quilt identifiers
    IntegrityError (okai.errors)
    ├── BlobIdMismatch               recomputed Walrus blob ID differs from the one given
    └── AnswerRefused                every answer failed the caller's check of its bytes

Messages name the endpoint and the blob and never contain the publisher JWT.
"""

from __future__ import annotations

from okai.errors import IntegrityError, OperationalError, UsageError


class WalrusError(OperationalError):
    """A Walrus endpoint failed, or answered something okai cannot use."""


class WalrusUnreachable(WalrusError):
    """The endpoint could not be reached (connection refused or reset, name unknown)."""


class WalrusTimeout(WalrusError):
    """The endpoint did not answer in time."""


class WalrusStalled(WalrusTimeout):
    """The aggregator sent no first byte in time, or its bytes came too slowly."""


class WalrusShortBody(WalrusError):
    """The aggregator closed the connection before the end of the body it announced."""


class ReadLimitExceeded(WalrusError):
    """The answer is larger than the most the caller allows for it (`max_bytes`)."""


class WalrusProtocolError(WalrusError):
    """The answer was not what the Walrus HTTP API specifies (bad JSON, truncated body)."""


class WalrusStatusError(WalrusError):
    """An error status; `reason` is the ErrorInfo reason of the JSON envelope, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.url = url


class BlobNotFound(WalrusStatusError):
    """The blob (or quilt patch) is unknown, expired or deleted."""


class BlobTooLarge(WalrusStatusError):
    """An aggregator's size cap (403) or a publisher's body limit (413) refused the blob."""


class BlobBlocked(WalrusStatusError):
    """The endpoint blocks this content (451)."""


class PublisherAuthError(WalrusStatusError):
    """The publisher refused the JWT: missing, invalid, expired or already used."""


class WalrusUnavailable(WalrusStatusError):
    """A transient failure (503, 504, 429, 5xx) lasted through every retry."""


class StoreFailed(WalrusError):
    """The publisher answered 200 but reported that the blob was not stored."""


class WalrusRequestError(UsageError):
    """A request refused before sending it: it would fail on any Walrus publisher."""


class BlobIdMismatch(IntegrityError):
    """The Walrus blob ID recomputed from the bytes differs from the claimed one."""


class AnswerRefused(IntegrityError):
    """No aggregator served bytes the caller's check accepts; `data` is the last answer."""

    def __init__(self, what: str, wanted: str, problem: str, data: bytes) -> None:
        super().__init__(what, wanted, problem)
        self.data = data
