"""`okai cluster`: bring training clusters up and down (local or Fluence)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from okai.cli.output import CliState, state
from okai.compute import cluster as clusters
from okai.compute import interrupt, preflight
from okai.compute.cluster import Backend, ClusterProgress, ClusterRequest, Events
from okai.compute.state import ClusterState, ClusterStatus, list_states
from okai.errors import UsageError
from okai.inert import inert
from okai.train.job import load_checked_job

if TYPE_CHECKING:
    from okai.compute.fluence import NodeRequirements

app = typer.Typer(
    name="cluster",
    help="Bring training clusters up and down (local or Fluence).",
    no_args_is_help=True,
)


class ProviderName(StrEnum):
    LOCAL = "local"
    FLUENCE = "fluence"


Name = Annotated[
    str | None,
    typer.Argument(help="The cluster (default: the only one not yet removed)."),
]


# `okai cluster up`'s options, grouped in its help by what they configure.
JOB = "Job"
CLUSTER = "Cluster"
FLUENCE = "Fluence nodes"
COST = "Fluence cost"
OUTPUT = "Output"


@app.command("up")
def up_command(
    ctx: typer.Context,
    job: Annotated[Path, typer.Argument(help="The job file (TOML or JSON, okai.job/v1).")],
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", min=1, help="Nodes (default: the job's).", rich_help_panel=JOB),
    ] = None,
    procs_per_node: Annotated[
        int | None,
        typer.Option(
            "--procs-per-node",
            min=1,
            help="Processes per node (default: the job's).",
            rich_help_panel=JOB,
        ),
    ] = None,
    max_restarts: Annotated[
        int,
        typer.Option(
            "--max-restarts",
            min=0,
            help="torchrun's worker restarts per node.",
            rich_help_panel=JOB,
        ),
    ] = 3,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Give up on the job after this many s.", rich_help_panel=JOB
        ),
    ] = None,
    provider: Annotated[
        ProviderName,
        typer.Option("--provider", help="Where the nodes run.", rich_help_panel=CLUSTER),
    ] = ProviderName.LOCAL,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Cluster name (default: from the job's name).", rich_help_panel=CLUSTER
        ),
    ] = None,
    node_wait: Annotated[
        float | None,
        typer.Option(
            "--node-wait",
            min=1,
            help="How long new nodes may take to answer, in s (Fluence 600, local 30).",
            rich_help_panel=CLUSTER,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what would be created, and create nothing.",
            rich_help_panel=CLUSTER,
        ),
    ] = False,
    image_url: Annotated[
        str | None,
        typer.Option(
            "--image-url",
            help="The published image's URL (.qcow2/.img/.raw).",
            rich_help_panel=FLUENCE,
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="The image manifest; nodes must run that system.",
            rich_help_panel=FLUENCE,
        ),
    ] = None,
    ssh_key: Annotated[
        Path | None,
        typer.Option(
            "--ssh-key",
            help="Private key for the nodes (PATH.pub is sent).",
            rich_help_panel=FLUENCE,
        ),
    ] = None,
    ssh_cidr: Annotated[
        str,
        typer.Option(
            "--ssh-cidr", help="Who may reach the nodes' SSH port.", rich_help_panel=FLUENCE
        ),
    ] = "0.0.0.0/0",
    vcpu: Annotated[
        int,
        typer.Option("--vcpu", min=1, help="vCPUs per node, at least.", rich_help_panel=FLUENCE),
    ] = 2,
    ram_gb: Annotated[
        int,
        typer.Option(
            "--ram-gb", min=1, help="GB of RAM per node, at least.", rich_help_panel=FLUENCE
        ),
    ] = 4,
    nodes_reach_endpoints: Annotated[
        bool,
        typer.Option(
            preflight.REACH_OPTION,
            help="The nodes can reach the network's loopback or private Walrus "
            "endpoints (a tunnel, a VPN); do not refuse them.",
            rich_help_panel=FLUENCE,
        ),
    ] = False,
    hours: Annotated[
        float,
        typer.Option("--hours", help="Expected duration, for the estimate.", rich_help_panel=COST),
    ] = 1.0,
    max_usd: Annotated[
        str | None,
        typer.Option(
            "--max-usd",
            help="Refuse to create anything if the estimate is above this.",
            rich_help_panel=COST,
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask before spending money.", rich_help_panel=COST),
    ] = False,
    runs_dir: Annotated[
        Path,
        typer.Option("--runs-dir", help="Where the run directory is left.", rich_help_panel=OUTPUT),
    ] = Path("runs"),
) -> None:
    """Bring up a cluster, run JOB on it, and leave the run in runs/<run-id>/.

    Before anything is created, the pre-flight checks the job as `okai train`
    does and, on Fluence, the endpoints, the data, the key, offers and balance
    (docs/clusters.md). SIGINT, SIGTERM and SIGHUP roll the cluster back.
    """
    cli = state(ctx)
    settings = cli.settings
    spec = clusters.cluster_job(load_checked_job(job), nodes, procs_per_node)
    request = ClusterRequest(
        name=name or clusters.default_name(spec),
        job=spec,
        walrus=clusters.walrus_endpoints(settings),
        image=None if image is None else clusters.image_expectation(image),
        allow_unregistered_host=provider == ProviderName.LOCAL,
        runs_root=runs_dir,
        timeout_s=timeout,
        max_restarts=max_restarts,
        node_wait_s=node_wait,
    )
    if provider == ProviderName.LOCAL:
        _up_local(cli, request, dry_run=dry_run)
        return
    from okai.compute.fluence import NodeRequirements

    nodes_wanted = FluenceNodes(
        image_url=image_url,
        ssh_key=ssh_key,
        ssh_cidr=ssh_cidr,
        requirements=NodeRequirements(vcpu=vcpu, ram_gb=ram_gb),
        reach_endpoints=nodes_reach_endpoints,
    )
    spending = Spending(hours=hours, max_usd=_usd(max_usd), confirmed=yes)
    _up_fluence(cli, request, nodes_wanted, spending, dry_run=dry_run)


def _up_local(cli: CliState, request: ClusterRequest, *, dry_run: bool) -> None:
    """`up` on this machine: nothing is rented, so no pre-flight and no consent."""
    from okai.compute.local import LocalBackend

    backend = LocalBackend(report=cli.info)
    if dry_run:
        plan = backend.plan(request)
        cli.emit(plan, lambda console: console.print_json(data=plan))
        return
    with interrupt.handling_signals():
        _run(cli, request, backend, Events(report=cli.info))


@dataclass(frozen=True)
class FluenceNodes:
    """What the Fluence VMs are: image, access and size."""

    image_url: str | None
    ssh_key: Path | None
    ssh_cidr: str
    requirements: NodeRequirements
    reach_endpoints: bool


@dataclass(frozen=True)
class Spending:
    """What the user allows a Fluence cluster to cost."""

    hours: float
    max_usd: Decimal | None
    confirmed: bool


def _up_fluence(
    cli: CliState,
    request: ClusterRequest,
    nodes: FluenceNodes,
    spending: Spending,
    *,
    dry_run: bool,
) -> None:
    """`up` on Fluence: pre-flight, plan, the user's consent, then the cluster."""
    from okai.compute.fluence import FluenceClient
    from okai.compute.fluence.backend import FluenceBackend
    from okai.compute.fluence.provider import FluenceProvider

    preflight.check_reachable(
        request.walrus, nodes.image_url, publish=request.publish, nodes_reach=nodes.reach_endpoints
    )
    if nodes.image_url is not None and (warning := preflight.check_image(nodes.image_url)):
        cli.info(f"warning: {warning}")
    with FluenceClient.from_settings(cli.settings) as client, interrupt.handling_signals():
        fluence = FluenceBackend(
            FluenceProvider(client, report=cli.info),
            ssh_key=nodes.ssh_key,
            image_url=nodes.image_url,
            requirements=nodes.requirements,
            hours=spending.hours,
            max_usd=spending.max_usd,
            ssh_cidr=nodes.ssh_cidr,
        )
        plan = fluence.plan(request)
        assert request.walrus is not None  # check_reachable refused a request without one
        data = preflight.check_data(request.job, request.walrus, cli.info)
        if dry_run:

            def show(console: Console) -> None:
                console.print(plan.describe(), highlight=False, markup=False)
                console.print(data, highlight=False, markup=False)
                console.print()
                console.print(
                    plan.render_requests(client.config.base_url), highlight=False, markup=False
                )

            cli.emit({**plan.to_json(), "dataCheck": data}, show)
            return
        plan.refuse_short_balance()
        cli.info(plan.describe())
        cli.info(data)
        if not spending.confirmed:
            if not sys.stdin.isatty():
                raise UsageError(
                    "creating a Fluence cluster costs money; confirm with --yes",
                    hint="--dry-run shows the requests and the estimate without creating anything",
                )
            if not typer.confirm(f"Create {request.nodes} VM(s) at about this cost?"):
                raise typer.Abort()
        _run(cli, request, fluence, Events(report=cli.info))


def _interrupted(name: str, stopped: KeyboardInterrupt) -> interrupt.ClusterInterrupted:
    """What the user must know after a signal: whether anything is still billed, and the fix."""
    why = str(stopped) if isinstance(stopped, interrupt.Interrupted) else "interrupted"
    made = ClusterState.made_here(name)
    if made is None:
        return interrupt.ClusterInterrupted(f"{why}; nothing was created")
    left = made.live_resources()
    if not left:
        return interrupt.ClusterInterrupted(
            f"{why}; cluster {name} was rolled back: nothing of it is billed"
        )
    names = ", ".join(f"{r.kind} {r.name}" for r in left)
    return interrupt.ClusterInterrupted(
        f"{why}; cluster {name} still has {len(left)} resource(s) that may be billed: {names}",
        hint=f"run `okai cluster down {name}` to remove them",
    )


def _usd(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"--max-usd must be a number of US dollars, not {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise UsageError(f"--max-usd must be positive, not {text}")
    return value


def _run(cli: CliState, request: ClusterRequest, backend: Backend, events: Events) -> None:
    try:
        with _progress_bar(cli) as show:
            events.progress = show
            outcome = clusters.up(request, backend, cli.settings, events)
    except KeyboardInterrupt as stopped:
        raise _interrupted(request.name, stopped) from None
    data = outcome.to_json()

    def human(console: Console) -> None:
        console.print(f"run {outcome.run_id} finished: {outcome.run_dir}", highlight=False)
        console.print(f"model    {outcome.receipt.model_sha256}", highlight=False)
        if outcome.outputs.model is not None:
            console.print(f"on Walrus  model {outcome.outputs.model.blob_id}", highlight=False)
        accuracy = outcome.receipt.metrics.get("testAccuracy")
        if isinstance(accuracy, float):
            console.print(f"held-out accuracy  {accuracy:.2%}")
        console.print(
            Text(
                inert(f"the cluster is still up: `okai cluster down {outcome.cluster}` removes it")
            )
        )

    cli.emit(data, human)


@contextmanager
def _progress_bar(cli: CliState) -> Iterator[Callable[[ClusterProgress], None]]:
    with cli.training("starting", "") as bar:
        advised: list[str] = []

        def show(update: ClusterProgress) -> None:
            states = " ".join(f"{v.rank}:{v.state}" for v in update.nodes)
            p = update.progress
            if p is None:
                bar.note("nodes", states)
                return
            if p.advice and not advised:  # measured by the nodes between themselves
                advised.append(p.advice)
                cli.info(f"warning: {p.advice}")
            loss = f"loss {p.loss:.4f}" if p.loss is not None else ""
            bar.epoch(p.epoch, p.epochs, p.step, p.total_steps, f"step {p.step} {loss}  [{states}]")

        yield show


def _backend_for(cli: CliState, cluster: ClusterState) -> Iterator[Backend]:
    """The backend that can reach an existing cluster (a generator: Fluence needs closing)."""
    if cluster.provider == "local":
        from okai.compute.local import LocalBackend

        yield LocalBackend(report=cli.info)
        return
    from okai.compute.fluence import FluenceClient
    from okai.compute.fluence.backend import FluenceBackend
    from okai.compute.fluence.provider import FluenceProvider

    with FluenceClient.from_settings(cli.settings) as client:
        yield FluenceBackend(FluenceProvider(client, report=cli.info))


@contextmanager
def _backend(cli: CliState, cluster: ClusterState) -> Iterator[Backend]:
    yield from _backend_for(cli, cluster)


def _pick(name: str | None) -> ClusterState:
    if name is not None:
        return ClusterState.load(name)
    live = [s for s in list_states() if s.status != ClusterStatus.STOPPED]
    if len(live) == 1:
        return live[0]
    if not live:
        raise UsageError("no cluster is up", hint="`okai cluster up JOB` makes one")
    raise UsageError(
        f"{len(live)} clusters are up: {', '.join(s.name for s in live)}",
        hint="name the one you mean",
    )


@app.command("status")
def status_command(ctx: typer.Context, name: Name = None) -> None:
    """The cluster's state, its resources and each node's agent."""
    cli = state(ctx)
    if name is None and not [s for s in list_states() if s.status != ClusterStatus.STOPPED]:
        everything = [clusters.ClusterSummary(s).to_json() for s in list_states()]
        cli.emit({"clusters": everything}, lambda c: _list(c, everything))
        return
    cluster = _pick(name)
    with _backend(cli, cluster) as backend:
        summary = clusters.ClusterSummary(cluster, clusters.node_views(cluster, backend))
    data = summary.to_json()
    cli.emit(data, lambda console: _show(console, data))


def _list(console: Console, items: list[dict[str, object]]) -> None:
    if not items:
        console.print("no clusters")
        return
    table = Table("name", "provider", "status", "resources")
    for item in items:
        table.add_row(
            str(item["name"]), str(item["provider"]), str(item["status"]), str(item["resources"])
        )
    console.print(table)


def _show(console: Console, data: dict[str, object]) -> None:
    console.print(
        Text(inert(f"cluster {data['name']} ({data['provider']}): {data['status']}")),
        highlight=False,
    )
    if data.get("error"):  # why `up` stopped, or what a teardown left
        console.print(Text(f"reason: {data['error']}"), highlight=False)
    run = data.get("run")
    if isinstance(run, dict):
        console.print(Text(inert(f"run {run.get('runId')}: {run.get('state')}")), highlight=False)
    table = Table("node", "address", "agent", "progress / error")
    nodes = data.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        agent = node.get("agent") or {}
        detail = ""
        if agent.get("error"):
            detail = agent["error"]["message"]
        elif agent.get("progress"):
            p = agent["progress"]
            detail = f"epoch {p['epoch'] + 1}, step {p['step']}, loss {p.get('loss')}"
        elif node.get("note"):
            detail = node["note"]
        table.add_row(
            str(node["rank"]),
            str(node.get("address") or ""),
            str(node["state"]),
            Text(inert(detail)),
        )
    console.print(table)


@app.command("logs")
def logs_command(
    ctx: typer.Context,
    name: Name = None,
    node: Annotated[int | None, typer.Option("--node", help="Only this node (its rank).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new lines until the job ends.")
    ] = False,
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", help="Only the last N lines of each log.")
    ] = None,
) -> None:
    """The nodes' logs: each agent's, then torchrun's and each rank's."""
    cli = state(ctx)
    cluster = _pick(name)
    with _backend(cli, cluster) as backend:
        for line in clusters.logs(cluster, backend, node=node, follow=follow, lines=lines):
            print(line, flush=follow)


@app.command("down")
def down_command(ctx: typer.Context, name: Name = None) -> None:
    """Remove everything the cluster made (processes, VMs, disks, addresses)."""
    cli = state(ctx)
    cluster = _pick(name)
    # A signal stops the teardown between two calls; what is left stays recorded.
    with _backend(cli, cluster) as backend, interrupt.handling_signals(), interrupt.rolling_back():
        clusters.down(cluster, backend)
    data = {
        "name": cluster.name,
        "status": cluster.status.value,
        "resources": len(cluster.live_resources()),
    }
    cli.emit(data, lambda console: console.print(Text(inert(f"cluster {cluster.name} is down"))))
