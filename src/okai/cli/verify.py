"""`okai verify`: check a model file or digest against its provenance record."""

from __future__ import annotations

from dataclasses import replace
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
    from okai.verify.checks import Check
    from okai.verify.policy import TrustPolicy

# okai.verify, okai.chain and okai.walrus are imported inside the command, and web3
# (okai.chain.client) only with --attest: it takes seconds to import.

DEFAULT_TIMEOUT_S = 600.0
"""okai.verify.bounds' default, repeated: importing it here would load okai.verify at start-up."""

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
    trust_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--trust-file",
            help="A TOML trust policy ([trust] trainers, publishers, witnesses, "
            "allow-unregistered-host); may be repeated.",
        ),
    ] = None,
    trainer: Annotated[
        list[str] | None,
        typer.Option("--trainer", help="Trust this account's model claims (repeatable)."),
    ] = None,
    publisher: Annotated[
        list[str] | None,
        typer.Option("--publisher", help="Trust this account's image claims (repeatable)."),
    ] = None,
    witness_account: Annotated[
        list[str] | None,
        typer.Option("--witness", help="Name this account's reproductions (repeatable)."),
    ] = None,
    allow_unregistered_host: Annotated[
        bool,
        typer.Option(
            "--allow-unregistered-host",
            help="Accept a model trained on no registered image (local runs, the demo).",
        ),
    ] = False,
    local_config: Annotated[
        bool,
        typer.Option(
            "--local-config",
            help="On a public network, accept the registry, RPC or chain ID that okai.toml "
            "or .okai/deployments.json in this folder set.",
        ),
    ] = False,
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
        str | None,
        typer.Option(
            "--max-blob-size",
            help="Read at most this much of any data blob, shard or image (e.g. 2GiB; "
            "default: OKAI_VERIFY_MAX_BLOB_BYTES or 16GiB).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Verify a model's provenance: each check passed, failed or not checked, with the reason.

    The verdict is relative to a trust policy (docs/verification.md). Exit 0 only if every
    requested check passed for a claim of a trusted trainer; 4 if every check passed but
    no trainer was trusted; 3 if a check failed; 1 if the only failures are endpoints that
    could not be read.
    """
    from okai.chain.reader import RegistryReader
    from okai.verify import ModelTarget, Options, TrainReproducer, verify_model
    from okai.verify.bounds import Bounds
    from okai.verify.limits import ReadLimits
    from okai.walrus.client import WalrusClient
    from okai.walrus.dataset import parse_size

    cli = with_json(ctx, json_output)
    if image and not deep:
        raise UsageError("--image re-downloads the image as part of --deep; add --deep")
    if attest and not reproduce:
        raise UsageError("--attest records a reproduction, so it needs --reproduce")
    if unsafe_no_sandbox and not reproduce:
        raise UsageError("--unsafe-no-sandbox is about running the recorded code: add --reproduce")
    limits = ReadLimits.from_env()
    if max_blob_size is not None:
        limits = replace(limits, blob=parse_size(max_blob_size))
    bounds = Bounds(timeout_s=timeout or None, limits=limits)
    target = ModelTarget.parse(model)
    policy = trust_policy(
        trust_file or [],
        trainer or [],
        publisher or [],
        witness_account or [],
        allow_unregistered_host=allow_unregistered_host,
    )
    settings = cli.settings
    if settings.local_overrides and not local_config:
        raise UsageError(
            f"files in this folder change what {settings.network.name} means: "
            + ", ".join(settings.local_overrides),
            hint="a verifier must not be redirected silently: pass --local-config to accept "
            "them (the report then says so), set OKAI_REGISTRY / OKAI_RPC_URL, or run "
            "elsewhere",
        )
    reproducer = None
    if reproduce:
        # Before anything is read: refuse now rather than after the downloads.
        from okai.train.sandbox import Sandbox  # okai.train only to re-train

        sandbox = None if unsafe_no_sandbox else Sandbox.find()
        if sandbox is None:
            cli.warn("re-training WITHOUT a sandbox: the recorded code can read your files")
        reproducer = TrainReproducer.for_network(
            settings.network.name, sandbox, cli.info, bounds.check
        )
    registry = RegistryReader.from_settings(settings)
    if attest:  # a transaction: web3, and the key loaded now so that it fails early
        from okai.chain.client import RegistryClient

        registry = RegistryClient.from_settings(settings, sign=True)
    from okai.cli.blob import reporting

    client = WalrusClient.from_network(settings.network, settings.secrets)
    with reporting(client, cli) as walrus:
        report = verify_model(
            target,
            Options(deep=deep, image=image, reproduce=reproduce),
            registry=registry,
            walrus=walrus,
            policy=policy,
            overridden=settings.local_overrides,
            reproducer=reproducer,
            witness=attest,
            workdir=workdir,
            progress=cli,
            bounds=bounds,
        )
    data = {**report.to_json(), "aggregators": walrus.book.report()}
    cli.emit(data, lambda console: render(console, report))
    _exit(report)


class NotPinnedError(VerificationError):
    """Every check passed, but the policy trusted no trainer (exit 4)."""

    exit_code = ExitCode.NOT_PINNED


def trust_policy(
    files: list[Path],
    trainers: list[str],
    publishers: list[str],
    witnesses: list[str],
    *,
    allow_unregistered_host: bool,
) -> TrustPolicy:
    """The policy of the trust files, with the command line's accounts added."""
    from okai.verify.policy import TrustPolicy, checksum

    policy = TrustPolicy()
    for path in files:
        policy = policy.merge(TrustPolicy.load(path))
    given = trainers or publishers or witnesses or allow_unregistered_host
    return policy.merge(
        TrustPolicy(
            trainers=tuple(checksum(a, "--trainer") for a in trainers),
            publishers=tuple(checksum(a, "--publisher") for a in publishers),
            witnesses=tuple(checksum(a, "--witness") for a in witnesses),
            allow_unregistered_host=allow_unregistered_host,
            sources=("command line",) if given else (),
        )
    )


def _exit(report: VerifyReport) -> None:
    from okai.verify import requested_checks

    code = report.exit_code
    if code == ExitCode.OK:
        return
    if code == ExitCode.NOT_PINNED:
        raise NotPinnedError(
            "not verified: every check passed, but no trainer was trusted, so nothing says "
            "whose claim it is",
            hint="name the accounts you trust: --trainer, --publisher, or --trust-file "
            "(docs/verification.md)",
        )
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


VERDICT_LINES = {
    "verified": "VERIFIED",
    "unpinned": "NOT VERIFIED: every check passed, but no trusted account was pinned",
    "not verified": "NOT VERIFIED",
    "pending": "PENDING",
}


def render(console: Console, report: VerifyReport) -> None:
    """Where the answer came from, the checks as a table, then what the claim says."""
    origin = report.origin
    where = [
        ("network", f"{report.network.name} (chain {origin.chain_id})"),
        ("registry", str(origin.registry or "-")),
        ("rpc", origin.rpc_host),
        ("trusted", report.policy.describe()),
    ]
    if origin.overridden:
        where.append(("overridden", "by local files: " + ", ".join(origin.overridden)))
    _rows(console, where)
    for claim in report.claims:
        if len(report.claims) > 1:
            console.print(Text(inert(f"claim by {claim.submitter}: {claim.verdict}"), style="bold"))
        _checks_table(console, report, claim.checks)
    facts = report.evaluation.facts
    context = report.main.context
    rows: list[tuple[str, str]] = [("model", str(facts.model_digest or "-"))]
    if context.submitter_total:
        shown = ", ".join(context.submitters)
        more = context.submitter_total - len(context.submitters)
        rows.append(
            ("claims", f"{context.submitter_total}: {shown}" + (f" (+{more})" if more else ""))
        )
    if facts.record is not None:
        record = facts.record.to_json()
        rows += [
            ("recorded", f"{record['recordedAt']} by {record['submitter']}"),
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
        count = context.witness_count
        listed = ", ".join(facts.witnesses)
        rows.append(
            (
                "witnesses",
                f"{count} in all" + (f"; {listed}" if listed else "") if count else "none",
            )
        )
    if report.witness is not None:
        tx = report.witness.transaction
        suffix = "" if tx is None else f" (tx {tx.tx_hash}, block {tx.block})"
        rows.append(("witness", f"{report.witness.status}: {report.witness.reason}{suffix}"))
    _rows(console, rows)
    style = "bold green" if report.verdict == "verified" else "bold red"
    console.print(Text(VERDICT_LINES[report.verdict], style=style))


def _checks_table(console: Console, report: VerifyReport, checks: dict[str, Check]) -> None:
    from okai.verify.checks import CHECK_IDS

    table = Table(title=Text(f"okai verify {inert(report.target)}"), show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("reason", overflow="fold")
    for check_id in CHECK_IDS:
        check = checks[check_id]
        style = STYLES[check.status]
        table.add_row(
            Text(inert(check.id)),
            Text(f"{MARKS[check.status]} {check.status}", style=style),
            Text(inert(check.reason, 400)),
        )
    console.print(table)


def _rows(console: Console, rows: list[tuple[str, str]]) -> None:
    details = Table(show_header=False, box=None)
    for key, value in rows:
        details.add_row(Text(key, style="bold"), Text(inert(value, 300)))
    console.print(details)
