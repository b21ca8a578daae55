"""`okai image publish`: where a built image is stored, and the URL Fluence boots it from.

Fluence creates a VM's boot disk from one public download URL that must end in
`.qcow2`, `.img`, `.raw` or a compressed form of those. A Walrus aggregator's
plain blob URL (`/v1/blobs/<id>`) ends in no extension, so the image is stored
as a quilt holding one file whose identifier is the image's file name; the
aggregator then serves exactly those bytes at

    <aggregator>/v1/blobs/by-quilt-id/<quiltId>/<fileName>

which ends in `.qcow2` or `.img`. The quilt ID is an ordinary blob ID and is
what the manifest records as `blobId`. A mirror the user names with
`--image-url` (a CDN, an aggregator without a size cap) replaces that URL but
never the identity: the image's SHA-256 in the manifest and the registry is
what a served file must match, wherever it comes from. Compressed forms are
refused because their bytes would not hash to that digest.

Storing needs a publisher that accepts a request body as large as the image
(public publishers take 10 MiB; run your own with a raised
`--max-quilt-body-size`), and a quilt file holds at most 4 GiB.
docs/image.md explains the choice against the alternatives.

`publish_image` then, in this order (every check that needs no upload first):

1. hashes the image file and refuses it unless it is the manifest's SHA-256;
2. loads the signing key, checks the chain ID and reads the registry: an image
   registered with another system toplevel is refused here;
3. stores the image as the one-file quilt, streamed from disk;
4. reads the file back through the aggregator's by-quilt-id route, hashing it
   as it streams, so the boot URL is known to serve the registered bytes;
5. stores the manifest with `blobId` set (canonical JSON) as a plain blob,
   and rewrites the local manifest file the same way (atomically, in place);
6. registers image digest, toplevel digest and manifest blob ID on chain, or
   reports that exactly these are registered already (records are write-once,
   so other values are an `ImageRegisteredDifferently` error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from okai.atomic import write_atomically
from okai.chain import ImageExists, ImageNotRegistered, ImageRecord, RegistryClient
from okai.config import Network, Settings
from okai.digest import Digest
from okai.errors import ConfigError, DocumentError, IntegrityError, UsageError
from okai.image.build import hash_file
from okai.image.errors import ImageRegisteredDifferently, ImageUrlError
from okai.manifest import BLOB_ID_PATTERN, ImageManifest
from okai.provenance.receipt import system_toplevel_digest
from okai.walrus.client import WalrusClient

FLUENCE_EXTENSIONS = (".qcow2", ".img", ".raw", ".raw.xz", ".raw.gz", ".img.xz", ".img.gz")
"""File name endings Fluence accepts for a custom OS image URL (its docs)."""

SERVED_EXTENSIONS: dict[str, tuple[str, ...]] = {"qcow2": (".qcow2",), "raw": (".raw", ".img")}
"""Uncompressed endings per image format: the only ones whose bytes keep the image's SHA-256."""

QUILT_MAX_FILE = (1 << 32) - 1
"""A quilt patch stores its length as a u32, so one file holds less than 4 GiB."""

_MULTIPART_OVERHEAD = 4096
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class PublishPlan:
    """Everything checked before a byte is uploaded."""

    manifest: ImageManifest
    manifest_path: Path
    image_path: Path
    identifier: str
    """The quilt patch identifier: the image's file name."""
    mirror_url: str | None
    """A URL the user serves the same bytes at, used instead of the aggregator's."""

    def boot_url(self, aggregator: str, quilt_id: str) -> str:
        """The URL to give Fluence once the image is stored as quilt `quilt_id`."""
        if self.mirror_url is not None:
            return self.mirror_url
        return self.walrus_url(aggregator, quilt_id)

    def walrus_url(self, aggregator: str, quilt_id: str) -> str:
        """The aggregator's URL for the image stored as quilt `quilt_id`, checked bootable."""
        return check_image_url(
            quilt_patch_url(aggregator, quilt_id, self.identifier),
            self.manifest.format,
            allow_http=_is_loopback(aggregator),
        )


def check_image_url(url: str, image_format: str, *, allow_http: bool = False) -> str:
    """Return `url` if Fluence can boot an image of `image_format` from it, else explain why not.

    Rules: https (http only where allowed, for the local stack); no credentials,
    query or fragment (the URL itself must end in the extension); the path ends
    in an uncompressed extension of the image's format.
    """
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise ImageUrlError(f"image URL contains spaces or control characters: {url[:120]!r}")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise ImageUrlError(
            f"image URL must be an {' or '.join(schemes)} URL with a host: {url[:120]!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ImageUrlError("image URL must be public: it may not carry credentials")
    if parts.query or parts.fragment:
        raise ImageUrlError(
            f"image URL must end in the file extension, without a query or fragment: {url[:120]!r}"
        )
    served = SERVED_EXTENSIONS.get(image_format)
    if served is None:
        raise UsageError(f"unknown image format {image_format!r}")
    path = parts.path
    if path.endswith(served):
        return url
    if path.endswith(FLUENCE_EXTENSIONS):
        raise ImageUrlError(
            f"image URL {url[:120]!r} names a compressed or different format; a {image_format} "
            f"image must be served uncompressed as {' or '.join(served)}, so that its bytes "
            "match the SHA-256 recorded for it"
        )
    raise ImageUrlError(
        f"image URL must end in {' or '.join(served)} for a {image_format} image "
        f"(Fluence accepts {', '.join(FLUENCE_EXTENSIONS)}): {url[:120]!r}"
    )


def quilt_patch_url(aggregator: str, quilt_id: str, identifier: str) -> str:
    """The aggregator URL serving the file `identifier` of quilt `quilt_id`."""
    if not re.fullmatch(BLOB_ID_PATTERN, quilt_id):
        raise UsageError(f"not a Walrus quilt ID: {quilt_id[:60]!r}")
    check_identifier(identifier)
    base = aggregator.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
        raise ConfigError(f"not an aggregator base URL: {aggregator[:120]!r}")
    return f"{base}/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"


def check_identifier(identifier: str) -> str:
    """A quilt identifier that is also a safe, unescaped last URL segment."""
    if not _IDENTIFIER.match(identifier):
        raise UsageError(
            f"cannot store the image as {identifier[:80]!r}: a quilt identifier must start "
            "with a letter or digit and use only letters, digits, '.', '_' and '-'"
        )
    return identifier


def plan_publish(
    manifest_path: Path, network: Network, *, image_url: str | None = None
) -> PublishPlan:
    """Check a built image can be published on `network`, before uploading anything."""
    manifest = ImageManifest.load(manifest_path)
    image_path = manifest_path.parent / manifest.file_name
    if not image_path.is_file():
        raise DocumentError(
            manifest_path,
            "fileName",
            f"the image {image_path} is missing; it must sit next to its manifest "
            "(`okai image build` puts it there)",
        )
    size = image_path.stat().st_size
    if size != manifest.size:
        raise IntegrityError(f"image {image_path}", f"{manifest.size} bytes", f"{size} bytes")
    identifier = check_identifier(manifest.file_name)
    if not identifier.endswith(SERVED_EXTENSIONS[manifest.format]):
        raise UsageError(
            f"{manifest_path}: a {manifest.format} image file must be named "
            f"*{' or *'.join(SERVED_EXTENSIONS[manifest.format])}, not {identifier!r}"
        )
    mirror = (
        None
        if image_url is None
        else check_image_url(image_url, manifest.format, allow_http=network.is_dev)
    )
    if size + len(identifier) >= QUILT_MAX_FILE:
        raise UsageError(
            f"the image is {size} bytes; a Walrus quilt file holds less than 4 GiB",
            hint="make the image smaller (fewer packages in nix/host.nix) and rebuild",
        )
    if network.walrus_publisher is None:
        raise ConfigError(
            f"network {network.name} has no Walrus publisher to store the image with",
            hint="set OKAI_WALRUS_PUBLISHER to a publisher you run (and OKAI_WALRUS_JWT if it "
            "requires a token)",
        )
    if size + _MULTIPART_OVERHEAD > network.walrus_max_body:
        raise ConfigError(
            f"the image is {size} bytes, but the publisher {network.walrus_publisher} accepts "
            f"request bodies of at most {network.walrus_max_body} bytes",
            hint="run your own publisher with `--max-quilt-body-size` above "
            f"{(size + _MULTIPART_OVERHEAD) // 1024 + 1} (KiB), then set OKAI_WALRUS_PUBLISHER "
            "and OKAI_WALRUS_MAX_BODY to its URL and limit; public publishers stop at 10 MiB",
        )
    return PublishPlan(manifest, manifest_path, image_path, identifier, mirror)


def published_manifest(plan: PublishPlan, quilt_id: str) -> ImageManifest:
    """The manifest with `blobId` set to the quilt the image was stored in."""
    if not re.fullmatch(BLOB_ID_PATTERN, quilt_id):
        raise UsageError(f"not a Walrus quilt ID: {quilt_id[:60]!r}")
    return ImageManifest.model_validate({**plan.manifest.to_json(), "blobId": quilt_id})


TransferProgress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]
"""Given a description and a byte total, a context manager yielding `advance(nbytes)`."""


@dataclass(frozen=True)
class PublishResult:
    """What `publish_image` stored, checked and registered."""

    image_digest: Digest
    system_toplevel: Digest
    size: int
    quilt_id: str
    quilt_patch_id: str
    end_epoch: int
    walrus_url: str
    """The aggregator URL the image was read back from and found to be the registered bytes."""
    boot_url: str
    """What to give Fluence: `walrus_url`, or the mirror named with --image-url (not fetched)."""
    manifest_path: Path
    manifest_blob_id: str
    manifest_sha256: Digest
    """SHA-256 of the stored manifest blob (the manifest's canonical JSON)."""
    registered: bool
    """True if this call registered the image; False if it was registered already."""
    registrant: str
    tx_hash: str | None
    explorer_url: str | None

    @property
    def mirrored(self) -> bool:
        return self.boot_url != self.walrus_url

    def to_json(self) -> dict[str, Any]:
        return {
            "imageDigest": self.image_digest,
            "systemToplevel": self.system_toplevel,
            "size": self.size,
            "quiltId": self.quilt_id,
            "quiltPatchId": self.quilt_patch_id,
            "endEpoch": self.end_epoch,
            "walrusUrl": self.walrus_url,
            "bootUrl": self.boot_url,
            "bootUrlVerified": not self.mirrored,
            "manifestPath": str(self.manifest_path),
            "manifestBlobId": self.manifest_blob_id,
            "manifestSha256": self.manifest_sha256,
            "registration": "registered" if self.registered else "already registered",
            "registrant": self.registrant,
            "txHash": self.tx_hash,
            "explorerUrl": self.explorer_url,
        }


def publish_image(
    plan: PublishPlan,
    settings: Settings,
    *,
    epochs: int = 1,
    progress: TransferProgress | None = None,
) -> PublishResult:
    """Store the planned image on Walrus, check the boot URL serves it, register it on chain.

    Safe to run again: Walrus answers the same quilt and manifest blob IDs for
    the same bytes, and an image registered with the same values is reported,
    not re-sent. Nothing is uploaded unless the file hashes to the manifest's
    SHA-256 and the registry could take the image.
    """
    manifest = plan.manifest
    image_digest = Digest.parse(manifest.sha256)
    toplevel = system_toplevel_digest(manifest.nixos.system_toplevel)
    _check_image_bytes(plan, progress)
    registry = RegistryClient.from_settings(settings, sign=True)
    assert registry.signer is not None
    existing = _registered(registry, image_digest, registry.signer.address)
    if existing is not None and existing.system_toplevel != toplevel:
        raise _conflict(existing, toplevel, None)

    with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
        with _progress(progress, f"store {plan.identifier}", manifest.size) as advance:
            stored = walrus.store_quilt(
                {plan.identifier: plan.image_path}, epochs=epochs, on_progress=advance
            )
        with _progress(progress, f"read back {plan.identifier}", manifest.size) as advance:
            aggregator = walrus.check_quilt_file(
                stored.quilt_id,
                plan.identifier,
                image_digest,
                expected_size=manifest.size,
                on_progress=advance,
            )
        walrus_url = plan.walrus_url(aggregator, stored.quilt_id)
        published = published_manifest(plan, stored.quilt_id)
        manifest_blob = walrus.store_bytes(published.canonical_bytes(), epochs=epochs)
    write_manifest(published, plan.manifest_path)

    record, tx_hash = _register(
        registry, image_digest, toplevel, manifest_blob.blob_id, manifest_blob.sha256
    )
    return PublishResult(
        image_digest=image_digest,
        system_toplevel=toplevel,
        size=manifest.size,
        quilt_id=stored.quilt_id,
        quilt_patch_id=stored.patch_id(plan.identifier),
        end_epoch=stored.end_epoch,
        walrus_url=walrus_url,
        boot_url=plan.mirror_url or walrus_url,
        manifest_path=plan.manifest_path,
        manifest_blob_id=manifest_blob.blob_id,
        manifest_sha256=manifest_blob.sha256,
        registered=tx_hash is not None,
        registrant=record.registrant,
        tx_hash=tx_hash,
        explorer_url=None if tx_hash is None else settings.network.explorer_link("tx", tx_hash),
    )


def write_manifest(manifest: ImageManifest, path: Path) -> None:
    """Replace the manifest file at `path` in one rename, so it is never half written."""
    text = json.dumps(manifest.to_json(), indent=2) + "\n"
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    # Keep the manifest's own mode (a fresh temporary file would be private).
    write_atomically(path, text, mode)


def _check_image_bytes(plan: PublishPlan, progress: TransferProgress | None) -> None:
    def hashing(total: int) -> AbstractContextManager[Callable[[int], None]]:
        return _progress(progress, f"hash {plan.identifier}", total)

    actual = hash_file(plan.image_path, plan.manifest.size, hashing)
    if actual != plan.manifest.sha256:
        raise IntegrityError(f"image {plan.image_path}", plan.manifest.sha256, actual)


def _registered(
    registry: RegistryClient, image_digest: Digest, publisher: str
) -> ImageRecord | None:
    """This account's claim about the image; others' claims neither block nor count here."""
    try:
        return registry.get_image(image_digest, publisher)
    except ImageNotRegistered:
        return None


def _register(
    registry: RegistryClient,
    image_digest: Digest,
    toplevel: Digest,
    manifest_blob_id: str,
    manifest_sha256: Digest,
) -> tuple[ImageRecord, str | None]:
    """Register this account's claim, or accept its own earlier claim with these values.

    Returns the claim and the tx hash if one was sent.
    """
    assert registry.signer is not None
    tx_hash: str | None = None
    with suppress(ImageExists):  # our own earlier run registered it: compare
        tx_hash = registry.register_image(
            image_digest, toplevel, manifest_blob_id, manifest_sha256
        ).tx_hash
    record = registry.get_image(image_digest, registry.signer.address)
    if record.system_toplevel != toplevel or record.manifest_blob_id != manifest_blob_id:
        raise _conflict(record, toplevel, manifest_blob_id)
    return record, tx_hash


def _conflict(
    record: ImageRecord, toplevel: Digest, manifest_blob_id: str | None
) -> ImageRegisteredDifferently:
    differences = []
    if record.system_toplevel != toplevel:
        differences.append(f"system toplevel {record.system_toplevel}, not {toplevel}")
    if manifest_blob_id is not None and record.manifest_blob_id != manifest_blob_id:
        differences.append(f"manifest blob {record.manifest_blob_id}, not {manifest_blob_id}")
    return ImageRegisteredDifferently(
        f"image {record.image_digest} is already registered by {record.registrant} with "
        + " and ".join(differences),
        hint="each account's claim is write-once: the manifest this account registered is "
        "the one that counts for this image (`okai chain image "
        f"{record.image_digest} --publisher {record.registrant}` shows it); a changed image "
        "has a new SHA-256 and registers afresh",
    )


def _progress(
    progress: TransferProgress | None, description: str, total: int
) -> AbstractContextManager[Callable[[int], None]]:
    if progress is None:
        return nullcontext(_ignore)
    return progress(description, total)


def _ignore(nbytes: int) -> None:
    return None


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
