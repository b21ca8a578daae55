"""The `nix` command, as the image build uses it.

Every call passes `--extra-experimental-features "nix-command flakes"`, so a
Nix installed without flakes switched on works too. The version is checked
first: current nixpkgs refuses to evaluate on Nix older than 2.18, and the
error it prints then does not say what to install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okai.image.errors import NixCommandError, NixMissingError, NixTooOldError

MIN_NIX_VERSION = (2, 18)
EXPERIMENTAL = ("--extra-experimental-features", "nix-command flakes")
STORE_PATH = re.compile(r"^/nix/store/[0-9a-z]{32}-[^/\s]+$")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_STDERR_TAIL = 2000


def parse_version(output: str) -> tuple[int, ...]:
    """The version in `nix --version` output.

    Forms seen: `nix (Nix) 2.24.9`, `nix (Determinate Nix 3.6.2) 2.29.0`,
    `nix (Lix, like Nix) 2.91.1`; the Nix version is the last one on the line.
    """
    first_line = output.strip().splitlines()[0] if output.strip() else ""
    found = _VERSION.findall(first_line)
    if not found:
        raise NixCommandError(f"cannot read a version from `nix --version`: {first_line[:120]!r}")
    return tuple(int(part) for part in found[-1] if part)


@dataclass(frozen=True)
class FlakeSource:
    """What `nix flake metadata` says about the flake's own source tree."""

    revision: str | None
    dirty_revision: str | None
    nar_hash: str | None

    @property
    def is_dirty(self) -> bool:
        return self.revision is None

    @property
    def flake_revision(self) -> str:
        """The flake revision as flake.nix writes it into the image (`self.rev or ...`)."""
        if self.revision is not None:
            return self.revision
        if self.dirty_revision is not None:
            return self.dirty_revision
        return f"dirty-{self.nar_hash or 'unknown'}"


class Nix:
    """One `nix` executable, checked to be recent enough."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    @classmethod
    def find(cls) -> Nix:
        """The `nix` on PATH, or an error that says what to install."""
        executable = shutil.which("nix")
        if executable is None:
            raise NixMissingError()
        nix = cls(executable)
        nix.check_version()
        return nix

    def check_version(self) -> tuple[int, ...]:
        output = self._run(["--version"], what="nix --version", timeout=60)
        version = parse_version(output)
        if version[:2] < MIN_NIX_VERSION:
            raise NixTooOldError(
                ".".join(map(str, version)),
                self.executable,
                ".".join(map(str, MIN_NIX_VERSION)),
            )
        return version

    def flake_source(self, flake: str) -> FlakeSource:
        """Revision (or dirty state) and NAR hash of the flake at `flake`."""
        output = self._run(
            [*EXPERIMENTAL, "flake", "metadata", "--json", flake], what="nix flake metadata"
        )
        data = _json(output, "nix flake metadata --json")
        locked = data.get("locked") if isinstance(data.get("locked"), dict) else {}
        return FlakeSource(
            revision=_str_or_none(data.get("revision")),
            dirty_revision=_str_or_none(data.get("dirtyRevision")),
            nar_hash=_str_or_none(locked.get("narHash")),
        )

    def build(self, installable: str, out_link: Path) -> Path:
        """Build `installable`, keep it alive with the GC root `out_link`, return its output.

        Nix's own progress and build log go straight to the user's terminal.
        """
        output = self._run(
            [*EXPERIMENTAL, "build", "--json", "--out-link", str(out_link), installable],
            what=f"nix build {installable}",
            show_stderr=True,
        )
        results = _json(output, "nix build --json")
        try:
            return Path(results[0]["outputs"]["out"])
        except (KeyError, IndexError, TypeError) as exc:
            raise NixCommandError(
                f"nix build {installable} printed no output path: {output[:200]!r}"
            ) from exc

    def store_path(self, installable: str) -> str:
        """The output path of the derivation `installable`, by evaluation.

        Not `nix path-info`: that asks the store, and a toplevel is absent from it
        when the image itself came from a binary cache (only the image is fetched).
        """
        attribute = f"{installable}.outPath"
        output = self._run(
            [*EXPERIMENTAL, "eval", "--raw", attribute], what=f"nix eval {attribute}"
        )
        path = output.strip()
        if not STORE_PATH.match(path):
            raise NixCommandError(
                f"nix eval {attribute} did not print a store path: {path[:200]!r}"
            )
        return path

    def eval_json(self, installable: str) -> Any:
        """The value of the attribute `installable`, evaluated and read as JSON."""
        output = self._run(
            [*EXPERIMENTAL, "eval", "--json", installable], what=f"nix eval {installable}"
        )
        return _json(output, f"nix eval --json {installable}")

    def _run(
        self, args: list[str], *, what: str, show_stderr: bool = False, timeout: float | None = None
    ) -> str:
        try:
            completed = subprocess.run(
                [self.executable, *args],
                stdout=subprocess.PIPE,
                stderr=None if show_stderr else subprocess.PIPE,
                text=True,
                timeout=timeout,
                check=False,
            )
        except OSError as exc:
            raise NixCommandError(f"cannot run {self.executable}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise NixCommandError(f"`{what}` did not finish within {timeout:.0f} s") from exc
        if completed.returncode != 0:
            detail = "" if show_stderr else _tail(completed.stderr)
            where = "its log is above" if show_stderr else f"it said:\n{detail}"
            raise NixCommandError(f"`{what}` failed (exit {completed.returncode}); {where}")
        return completed.stdout


def _json(output: str, what: str) -> Any:
    try:
        return json.loads(output)
    except json.JSONDecodeError as exc:
        raise NixCommandError(f"{what} did not print JSON: {output[:200]!r}") from exc


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _tail(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= _STDERR_TAIL else "…" + text[-_STDERR_TAIL:]
