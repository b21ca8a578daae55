"""`okai chain`: the provenance registry on Flare: deploy it and read its records."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from okai.cli.output import state
from okai.digest import Digest
from okai.errors import UsageError

# okai.chain is imported inside the commands: web3 takes seconds to import, and every
# other `okai` command would pay for it at start-up.

app = typer.Typer(
    name="chain",
    help="The provenance registry on Flare: deploy it and read its records.",
    no_args_is_help=True,
)


def _table(console: Console, rows: dict[str, Any]) -> None:
    """`field  value` lines, never truncated: digests must stay whole to be copied."""
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        items = value if isinstance(value, list) else [value]
        shown = [("-" if item is None else str(item)) for item in items] or ["(none)"]
        for index, item in enumerate(shown):
            label = key if index == 0 else ""
            console.print(f"{label:<{width}}  {item}", markup=False, highlight=False)


@app.command("deploy")
def deploy_command(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy a new, empty registry even if one exists.")
    ] = False,
) -> None:
    """Deploy the registry on the selected network and save its address there."""
    from okai.chain import RegistryClient, deploy_registry
    from okai.dev import stack

    cli = state(ctx)
    network = cli.settings.network
    client = RegistryClient.from_settings(cli.settings, sign=True)
    cli.info(f"deploying the registry on {network.name} (chain {network.chain_id}) …")
    deployment = deploy_registry(client, force=force)
    if network.is_dev:
        stack.set_registry_address(deployment.address)
    result = {
        "network": network.name,
        **deployment.to_json(),
        "explorer": network.explorer_link("address", deployment.address),
    }
    cli.emit(result, lambda console: _table(console, result))


SubmitterOption = Annotated[
    str | None,
    typer.Option("--submitter", help="Only this account's claim (default: every claimant's)."),
]
PublisherOption = Annotated[
    str | None,
    typer.Option("--publisher", help="Only this account's claim (default: every publisher's)."),
]


@app.command("show")
def show_command(
    ctx: typer.Context,
    model_digest: Annotated[str, typer.Argument(help="The model's sha256:<hex> digest.")],
    submitter: SubmitterOption = None,
) -> None:
    """Print the claims on a model (newest first): each record, its image claims and
    witnesses. Claims are anyone's: `okai verify` decides whom to trust."""
    digest = Digest.parse(model_digest)
    from okai.chain import RegistryClient

    cli = state(ctx)
    client = RegistryClient.from_settings(cli.settings)
    accounts, total = ((submitter,), 1) if submitter else client.model_submitters(digest)
    if not accounts:
        raise UsageError(f"model {digest} is not recorded by any account")
    claims = []
    for account in accounts:
        provenance = client.get_provenance(digest, account)
        if not provenance.model.unregistered_host:
            publishers, _ = client.image_publishers(provenance.model.image_digest)
            provenance = client.get_provenance(digest, account, publishers)
        witnesses, count = client.get_witnesses(digest, account)
        claims.append({**provenance.to_json(), "witnesses": list(witnesses), "witnessCount": count})
    data = {"modelDigest": digest, "claimants": total, "claims": claims}

    def human(console: Console) -> None:
        for index, claim in enumerate(claims):
            if index:
                console.print()
            _table(console, {**claim["model"], "witnesses": claim["witnesses"]})
            for image in claim["images"]:
                console.print()
                _table(console, image)

    cli.emit(data, human)


@app.command("image")
def image_command(
    ctx: typer.Context,
    image_digest: Annotated[str, typer.Argument(help="The image's sha256:<hex> digest.")],
    publisher: PublisherOption = None,
) -> None:
    """Print the claims on an image, oldest first (or one publisher's)."""
    digest = Digest.parse(image_digest)
    from okai.chain import RegistryClient

    cli = state(ctx)
    client = RegistryClient.from_settings(cli.settings)
    accounts, total = ((publisher,), 1) if publisher else client.image_publishers(digest)
    if not accounts:
        raise UsageError(f"image {digest} is not registered by any account")
    claims = [client.get_image(digest, account).to_json() for account in accounts]
    data = {"imageDigest": digest, "publishers": total, "claims": claims}

    def human(console: Console) -> None:
        for index, claim in enumerate(claims):
            if index:
                console.print()
            _table(console, claim)

    cli.emit(data, human)
