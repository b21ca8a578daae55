"""Publishing plan: the URL Fluence boots from, and what is checked before uploading."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_support import account
from conftest import call_okai, run_okai
from okai.chain import DEV_ADDRESS
from okai.config import PRESETS, Network, Secrets, Settings
from okai.digest import Digest
from okai.errors import ConfigError, DocumentError, IntegrityError, UsageError
from okai.image import (
    FLUENCE_EXTENSIONS,
    ImageRegisteredDifferently,
    ImageUrlError,
    check_image_url,
    plan_publish,
    publish_image,
    published_manifest,
    quilt_patch_url,
)
from okai.manifest import ImageManifest, NixosIdentity
from okai.provenance.receipt import system_toplevel_digest
from provenance_support import OTHER_TOPLEVEL, TOPLEVEL, Stack, running_stack

QUILT_ID = "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"
MANIFEST_SHA = Digest.of_bytes(b"some other image manifest")
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


def test_publish_command_checks_before_anything_is_sent(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_path = built_image(okai_home)
    monkeypatch.setenv("OKAI_WALRUS_MAX_BODY", str(1 << 40))
    bad = call_okai(
        "--network", "coston2", "image", "publish", str(manifest_path), "--image-url", "ftp://x/y"
    )
    assert bad.returncode == 2
    assert "https URL" in bad.stderr

    # The bytes are hashed, then the key is loaded: none on coston2, so nothing goes out.
    result = call_okai("--network", "coston2", "image", "publish", str(manifest_path))
    assert result.returncode == 2
    assert "no signing key for network coston2" in result.stderr
    assert "blobId" not in json.loads(manifest_path.read_text())  # nothing was published


# ------------------------------------------------------------------ publishing, live


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """anvil with the registry deployed and a local Walrus server (stand-in blob IDs)."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def settings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The dev network on the test stack, signing with anvil's account 0 (the dev key)."""
    # The server answers stand-in blob IDs, so the client must not recompute real ones.
    monkeypatch.setenv("OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO", "0")
    return stack_settings(stack)


def stack_settings(stack: Stack, **overrides: object) -> Settings:
    fields = {
        "name": "dev",
        **PRESETS["dev"],
        "rpc_url": stack.proxy.url,
        "registry_address": stack.registry_address,
        "walrus_aggregators": (stack.walrus.url,),
        "walrus_publisher": stack.walrus.url,
        **overrides,
    }
    return Settings(network=Network.model_validate(fields), secrets=Secrets(), config_file=None)


def image_on_disk(folder: Path, seed: str, *, size: int = 300 * 1024) -> Path:
    """A few hundred KiB of stand-in image bytes (unique per seed) next to its manifest."""
    data = random.Random(seed).randbytes(size)
    (folder / "okai-node-qemu.qcow2").write_bytes(data)
    manifest = ImageManifest(
        file_name="okai-node-qemu.qcow2",
        format="qcow2",
        variant="qemu",
        size=size,
        sha256=Digest.of_bytes(data),
        nixos=NixosIdentity(
            system_toplevel=TOPLEVEL,
            nixpkgs_revision="5c623338d0c62d15a11b12e46ee8b04a48482c2f",
            flake_revision="0123456789abcdef0123456789abcdef01234567",
        ),
    )
    manifest.write(folder / "manifest.json")
    return folder / "manifest.json"


def stores(stack: Stack) -> int:
    counts = stack.walrus.faults.counts()
    return counts.get("PUT quilts", 0) + counts.get("PUT blobs", 0)


class Recorder:
    """Progress callbacks as the CLI's bars get them: (description, total, bytes moved)."""

    def __init__(self) -> None:
        self.bars: list[tuple[str, int | None, int]] = []

    @contextmanager
    def __call__(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        moved = [0]

        def advance(nbytes: int) -> None:
            moved[0] += nbytes

        yield advance
        self.bars.append((description, total, moved[0]))


def test_publish_stores_checks_and_registers(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "end to end")
    manifest = ImageManifest.load(manifest_path)
    plan = plan_publish(manifest_path, settings.network)
    recorder = Recorder()
    before = stores(stack)

    result = publish_image(plan, settings, epochs=3, progress=recorder)

    assert stores(stack) - before == 2  # the image quilt and the manifest blob
    assert result.registered and result.tx_hash is not None
    assert result.image_digest == manifest.sha256
    assert (
        result.boot_url
        == result.walrus_url
        == quilt_patch_url(stack.walrus.url, result.quilt_id, "okai-node-qemu.qcow2")
    )
    assert [(d.split()[0], t, n) for d, t, n in recorder.bars] == [
        ("hash", manifest.size, manifest.size),
        ("store", manifest.size, manifest.size),
        ("read", manifest.size, manifest.size),
    ]

    # The registry holds the image digest, the toplevel's digest and the manifest blob.
    record = stack.registry().get_image(manifest.sha256, DEV_ADDRESS)
    assert record.system_toplevel == system_toplevel_digest(TOPLEVEL)
    assert record.manifest_blob_id == result.manifest_blob_id
    assert record.registrant == DEV_ADDRESS
    assert record.manifest_sha256 == result.manifest_sha256  # verifiers authenticate it

    # The boot URL serves the registered bytes, with the file name as its last segment.
    served = httpx.get(result.boot_url, timeout=10)
    assert served.status_code == 200 and served.url.path.endswith(".qcow2")
    assert Digest.of_bytes(served.content) == manifest.sha256 == record.image_digest

    # The manifest, on Walrus and on disk, now says where the image is.
    on_disk = ImageManifest.load(manifest_path)
    assert on_disk.blob_id == result.quilt_id
    assert on_disk.model_dump(exclude={"blob_id"}) == manifest.model_dump(exclude={"blob_id"})
    with stack.walrus_client() as walrus:
        stored = walrus.read_bytes(result.manifest_blob_id, on_disk.digest())
    assert ImageManifest.from_json_bytes(stored, "the stored manifest") == on_disk
    assert result.manifest_sha256 == on_disk.digest()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_second_publish_reports_the_registration(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "twice")
    first = publish_image(plan_publish(manifest_path, settings.network), settings)
    registered_at = stack.registry().get_image(first.image_digest, DEV_ADDRESS).registered_at
    nonce = stack.registry().w3.eth.get_transaction_count(DEV_ADDRESS)

    # Again, from the manifest the first run rewrote (it now carries blobId).
    second = publish_image(plan_publish(manifest_path, settings.network), settings)

    assert first.registered and not second.registered
    assert second.tx_hash is None and second.explorer_url is None
    assert (second.quilt_id, second.manifest_blob_id) == (first.quilt_id, first.manifest_blob_id)
    assert (
        stack.registry().get_image(first.image_digest, DEV_ADDRESS).registered_at == registered_at
    )
    assert stack.registry().w3.eth.get_transaction_count(DEV_ADDRESS) == nonce  # nothing sent


def test_tampered_image_is_refused_before_any_upload(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "tampered")
    image = tmp_path / "okai-node-qemu.qcow2"
    data = bytearray(image.read_bytes())
    data[1000] ^= 0xFF  # same size: only the hash can tell
    image.write_bytes(bytes(data))
    plan = plan_publish(manifest_path, settings.network)
    before = stores(stack)

    with pytest.raises(IntegrityError) as caught:
        publish_image(plan, settings)

    assert caught.value.actual == Digest.of_bytes(bytes(data))
    assert stores(stack) == before
    assert not stack.registry().is_registered(plan.manifest.sha256)
    assert "blobId" not in json.loads(manifest_path.read_text())


def test_too_small_publisher_limit_is_a_config_error(stack: Stack, tmp_path: Path) -> None:
    manifest_path = image_on_disk(tmp_path, "too big")
    small = stack_settings(stack, walrus_max_body=100 * 1024)
    with pytest.raises(ConfigError, match="accepts request bodies of at most 102400 bytes"):
        plan_publish(manifest_path, small.network)


def test_mirror_is_the_boot_url_but_the_digest_is_registered(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "mirrored")
    mirror = "http://127.0.0.1:9/cdn/okai-node-qemu.qcow2"  # dev allows http; never fetched
    plan = plan_publish(manifest_path, settings.network, image_url=mirror)

    result = publish_image(plan, settings)

    assert result.boot_url == mirror and result.mirrored
    assert result.walrus_url.startswith(stack.walrus.url + "/v1/blobs/by-quilt-id/")
    assert result.to_json()["bootUrlVerified"] is False
    record = stack.registry().get_image(plan.manifest.sha256, account(0).address)
    assert record.image_digest == plan.manifest.sha256
    assert record.manifest_blob_id == result.manifest_blob_id


def test_a_squatter_on_the_image_digest_does_not_block_publication(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "squatted")
    plan = plan_publish(manifest_path, settings.network)
    squatter = stack.registry(account(1))
    squatter.register_image(
        plan.manifest.sha256, system_toplevel_digest(OTHER_TOPLEVEL), QUILT_ID, MANIFEST_SHA
    )

    result = publish_image(plan, settings)

    assert result.registered and result.registrant == account(0).address
    mine = stack.registry().get_image(plan.manifest.sha256, account(0).address)
    assert mine.system_toplevel == system_toplevel_digest(TOPLEVEL)
    assert mine.manifest_sha256 == result.manifest_sha256
    theirs = stack.registry().get_image(plan.manifest.sha256, account(1).address)
    assert theirs.system_toplevel == system_toplevel_digest(OTHER_TOPLEVEL)  # untouched


def test_own_claim_with_another_toplevel_is_refused_before_upload(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "other toplevel")
    plan = plan_publish(manifest_path, settings.network)
    stack.registry().register_image(
        plan.manifest.sha256, system_toplevel_digest(OTHER_TOPLEVEL), QUILT_ID, MANIFEST_SHA
    )
    before = stores(stack)

    with pytest.raises(ImageRegisteredDifferently, match="system toplevel") as caught:
        publish_image(plan, settings)

    assert account(0).address in str(caught.value)
    assert "write-once" in (caught.value.hint or "")
    assert stores(stack) == before


def test_own_claim_with_another_manifest_is_an_error(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "other manifest")
    plan = plan_publish(manifest_path, settings.network)
    stack.registry().register_image(
        plan.manifest.sha256, system_toplevel_digest(TOPLEVEL), QUILT_ID, MANIFEST_SHA
    )

    with pytest.raises(ImageRegisteredDifferently, match=f"manifest blob {QUILT_ID}, not "):
        publish_image(plan, settings)

    record = stack.registry().get_image(plan.manifest.sha256, account(0).address)
    assert record.manifest_blob_id == QUILT_ID


def test_aggregator_serving_other_bytes_stops_the_publication(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    manifest_path = image_on_disk(tmp_path, "corrupt read")
    plan = plan_publish(manifest_path, settings.network)
    stack.walrus.faults.set(corrupt=-1)
    try:
        with pytest.raises(IntegrityError, match=r"okai-node-qemu\.qcow2"):
            publish_image(plan, settings)
    finally:
        stack.walrus.faults.reset()
    assert not stack.registry().is_registered(plan.manifest.sha256)
    assert "blobId" not in json.loads(manifest_path.read_text())


def test_publish_command_json_then_again(
    stack: Stack, okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    manifest_path = image_on_disk(okai_home, "command line")

    first = run_okai("--json", "image", "publish", str(manifest_path), "--epochs", "2")
    assert first.returncode == 0, first.stderr
    published = json.loads(first.stdout)
    assert published["registration"] == "registered"
    assert published["bootUrl"] == published["walrusUrl"]
    assert published["bootUrlVerified"] is True
    assert published["imageDigest"] == json.loads(manifest_path.read_text())["sha256"]
    assert json.loads(manifest_path.read_text())["blobId"] == published["quiltId"]

    again = call_okai("image", "publish", str(manifest_path))
    assert again.returncode == 0, again.stderr
    assert "already registered" in again.stdout
    assert published["bootUrl"] in again.stdout.replace("\n", "")

    monkeypatch.setenv("OKAI_WALRUS_MAX_BODY", "1024")
    limited = call_okai("--json", "image", "publish", str(manifest_path))
    assert limited.returncode == 2
    assert "at most 1024 bytes" in limited.stderr and limited.stdout == ""
