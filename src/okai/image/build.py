"""`okai image build`: build one image variant with Nix and write its manifest.

The manifest (`okai.image/v1`) records what the build says the image is:
the file's size and SHA-256 (hashed while streaming, whatever the size), the
system toplevel store path (evaluated, so a substituted image needs no local toplevel), the nixpkgs revision from
`flake.lock`, the flake's own revision from `nix flake metadata`, and the
Python packages of the image's okai (each locked wheel, job packages included). A flake
with uncommitted changes has no revision anyone could rebuild from, so it is
refused unless the caller allows it explicitly.

Output folder layout (default `.okai/images/<variant>/`)::

    result          GC root: the Nix build output, kept alive while this link exists
    <fileName>      link to the image file inside the build output
    manifest.json   the okai.image/v1 manifest
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from okai.atomic import replace_symlink
from okai.digest import Digest, read_chunks
from okai.documents import document_error
from okai.errors import UsageError
from okai.image.errors import DirtyFlakeError, NixCommandError
from okai.image.lock import locked_revision
from okai.image.nix import Nix
from okai.manifest import ImageManifest, ImagePython, NixosIdentity
from okai.paths import state_dir

HashProgress = Callable[[int], AbstractContextManager[Callable[[int], None]]]
"""Given the total byte count, a context manager yielding `advance(nbytes)`."""


@dataclass(frozen=True)
class Variant:
    """One image variant of nixpkgs' `system.build.images`, as the flake exposes it."""

    name: Literal["qemu", "qemu-efi", "raw", "raw-efi"]
    format: Literal["qcow2", "raw"]
    efi: bool
    extensions: tuple[str, ...]
    """File name endings nixpkgs gives this format (raw images are written `.img`)."""


VARIANTS: dict[str, Variant] = {
    "qemu": Variant("qemu", "qcow2", efi=False, extensions=(".qcow2",)),
    "qemu-efi": Variant("qemu-efi", "qcow2", efi=True, extensions=(".qcow2",)),
    "raw": Variant("raw", "raw", efi=False, extensions=(".img", ".raw")),
    "raw-efi": Variant("raw-efi", "raw", efi=True, extensions=(".img", ".raw")),
}
DEFAULT_VARIANT = "qemu"
CONFIG_ATTR = "passthru.config"
"""Where nixpkgs' images.nix puts each variant's own evaluated configuration."""
TOPLEVEL_ATTR = f"{CONFIG_ATTR}.system.build.toplevel"
PYTHON_ATTR = f"{CONFIG_ATTR}.services.okai-node.package.pythonIdentity"
"""The Python software of the image's okai package (nix/package.nix)."""


@dataclass(frozen=True)
class BuiltImage:
    """A built image: its manifest, where it was written, and the files it describes."""

    manifest: ImageManifest
    manifest_path: Path
    image_path: Path
    build_output: Path


def variant(name: str) -> Variant:
    """The variant called `name`, or a usage error listing the choices."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(
            f"unknown image variant {name!r}; choose one of {', '.join(VARIANTS)}"
        ) from None


def default_out_dir(variant_name: str) -> Path:
    return state_dir() / "images" / variant_name


def build_image(
    flake_dir: Path,
    variant_name: str = DEFAULT_VARIANT,
    out_dir: Path | None = None,
    *,
    allow_dirty: bool = False,
    hash_progress: HashProgress | None = None,
) -> BuiltImage:
    """Build `variant_name` from the flake in `flake_dir` and write its manifest."""
    chosen = variant(variant_name)
    flake_dir = flake_dir.resolve()
    if not (flake_dir / "flake.nix").is_file():
        raise UsageError(f"{flake_dir} has no flake.nix; pass the okai checkout with --flake")
    out_dir = (out_dir or default_out_dir(chosen.name)).resolve()
    flake = str(flake_dir)

    nix = Nix.find()
    source = nix.flake_source(flake)
    if source.is_dirty and not allow_dirty:
        raise DirtyFlakeError(
            f"{flake_dir} has uncommitted changes, so no revision names what would be built",
            hint="commit them (the manifest records the flake revision so that others can "
            "rebuild the image), or pass --allow-dirty for a throw-away image",
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    build_output = nix.build(f"{flake}#{chosen.name}", out_dir / "result")
    image_file = find_image_file(build_output, chosen)
    toplevel = nix.store_path(f"{flake}#{chosen.name}.{TOPLEVEL_ATTR}")
    python = image_python(nix, f"{flake}#{chosen.name}.{PYTHON_ATTR}")
    nixpkgs_revision = locked_revision(flake_dir / "flake.lock")

    size = image_file.stat().st_size
    sha256 = hash_file(image_file, size, hash_progress)
    manifest = ImageManifest(
        file_name=image_file.name,
        format=chosen.format,
        variant=chosen.name,
        size=size,
        sha256=sha256,
        nixos=NixosIdentity(
            system_toplevel=toplevel,
            nixpkgs_revision=nixpkgs_revision,
            flake_revision=source.flake_revision,
        ),
        python=python,
    )
    image_link = out_dir / image_file.name
    replace_symlink(image_link, image_file)
    manifest_path = out_dir / "manifest.json"
    manifest.write(manifest_path)
    return BuiltImage(manifest, manifest_path, image_link, build_output)


def image_python(nix: Nix, installable: str) -> ImagePython:
    """The image's Python packages, as the flake evaluates them."""
    try:
        return ImagePython.model_validate(nix.eval_json(installable))
    except ValidationError as exc:
        problem = document_error(exc, f"the Python identity `nix eval {installable}` printed")
        raise NixCommandError(str(problem)) from exc


def find_image_file(build_output: Path, chosen: Variant) -> Path:
    """The one image file in a build output (which also holds `nix-support/`)."""
    try:
        candidates = sorted(
            entry
            for entry in build_output.iterdir()
            if entry.is_file() and entry.name.endswith(chosen.extensions)
        )
    except OSError as exc:
        raise NixCommandError(f"cannot list the build output {build_output}: {exc}") from exc
    if len(candidates) != 1:
        names = ", ".join(entry.name for entry in candidates) or "none"
        raise NixCommandError(
            f"expected one {'/'.join(chosen.extensions)} file in {build_output}, found {names}"
        )
    return candidates[0]


def hash_file(path: Path, size: int, hash_progress: HashProgress | None = None) -> Digest:
    """SHA-256 of a file read in chunks, reporting progress if asked."""
    with open(path, "rb") as stream:
        if hash_progress is None:
            return Digest.of_stream(stream)
        with hash_progress(size) as advance:

            def chunks() -> Iterator[bytes]:
                for chunk in read_chunks(stream):
                    advance(len(chunk))
                    yield chunk

            return Digest.of_chunks(chunks())
