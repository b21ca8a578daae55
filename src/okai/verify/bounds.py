"""How much `okai verify` reads, and for how long: bounds a hostile record cannot lift.

A record names blobs; their size is whatever the record's author chose. Every read is
capped by `ReadLimits` (per kind of object, `okai.verify.limits`), and the whole command
stops at `timeout_s`, naming what it was doing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from okai.errors import OperationalError
from okai.verify.limits import ReadLimits

DEFAULT_TIMEOUT_S = 600.0


class VerifyTimeout(OperationalError):
    """The verification ran past its `--timeout`."""


@dataclass
class Bounds:
    """The deadline (`--timeout`) and read limits (`--max-blob-size`, `OKAI_VERIFY_MAX_*`)
    of one verification."""

    timeout_s: float | None = DEFAULT_TIMEOUT_S
    """None or 0: no deadline."""
    limits: ReadLimits = field(default_factory=ReadLimits.from_env)
    started: float = field(default_factory=time.monotonic)

    def check(self, doing: str) -> None:
        """Raise `VerifyTimeout` naming `doing` once the deadline has passed."""
        if self.timeout_s and time.monotonic() - self.started > self.timeout_s:
            raise VerifyTimeout(
                f"verification ran past its {self.timeout_s:g} s while {doing}",
                hint="give it longer with --timeout SECONDS (0: no limit), or point "
                "OKAI_WALRUS_AGGREGATORS / OKAI_RPC_URL at faster endpoints",
            )

    def reading(self, what: str, advance: Callable[[int], None]) -> Callable[[int], None]:
        """`advance` for one blob read (`what`: "reading ..."), also checking the deadline."""

        def counted(n: int) -> None:
            self.check(what)
            advance(n)

        return counted
