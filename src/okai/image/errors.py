"""Errors of the image package, placed in okai's one hierarchy.

OperationalError
├── NixMissingError      no `nix` on PATH
├── NixTooOldError       a `nix` older than the flake needs
└── NixCommandError      a Nix command failed (build, evaluation)
UsageError
├── DirtyFlakeError      the flake has uncommitted changes: no revision to rebuild from
├── ImageUrlError        a URL Fluence could not boot from, or that serves other bytes
└── ImageRegisteredDifferently  the digest is registered with other values (write-once)
"""

from __future__ import annotations

from okai.errors import OperationalError, UsageError

NIX_INSTALL_HINT = (
    "install Nix 2.18 or newer from https://nixos.org/download "
    "(`sh <(curl -L https://nixos.org/nix/install) --daemon`); Debian's nix-bin package "
    "is too old to build the image. Image builds also need KVM (/dev/kvm)."
)


class NixMissingError(OperationalError):
    """There is no `nix` command on PATH."""

    def __init__(self) -> None:
        super().__init__("Nix is not installed (no `nix` on PATH)", hint=NIX_INSTALL_HINT)


class NixTooOldError(OperationalError):
    """The `nix` found is older than the minimum the pinned nixpkgs supports."""

    def __init__(self, found: str, path: str, minimum: str) -> None:
        self.found = found
        super().__init__(
            f"{path} is Nix {found}; building the image needs Nix {minimum} or newer "
            "(nixpkgs refuses to evaluate on older versions)",
            hint=NIX_INSTALL_HINT,
        )


class NixCommandError(OperationalError):
    """A Nix command exited with an error."""


class DirtyFlakeError(UsageError):
    """The flake's tree has uncommitted changes, so no revision names what was built."""


class ImageUrlError(UsageError):
    """A URL an image cannot be booted from, or could not be trusted to serve the image."""


class ImageRegisteredDifferently(UsageError):
    """The image's digest is registered already, with another toplevel or manifest."""
