"""`okai record` and `okai verify` as commands against a real stack: the first test runs them
as real subprocesses, the others call the same `main` in this process (conftest.call_okai)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chain_support import account
from conftest import call_okai, okai_imports, run_okai
from okai.digest import Digest
from provenance_support import Inputs, Stack, write_run
from provenance_support import inputs_fixture as inputs_fixture
from provenance_support import stack_fixture as stack_fixture

ME = account(0).address
TRUST = ("--trainer", ME, "--publisher", ME)


@pytest.fixture
def on_stack(okai_home: Path, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The command reads os.environ (run_okai copies it): point it at the stack."""
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    return stack


def test_record_then_verify_from_the_command_line(
    on_stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    receipt = write_run(tmp_path / "run", inputs, values=[21.0])

    recorded = run_okai("record", str(tmp_path / "run"), "--json")
    assert recorded.returncode == 0, recorded.stderr
    data = json.loads(recorded.stdout)
    assert set(data) == {
        "status",
        "runDir",
        "network",
        "chainId",
        "registry",
        "modelDigest",
        "model",
        "attestation",
        "record",
        "transaction",
        "explorer",
        "journal",
    }
    assert data["status"] == "recorded"
    assert data["modelDigest"] == receipt.model_sha256
    assert set(data["model"]) == {"blobId", "sha256", "size", "endEpoch", "url"}
    assert data["explorer"] is None  # the local stack has no explorer

    model = str(tmp_path / "run" / "model.safetensors")
    on_stack.proxy.reset()
    verified = run_okai("--json", "verify", model, *TRUST)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["verdict"] == "verified"
    assert report["modelDigest"] == receipt.model_sha256
    assert on_stack.proxy.total() <= 4, dict(on_stack.proxy.calls)

    policy = tmp_path / "trust.toml"
    policy.write_text(f'[trust]\ntrainers = ["{ME}"]\npublishers = ["{ME}"]\n')
    human = run_okai("verify", receipt.model_sha256, "--deep", "--trust-file", str(policy))
    assert human.returncode == 0, human.stderr
    for check_id in ("record.exists", "datasets.shards", "image.registered"):
        assert check_id in human.stdout
    assert "VERIFIED" in human.stdout and "NOT VERIFIED" not in human.stdout
    # Where the answer came from, and whom it trusted.
    words = " ".join(human.stdout.split())  # rich wraps long rows
    assert f"registry {on_stack.registry_address}" in words
    assert f"rpc {on_stack.proxy.url.removeprefix('http://')}" in words
    assert f"trusted trainers {ME}; publishers {ME}" in words

    # No policy: every check passes, but nobody was pinned, so it is not "verified".
    unpinned = call_okai("verify", model)
    assert unpinned.returncode == 4, unpinned.stderr
    words = " ".join(unpinned.stdout.split())
    assert "NOT VERIFIED: every check passed, but no trusted account was pinned" in words
    assert "no trainer was trusted" in unpinned.stderr
    listed = json.loads(call_okai("verify", model, "--json").stdout)
    assert listed["verdict"] == "unpinned" and listed["policy"]["pinned"] is False
    record_check = next(c for c in listed["checks"] if c["id"] == "record.exists")
    assert record_check["reason"] == f"recorded by {ME}, an account nobody pinned"

    again = call_okai("record", str(tmp_path / "run"))
    assert again.returncode == 0, again.stderr
    assert "already recorded" in again.stdout


def test_verify_reads_the_registry_without_web3(
    on_stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    """Start-up: shallow `okai verify` reads over plain JSON-RPC; web3 is for transactions."""
    write_run(tmp_path / "run", inputs, values=[20.0])
    assert call_okai("record", str(tmp_path / "run")).returncode == 0
    model = str(tmp_path / "run" / "model.safetensors")

    loaded = okai_imports("verify", model, *TRUST)
    assert (loaded["exit"], loaded["web3"]) == (0, False)


def test_a_tampered_model_exits_3_naming_the_check(
    on_stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[22.0])
    assert call_okai("record", str(tmp_path / "run")).returncode == 0
    model = tmp_path / "run" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")

    result = call_okai("verify", str(model), "--json", *TRUST)

    assert result.returncode == 3
    assert json.loads(result.stdout)["verdict"] == "not verified"
    assert "error: not verified: record.exists failed" in result.stderr


def test_recording_a_model_this_account_recorded_from_another_run_exits_2(
    on_stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "first", inputs, values=[23.0])
    assert call_okai("record", str(tmp_path / "first")).returncode == 0
    write_run(tmp_path / "second", inputs, values=[23.0], run_id="another-run")

    result = call_okai("record", str(tmp_path / "second"))

    assert result.returncode == 2
    assert f"{ME} already recorded model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image"], "add --deep"),
        (["--attest"], "needs --reproduce"),
    ],
)
def test_option_mistakes_exit_2(
    on_stack: Stack, inputs: Inputs, tmp_path: Path, args: list[str], message: str
) -> None:
    result = call_okai("verify", Digest.of_bytes(b"anything"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_neither_a_file_nor_a_digest_exits_2(on_stack: Stack) -> None:
    result = call_okai("verify", "no-such-model.safetensors")
    assert result.returncode == 2
    assert "neither an existing file nor a SHA-256 digest" in result.stderr


def test_the_submitter_cannot_attest_its_own_model(
    on_stack: Stack, inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path / "run", inputs, values=[24.0])
    assert call_okai("record", str(tmp_path / "run")).returncode == 0
    monkeypatch.setenv("OKAI_PRIVATE_KEY", account(0).key.to_0x_hex())

    result = call_okai(
        "verify", str(tmp_path / "run" / "model.safetensors"), "--reproduce", "--attest"
    )

    assert result.returncode == 2
    assert "cannot witness its own claim" in result.stderr


def test_hostile_strings_are_shown_inert(on_stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    """A job name carrying every class of hostile text, in the report and in --json."""
    from provenance_support import job_for
    from test_inert import HOSTILE, shown_safely

    name = " ".join(raw for raw, _ in HOSTILE.values())
    write_run(tmp_path / "run", inputs, values=[25.0], job=job_for(inputs, name=name))
    assert call_okai("record", str(tmp_path / "run")).returncode == 0

    human = call_okai("verify", str(tmp_path / "run" / "model.safetensors"), *TRUST)
    scripted = call_okai("--json", "verify", str(tmp_path / "run" / "model.safetensors"), *TRUST)

    assert human.returncode == scripted.returncode == 0, human.stderr + scripted.stderr
    assert scripted.stdout.isascii()
    assert json.loads(scripted.stdout)["attestation"]["job"]["name"] == name
    for key in HOSTILE:
        shown_safely(human.stdout, key)
        shown_safely(scripted.stdout, key)


def test_the_command_default_epochs_are_the_library_default() -> None:
    # The CLI repeats the constant so that `okai` does not import web3 to start.
    from okai.cli import record as command
    from okai.provenance import record as library

    assert command.DEFAULT_EPOCHS == library.DEFAULT_EPOCHS


def test_trust_file_mistakes_exit_2(on_stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "trust.toml"
    for text, message in [
        ('[trust]\ntrainers = ["0x1234"]\n', "not an EVM address"),
        ("[trust]\ntrainer = []\n", "unknown key"),
        ("[trust\n", "not valid TOML"),
    ]:
        bad.write_text(text)
        result = call_okai("verify", Digest.of_bytes(b"anything"), "--trust-file", str(bad))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


def test_a_folder_that_redirects_a_public_network_is_refused(
    okai_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "okai.toml").write_text(
        '[networks.flare]\nregistry_address = "0x000000000000000000000000000000000000dEaD"\n'
        'rpc_url = "http://127.0.0.1:9"\n'
    )
    monkeypatch.chdir(folder)
    monkeypatch.delenv("OKAI_HOME", raising=False)

    result = call_okai("--network", "flare", "verify", Digest.of_bytes(b"m"), "--trainer", ME)

    assert result.returncode == 2
    assert "files in this folder change what flare means" in result.stderr
    assert "registry_address" in result.stderr and "rpc_url" in result.stderr
    assert "--local-config" in result.stderr
