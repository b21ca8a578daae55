"""Errors of the training part, under the one okai hierarchy::

    OkaiError
    ├── UsageError
    │   ├── DocumentError          a job file or data file is malformed (names file and field)
    │   └── EntrypointError        user training code cannot be loaded or misbehaves
    ├── OperationalError
    │   ├── BlobUnavailable        a blob the job needs cannot be read from its source
    │   └── TrainingFailed         the worker processes failed (after torchrun's restarts)
    └── VerificationError
        └── IntegrityError         a shard, file, manifest or code blob failed its SHA-256

Workers record the error that stopped them in the run directory; the launcher
reads it back and raises the same kind, so `okai train` exits with the code of
the real cause (2, 3 or 1), not a generic "child failed".
"""

from __future__ import annotations

from pathlib import Path

from okai.errors import OperationalError, UsageError


class EntrypointError(UsageError):
    """The user's entry point cannot be imported, lacks its function, or returned no model."""


class TrainingFailed(OperationalError):
    """The training processes failed and torchrun gave up restarting them."""

    def __init__(self, message: str, *, logs: Path | None = None) -> None:
        hint = f"worker logs are in {logs}" if logs is not None else None
        super().__init__(message, hint=hint)
        self.logs = logs


class BlobUnavailable(OperationalError):
    """A blob the job needs cannot be read from its source."""
