"""Re-training a stranger's job: the sandbox of `okai verify --reproduce`, for real.

bubblewrap runs torchrun with two gloo workers on the loopback of a new network
namespace. A hostile entry point tries what a thief would (the verifier's keys and
tokens in the environment and in files, writes outside its run directory, a
connection to a server on the host) and writes down what it got; none of it may
work, and no secret may appear anywhere it could write. An honest deterministic job
still reproduces bit for bit. Outside the sandbox (the cluster node agent, `okai
train`), workers still never inherit credentials.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

import okai
from conftest import REPO, free_port, run_okai
from okai.digest import Digest
from okai.manifest import EntrypointModel, JobSpec, ManifestRef
from okai.train import LaunchOptions, LocalShardSource, SourceSpec, digits_files, launch
from okai.train.sandbox import Sandbox, SandboxUnavailable, environment, without_secrets
from okai.verify.reproduce import TrainReproducer

pytestmark = pytest.mark.slow

SECRETS = {
    "OKAI_PRIVATE_KEY": "0x" + "5eC7e7" * 10 + "abcd",
    "OKAI_WALRUS_JWT": "eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJzdG9sZW4ifQ.c2lnbmF0dXJlLXN0b2xlbg",
    "OKAI_FLUENCE_API_KEY": "fluence-api-key-stolen-0123456789",
    "OKAI_KEYSTORE_PASSWORD": "keystore-password-stolen",
    "HF_TOKEN": "hf_stolenTokenValue0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-stolen-0123456789",
}
FILE_SECRET = "file-secret-in-the-verifiers-home-0123456789"

HOSTILE = """
import json, os, pathlib, socket
import torch

def attempt(action):
    try:
        return "done: " + str(action())[:200]
    except Exception as exc:
        return "denied: " + type(exc).__name__

def write(path):
    pathlib.Path(path).write_text("planted")
    return path

def connect():
    with socket.create_connection(("127.0.0.1", PORT), timeout=3) as sock:
        sock.sendall(b"stolen")
    return "connected"

def processes():
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "environ").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return found

def train(ctx):
    found = {
        "env": dict(os.environ),
        "proc": processes(),
        "read": {path: attempt(lambda path=path: pathlib.Path(path).read_text()) for path in READ},
        "write": {path: attempt(lambda path=path: write(path)) for path in WRITE},
        "net": attempt(connect),
        "dns": attempt(lambda: socket.getaddrinfo("example.com", 443)),
    }
    (pathlib.Path(ctx.run_dir) / f"probe-{ctx.rank}.json").write_text(json.dumps(found))
    return torch.nn.Linear(2, 1)
"""


class Listener:
    """A TCP server on the host's loopback that records every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class Store:
    source: LocalShardSource
    digits: ManifestRef


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    source = LocalShardSource(tmp_path_factory.mktemp("store"))
    ref, _ = source.put_dataset("digits", digits_files())
    return Store(source, ref)


def entrypoint_job(store: Store, code: bytes, epochs: int = 1) -> JobSpec:
    blob_id = store.source.put(code)
    return JobSpec(
        name="probe",
        model=EntrypointModel(entrypoint_blob_id=blob_id, sha256=Digest.of_bytes(code)),
        hyperparameters={"epochs": epochs, "lr": 0.05},
        datasets=(store.digits,),
        procs_per_node=2,
        deterministic=True,
    )


@dataclass
class Verifier:
    """The verifier's secrets: in its environment and in files under its home."""

    home: Path
    files: list[Path]


@pytest.fixture
def verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Verifier:
    home = tmp_path / "home"
    okai_home = home / ".okai"
    (okai_home / "keys").mkdir(parents=True)
    keystore = okai_home / "keys" / "witness.json"
    files = [keystore, home / ".netrc"]
    for path in files:
        path.write_text(FILE_SECRET)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OKAI_HOME", str(okai_home))
    monkeypatch.setenv("OKAI_KEYSTORE", str(keystore))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return Verifier(home, files)


def hostile_code(verifier: Verifier, port: int, write: list[Path]) -> bytes:
    read = [
        *map(str, verifier.files),
        "/etc/shadow",
        str(REPO / "pyproject.toml"),  # the project around the bound src/ and .venv/
    ]
    header = f"PORT = {port}\nREAD = {read!r}\nWRITE = {list(map(str, write))!r}\n"
    return (header + HOSTILE).encode()


def assert_no_secret_in(folder: Path) -> None:
    """No secret value in any file the training code could write."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for value in [*SECRETS.values(), FILE_SECRET]:
                assert value.encode() not in data, f"{value} leaked into {path}"


def test_a_hostile_entry_point_gets_nothing_in_the_sandbox(
    store: Store, verifier: Verifier, tmp_path: Path
) -> None:
    listener = Listener()
    planted = [
        tmp_path / "outside.txt",
        Path(okai.__file__).parent / "planted.py",
        Path(sys.prefix) / "planted",
        Path("/okai/inputs/blobs/planted"),
        Path("/usr/planted"),
    ]
    try:
        job = entrypoint_job(store, hostile_code(verifier, listener.port, planted))
        reproducer = TrainReproducer(lambda: nullcontext(store.source), Sandbox.find())
        digest = reproducer(job, tmp_path / "work")
    finally:
        listener.close()

    run = tmp_path / "work" / "run"
    assert digest == Digest.of_file(run / "model.safetensors")
    for rank in (0, 1):
        probe = json.loads((run / f"probe-{rank}.json").read_text())
        assert set(probe["env"]) <= set(environment()) | _TORCH_VARIABLES, probe["env"]
        assert all(value.startswith("denied: ") for value in probe["read"].values()), probe["read"]
        assert all(value.startswith("denied: ") for value in probe["write"].values()), probe
        assert probe["net"].startswith("denied: ") and probe["dns"].startswith("denied: ")
        assert len(probe["proc"]) >= 3  # torchrun and both workers: a pid namespace of its own
    assert listener.connections == 0
    assert not any(path.exists() for path in planted)
    assert_no_secret_in(tmp_path / "work")


_TORCH_VARIABLES = {
    "CUBLAS_WORKSPACE_CONFIG",
    "OKAI_RUN_STARTED_AT",
    "PYTHONUNBUFFERED",
    "TORCH_DISABLE_SHARE_RDZV_TCP_STORE",
    # set by torchrun for its workers
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "OMP_NUM_THREADS",
    "PWD",
    "RANK",
    "ROLE_NAME",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "TORCHELASTIC_ERROR_FILE",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_SIGNALS_TO_HANDLE",
    "TORCHINDUCTOR_CACHE_DIR",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING",
    "WORLD_SIZE",
}


def test_an_honest_job_reproduces_bit_for_bit_in_the_sandbox(store: Store, tmp_path: Path) -> None:
    job = entrypoint_job(store, (REPO / "examples" / "digits_mlp.py").read_bytes(), epochs=2)
    source = SourceSpec.local(store.source.root)
    plain = launch(job, LaunchOptions(source=source, run_dir=tmp_path / "plain"))
    assert plain.receipt is not None

    reproducer = TrainReproducer(lambda: nullcontext(store.source), Sandbox.find())
    assert reproducer(job, tmp_path / "boxed") == plain.receipt.model_sha256


def test_workers_outside_a_sandbox_never_inherit_credentials(
    store: Store, verifier: Verifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a cluster node runs the job: its agent holds publisher tokens, its workers do not."""
    job = entrypoint_job(store, hostile_code(verifier, free_port(), [tmp_path / "planted"]))
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", "http://127.0.0.1:9")
    source = SourceSpec.local(store.source.root)
    launch(job, LaunchOptions(source=source, run_dir=tmp_path / "run"))
    probe = json.loads((tmp_path / "run" / "probe-0.json").read_text())
    assert not set(SECRETS) & set(probe["env"])
    assert "OKAI_KEYSTORE" not in probe["env"]
    assert probe["env"]["OKAI_WALRUS_AGGREGATORS"] == "http://127.0.0.1:9"  # what it needs stays
    assert not any(value in json.dumps(probe["env"]) for value in SECRETS.values())


def test_credentials_are_recognised_by_name() -> None:
    env = {
        **SECRETS,
        "OKAI_KEYSTORE": "/k",
        "GITHUB_TOKEN": "t",
        "PATH": "/bin",
        "OKAI_NETWORK": "dev",
    }
    assert without_secrets(env) == {"PATH": "/bin", "OKAI_NETWORK": "dev"}


def test_without_bubblewrap_reproduction_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap \(bwrap\) is not on PATH") as refused:
        Sandbox.find()
    assert "--unsafe-no-sandbox" in (refused.value.hint or "")


def test_a_bubblewrap_that_cannot_sandbox_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="uid map: Permission denied"):
        Sandbox.find()


def test_the_command_refuses_before_reading_anything(
    okai_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    digest = str(Digest.of_bytes(b"a model"))

    refused = run_okai("verify", digest, "--reproduce")
    assert refused.returncode == 2
    assert "bubblewrap (bwrap) is not on PATH" in refused.stderr
    assert "--unsafe-no-sandbox" in refused.stderr

    unsafe = run_okai("verify", digest, "--reproduce", "--unsafe-no-sandbox")
    assert "WITHOUT a sandbox" in unsafe.stderr and "bwrap" not in unsafe.stderr
