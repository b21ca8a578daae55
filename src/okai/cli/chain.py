"""`okai chain`: the provenance registry on Flare: deploy it and read its records."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from okai.cli.output import state
from okai.digest import Digest

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


@app.command("show")
def show_command(
    ctx: typer.Context,
    model_digest: Annotated[str, typer.Argument(help="The model's sha256:<hex> digest.")],
) -> None:
    """Print a model's record, its image and its reproduction witnesses."""
    digest = Digest.parse(model_digest)
    from okai.chain import RegistryClient

    cli = state(ctx)
    provenance = RegistryClient.from_settings(cli.settings).get_provenance(digest)
    data = provenance.to_json()

    def human(console: Console) -> None:
        _table(console, {**data["model"], "witnesses": data["witnesses"]})
        if data["image"] is not None:
            console.print()
            _table(console, data["image"])

    cli.emit(data, human)


@app.command("image")
def image_command(
    ctx: typer.Context,
    image_digest: Annotated[str, typer.Argument(help="The image's sha256:<hex> digest.")],
) -> None:
    """Print a registered image's record."""
    digest = Digest.parse(image_digest)
    from okai.chain import RegistryClient

    cli = state(ctx)
    record = RegistryClient.from_settings(cli.settings).get_image(digest)
    data = record.to_json()
    cli.emit(data, lambda console: _table(console, data))
