"""The software a run's bytes depend on, measured, and compared with another machine's.

A deterministic job gives the same model bytes only on the same software: the
interpreter, torch's version *and build* (two builds of one version can pick other
kernels), NumPy and the BLAS it links, and the CPU features that decide which
vectorised kernels torch dispatches to. `measure()` records them as the flat
`name -> string` map that receipts and attestations carry under `libraries`
(`python`, `torch` and `numpy` were there before, beside `okai`; the dotted names are
new, and readers that only show the map need nothing else). `compare()` names what
differs between a recorded map and this machine's, before `okai verify --reproduce`
re-trains.

The torch library digest is the SHA-256 the wheel's own RECORD gives for
`libtorch_cpu.so`, not the file's current bytes: the image installs the very same
wheel but patches the library's ELF search path, which changes the file, not the code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from okai.digest import Digest
from okai.errors import UsageError

SAME = "same software: bitwise equality expected"

CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
)
"""x86 features that select kernels in torch (ATen's CPU capability, oneDNN) and the BLAS."""

DECISIVE = (
    "python",
    "torch",
    "torch.git",
    "torch.cuda",
    "torch.config",
    "torch.library",
    "torch.cpuCapability",
    "numpy",
    "numpy.blas",
    "cpu.machine",
    "cpu.flags",
)
"""The entries whose difference can change the bytes of a model (`okai` is the code,
which the attestation pins by digest already)."""

FLAKE_ENV = "OKAI_FLAKE"
"""The okai flake's location (`github:<owner>/okai`, `git+https://…`, a path): with it
and Nix, `okai verify --reproduce` says how to re-train inside the recorded image's
software when this machine's differs."""
NIX_FLAGS = ("--extra-experimental-features", "nix-command flakes")
TORCH_LIBRARY = "torch/lib/libtorch_cpu.so"
_REVISION = re.compile(r"^[0-9a-f]{40}$")
_SHORTHAND = re.compile(r"^(github|gitlab|sourcehut):[A-Za-z0-9_.~-]+/[A-Za-z0-9_.-]+$")
_CAPABILITY_LINE = re.compile(r"^\s*-\s*CPU capability usage:.*$", re.M)


@dataclass(frozen=True)
class Difference:
    name: str
    recorded: str | None
    here: str | None

    def __str__(self) -> str:
        return f"{self.name}: recorded {self.recorded or '(not recorded)'}, here {self.here or '(unknown)'}"


def measure(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """This process's software identity (imports torch and numpy)."""
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torch.git": str(torch.version.git_version or "unknown"),
        "torch.cuda": str(torch.version.cuda or "none"),
        "torch.config": Digest.of_bytes(_build_config(torch).encode()).hex,
        "torch.library": _torch_library_digest(torch),
        "torch.cpuCapability": str(torch.backends.cpu.get_cpu_capability()),
        "numpy": str(numpy.__version__),
        "numpy.blas": _numpy_blas(numpy),
        "cpu.machine": platform.machine() or "unknown",
        "cpu.flags": cpu_flags(cpuinfo),
    }


def compare(recorded: Mapping[str, str], here: Mapping[str, str]) -> tuple[Difference, ...]:
    """The decisive entries that differ; an entry missing on either side differs too."""
    return tuple(
        Difference(name, recorded.get(name), here.get(name))
        for name in DECISIVE
        if recorded.get(name) != here.get(name)
    )


def describe(differences: tuple[Difference, ...]) -> str:
    if not differences:
        return SAME
    listed = "; ".join(str(difference) for difference in differences)
    return f"different software, so the model bytes may differ: {listed}"


def before_reproduction(
    recorded: Mapping[str, str],
    flake_revision: str | None,
    model_digest: str,
    network: str | None = None,
    *,
    here: Mapping[str, str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> list[str]:
    """What `okai verify --reproduce` says before re-training: whether this machine's
    software is the recorded one and, if not, how to get the recorded one."""
    differences = compare(recorded, measure() if here is None else here)
    lines = [describe(differences)]
    if not differences:
        return lines
    if flake_revision is None or not _REVISION.match(flake_revision):
        lines.append(
            "the run names no image built from a committed okai revision, "
            "so its software cannot be fetched"
        )
    elif shutil.which("nix", path=env.get("PATH")) is None:
        lines.append(
            f"with Nix installed, re-training can run in the image's software "
            f"(okai at revision {flake_revision})"
        )
    elif not env.get(FLAKE_ENV):
        lines.append(
            f"set {FLAKE_ENV} to the okai flake's location (e.g. github:<owner>/okai) "
            f"to re-train in the image's software (revision {flake_revision})"
        )
    else:
        command = image_command(env[FLAKE_ENV], flake_revision, model_digest, network)
        lines.append(f"to re-train in the image's software: {shlex.join(command)}")
    return lines


def pinned_flake(flake: str, revision: str) -> str:
    """`flake` fixed at `revision`: `github:o/r/<rev>`, else a `rev=` parameter."""
    if not _REVISION.match(revision):
        raise UsageError(f"{revision[:60]!r} is not a git revision (40 hex digits)")
    if not flake or "#" in flake or any(char.isspace() for char in flake):
        raise UsageError(f"{flake[:100]!r} is not a flake reference without an output")
    if _SHORTHAND.match(flake):
        return f"{flake}/{revision}"
    if flake.startswith(("github:", "gitlab:", "sourcehut:")) or "rev=" in flake:
        raise UsageError(f"{flake} already names a revision; give the flake without one")
    return f"{flake}{'&' if '?' in flake else '?'}rev={revision}"


def image_command(
    flake: str, revision: str, model_digest: str, network: str | None = None
) -> list[str]:
    """`okai verify --reproduce` run by the recorded revision's own okai package: the
    flake's `okai` output, whose Python packages are that revision's lock."""
    options = [] if network is None else ["--network", network]
    return [
        "nix",
        *NIX_FLAGS,
        "run",
        f"{pinned_flake(flake, revision)}#okai",
        "--",
        *options,
        "verify",
        model_digest,
        "--reproduce",
    ]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The kernel-selecting features of the first CPU, in CPU_FLAGS order ("none" if none)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown"
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    present = set(match[1].split()) if match else set()
    return " ".join(flag for flag in CPU_FLAGS if flag in present) or "none"


def _build_config(torch: Any) -> str:
    """torch's build configuration (compiler, flags, BLAS, oneDNN), without the one
    machine-dependent line, which `torch.cpuCapability` records on its own."""
    return _CAPABILITY_LINE.sub("", str(torch.__config__.show()))


def _torch_library_digest(torch: Any) -> str:
    """The wheel's SHA-256 of libtorch_cpu.so; the file's own when no RECORD names it."""
    try:
        files = metadata.distribution("torch").files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        recorded = entry.hash
        if entry.as_posix() == TORCH_LIBRARY and recorded is not None and recorded.mode == "sha256":
            padded = recorded.value + "=" * (-len(recorded.value) % 4)
            return base64.urlsafe_b64decode(padded).hex()
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        with open(library, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError:
        return "unknown"


def _numpy_blas(numpy: Any) -> str:
    try:
        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', 'unknown')} {blas.get('version', 'unknown')}"
    except (TypeError, KeyError, AttributeError):
        return "unknown"
