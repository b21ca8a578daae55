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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit

from okai.config import Network, Settings
from okai.errors import ConfigError, DocumentError, IntegrityError, NotBuiltError, UsageError
from okai.image.errors import ImageUrlError
from okai.manifest import BLOB_ID_PATTERN, ImageManifest

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


def publish_image(plan: PublishPlan, settings: Settings) -> NoReturn:
    """Store the image on Walrus and register it on chain.

    Not wired yet: it needs a quilt store that streams a file from disk
    (okai.walrus) and the registry's image registration (okai.chain).
    """
    raise NotBuiltError(
        "okai image publish: storing needs okai.walrus.client.WalrusClient (quilt store "
        "streamed from a file), registering needs okai.chain's register_image"
    )


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
