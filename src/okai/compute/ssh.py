"""SSH, the control channel to cluster nodes: public keys and ssh/scp command lines.

Nodes are reached with the operator's key, in batch mode (never a password
prompt), trusting each node's host key on first use and pinning it in a
known_hosts file of the cluster's own, so a reused address of another
cluster can never be confused with this one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from okai.errors import UsageError

KEY_TYPES = frozenset(
    {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
)
"""OpenSSH public key types Fluence accepts (RSA, ECDSA and Ed25519)."""


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key line: `<type> <base64 blob> [comment]`."""

    key_type: str
    blob: bytes
    comment: str = ""

    @classmethod
    def parse(cls, line: str) -> PublicKey:
        parts = line.strip().split(None, 2)
        if len(parts) < 2 or parts[0] not in KEY_TYPES:
            raise UsageError(
                "not an OpenSSH public key line (expected e.g. 'ssh-ed25519 AAAA... you@host')",
                hint=f"key types accepted: {', '.join(sorted(KEY_TYPES))}; pass the .pub file",
            )
        try:
            blob = base64.b64decode(parts[1], validate=True)
            (length,) = struct.unpack(">I", blob[:4])
            embedded = blob[4 : 4 + length].decode("ascii")
        except (binascii.Error, struct.error, UnicodeDecodeError) as exc:
            raise UsageError("the SSH public key's base64 part is corrupt") from exc
        if embedded != parts[0]:
            raise UsageError(f"the SSH public key says {parts[0]} but holds a {embedded!r} key")
        return cls(parts[0], blob, parts[2] if len(parts) == 3 else "")

    @classmethod
    def read(cls, path: Path) -> PublicKey:
        try:
            return cls.parse(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read the SSH public key {path}: {exc.strerror}") from exc

    @property
    def openssh(self) -> str:
        """The key as one line, without its comment."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"

    @property
    def fingerprint(self) -> str:
        """`SHA256:<base64>`, as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    @property
    def md5_fingerprint(self) -> str:
        """The legacy `aa:bb:...` form some APIs still show."""
        digest = hashlib.md5(self.blob, usedforsecurity=False).hexdigest()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def matches(self, line_or_fingerprint: str) -> bool:
        """Whether a key line or fingerprint names this key (comments ignored)."""
        text = line_or_fingerprint.strip()
        if text in (self.fingerprint, self.md5_fingerprint, f"MD5:{self.md5_fingerprint}"):
            return True
        try:
            return PublicKey.parse(text).blob == self.blob
        except UsageError:
            return False


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """How to reach one node."""

    host: str
    user: str = "root"
    port: int = 22
    identity: Path | None = None
    """Private key file; `None` uses ssh's defaults and agent."""
    known_hosts: Path
    """The cluster's own known_hosts file."""
    connect_timeout_s: int = 10

    def options(self) -> list[str]:
        opts = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={self.connect_timeout_s}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
        ]  # fmt: skip
        if self.identity is not None:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(self.identity)]
        return opts


def ssh_argv(target: SshTarget, command: list[str]) -> list[str]:
    """`ssh` running `command` on the node (arguments joined by the remote shell)."""
    return ["ssh", *target.options(), "-p", str(target.port), f"{target.user}@{target.host}",
            *command]  # fmt: skip


def scp_argv(target: SshTarget, local: Path, remote: str) -> list[str]:
    """`scp` copying `local` to `remote` on the node."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return ["scp", *target.options(), "-P", str(target.port), "-q", str(local),
            f"{target.user}@{host}:{remote}"]  # fmt: skip
