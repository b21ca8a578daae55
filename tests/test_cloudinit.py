"""Cloud-init user data: schema-valid, readable back, under 16 KiB, never carrying secrets."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from fakes.fluence_support import ssh_public_key
from okai.compute.cloudinit import (
    USER_DATA_LIMIT,
    CloudInitError,
    SecretInUserData,
    UserDataTooLarge,
    WriteFile,
    build_user_data,
    cloud_config_schema,
    validate_cloud_config,
)

SHARED_SCHEMA = Path("/work/shared/specs/cloud-init/schema-cloud-config-v1.json")
KEY = ssh_public_key()


def node_user_data(**overrides: object) -> str:
    args: dict[str, object] = {
        "hostname": "job42-r1",
        "ssh_authorized_keys": [KEY],
        "files": [
            WriteFile.json(
                "/var/lib/okai/cluster.json", {"rank": 1, "nodes": 2, "master": "203.0.113.7"}
            ),
            WriteFile("/var/lib/okai/job.toml", 'name = "digits"\nseed = 7\n', permissions="0600"),
            WriteFile("/var/lib/okai/blob.bin", bytes(range(256))),
        ],
    }
    args.update(overrides)
    return build_user_data(**args)  # type: ignore[arg-type]


def test_node_user_data_validates_against_the_cloud_init_schema() -> None:
    text = node_user_data()
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    # Checked here independently of the module's own validation.
    jsonschema.Draft4Validator(cloud_config_schema()).validate(document)
    assert document["hostname"] == "job42-r1"
    assert document["ssh_authorized_keys"] == [KEY]
    files = {f["path"]: f for f in document["write_files"]}
    assert json.loads(files["/var/lib/okai/cluster.json"]["content"])["master"] == "203.0.113.7"
    assert files["/var/lib/okai/job.toml"]["permissions"] == "0600"
    assert files["/var/lib/okai/blob.bin"]["encoding"] == "b64"


def test_the_vendored_schema_is_the_shared_one_unchanged() -> None:
    vendored = importlib.resources.files("okai.compute").joinpath(
        "schemas", "schema-cloud-config-v1.json"
    )
    digest = hashlib.sha256(vendored.read_bytes()).hexdigest()
    readme = Path(str(vendored)).with_name("README.md").read_text()
    assert digest in readme
    if SHARED_SCHEMA.exists():  # the shared folder is absent outside the workspace
        assert hashlib.sha256(SHARED_SCHEMA.read_bytes()).hexdigest() == digest


def test_schema_violations_name_the_field() -> None:
    with pytest.raises(CloudInitError, match="write_files/0/permissions"):
        validate_cloud_config({"write_files": [{"path": "/x", "permissions": 644}]})
    with pytest.raises(CloudInitError, match="top level"):
        validate_cloud_config({"no_such_module": True})


def test_user_data_over_16_kib_is_refused_with_its_size() -> None:
    big = WriteFile("/var/lib/okai/big.txt", "x" * USER_DATA_LIMIT)
    with pytest.raises(UserDataTooLarge) as caught:
        node_user_data(files=[big])
    assert caught.value.size > USER_DATA_LIMIT
    assert f"{caught.value.size} bytes" in str(caught.value)
    assert "over SSH" in str(caught.value)


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # 6000 three-byte characters: 6000 code points but 18000 bytes.
    with pytest.raises(UserDataTooLarge):
        node_user_data(files=[WriteFile("/var/lib/okai/u.txt", "€" * 6000)])
    assert len(node_user_data(files=[WriteFile("/var/lib/okai/u.txt", "€" * 4000)])) < 6000


def test_secrets_never_go_into_user_data() -> None:
    api_key = "fluence-secret-key-123456"
    with pytest.raises(SecretInUserData) as caught:
        node_user_data(
            files=[WriteFile("/var/lib/okai/env", f"KEY={api_key}\n")], secrets=[api_key]
        )
    assert api_key not in str(caught.value)
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(SecretInUserData, match="private key"):
        node_user_data(files=[WriteFile("/root/.ssh/id_ed25519", private)])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hostname": "Job_42"}, "DNS label"),
        ({"ssh_authorized_keys": []}, "SSH public key"),
        ({"ssh_authorized_keys": ["ssh-ed25519 AAAA\nevil"]}, "one line"),
        ({"files": [WriteFile("relative/path", "x")]}, "absolute"),
        ({"files": [WriteFile("/var/lib/../../etc/shadow", "x")]}, "absolute and plain"),
        ({"files": [WriteFile("/var/lib/okai/x", "x", permissions="rw-r--r--")]}, "octal"),
    ],
)
def test_bad_inputs_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(CloudInitError, match=message):
        node_user_data(**overrides)


def test_hostile_file_content_reads_back_exactly() -> None:
    nasty = "key: value\n- list\n'quotes' \"double\" \\ #not a comment\n\t tab \u2028 ‮rtl\n"
    text = node_user_data(files=[WriteFile("/var/lib/okai/nasty", nasty)])
    assert yaml.safe_load(text)["write_files"][0]["content"] == nasty
