"""The launcher's checks and settings, before any process starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from okai.errors import OperationalError, UsageError
from okai.manifest import ManifestRef
from okai.train import LaunchOptions, LocalShardSource, Rendezvous, SourceSpec, digits_job, launch
from okai.train.launch import _environment, _torchrun_command, interface_of, read_run_file

REF = ManifestRef(manifest_blob_id="b" * 43, sha256="sha256:" + "c" * 64)


@pytest.fixture
def options(tmp_path: Path) -> LaunchOptions:
    LocalShardSource(tmp_path / "store").put(b"anything")
    return LaunchOptions(source=SourceSpec.local(tmp_path / "store"), run_dir=tmp_path / "run")


def test_a_finished_run_directory_is_not_reused(options: LaunchOptions) -> None:
    assert options.run_dir is not None
    options.run_dir.mkdir()
    (options.run_dir / "receipt.json").write_text("{}")
    with pytest.raises(UsageError, match="already finished"):
        launch(digits_job((REF,)), options)


def test_a_run_directory_of_another_job_is_not_reused(options: LaunchOptions) -> None:
    assert options.run_dir is not None
    options.run_dir.mkdir()
    (options.run_dir / "job.json").write_bytes(digits_job((REF,), seed=1).canonical_bytes())
    with pytest.raises(UsageError, match="different job"):
        launch(digits_job((REF,)), options)


def test_a_multi_node_job_needs_a_rendezvous(options: LaunchOptions) -> None:
    with pytest.raises(UsageError, match="rendezvous endpoint"):
        launch(digits_job((REF,), nodes=2), options)


@pytest.mark.parametrize(
    ("endpoint", "run_id"), [("10.0.0.1", "ok"), ("10.0.0.1:29400", "bad id!"), ("", "ok")]
)
def test_rendezvous_parameters_are_checked(endpoint: str, run_id: str) -> None:
    with pytest.raises(UsageError):
        Rendezvous(endpoint=endpoint, run_id=run_id)


def test_the_node_whose_address_is_the_endpoint_hosts_the_store(
    options: LaunchOptions, tmp_path: Path
) -> None:
    def conf(local_addr: str | None) -> str:
        rendezvous = Rendezvous(endpoint="10.9.0.1:29400", run_id="r", local_addr=local_addr)
        launch_options = LaunchOptions(source=options.source, rendezvous=rendezvous)
        command = _torchrun_command(tmp_path, str(options.source), "r", 1, 2, launch_options)
        return next(arg for arg in command if arg.startswith("--rdzv-conf="))

    assert conf("10.9.0.1").endswith(",is_host=1")
    assert conf("10.9.0.2").endswith(",is_host=0")
    assert conf(None) == "--rdzv-conf=join_timeout=600"


def test_gloo_and_nccl_use_the_interface_of_the_local_address(options: LaunchOptions) -> None:
    assert interface_of("127.0.0.1") == interface_of("127.0.0.2") == "lo"
    assert interface_of("203.0.113.7") is None
    rendezvous = Rendezvous(endpoint="127.0.0.1:29400", run_id="r", local_addr="127.0.0.1")
    env = _environment(LaunchOptions(source=options.source, rendezvous=rendezvous))
    assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == "lo"
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"


def test_the_package_exports_what_it_declares() -> None:
    import okai.train

    assert okai.train.__all__ == sorted(okai.train.__all__)
    assert all(hasattr(okai.train, name) for name in okai.train.__all__)


def test_files_the_training_code_wrote_are_read_bounded_and_never_followed(
    tmp_path: Path,
) -> None:
    """A hostile run directory: links to secrets or devices and FIFOs in place of files."""
    secret = tmp_path / "secret"
    secret.write_text("the verifier's key")
    (tmp_path / "link").symlink_to(secret)
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 5000)

    for name in ("link", "zero"):
        with pytest.raises(OperationalError, match="cannot read"):
            read_run_file(tmp_path / name, 100)
    with pytest.raises(OperationalError, match="not a regular file"):
        read_run_file(tmp_path / "fifo", 100)
    assert read_run_file(tmp_path / "big", 100) == b"x" * 100
    assert read_run_file(tmp_path / "missing", 100) is None
