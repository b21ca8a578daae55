"""Publishing plan: the URL Fluence boots from, and what is checked before uploading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import run_okai
from okai.config import PRESETS, Network
from okai.digest import Digest
from okai.errors import ConfigError, DocumentError, IntegrityError, UsageError
from okai.image import (
    FLUENCE_EXTENSIONS,
    ImageUrlError,
    check_image_url,
    plan_publish,
    published_manifest,
    quilt_patch_url,
)
from okai.manifest import ImageManifest, NixosIdentity

QUILT_ID = "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"
AGGREGATOR = "https://aggregator.walrus-testnet.walrus.space"


def network(**overrides: object) -> Network:
    fields = {"name": "coston2", **PRESETS["coston2"], **overrides}
    return Network.model_validate(fields)


def built_image(
    folder: Path, *, name: str = "okai-node-qemu.qcow2", image_format: str = "qcow2"
) -> Path:
    """A built image as `okai image build` leaves it: the file next to its manifest."""
    data = b"stand-in image bytes for the publish tests\n" * 100
    (folder / name).write_bytes(data)
    manifest = ImageManifest(
        file_name=name,
        format=image_format,  # type: ignore[arg-type]
        variant="qemu" if image_format == "qcow2" else "raw",
        size=len(data),
        sha256=Digest.of_bytes(data),
        nixos=NixosIdentity(
            system_toplevel="/nix/store/" + "a" * 32 + "-nixos-system-okai-node-25.11",
            nixpkgs_revision="5c623338d0c62d15a11b12e46ee8b04a48482c2f",
            flake_revision="0123456789abcdef0123456789abcdef01234567",
        ),
    )
    path = folder / "manifest.json"
    manifest.write(path)
    return path


# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "image_format"),
    [
        ("https://mirror.example.org/images/okai-node-qemu.qcow2", "qcow2"),
        ("https://mirror.example.org/okai-node-raw.img", "raw"),
        ("https://mirror.example.org/okai-node-raw.raw", "raw"),
        ("https://mirror.example.org:8443/a/b/c.qcow2", "qcow2"),
    ],
)
def test_bootable_urls_pass(url: str, image_format: str) -> None:
    assert check_image_url(url, image_format) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mirror.example.org/okai.qcow2", "https URL"),
        ("ftp://mirror.example.org/okai.qcow2", "https URL"),
        ("https:///okai.qcow2", "with a host"),
        ("https://user:secret@mirror.example.org/okai.qcow2", "credentials"),
        ("https://mirror.example.org/okai.qcow2?token=abc", "without a query"),
        ("https://mirror.example.org/download?file=okai.qcow2", "without a query"),
        ("https://mirror.example.org/okai.qcow2#part", "without a query or fragment"),
        ("https://mirror.example.org/okai.qcow2.xz", "must end in .qcow2"),
        ("https://mirror.example.org/okai.img", "compressed or different format"),
        ("https://mirror.example.org/okai.raw.xz", "compressed or different format"),
        ("https://mirror.example.org/v1/blobs/" + QUILT_ID, "must end in .qcow2"),
        ("https://mirror.example.org/okai.QCOW2", "must end in .qcow2"),
        ("https://mirror.example.org/okai .qcow2", "control characters"),
        ("https://mirror.example.org/okai.qcow2\n", "control characters"),
    ],
)
def test_unbootable_urls_are_explained(url: str, problem: str) -> None:
    with pytest.raises(ImageUrlError, match=problem):
        check_image_url(url, "qcow2")


def test_http_only_where_allowed() -> None:
    url = "http://127.0.0.1:31415/v1/blobs/by-quilt-id/x/okai-node-qemu.qcow2"
    assert check_image_url(url, "qcow2", allow_http=True) == url


def test_every_fluence_extension_is_known() -> None:
    assert set(FLUENCE_EXTENSIONS) == {
        ".qcow2",
        ".img",
        ".raw",
        ".raw.xz",
        ".raw.gz",
        ".img.xz",
        ".img.gz",
    }


def test_quilt_patch_url_ends_in_the_file_name() -> None:
    url = quilt_patch_url(AGGREGATOR + "/", QUILT_ID, "okai-node-qemu.qcow2")
    assert url == f"{AGGREGATOR}/v1/blobs/by-quilt-id/{QUILT_ID}/okai-node-qemu.qcow2"
    assert check_image_url(url, "qcow2") == url


@given(
    stem=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True),
    suffix=st.sampled_from([".qcow2"]),
)
def test_any_valid_identifier_gives_a_bootable_url(stem: str, suffix: str) -> None:
    url = quilt_patch_url(AGGREGATOR, QUILT_ID, stem + suffix)
    assert check_image_url(url, "qcow2") == url


@pytest.mark.parametrize(
    "identifier", ["../okai.qcow2", "a/b.qcow2", "_metadata", ".hidden.qcow2", "x y.qcow2", ""]
)
def test_unsafe_identifiers_are_refused(identifier: str) -> None:
    with pytest.raises(UsageError, match="quilt identifier"):
        quilt_patch_url(AGGREGATOR, QUILT_ID, identifier)


def test_quilt_url_needs_a_quilt_id_and_an_aggregator() -> None:
    with pytest.raises(UsageError, match="not a Walrus quilt ID"):
        quilt_patch_url(AGGREGATOR, "short", "okai.qcow2")
    with pytest.raises(ConfigError, match="aggregator base URL"):
        quilt_patch_url("aggregator.example.org", QUILT_ID, "okai.qcow2")


# ------------------------------------------------------------------ planning


def test_plan_on_a_publisher_that_takes_the_image(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    plan = plan_publish(manifest_path, network(walrus_max_body=1 << 40))
    assert plan.identifier == "okai-node-qemu.qcow2"
    assert plan.image_path == tmp_path / "okai-node-qemu.qcow2"
    assert plan.mirror_url is None
    assert plan.boot_url(AGGREGATOR, QUILT_ID) == (
        f"{AGGREGATOR}/v1/blobs/by-quilt-id/{QUILT_ID}/okai-node-qemu.qcow2"
    )


def test_plan_with_a_mirror_boots_from_the_mirror(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path, name="okai-node-raw.img", image_format="raw")
    mirror = "https://cdn.example.org/okai-node-raw.img"
    plan = plan_publish(manifest_path, network(walrus_max_body=1 << 40), image_url=mirror)
    assert plan.boot_url(AGGREGATOR, QUILT_ID) == mirror


def test_mirror_must_serve_the_same_format(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    with pytest.raises(ImageUrlError, match="compressed or different format"):
        plan_publish(
            manifest_path,
            network(walrus_max_body=1 << 40),
            image_url="https://cdn.example.org/okai.img.gz",
        )


def test_public_publisher_limit_is_explained(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    with pytest.raises(ConfigError, match="at most 1024 bytes") as caught:
        plan_publish(manifest_path, network(walrus_max_body=1024))
    assert "--max-quilt-body-size" in str(caught.value)


def test_no_publisher_on_mainnet(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    flare = Network.model_validate({"name": "flare", **PRESETS["flare"]})
    with pytest.raises(ConfigError, match="no Walrus publisher"):
        plan_publish(manifest_path, flare)


def test_image_that_changed_size_is_refused(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    with (tmp_path / "okai-node-qemu.qcow2").open("ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(IntegrityError, match="bytes"):
        plan_publish(manifest_path, network(walrus_max_body=1 << 40))


def test_missing_image_file_names_the_field(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path)
    (tmp_path / "okai-node-qemu.qcow2").unlink()
    with pytest.raises(DocumentError) as caught:
        plan_publish(manifest_path, network(walrus_max_body=1 << 40))
    assert caught.value.field == "fileName"


def test_file_name_must_match_the_format(tmp_path: Path) -> None:
    manifest_path = built_image(tmp_path, name="okai-node-qemu.img")
    with pytest.raises(UsageError, match=r"must be named \*.qcow2"):
        plan_publish(manifest_path, network(walrus_max_body=1 << 40))


def test_published_manifest_records_the_quilt(tmp_path: Path) -> None:
    plan = plan_publish(built_image(tmp_path), network(walrus_max_body=1 << 40))
    published = published_manifest(plan, QUILT_ID)
    assert published.blob_id == QUILT_ID
    assert published.sha256 == plan.manifest.sha256
    with pytest.raises(UsageError):
        published_manifest(plan, "not-a-quilt")


def test_publish_command_checks_then_says_what_is_missing(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_path = built_image(okai_home)
    monkeypatch.setenv("OKAI_WALRUS_MAX_BODY", str(1 << 40))
    bad = run_okai(
        "--network", "coston2", "image", "publish", str(manifest_path), "--image-url", "ftp://x/y"
    )
    assert bad.returncode == 2
    assert "https URL" in bad.stderr

    result = run_okai("--network", "coston2", "image", "publish", str(manifest_path))
    assert result.returncode == 2
    assert "okai.walrus" in result.stderr and "okai.chain" in result.stderr
    assert "blobId" not in json.loads(manifest_path.read_text())  # nothing was published
