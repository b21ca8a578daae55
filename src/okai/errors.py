"""The one error hierarchy of okai.

Errors are grouped by what the user can do about them, and each group maps to
one exit code of the CLI::

    OkaiError
    ├── UsageError            exit 2  the input is wrong: fix the command or the file
    │   ├── ConfigError               configuration or secrets are missing or invalid
    │   ├── DocumentError             a manifest, job or JSON document is malformed
    │   └── ConfigFileError           a configuration file is malformed: both of the above
    ├── OperationalError      exit 1  something outside failed: retry or fix the environment
    └── VerificationError     exit 3  a check of provenance or integrity failed
        └── IntegrityError            bytes do not match the digest we trust

Packages that talk to the network (walrus, chain, compute) subclass these with
errors of their own; nothing outside this module defines a new root.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

from okai.inert import inert


class ExitCode(IntEnum):
    """Exit codes of the `okai` command (documented in docs/exit-codes.md)."""

    OK = 0
    OPERATIONAL_FAILURE = 1
    USAGE_ERROR = 2
    VERIFICATION_FAILED = 3
    NOT_PINNED = 4
    """`okai verify`: every check passed, but no trusted account was given."""
    INTERRUPTED = 130


class OkaiError(Exception):
    """Base of every error okai raises on purpose."""

    exit_code: ExitCode = ExitCode.OPERATIONAL_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\nhint: {self.hint}"


class UsageError(OkaiError):
    """The input is wrong; the user can fix the command line or the file."""

    exit_code = ExitCode.USAGE_ERROR


class ConfigError(UsageError):
    """Configuration, network selection or secrets are missing or invalid."""


class DocumentError(UsageError):
    """A JSON or TOML document (manifest, job, receipt) is malformed.

    `source` names the file (or blob) and `field` the offending field as a
    dotted path, so the message points at exactly what to fix. A field path is made of a
    document's keys, which anyone may have written: it is shown inert. `okai.documents`
    reads documents and words their problems.
    """

    def __init__(
        self, source: str | Path, field: str | None, problem: str, *, hint: str | None = None
    ) -> None:
        self.source = str(source)
        self.field = None if field is None else inert(field)
        self.problem = problem
        where = f"{self.source}: field '{self.field}'" if field else self.source
        super().__init__(f"{where}: {problem}", hint=hint)


class ConfigFileError(DocumentError, ConfigError):
    """A configuration or state file (okai.toml, .okai/*.json, a keystore) is malformed."""


class OperationalError(OkaiError):
    """Something outside okai failed: an endpoint, a process, the disk."""


class VerificationError(OkaiError):
    """A provenance or integrity check failed."""

    exit_code = ExitCode.VERIFICATION_FAILED


class IntegrityError(VerificationError):
    """Bytes did not hash to the digest we trust; nothing unverified is kept."""

    source: str | None = None
    """Who served the bytes (an aggregator URL), when a reader knows it."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"integrity check failed for {what}: expected {expected}, got {actual}")
