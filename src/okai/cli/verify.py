"""`okai verify`: check a model file or digest against its provenance record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from okai.cli.output import CliState, state
from okai.errors import ExitCode, OperationalError, UsageError, VerificationError
from okai.inert import inert

if TYPE_CHECKING:
    from okai.verify import VerifyReport

# okai.verify, okai.chain and okai.walrus are imported inside the command: web3 takes
# seconds to import, and every other `okai` command would pay for it at start-up.

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_BLOB_SIZE = "1GiB"
"""okai.verify.bounds' defaults, repeated: importing them here would import web3."""

STYLES = {"passed": "green", "failed": "bold red", "not checked": "yellow", "pending": "dim"}
MARKS = {"passed": "✓", "failed": "✗", "not checked": "–", "pending": "…"}


def with_json(ctx: typer.Context, json_output: bool) -> CliState:
    """The command's state, `--json` after the command name counting like the global one."""
    cli = state(ctx)
    if json_output:
        cli.json = True
    return cli


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, for scripts.")
]


def verify(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_FILE|DIGEST",
            help="The model file to verify, or its SHA-256 digest (sha256:<64 hex>).",
        ),
    ],
    deep: Annotated[
        bool, typer.Option("--deep", help="Re-download and check every dataset manifest and shard.")
    ] = False,
    image: Annotated[
        bool, typer.Option("--image", help="With --deep: re-download and check the image too.")
    ] = False,
    reproduce: Annotated[
        bool,
        typer.Option(
            "--reproduce", help="Re-run the deterministic job here and compare the model digest."
        ),
    ] = False,
    attest: Annotated[
        bool,
        typer.Option(
            "--attest",
            help="With --reproduce: record on chain that this account reproduced the model.",
        ),
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="Keep the reproduction's run directory here (default: temporary)."
        ),
    ] = None,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-sandbox",
            help="With --reproduce: run the recorded code without a sandbox, able to read "
            "your files and reach the network. Only for code you trust.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Stop after this many seconds, saying what was slow (0: no limit).",
            min=0,
        ),
    ] = DEFAULT_TIMEOUT_S,
    max_blob_size: Annotated[
        str,
        typer.Option(
            "--max-blob-size",
            help="Read at most this much of a blob the record gives no size for (e.g. 2GiB).",
        ),
    ] = DEFAULT_MAX_BLOB_SIZE,
    json_output: JsonOption = False,
) -> None:
    """Verify a model's provenance: each check passed, failed or not checked, with the reason.

    Exit 0 only if every requested check passed; 3 if a check failed; 1 if the only
    failures are endpoints that could not be read.
    """
    from okai.chain.client import RegistryClient
    from okai.train.sandbox import Sandbox
    from okai.verify import ModelTarget, Options, TrainReproducer, verify_model
    from okai.verify.bounds import Bounds
    from okai.walrus.client import WalrusClient
    from okai.walrus.dataset import parse_size

    cli = with_json(ctx, json_output)
    if image and not deep:
        raise UsageError("--image re-downloads the image as part of --deep; add --deep")
    if attest and not reproduce:
        raise UsageError("--attest records a reproduction, so it needs --reproduce")
    if unsafe_no_sandbox and not reproduce:
        raise UsageError("--unsafe-no-sandbox is about running the recorded code: add --reproduce")
    bounds = Bounds(timeout_s=timeout or None, max_blob_bytes=parse_size(max_blob_size))
    target = ModelTarget.parse(model)
    settings = cli.settings
    reproducer = None
    if reproduce:
        # Before anything is read: refuse now rather than after the downloads.
        sandbox = None if unsafe_no_sandbox else Sandbox.find()
        if sandbox is None:
            cli.warn("re-training WITHOUT a sandbox: the recorded code can read your files")
        reproducer = TrainReproducer.for_network(
            settings.network.name, sandbox, cli.info, bounds.check
        )
    registry = RegistryClient.from_settings(settings, sign=attest)
    with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
        report = verify_model(
            target,
            Options(deep=deep, image=image, reproduce=reproduce),
            registry=registry,
            walrus=walrus,
            reproducer=reproducer,
            witness=attest,
            workdir=workdir,
            progress=cli,
            bounds=bounds,
        )
    cli.emit(report.to_json(), lambda console: render(console, report))
    _exit(report)


def _exit(report: VerifyReport) -> None:
    from okai.verify import requested_checks

    code = report.exit_code
    if code == ExitCode.OK:
        return
    failed = [check.id for check in report.failures]
    if code == ExitCode.OPERATIONAL_FAILURE:
        raise OperationalError(
            f"could not complete the checks {', '.join(failed)}: an endpoint could not be read",
            hint="try again, or point --network / OKAI_RPC_URL / OKAI_WALRUS_AGGREGATORS "
            "at other endpoints",
        )
    if failed:
        raise VerificationError(f"not verified: {', '.join(failed)} failed")
    skipped = [
        check.id
        for check in report.checks
        if check.id in requested_checks(report.options) and check.status != "passed"
    ]
    raise VerificationError(f"not verified: {', '.join(skipped)} could not be checked")


def render(console: Console, report: VerifyReport) -> None:
    """The checks as a table, then what the record and the attestation say."""
    table = Table(title=Text(f"okai verify {inert(report.target)}"), show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("reason", overflow="fold")
    for check in report.checks:
        style = STYLES[check.status]
        table.add_row(
            Text(inert(check.id)),
            Text(f"{MARKS[check.status]} {check.status}", style=style),
            Text(inert(check.reason, 400)),
        )
    console.print(table)
    facts = report.evaluation.facts
    rows: list[tuple[str, str]] = [("model", str(facts.model_digest or "-"))]
    if facts.record is not None:
        record = facts.record.to_json()
        rows += [
            ("recorded", f"{record['recordedAt']} by {record['submitter']}"),
            ("network", f"{report.network.name} (chain {report.network.chain_id})"),
            ("image", str(record["imageDigest"] or record["host"])),
            ("job", record["jobDigest"]),
            ("attestation", f"{record['attestationDigest']} (blob {record['attestationBlobId']})"),
        ]
    attested = facts.attested
    if attested is not None:
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(attested.attestation.metrics.items()))
        rows += [
            ("run", f"{attested.attestation.run_id} on {attested.attestation.builder_id}"),
            ("job name", attested.job.name),
            ("host", attested.attestation.host_identity),
            ("metrics", metrics or "-"),
        ]
    for dataset in facts.datasets:
        name = "" if dataset.manifest is None else f" {dataset.manifest.name!r}"
        rows.append((f"dataset {dataset.index + 1}", f"{dataset.kind}{name} {dataset.digest}"))
    if facts.record is not None:
        rows.append(("witnesses", ", ".join(facts.witnesses) or "none yet"))
    if report.witness is not None:
        tx = report.witness.transaction
        suffix = "" if tx is None else f" (tx {tx.tx_hash}, block {tx.block})"
        rows.append(("witness", f"{report.witness.status}: {report.witness.reason}{suffix}"))
    details = Table(show_header=False, box=None)
    for key, value in rows:
        details.add_row(Text(key, style="bold"), Text(inert(value, 300)))
    console.print(details)
    style = "bold green" if report.verdict == "verified" else "bold red"
    console.print(Text(report.verdict.upper(), style=style))
