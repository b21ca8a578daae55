"""Every .nix file parses, and the flake wires up what the issue asks for.

Debian's nix-bin (Nix 2.8) can parse but not evaluate nixpkgs, so this is a
syntax check (plus unbound variables) of every file; building and booting
the image are the VM tests in nix/tests/, run with a current Nix and KVM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from okai.image import VARIANTS

EXPECTED = {
    "flake.nix",
    "nix/package.nix",
    "nix/module.nix",
    "nix/identity.nix",
    "nix/host.nix",
    "nix/tests/fixtures.nix",
    "nix/tests/cloud-init.nix",
    "nix/tests/ddp.nix",
    "nix/tests/image-boot.nix",
}


def nix_instantiate() -> str:
    found = shutil.which("nix-instantiate")
    assert found is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    return found


def nix_files() -> list[Path]:
    """The checkout's .nix files; installed trees are not entered (walking .venv costs 0.5 s
    in every worker's collection)."""
    skip = {".git", "node_modules", ".venv", ".okai"}
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in skip]
        found += [Path(folder, name) for name in files if name.endswith(".nix")]
    return sorted(found)


def parse(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nix_instantiate(), "--parse", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_expected_nix_files_exist() -> None:
    found = {path.relative_to(REPO).as_posix() for path in nix_files()}
    assert found >= EXPECTED, EXPECTED - found


@pytest.mark.parametrize("relative", [path.relative_to(REPO).as_posix() for path in nix_files()])
def test_nix_file_parses(relative: str) -> None:
    result = parse(REPO / relative)
    assert result.returncode == 0, f"{relative}:\n{result.stderr}"


@pytest.mark.parametrize(
    "source",
    [
        "{ a = 1; ",  # unbalanced
        "{ lib, ... }: { x = lib.mkIf cfg.enable { }; }",  # `cfg` is unbound
        "let x = ''unterminated; in x",
    ],
)
def test_the_parse_check_catches_mistakes(tmp_path: Path, source: str) -> None:
    broken = tmp_path / "broken.nix"
    broken.write_text(source)
    assert parse(broken).returncode != 0


def code_of(relative: str) -> str:
    """The file as Nix parsed it: comments gone, so words in them do not count."""
    result = parse(REPO / relative)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_flake_pins_stable_nixpkgs_without_nixos_generators() -> None:
    flake = code_of("flake.nix")
    match = re.search(r'"github:NixOS/nixpkgs/nixos-(\d\d)\.(\d\d)"', flake)
    assert match is not None, "flake.nix must pin a nixos-YY.MM branch"
    assert (int(match[1]), int(match[2])) >= (25, 5)
    for relative in sorted(EXPECTED):
        assert "nixos-generators" not in code_of(relative), relative
        assert "nixosGenerate" not in code_of(relative), relative


def test_torch_is_the_locked_cpu_wheel_not_nixpkgs_builds() -> None:
    for relative in sorted(EXPECTED):
        code = code_of(relative)
        assert "torch-bin" not in code, relative  # unfree, drags CUDA libraries
        assert "allowUnfree" not in code, relative
        assert "python3Packages" not in code, relative  # nixpkgs' own (other) versions
    torch = json.loads((REPO / "nix" / "python-packages.json").read_text())["packages"]["torch"]
    assert torch["url"].startswith("https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-")
    assert re.fullmatch(r"[0-9a-f]{64}", torch["sha256"])


def test_flake_exposes_every_variant_okai_builds() -> None:
    flake = (REPO / "flake.nix").read_text()
    for name in VARIANTS:
        assert re.search(rf"^\s*{re.escape(name)} = images\.{re.escape(name)};", flake, re.M), name
    for output in ("qcow2 = images.qemu;", "raw = images.raw;", "inherit okai;"):
        assert output in flake
    for output in ("nixosModules", "nixosConfigurations.okai-node", "checks", "devShells"):
        assert output in flake
