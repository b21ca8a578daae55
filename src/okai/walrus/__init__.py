"""Data on Walrus: the HTTP client, datasets as verified shards, the local server.

- `WalrusClient` stores on a publisher and reads from aggregators, streaming,
  verifying every read by SHA-256 (and by recomputed blob ID where asked).
- `push_dataset` / `pull_dataset` / `fetch_manifest` / `fetch_shard` move
  datasets as `okai.dataset/v1` manifests plus shards.
- `okai.walrus.server.WalrusServer` is the local Walrus-compatible server
  (imported on its own: clients do not need it).
"""

from okai.walrus.aggregators import ReadEvent
from okai.walrus.client import ProgressFn, WalrusClient
from okai.walrus.dataset import (
    DatasetSource,
    PushResult,
    fetch_manifest,
    fetch_shard,
    format_ref,
    load_manifest,
    parse_ref,
    pull_dataset,
    push_dataset,
)
from okai.walrus.errors import (
    AnswerRefused,
    BlobBlocked,
    BlobIdMismatch,
    BlobNotFound,
    BlobTooLarge,
    PublisherAuthError,
    ReadLimitExceeded,
    StoreFailed,
    WalrusError,
    WalrusProtocolError,
    WalrusRequestError,
    WalrusShortBody,
    WalrusStalled,
    WalrusStatusError,
    WalrusTimeout,
    WalrusUnavailable,
    WalrusUnreachable,
)
from okai.walrus.pacing import ReadPacing
from okai.walrus.results import QuiltPatchItem, QuiltStoreResult, StoreResult
from okai.walrus.retry import RetryPolicy

__all__ = [
    "AnswerRefused",
    "BlobBlocked",
    "BlobIdMismatch",
    "BlobNotFound",
    "BlobTooLarge",
    "DatasetSource",
    "ProgressFn",
    "PublisherAuthError",
    "PushResult",
    "QuiltPatchItem",
    "QuiltStoreResult",
    "ReadEvent",
    "ReadLimitExceeded",
    "ReadPacing",
    "RetryPolicy",
    "StoreFailed",
    "StoreResult",
    "WalrusClient",
    "WalrusError",
    "WalrusProtocolError",
    "WalrusRequestError",
    "WalrusShortBody",
    "WalrusStalled",
    "WalrusStatusError",
    "WalrusTimeout",
    "WalrusUnavailable",
    "WalrusUnreachable",
    "fetch_manifest",
    "fetch_shard",
    "format_ref",
    "load_manifest",
    "parse_ref",
    "pull_dataset",
    "push_dataset",
]
