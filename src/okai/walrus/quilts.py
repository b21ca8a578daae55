"""Quilts: many small files stored as one blob, each read back on its own, verified.

A quilt patch is not a blob, so its bytes cannot be checked by blob ID: reads
need the SHA-256 the caller trusts (or an explicit `allow_unverified`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from okai.digest import Digest
from okai.walrus.errors import WalrusProtocolError, WalrusRequestError
from okai.walrus.fallback import AggregatorReads
from okai.walrus.http import MiB, checked_blob_id, checked_patch_id
from okai.walrus.integrity import VerifiedFile
from okai.walrus.results import QuiltPatchItem, QuiltStoreResult
from okai.walrus.store import Publisher
from okai.walrus.streams import DEFAULT_READ_BYTES_LIMIT, BytesSink, Check, HashSink, ProgressFn


class QuiltMethods:
    """The quilt methods of `WalrusClient`, which sets up the publisher and the reads."""

    _publisher: Publisher
    _reads: AggregatorReads

    def store_quilt(
        self,
        files: Mapping[str, Path | bytes],
        *,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        epochs: int = 1,
        permanent: bool = False,
        force: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> QuiltStoreResult:
        """Store files as one quilt; keys are the files' identifiers.

        Files given as paths stream from disk; `on_progress` counts the bytes
        of the files (given as paths or bytes) as they are sent.
        """
        params = Publisher.params(epochs, permanent, None, False, force)
        return self._publisher.store_quilt(files, tags or {}, params, on_progress)

    def read_quilt_patch(
        self,
        quilt_patch_id: str,
        expected: Digest | None,
        *,
        max_bytes: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by its patch ID, verified against `expected`.

        A patch is not a blob, so its bytes cannot be checked by blob ID:
        without `expected`, the read is refused unless `allow_unverified`.
        """
        patch = checked_patch_id(quilt_patch_id)
        check = self._patch_check(expected, f"quilt patch {patch}", allow_unverified)
        sink = BytesSink()
        route = f"/v1/blobs/by-quilt-patch-id/{patch}"
        self._reads.read(route, sink, check, None, None, blob_id=None, max_bytes=max_bytes)
        return bytes(sink.buffer)

    def read_quilt_patch_to_file(
        self,
        quilt_patch_id: str,
        expected: Digest | None,
        dest: Path,
        *,
        max_bytes: int | None = None,
        allow_unverified: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> Digest:
        """Download one file of a quilt to `dest`, verified and atomic; returns its SHA-256."""
        patch = checked_patch_id(quilt_patch_id)
        check = self._patch_check(expected, f"quilt patch {patch}", allow_unverified)
        with VerifiedFile(Path(dest), expected, check.what) as sink:
            self._reads.read(
                f"/v1/blobs/by-quilt-patch-id/{patch}",
                sink,
                check,
                None,
                on_progress,
                blob_id=None,
                max_bytes=max_bytes,
                file_sink=sink,
            )
            return sink.commit(sink.digest())

    def read_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest | None,
        *,
        max_bytes: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by the quilt's ID and the file's identifier."""
        quilt_id = checked_blob_id(quilt_id)
        check = self._patch_check(expected, f"{identifier!r} of quilt {quilt_id}", allow_unverified)
        sink = BytesSink()
        route = f"/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"
        self._reads.read(route, sink, check, None, None, blob_id=None, max_bytes=max_bytes)
        return bytes(sink.buffer)

    def check_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest,
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        on_progress: ProgressFn | None = None,
    ) -> str:
        """Stream one file of a quilt by quilt ID and identifier, hashing it and keeping nothing.

        Returns the aggregator whose answer hashed to `expected` (its URL for
        the file is `<aggregator>/v1/blobs/by-quilt-id/<quiltId>/<identifier>`);
        raises `IntegrityError` when none served those bytes. Memory stays flat
        whatever the size, so it checks files of gigabytes.
        """
        quilt_id = checked_blob_id(quilt_id)
        check = self._patch_check(expected, f"{identifier!r} of quilt {quilt_id}", False)
        route = f"/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"
        return self._reads.read(
            route,
            HashSink(),
            check,
            expected_size,
            on_progress,
            blob_id=quilt_id,
            max_bytes=max_bytes,
        )

    def list_quilt_patches(self, quilt_id: str) -> list[QuiltPatchItem]:
        """The files of a quilt: identifier, patch ID and tags of each."""
        quilt_id = checked_blob_id(quilt_id)
        sink = BytesSink()
        self._reads.read(
            f"/v1/quilts/{quilt_id}/patches",
            sink,
            Check(None, None, f"the patch list of quilt {quilt_id}"),
            None,
            None,
            blob_id=quilt_id,
            max_bytes=16 * MiB,
        )
        try:
            items = json.loads(bytes(sink.buffer))
            return [QuiltPatchItem.model_validate(item) for item in items]
        except (ValueError, TypeError) as exc:
            raise WalrusProtocolError(f"the patch list of quilt {quilt_id} is malformed") from exc

    @staticmethod
    def _patch_check(expected: Digest | None, what: str, allow_unverified: bool) -> Check:
        if expected is None and not allow_unverified:
            raise WalrusRequestError(
                f"reading {what} needs its expected SHA-256",
                hint="a quilt patch cannot be checked by blob ID; pass the digest you trust",
            )
        return Check(Digest.parse(expected) if expected else None, None, what)
