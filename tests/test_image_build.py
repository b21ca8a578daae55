"""`okai image build` and its manifest, against a FAKE `nix` (tests/fakes/fake_nix.py).

The fake writes a small labelled file instead of building a disk image and
answers `--version`, `flake metadata`, `build` and `eval --raw` as Nix 2.18+
does; these tests check what okai does with those answers and failures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, call_okai, run_okai
from fakes.fake_nix import PYTHON_IDENTITY
from okai.errors import DocumentError, UsageError
from okai.image import (
    DirtyFlakeError,
    Nix,
    NixCommandError,
    NixTooOldError,
    build_image,
)
from okai.image.nix import parse_version
from okai.manifest import ImageManifest
from vector_runner import page_map

FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"
NIXPKGS_REVISION = "5c623338d0c62d15a11b12e46ee8b04a48482c2f"
EXPERIMENTAL = ["--extra-experimental-features", "nix-command flakes"]


@dataclass
class FakeNix:
    bin_dir: Path
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_nix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNix:
    """PATH holds a `nix` that runs the fake (and nothing else called nix)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nix"
    wrapper.write_text(
        "#!/bin/sh\n# FAKE nix for okai's tests: see tests/fakes/fake_nix.py\n"
        f'exec "{sys.executable}" "{REPO / "tests" / "fakes" / "fake_nix.py"}" "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    store = tmp_path / "fake-store"
    store.mkdir()
    log = tmp_path / "fake-nix.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_NIX_STORE", str(store))
    monkeypatch.setenv("FAKE_NIX_LOG", str(log))
    for name in (
        "FAKE_NIX_VERSION",
        "FAKE_NIX_FAIL",
        "FAKE_NIX_DIRTY",
        "FAKE_NIX_EVAL",
        "FAKE_NIX_PYTHON",
        "FAKE_NIX_EXTRA",
    ):
        monkeypatch.delenv(name, raising=False)
    return FakeNix(bin_dir, log)


def write_lock(folder: Path, revision: str = NIXPKGS_REVISION) -> None:
    lock = {
        "nodes": {
            "nixpkgs": {
                "locked": {
                    "lastModified": 1750000000,
                    "narHash": "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                    "owner": "NixOS",
                    "repo": "nixpkgs",
                    "rev": revision,
                    "type": "github",
                },
                "original": {"owner": "NixOS", "ref": "nixos-25.11", "repo": "nixpkgs"},
            },
            "root": {"inputs": {"nixpkgs": "nixpkgs"}},
        },
        "root": "root",
        "version": 7,
    }
    (folder / "flake.lock").write_text(json.dumps(lock, indent=2))


@pytest.fixture
def flake_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "flake.nix").write_text("# stand-in flake for tests\n{ outputs = _: { }; }\n")
    write_lock(folder)
    return folder


def test_build_writes_a_manifest_of_the_image(
    okai_home: Path, fake_nix: FakeNix, flake_dir: Path
) -> None:
    result = run_okai("--json", "image", "build", "--flake", str(flake_dir))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)

    manifest_path = Path(shown["manifestPath"])
    assert manifest_path == okai_home / ".okai" / "images" / "qemu" / "manifest.json"
    manifest = ImageManifest.load(manifest_path)
    assert shown["manifest"] == manifest.to_json()

    image = Path(shown["imagePath"])
    assert image.is_symlink() and image.parent == manifest_path.parent
    data = image.read_bytes()
    assert b"FAKE NixOS image" in data
    assert manifest.sha256 == "sha256:" + hashlib.sha256(data).hexdigest()
    assert manifest.size == len(data) > 2 * 1024 * 1024
    assert (manifest.file_name, manifest.format, manifest.variant) == (
        "okai-node-qemu.qcow2",
        "qcow2",
        "qemu",
    )
    assert manifest.blob_id is None
    assert manifest.nixos.nixpkgs_revision == NIXPKGS_REVISION
    assert manifest.nixos.flake_revision == FAKE_REVISION
    assert manifest.nixos.system_toplevel.startswith("/nix/store/")
    assert manifest.nixos.system_toplevel.endswith("-nixos-system-okai-node-qemu-25.11")
    assert (manifest_path.parent / "result").is_symlink()
    # The Python packages of the image's okai, as the flake evaluates them.
    assert manifest.python is not None
    assert manifest.to_json()["python"] == PYTHON_IDENTITY
    assert manifest.python.extra_packages == ("einops",)

    calls = fake_nix.calls()
    assert calls[0] == ["--version"]
    for call in calls[1:]:
        assert call[:2] == EXPERIMENTAL, call
    commands = {tuple(call[2:4]): call for call in calls[1:]}
    assert commands["build", "--json"][-1] == f"{flake_dir}#qemu"
    # Evaluated, not `nix path-info`: a toplevel is absent when the image was substituted.
    assert not any("path-info" in call for call in calls)
    toplevel = f"{flake_dir}#qemu.passthru.config.system.build.toplevel.outPath"
    assert commands["eval", "--raw"] == [*EXPERIMENTAL, "eval", "--raw", toplevel]
    # The package the image's own configuration holds, whatever package the flake exports.
    python = f"{flake_dir}#qemu.passthru.config.services.okai-node.package.pythonIdentity"
    assert commands["eval", "--json"] == [*EXPERIMENTAL, "eval", "--json", python]


def test_a_manifest_from_before_python_was_recorded_still_loads(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path
) -> None:
    built = build_image(flake_dir, "qemu", tmp_path / "out")
    older = {key: value for key, value in built.manifest.to_json().items() if key != "python"}
    loaded = ImageManifest.from_data(older, "an older manifest")
    assert loaded.python is None and "python" not in loaded.to_json()


def test_the_summary_names_the_python_packages(
    okai_home: Path, fake_nix: FakeNix, flake_dir: Path
) -> None:
    result = run_okai("image", "build", "--flake", str(flake_dir))
    assert result.returncode == 0, result.stderr
    assert "3.11.14, 3 packages (for jobs: einops)" in result.stdout


def test_raw_variants_are_img_files(fake_nix: FakeNix, flake_dir: Path, tmp_path: Path) -> None:
    built = build_image(flake_dir, "raw-efi", tmp_path / "out")
    assert built.manifest.file_name == "okai-node-raw-efi.img"
    assert (built.manifest.format, built.manifest.variant) == ("raw", "raw-efi")
    assert built.manifest.nixos.system_toplevel.endswith("okai-node-raw-efi-25.11")


def test_rebuilding_replaces_the_link_and_manifest(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path
) -> None:
    first = build_image(flake_dir, "qemu", tmp_path / "out")
    second = build_image(flake_dir, "qemu", tmp_path / "out")
    assert first.manifest == second.manifest
    assert second.image_path.resolve() == second.build_output / "okai-node-qemu.qcow2"
    assert ImageManifest.load(second.manifest_path) == second.manifest


def test_hash_progress_sees_every_byte(fake_nix: FakeNix, flake_dir: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    totals: list[int] = []

    @contextmanager
    def progress(total: int) -> Iterator[Callable[[int], None]]:
        totals.append(total)
        yield seen.append

    built = build_image(flake_dir, "qemu", tmp_path / "out", hash_progress=progress)
    assert totals == [built.manifest.size]
    assert sum(seen) == built.manifest.size and len(seen) > 1


def test_missing_nix_says_what_to_install(
    okai_home: Path, flake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = call_okai("image", "build", "--flake", str(flake_dir))
    assert result.returncode == 1
    assert "Nix is not installed" in result.stderr
    assert "Nix 2.18 or newer" in result.stderr
    assert "https://nixos.org/download" in result.stderr
    assert not (okai_home / ".okai" / "images").exists()


def test_old_nix_is_refused_before_anything_runs(
    okai_home: Path, fake_nix: FakeNix, flake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_VERSION", "2.8.0")
    result = call_okai("image", "build", "--flake", str(flake_dir))
    assert result.returncode == 1
    assert "is Nix 2.8.0" in result.stderr
    assert "needs Nix 2.18 or newer" in result.stderr
    assert "nixos.org/download" in result.stderr
    assert fake_nix.calls() == [["--version"]]


def test_installed_nix_version_is_read_and_checked() -> None:
    """The real `nix` (Debian's nix-bin, installed by `make setup`), not the fake."""
    real = shutil.which("nix", path=f"/usr/bin{os.pathsep}/bin")
    assert real is not None, "install nix-bin (`make setup` does) to run the Nix tests"
    output = subprocess.run(
        [real, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    version = parse_version(output)
    if version[:2] < (2, 18):
        with pytest.raises(NixTooOldError, match=r"needs Nix 2\.18 or newer"):
            Nix(real).check_version()
    else:
        assert Nix(real).check_version() == version


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("nix (Nix) 2.24.9\n", (2, 24, 9)),
        ("nix (Nix) 2.8.0\n", (2, 8, 0)),
        ("nix (Determinate Nix 3.6.2) 2.29.0\n", (2, 29, 0)),
        ("nix (Lix, like Nix) 2.91.1\n", (2, 91, 1)),
        ("nix (Nix) 2.18.0pre20230915_abcdef\n", (2, 18, 0)),
        ("nix (Nix) 2.19\n", (2, 19)),
    ],
)
def test_version_forms(output: str, version: tuple[int, ...]) -> None:
    assert parse_version(output) == version


@pytest.mark.parametrize("output", ["", "command not found\n", "nix (Nix) unknown\n"])
def test_unreadable_version_is_an_error(output: str) -> None:
    with pytest.raises(NixCommandError, match="cannot read a version"):
        parse_version(output)


def test_build_failure_is_reported_and_writes_nothing(
    okai_home: Path, fake_nix: FakeNix, flake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_FAIL", "build")
    # A real process: Nix writes its log to the inherited stderr, not to sys.stderr.
    result = run_okai("image", "build", "--flake", str(flake_dir))
    assert result.returncode == 1
    assert "builder for" in result.stderr  # Nix's own log reaches the user
    assert f"`nix build {flake_dir}#qemu` failed (exit 1)" in result.stderr
    assert not (okai_home / ".okai" / "images" / "qemu" / "manifest.json").exists()


def test_dirty_tree_is_refused_unless_allowed(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_DIRTY", "1")
    with pytest.raises(DirtyFlakeError, match="uncommitted changes"):
        build_image(flake_dir, "qemu", tmp_path / "out")
    assert not any(call[2:3] == ["build"] for call in fake_nix.calls())
    built = build_image(flake_dir, "qemu", tmp_path / "out", allow_dirty=True)
    assert built.manifest.nixos.flake_revision == f"{FAKE_REVISION}-dirty"


def test_dirty_tree_cli_exit_code(
    okai_home: Path, fake_nix: FakeNix, flake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_DIRTY", "1")
    result = call_okai("image", "build", "--flake", str(flake_dir))
    assert result.returncode == 2
    assert "--allow-dirty" in result.stderr


def test_missing_lock_file_says_to_lock(fake_nix: FakeNix, flake_dir: Path, tmp_path: Path) -> None:
    (flake_dir / "flake.lock").unlink()
    with pytest.raises(DocumentError, match="nix flake lock"):
        build_image(flake_dir, "qemu", tmp_path / "out")


def test_garbage_from_eval_is_not_recorded(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_EVAL", "warning: Git tree is dirty")
    with pytest.raises(NixCommandError, match="did not print a store path"):
        build_image(flake_dir, "qemu", tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("printed", "problem"),
    [
        ("not json", "did not print JSON"),
        (json.dumps({**PYTHON_IDENTITY, "packages": []}), "field 'packages'"),
        (json.dumps({**PYTHON_IDENTITY, "extraPackages": ["unknown"]}), "not among the packages"),
        (
            json.dumps({**PYTHON_IDENTITY, "packages": PYTHON_IDENTITY["packages"] * 2}),
            "listed twice",
        ),
        (
            json.dumps({**PYTHON_IDENTITY, "packages": [{"name": "Bad_Name", "version": "1"}]}),
            "field 'packages.0.name'",
        ),
    ],
)
def test_a_python_identity_okai_cannot_read_is_not_recorded(
    fake_nix: FakeNix,
    flake_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    printed: str,
    problem: str,
) -> None:
    monkeypatch.setenv("FAKE_NIX_PYTHON", printed)
    with pytest.raises(NixCommandError, match=problem):
        build_image(flake_dir, "qemu", tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_ambiguous_build_output_is_an_error(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_EXTRA", "1")
    with pytest.raises(NixCommandError, match=r"expected one \.qcow2 file"):
        build_image(flake_dir, "qemu", tmp_path / "out")


def test_unknown_variant_and_missing_flake(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="qemu, qemu-efi, raw, raw-efi"):
        build_image(flake_dir, "vmdk", tmp_path / "out")
    with pytest.raises(UsageError, match=r"has no flake\.nix"):
        build_image(tmp_path, "qemu", tmp_path / "out")
    assert fake_nix.calls() == []


def python_variants() -> list[tuple[str, object]]:
    """`python` fields of an image manifest, valid and not, for okai and the page to judge."""
    good = PYTHON_IDENTITY
    package = good["packages"][0]
    return [
        ("recorded", good),
        ("absent (older manifests)", None),
        ("no extras", {**good, "extraPackages": []}),
        ("extras left out", {key: good[key] for key in ("version", "packages")}),
        ("unknown field", {**good, "pip": "25"}),
        ("no packages", {**good, "packages": []}),
        ("packages not a list", {**good, "packages": {"numpy": "2"}}),
        ("a package twice", {**good, "packages": [package, package]}),
        ("a name pip would write", {**good, "packages": [{**package, "name": "PyYAML"}]}),
        ("a name of 201 characters", {**good, "packages": [{**package, "name": "a" * 201}]}),
        ("an empty version", {**good, "packages": [{**package, "version": ""}]}),
        ("a numeric version", {**good, "packages": [{**package, "version": 2}]}),
        ("a bare hex sha256", {**good, "packages": [{**package, "sha256": "e" * 64}]}),
        ("a package field more", {**good, "packages": [{**package, "url": "https://x"}]}),
        ("an extra not installed", {**good, "extraPackages": ["tqdm"]}),
        ("extras as null", {**good, "extraPackages": None}),
        ("no interpreter version", {**good, "version": ""}),
        ("python a list", [good]),
    ]


def test_okai_and_the_page_accept_the_same_python_records(
    fake_nix: FakeNix, flake_dir: Path, tmp_path: Path
) -> None:
    """The verification page reads image manifests too (web/src/rules.js): same verdicts."""
    base = build_image(flake_dir, "qemu", tmp_path / "out").manifest.to_json()
    documents = []
    for _, python in python_variants():
        document = {key: value for key, value in base.items() if key != "python"}
        if python is not None:
            document["python"] = python
        documents.append(document)
    page = page_map("src/rules.js", "imageManifestProblem", documents)
    for (name, _), document, problem in zip(python_variants(), documents, page, strict=True):
        try:
            ImageManifest.from_data(document, name)
            okai_accepts = True
        except DocumentError:
            okai_accepts = False
        assert okai_accepts == (problem is None), (name, problem)
    assert [problem is None for problem in page] == [True] * 4 + [False] * 14
