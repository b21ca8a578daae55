"""SSH helpers: public keys as Fluence and ssh-keygen see them, and ssh/scp command lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from okai.compute.ssh import PublicKey, SshTarget, scp_argv, ssh_argv
from okai.errors import UsageError

# Generated with `ssh-keygen -t ed25519 -C alice@laptop` / `-t ecdsa -b 256`; fingerprints
# as printed by `ssh-keygen -lf` and `ssh-keygen -l -E md5 -f`.
ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHs+9/sWKPnqE7dvPqsANoK5Z29mrf+aGNFQfFp5PV91 alice@laptop"
)
ED25519_SHA256 = "SHA256:GhfWxz5xeLgYg2dBZiN/aQKFoPK84iTurJkFdFyIxBg"
ED25519_MD5 = "47:28:0d:13:d7:9b:2e:c0:9b:0a:30:51:84:00:af:22"
ECDSA = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHPO/nFJXc7e0uzoDxUIa"
    "piAS1GPEXo9m5uhVKMpKEmhsXv9vvtP9fvw6/kOFAmH/5uBQDqsq9pqhV/yEveDVZo= "
)
ECDSA_SHA256 = "SHA256:Wo19ia6SSQh755XTNeBxHfVtDLaloY9VoqzZ01gOIPU"


def test_fingerprints_match_ssh_keygen() -> None:
    key = PublicKey.parse(ED25519)
    assert key.fingerprint == ED25519_SHA256
    assert key.md5_fingerprint == ED25519_MD5
    assert key.comment == "alice@laptop"
    assert PublicKey.parse(ECDSA).fingerprint == ECDSA_SHA256


def test_a_key_matches_itself_in_any_form_and_nothing_else() -> None:
    key = PublicKey.parse(ED25519)
    assert key.matches(key.openssh)  # comment dropped
    assert key.matches(ED25519_SHA256)
    assert key.matches(f"MD5:{ED25519_MD5}")
    assert not key.matches(ECDSA)
    assert not key.matches(ECDSA_SHA256)
    assert not key.matches("garbage")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "not an OpenSSH public key"),
        ("ssh-dss AAAAB3NzaC1kc3M= x", "not an OpenSSH public key"),
        ("ssh-ed25519 !!!notbase64", "corrupt"),
        (ED25519.replace("ssh-ed25519", "ssh-rsa", 1), "holds a 'ssh-ed25519' key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "not an OpenSSH public key"),
    ],
)
def test_malformed_keys_are_refused(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        PublicKey.parse(line)


def test_read_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the SSH public key"):
        PublicKey.read(tmp_path / "missing.pub")
    (tmp_path / "id.pub").write_text(ED25519 + "\n")
    assert PublicKey.read(tmp_path / "id.pub").fingerprint == ED25519_SHA256


def test_ssh_and_scp_argv_use_batch_mode_and_the_cluster_known_hosts(tmp_path: Path) -> None:
    known = tmp_path / "clusters" / "job42.known_hosts"
    target = SshTarget(host="203.0.113.7", identity=tmp_path / "id_ed25519", known_hosts=known)
    argv = ssh_argv(target, ["okai", "node", "status", "--json"])
    assert argv[0] == "ssh"
    assert argv[-5:] == ["root@203.0.113.7", "okai", "node", "status", "--json"]
    options = " ".join(argv)
    for option in ("BatchMode=yes", "StrictHostKeyChecking=accept-new",
                   f"UserKnownHostsFile={known}", "IdentitiesOnly=yes"):  # fmt: skip
        assert option in options
    copy = scp_argv(
        SshTarget(host="2001:db8::7", known_hosts=known),
        tmp_path / "c.json",
        "/var/lib/okai/c.json",
    )
    assert copy[-1] == "root@[2001:db8::7]:/var/lib/okai/c.json"
    assert "-P" in copy and "-i" not in copy


def test_ssh_itself_accepts_the_options(tmp_path: Path) -> None:
    target = SshTarget(host="203.0.113.7", port=2222, known_hosts=tmp_path / "kh")
    argv = ssh_argv(target, [])
    # `ssh -G` prints the configuration it would use, without connecting.
    shown = subprocess.run([argv[0], "-G", *argv[1:]], capture_output=True, text=True, check=True)
    config = dict(line.split(" ", 1) for line in shown.stdout.splitlines() if " " in line)
    assert config["batchmode"] == "yes"
    assert config["stricthostkeychecking"] == "accept-new"
    assert config["userknownhostsfile"] == str(tmp_path / "kh")
    assert config["port"] == "2222"
