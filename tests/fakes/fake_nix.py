"""FAKE `nix` for tests. It builds nothing and is not Nix.

It answers the few commands `okai image build` runs, the way Nix 2.18+ does,
and "builds" an image by writing a small labelled file into a fake store
folder. Its behaviour comes from the environment:

    FAKE_NIX_STORE      folder standing in for /nix/store (required for `build`)
    FAKE_NIX_LOG        file to which every invocation's argv is appended as JSON
    FAKE_NIX_VERSION    version `nix --version` reports (default 2.24.9)
    FAKE_NIX_FAIL       `build` to make the build fail
    FAKE_NIX_DIRTY      `1` for a flake with uncommitted changes
    FAKE_NIX_EVAL       what `eval --raw` prints instead of a store path
    FAKE_NIX_PYTHON     what `eval --json` prints instead of PYTHON_IDENTITY
    FAKE_NIX_EXTRA      `1` to put a second image file into the build output
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"
NAR_HASH = "sha256-FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAK="
_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"  # Nix's store-path alphabet
PYTHON_IDENTITY = {  # nix/package.nix's passthru.pythonIdentity, shortened
    "version": "3.11.14",
    "packages": [
        {"name": "einops", "version": "0.8.2", "sha256": "sha256:" + "e" * 64},
        {"name": "numpy", "version": "2.3.5", "sha256": "sha256:" + "a" * 64},
        {"name": "torch", "version": "2.13.0+cpu", "sha256": "sha256:" + "b" * 64},
    ],
    "extraPackages": ["einops"],
}


def store_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_BASE32[byte % 32] for byte in digest[:32])


def image_bytes(variant: str) -> bytes:
    """About 2.5 MiB, so hashing spans several 1 MiB chunks."""
    line = f"FAKE NixOS image from tests/fakes/fake_nix.py, variant {variant}; not a disk\n"
    block = (line * (1 + (1 << 16) // len(line))).encode()
    return block * 40


def main(argv: list[str]) -> int:
    env = os.environ
    if log := env.get("FAKE_NIX_LOG"):
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(argv) + "\n")
    args = list(argv)
    while "--extra-experimental-features" in args:  # a global flag with one value
        index = args.index("--extra-experimental-features")
        del args[index : index + 2]

    if args == ["--version"]:
        print(f"nix (Nix) {env.get('FAKE_NIX_VERSION', '2.24.9')}")
        return 0
    if args[:3] == ["flake", "metadata", "--json"]:
        metadata: dict[str, object] = {"locked": {"narHash": NAR_HASH, "type": "git"}}
        if env.get("FAKE_NIX_DIRTY") == "1":
            metadata["dirtyRevision"] = f"{REVISION}-dirty"
        else:
            metadata["revision"] = REVISION
        print(json.dumps(metadata))
        return 0
    if args[:1] == ["build"]:
        return build(args[1:], env)
    if args[:2] == ["eval", "--raw"]:
        # Evaluation names a store path whether or not it is in the store.
        installable = args[2].removesuffix(".outPath")
        variant = installable.split("#", 1)[1].split(".", 1)[0]
        default = f"/nix/store/{store_hash(installable)}-nixos-system-okai-node-{variant}-25.11"
        print(env.get("FAKE_NIX_EVAL", default), end="")
        return 0
    if args[:2] == ["eval", "--json"] and args[2].endswith(".package.pythonIdentity"):
        print(env.get("FAKE_NIX_PYTHON", json.dumps(PYTHON_IDENTITY)))
        return 0
    print(f"fake nix: unsupported command {argv}", file=sys.stderr)
    return 2


def build(args: list[str], env: Mapping[str, str]) -> int:
    out_link = Path(args[args.index("--out-link") + 1])
    installable = args[-1]
    variant = installable.split("#", 1)[1]
    if env.get("FAKE_NIX_FAIL") == "build":
        print(
            f"error: builder for '/nix/store/{store_hash(variant)}-okai-node-{variant}.drv' "
            "failed with exit code 1",
            file=sys.stderr,
        )
        return 1
    extension = "qcow2" if variant.startswith("qemu") else "img"
    output = Path(env["FAKE_NIX_STORE"]) / f"{store_hash(installable)}-okai-node-{variant}"
    (output / "nix-support").mkdir(parents=True, exist_ok=True)
    image = output / f"okai-node-{variant}.{extension}"
    image.write_bytes(image_bytes(variant))
    (output / "nix-support" / "hydra-build-products").write_text(f"file {extension} {image}\n")
    if env.get("FAKE_NIX_EXTRA") == "1":
        (output / f"other.{extension}").write_bytes(b"second image")
    if out_link.is_symlink():
        out_link.unlink()
    out_link.symlink_to(output)
    drv = f"/nix/store/{store_hash(variant)}-okai-node-{variant}.drv"
    print(json.dumps([{"drvPath": drv, "outputs": {"out": str(output)}}]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
