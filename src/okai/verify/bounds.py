"""How much `okai verify` reads, and for how long: bounds a hostile record cannot lift.

A record names blobs; their size is whatever the record's author chose. Attestations and
manifests are read into memory up to the limits in `okai.verify.rules`; a raw blob
(a dataset given as one blob, with no size on record) is streamed to a scratch file up
to `max_blob_bytes`; the whole command stops at `timeout_s`, naming what it was doing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from okai.errors import OperationalError, VerificationError

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_BLOB_BYTES = 1 << 30


class VerifyTimeout(OperationalError):
    """The verification ran past its `--timeout`."""


class OverReadLimit(VerificationError):
    """A blob the record names is larger than the verifier agreed to read."""


@dataclass
class Bounds:
    """The deadline and read limit of one verification (`--timeout`, `--max-blob-size`)."""

    timeout_s: float | None = DEFAULT_TIMEOUT_S
    """None or 0: no deadline."""
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    started: float = field(default_factory=time.monotonic)

    def check(self, doing: str) -> None:
        """Raise `VerifyTimeout` naming `doing` once the deadline has passed."""
        if self.timeout_s and time.monotonic() - self.started > self.timeout_s:
            raise VerifyTimeout(
                f"verification ran past its {self.timeout_s:g} s while {doing}",
                hint="give it longer with --timeout SECONDS (0: no limit), or point "
                "OKAI_WALRUS_AGGREGATORS / OKAI_RPC_URL at faster endpoints",
            )

    def reading(
        self, what: str, size_known: bool, advance: Callable[[int], None]
    ) -> Callable[[int], None]:
        """`advance` for one blob read (`what`: "reading ..."), also checking the deadline
        and, when the record gives no size, the blob limit (until the Walrus client takes
        a limit itself)."""
        read = 0

        def counted(n: int) -> None:
            nonlocal read
            read += n
            self.check(what)
            if not size_known and read > self.max_blob_bytes:
                raise OverReadLimit(
                    f"{what.removeprefix('reading ')}: more than the {self.max_blob_bytes} "
                    "bytes okai verify reads of a blob with no size on record (--max-blob-size)"
                )
            advance(n)

        return counted
