"""Provenance documents: the run receipt and the in-toto/SLSA run attestation built from it."""

from okai.manifest import UNREGISTERED_HOST
from okai.provenance.attestation import (
    BUILD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Attestation,
    build_attestation,
    parse_attestation,
)
from okai.provenance.receipt import (
    Receipt,
    ReceiptCode,
    ReceiptDataset,
    ReceiptImage,
    system_toplevel_digest,
)

__all__ = [
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "UNREGISTERED_HOST",
    "Attestation",
    "Receipt",
    "ReceiptCode",
    "ReceiptDataset",
    "ReceiptImage",
    "build_attestation",
    "parse_attestation",
    "system_toplevel_digest",
]
