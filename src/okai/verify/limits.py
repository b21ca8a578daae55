"""The most bytes the verifier reads of each kind of object, whoever wrote the record.

A record names blobs; an aggregator serves them. Neither is trusted, so every
read has a ceiling and is abandoned as soon as an answer announces or sends
more (docs/verification.md, "Bounded reads"). Each ceiling can be set with an
`OKAI_VERIFY_MAX_*` variable, in bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from okai.errors import ConfigError
from okai.provenance.attestation import MAX_ATTESTATION_BYTES
from okai.verify.observations import Need
from okai.verify.rules import MAX_MANIFEST_BYTES

GiB = 1 << 30
_ENV = {
    "attestation": "OKAI_VERIFY_MAX_ATTESTATION_BYTES",
    "manifest": "OKAI_VERIFY_MAX_MANIFEST_BYTES",
    "blob": "OKAI_VERIFY_MAX_BLOB_BYTES",
}


@dataclass(frozen=True)
class ReadLimits:
    """Ceilings in bytes: the rules' own by default, tighter or looser by configuration."""

    attestation: int = MAX_ATTESTATION_BYTES
    manifest: int = MAX_MANIFEST_BYTES
    """A dataset or image manifest (held in memory to parse)."""
    blob: int = 16 * GiB
    """Data streamed to disk and hashed: a raw dataset blob or quilt patch, whose size no
    manifest gives, and any shard or image (above the largest blob Walrus stores)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReadLimits:
        values: dict[str, int] = {}
        for item in fields(cls):
            variable = _ENV[item.name]
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            if not raw.isdigit() or int(raw) < 1:
                raise ConfigError(f"{variable}={raw[:40]!r} is not a positive number of bytes")
            values[item.name] = int(raw)
        return cls(**values)

    def of(self, need: Need) -> int:
        """The ceiling for one needed blob."""
        if need.kind == "attestation":
            return self.attestation
        if need.kind in ("dataset-manifest", "image-manifest"):
            return self.manifest
        return self.blob
