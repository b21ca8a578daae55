"""The software identity of a run, and its comparison before `okai verify --reproduce`."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from okai.errors import UsageError
from okai.provenance import software

REVISION = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def here() -> dict[str, str]:
    return software.measure()


def test_every_decisive_entry_is_measured_and_fits_a_receipt(here: dict[str, str]) -> None:
    assert set(here) == set(software.DECISIVE)
    for name, value in here.items():
        assert 1 <= len(value) <= 100, (name, value)  # Receipt.libraries' bounds
    assert here["torch"] == metadata.version("torch")
    assert re.fullmatch(r"[0-9a-f]{40}", here["torch.git"])
    assert here["torch.cuda"] == "none"  # the CPU wheel
    assert re.fullmatch(r"[0-9a-f]{64}", here["torch.config"])
    assert here["torch.cpuCapability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX"}


def test_the_torch_library_digest_is_the_wheels_own(here: dict[str, str]) -> None:
    """What RECORD says, so a copy whose ELF paths the image patched still matches."""
    record = {
        entry.as_posix(): entry.hash
        for entry in metadata.distribution("torch").files or []
        if entry.hash is not None
    }
    recorded = record[software.TORCH_LIBRARY]
    assert recorded is not None and recorded.mode == "sha256"
    expected = base64.urlsafe_b64decode(recorded.value + "==").hex()
    assert here["torch.library"] == expected
    # Unpatched here, so the file's bytes agree with the wheel.
    library = Path(metadata.distribution("torch").locate_file(software.TORCH_LIBRARY))
    assert hashlib.sha256(library.read_bytes()).hexdigest() == expected


def test_the_build_digest_leaves_out_the_machine_dependent_line() -> None:
    def fake(capability: str) -> SimpleNamespace:
        shown = f"PyTorch built with:\n  - BLAS_INFO=open\n  - CPU capability usage: {capability}\n"
        return SimpleNamespace(__config__=SimpleNamespace(show=lambda: shown))

    assert software._build_config(fake("AVX2")) == software._build_config(fake("AVX512"))
    assert "BLAS_INFO=open" in software._build_config(fake("AVX2"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processor : 0\nflags : fpu sse avx2 avx fma avx512f\n", "avx avx2 fma avx512f"),
        ("processor : 0\nflags : fpu sse\n", "none"),
        ("no flags line at all\n", "none"),
        # A hostile or odd cpuinfo gives only the known names, never its own text.
        ("flags : avx2 $(reboot) " + "x" * 10_000 + "\n", "avx2"),
    ],
)
def test_cpu_flags_keep_only_the_kernel_selecting_ones(
    tmp_path: Path, text: str, expected: str
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert software.cpu_flags(cpuinfo) == expected


def test_unreadable_cpu_flags_are_unknown(tmp_path: Path) -> None:
    assert software.cpu_flags(tmp_path / "missing") == "unknown"


def test_same_software_expects_equal_bytes(here: dict[str, str]) -> None:
    assert software.compare(here, dict(here)) == ()
    assert software.describe(()) == software.SAME
    # okai's own version (receipts carry it) is the code, pinned by digest: not compared.
    assert software.compare({**here, "okai": "9.9"}, here) == ()


def test_differences_are_named(here: dict[str, str]) -> None:
    old = {**here, "python": "3.12.3", "cpu.flags": "avx avx2 fma f16c avx512f"}
    del old["torch.library"]
    found = software.compare(old, here)
    assert [difference.name for difference in found] == ["python", "torch.library", "cpu.flags"]
    text = software.describe(found)
    assert text.startswith("different software, so the model bytes may differ: ")
    assert f"python: recorded 3.12.3, here {here['python']}" in text
    assert "torch.library: recorded (not recorded)" in text


def test_a_run_recorded_before_this_lists_what_it_lacks(here: dict[str, str]) -> None:
    old_receipt = {"python": here["python"], "torch": here["torch"], "okai": "0.1.0"}
    names = [difference.name for difference in software.compare(old_receipt, here)]
    assert "python" not in names and "torch" not in names
    assert "torch.git" in names and "cpu.flags" in names


@pytest.mark.parametrize(
    ("flake", "expected"),
    [
        ("github:that-s-ok/okai", f"github:that-s-ok/okai/{REVISION}"),
        ("git+https://git.example/okai.git", f"git+https://git.example/okai.git?rev={REVISION}"),
        ("git+file:///src/okai?ref=main", f"git+file:///src/okai?ref=main&rev={REVISION}"),
    ],
)
def test_the_flake_is_pinned_to_the_recorded_revision(flake: str, expected: str) -> None:
    assert software.pinned_flake(flake, REVISION) == expected


@pytest.mark.parametrize(
    ("flake", "revision"),
    [
        ("github:o/okai", "main"),
        ("github:o/okai", REVISION + "-dirty"),
        ("github:o/okai", "$(reboot)"),
        ("github:o/okai#okai", REVISION),
        ("github:o/okai; reboot", REVISION),
        ("github:o/okai/v1", REVISION),
        ("git+https://x/okai?rev=" + REVISION, REVISION),
        ("", REVISION),
    ],
)
def test_a_bad_flake_or_revision_is_refused(flake: str, revision: str) -> None:
    with pytest.raises(UsageError):
        software.pinned_flake(flake, revision)


def test_the_image_command_runs_the_revisions_okai() -> None:
    assert software.image_command("github:o/okai", REVISION, DIGEST, "coston2") == [
        "nix",
        "--extra-experimental-features",
        "nix-command flakes",
        "run",
        f"github:o/okai/{REVISION}#okai",
        "--",
        "--network",
        "coston2",
        "verify",
        DIGEST,
        "--reproduce",
    ]


def fake_nix(tmp_path: Path) -> str:
    """A directory holding an executable named nix: only its presence is looked at."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nix = bin_dir / "nix"
    nix.write_text("#!/bin/sh\nexit 1\n")
    nix.chmod(nix.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


def test_before_reproduction_says_how_to_get_the_recorded_software(
    here: dict[str, str], tmp_path: Path
) -> None:
    old = {**here, "torch": "2.9.0"}

    def said(revision: str | None, env: dict[str, str]) -> list[str]:
        return software.before_reproduction(old, revision, DIGEST, "dev", here=here, env=env)

    assert software.before_reproduction(here, REVISION, DIGEST, here=here, env={}) == [
        software.SAME
    ]
    no_nix = {"PATH": str(tmp_path / "empty")}
    assert "cannot be fetched" in said(None, no_nix)[1]
    assert "cannot be fetched" in said("dirty-sha256-abc", no_nix)[1]
    assert said(REVISION, no_nix)[1].startswith("with Nix installed")
    with_nix = {"PATH": fake_nix(tmp_path)}
    assert said(REVISION, with_nix)[1].startswith(f"set {software.FLAKE_ENV}")
    lines = said(REVISION, {**with_nix, software.FLAKE_ENV: "github:o/okai"})
    assert lines[0].startswith("different software")
    assert lines[1] == (
        "to re-train in the image's software: nix --extra-experimental-features "
        f"'nix-command flakes' run 'github:o/okai/{REVISION}#okai' -- --network dev "
        f"verify {DIGEST} --reproduce"
    )
