"""The whole pipeline, step by step: what `okai demo` runs.

Two demos: `digits` (a small CNN on scikit-learn's 8x8 digits) and `gpt` (the
byte-level GPT on the running Python's standard-library source, as JSONL).

stack -> dataset on Walrus -> image -> training on a 2-node local cluster ->
record on chain -> verify (shallow, then deep). Every step goes through the
same library calls as its own command; only the network's configuration
differs between the local stack and a real network. A second run reuses what
exists: the push journal makes the dataset free, and a recorded demo run of
the same job on the same registry is verified again rather than re-trained.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from okai.atomic import write_atomically
from okai.config import Settings, load_settings
from okai.digest import Digest
from okai.documents import read_document_if_exists
from okai.errors import DocumentError, OperationalError, UsageError, VerificationError
from okai.manifest import ManifestRef
from okai.paths import state_dir

DEMO_CLUSTER = "okai-demo"
DEMO_NODES = 2
DEMO_PROCS_PER_NODE = 1
WEB_PORT = 8787

StepStatus = Literal["done", "reused", "skipped"]
DemoModel = Literal["digits", "gpt"]
DEMO_MODELS: tuple[DemoModel, ...] = ("digits", "gpt")
Report = Callable[[str], None]


@dataclass
class Step:
    name: str
    status: StepStatus
    detail: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "seconds": round(self.seconds, 2)}


@dataclass
class DemoResult:
    network: str
    model: DemoModel = "digits"
    steps: list[Step] = field(default_factory=list)
    model_digest: Digest | None = None
    run_dir: Path | None = None
    page_link: str | None = None
    trusted: str | None = None
    """The account the demo trusts as trainer and publisher (its own signing key)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "trusted": self.trusted,
            "model": self.model,
            "modelDigest": self.model_digest,
            "runDir": None if self.run_dir is None else str(self.run_dir),
            "pageLink": self.page_link,
            "steps": [step.to_json() for step in self.steps],
        }


class _Steps:
    """Times each step and collects what it reports about itself."""

    def __init__(self, result: DemoResult, report: Report) -> None:
        self.result = result
        self.report = report

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        self.report(f"── {name}")
        outcome: dict[str, Any] = {"status": "done", "detail": ""}
        began = time.perf_counter()
        yield outcome
        self.result.steps.append(
            Step(name, outcome["status"], outcome["detail"], time.perf_counter() - began)
        )


def demo_folder() -> Path:
    return state_dir() / "demo"


def run_demo(
    network: str | None, report: Report, transfer: Any = None, model: DemoModel = "digits"
) -> DemoResult:
    """Run the pipeline on `network` (the local stack by default); see the module docstring."""
    demo_epochs()  # a bad OKAI_DEMO_EPOCHS is refused before anything starts
    settings = load_settings(network)
    result = DemoResult(network=settings.network.name, model=model)
    steps = _Steps(result, report)

    with steps.step("local stack") as out:
        if settings.network.is_dev:
            from okai.dev import stack

            running = all(service.state == "running" for service in stack.status())
            stack.up(on_event=report)
            settings = load_settings(network)  # now with the stack's endpoints and registry
            out["status"] = "reused" if running else "done"
            out["detail"] = f"anvil, Walrus server and registry {settings.network.registry_address}"
        else:
            out["status"], out["detail"] = "skipped", f"using network {settings.network.name}"

    from okai.chain.client import RegistryClient
    from okai.walrus.client import WalrusClient

    # The signing key is checked here, before anything is stored or trained.
    registry = RegistryClient.from_settings(settings, sign=True)
    assert registry.signer is not None  # sign=True loaded it
    with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
        with steps.step("push dataset to Walrus") as out:
            ref, reused = _push_demo_data(walrus, settings, report, transfer, model)
            out["status"] = "reused" if reused else "done"
            out["detail"] = f"{_DATASETS[model]} manifest {ref.manifest_blob_id} ({ref.sha256})"

        with steps.step("worker image") as out:
            out["status"] = "skipped"
            out["detail"] = (
                "no published image is used by the local provider: "
                "the nodes run on an unregistered host"
            )

        job = _demo_job(ref, model)
        previous = _previous_run(settings, job.digest(), registry)
        with steps.step(f"train on a {DEMO_NODES}-node local cluster") as out:
            if previous is not None:
                run_dir = previous
                out["status"], out["detail"] = "reused", f"recorded run {run_dir}"
            else:
                run_dir = _train(job, settings, report)
                out["detail"] = f"run directory {run_dir}"
        result.run_dir = run_dir

        with steps.step("record provenance on chain") as out:
            from okai.provenance.record import record_run

            recorded = record_run(
                run_dir, registry=registry, walrus=walrus, transfer=transfer, on_event=report
            )
            result.model_digest = recorded.run.model_digest
            out["status"] = "reused" if recorded.status == "already recorded" else "done"
            out["detail"] = f"model {result.model_digest}"
            _remember_run(settings, job.digest(), run_dir)

        for deep in (False, True):
            name = "verify (deep: every shard re-downloaded)" if deep else "verify (shallow)"
            with steps.step(name) as out:
                out["detail"] = _verify(run_dir, deep, registry, walrus)

    result.trusted = registry.signer.address
    trust = f"trainer={result.trusted}&publisher={result.trusted}&unregistered=1"
    result.page_link = (
        f"http://127.0.0.1:{WEB_PORT}/#/model/{result.model_digest}"
        f"?network={result.network}&{trust}"
    )
    return result


_DATASETS: dict[DemoModel, str] = {"digits": "digits", "gpt": "python-source"}


def _demo_files(model: DemoModel) -> dict[str, bytes]:
    from okai.train.demo import digits_files, python_source_files

    return digits_files() if model == "digits" else python_source_files()


def _push_demo_data(
    walrus: Any, settings: Settings, report: Report, transfer: Any, model: DemoModel
) -> tuple[ManifestRef, bool]:
    """The demo's dataset on Walrus: the one pushed before if Walrus still serves it.

    The Python-source dataset is remembered by its content's digest too: another
    Python's standard library gives other bytes, hence another dataset.
    """
    from okai.walrus.dataset import fetch_manifest, push_dataset
    from okai.walrus.errors import WalrusError

    name = _DATASETS[model]
    files = _demo_files(model)
    key = f"dataset/{settings.network.name}/{settings.network.walrus_publisher}"
    if model != "digits":
        recipe = Digest.of_bytes(
            b"".join(Digest.of_bytes(data).encode() for data in files.values())
        )
        key = f"{key}/{name}/{recipe}"
    known = _load_state().get(key)
    if isinstance(known, dict):
        ref = ManifestRef.model_validate(known)
        try:
            fetch_manifest(walrus, ref)  # verified against the digest we recorded
            return ref, True
        except (WalrusError, VerificationError) as exc:
            report(f"the dataset pushed before is not usable ({exc.message}); pushing again")

    data_dir = demo_folder() / name
    for relative, content in files.items():
        path = data_dir / relative
        if not path.is_file() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    with _progress(transfer, f"push {name}", None) as advance:
        pushed = push_dataset(
            walrus,
            [data_dir],
            name=name,
            journal_dir=demo_folder() / "journal",
            on_progress=advance,
        )
    report(f"dataset {pushed.manifest_blob_id}: {pushed.stored_shards} stored, "
           f"{pushed.reused_shards} reused")  # fmt: skip
    ref = ManifestRef(manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest)
    _save_state(key, ref.to_json())
    return ref, False


@contextmanager
def _progress(transfer: Any, description: str, total: int | None) -> Iterator[Any]:
    if transfer is None:
        yield None
    else:
        with transfer(description, total) as advance:
            yield advance


DEMO_EPOCHS_ENV = "OKAI_DEMO_EPOCHS"
"""Train the demo for this many epochs instead of its own number (a quick check of the
pipeline, not a good model; it is another job, so another recorded run)."""


def demo_epochs() -> int | None:
    """`OKAI_DEMO_EPOCHS` as a positive number; None when unset (the demo's own epochs)."""
    text = os.environ.get(DEMO_EPOCHS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{DEMO_EPOCHS_ENV}={text!r} is not a positive whole number of epochs")
    return int(text)


def _demo_job(ref: ManifestRef, model: DemoModel) -> Any:
    from okai.train.demo import digits_job, gpt_job

    build = digits_job if model == "digits" else gpt_job
    job = build((ref,), nodes=DEMO_NODES, procs_per_node=DEMO_PROCS_PER_NODE)
    epochs = demo_epochs()
    if epochs is None:
        return job
    return job.model_copy(update={"hyperparameters": {**job.hyperparameters, "epochs": epochs}})


def _train(job: Any, settings: Settings, report: Report) -> Path:
    from okai.compute import cluster
    from okai.compute.local import LocalBackend
    from okai.compute.state import ClusterState, state_path

    backend = LocalBackend(report=report)
    if state_path(DEMO_CLUSTER).exists():
        # Left by an interrupted demo: remove what it made before starting afresh.
        cluster.down(ClusterState.load(DEMO_CLUSTER), backend)
    request = cluster.ClusterRequest(
        name=DEMO_CLUSTER,
        job=job,
        walrus=cluster.walrus_endpoints(settings),
        allow_unregistered_host=True,
    )

    last_epoch: list[int] = []

    def show(update: cluster.ClusterProgress) -> None:
        progress = update.progress
        if progress is not None and progress.epoch not in last_epoch:  # one line per epoch
            last_epoch.append(progress.epoch)
            loss = "?" if progress.loss is None else f"{progress.loss:.4f}"
            report(f"epoch {progress.epoch} step {progress.step} loss {loss}")

    outcome = cluster.up(request, backend, settings, cluster.Events(report=report, progress=show))
    # The run directory is fetched; the local nodes are not needed any more.
    cluster.down(ClusterState.load(outcome.cluster), backend)
    return outcome.run_dir


def _verify(run_dir: Path, deep: bool, registry: Any, walrus: Any) -> str:
    """Verify the demo model under a policy that trusts the demo's own dev account."""
    from okai.verify.checks import Options
    from okai.verify.driver import ModelTarget, verify_model
    from okai.verify.policy import TrustPolicy

    account = registry.signer.address
    # The local provider runs no registered image: the policy accepts that, and the
    # report says the software environment was not attested rather than hiding it.
    policy = TrustPolicy(
        trainers=(account,),
        publishers=(account,),
        allow_unregistered_host=True,
        sources=("the demo",),
    )
    target = ModelTarget(path=run_dir / "model.safetensors")
    report = verify_model(
        target, Options(deep=deep), registry=registry, walrus=walrus, policy=policy
    )
    failed = [check.id for check in report.failures]
    if report.verdict != "verified":
        flags = f"--trainer {account} --allow-unregistered-host" + (" --deep" if deep else "")
        raise VerificationError(
            f"the demo model did not verify: {', '.join(failed) or report.verdict}",
            hint=f"see `okai verify {run_dir / 'model.safetensors'} {flags}`",
        )
    passed = sum(1 for check in report.checks if check.status == "passed")
    return (
        f"verified, trusting the demo's dev account {account} as trainer and publisher; "
        f"{passed} checks passed; unregistered host accepted: the software environment "
        "was not attested"
    )


def _load_state() -> dict[str, Any]:
    """What earlier demos left to reuse: `.okai/demo/state.json`."""
    try:
        return read_document_if_exists(demo_folder() / "state.json") or {}
    except DocumentError:  # only a cache: a damaged one is started afresh
        return {}


def _save_state(key: str, value: Any) -> None:
    state = _load_state()
    state[key] = value
    write_atomically(demo_folder() / "state.json", json.dumps(state, indent=2) + "\n")


def _run_key(settings: Settings, job_digest: Digest) -> str:
    return f"run/{settings.network.name}/{settings.network.registry_address}/{job_digest}"


def _previous_run(settings: Settings, job_digest: Digest, registry: Any) -> Path | None:
    """A recorded run of this job on this registry whose model file is still here."""
    entry = _load_state().get(_run_key(settings, job_digest))
    if not isinstance(entry, dict):
        return None
    run_dir = Path(entry.get("runDir", ""))
    model = run_dir / "model.safetensors"
    if not model.is_file() or not (run_dir / "record.json").is_file():
        return None
    try:
        recorded = bool(registry.is_recorded(Digest.of_file(model), registry.signer.address))
    except OperationalError:
        return None
    return run_dir if recorded else None


def _remember_run(settings: Settings, job_digest: Digest, run_dir: Path) -> None:
    _save_state(_run_key(settings, job_digest), {"runDir": str(run_dir.resolve())})
