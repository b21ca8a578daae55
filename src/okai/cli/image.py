"""`okai image`: build the NixOS worker image and publish it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import state
from okai.image import DEFAULT_VARIANT, VARIANTS, build_image, plan_publish, publish_image

app = typer.Typer(
    name="image", help="Build the NixOS worker image and publish it.", no_args_is_help=True
)


@app.command("build")
def build_command(
    ctx: typer.Context,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help=f"Image variant: {', '.join(VARIANTS)} (qemu = qcow2 BIOS, raw = raw BIOS).",
        ),
    ] = DEFAULT_VARIANT,
    flake: Annotated[
        Path, typer.Option("--flake", help="Folder holding flake.nix (the okai checkout).")
    ] = Path("."),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to put the manifest (default .okai/images/VARIANT)."),
    ] = None,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty", help="Build from uncommitted changes (the image cannot be rebuilt)."
        ),
    ] = False,
) -> None:
    """Build one image variant with `nix build` and write its okai.image/v1 manifest."""
    cli = state(ctx)
    built = build_image(
        flake,
        variant,
        out,
        allow_dirty=allow_dirty,
        hash_progress=lambda total: cli.transfer("hashing the image", total),
    )
    manifest = built.manifest

    def human(console: Console) -> None:
        table = Table(show_header=False, box=None)
        table.add_row("image", str(built.image_path))
        table.add_row("manifest", str(built.manifest_path))
        table.add_row("size", f"{manifest.size / 2**30:.2f} GiB ({manifest.size} bytes)")
        table.add_row("sha256", manifest.sha256)
        table.add_row("toplevel", manifest.nixos.system_toplevel)
        table.add_row("nixpkgs", manifest.nixos.nixpkgs_revision)
        table.add_row("flake", manifest.nixos.flake_revision)
        if manifest.python is not None:  # absent only from older manifests
            extras = ", ".join(manifest.python.extra_packages) or "none"
            table.add_row(
                "python",
                f"{manifest.python.version}, {len(manifest.python.packages)} packages "
                f"(for jobs: {extras})",
            )
        console.print(f"built the {manifest.variant} image {manifest.file_name}")
        console.print(table)

    cli.emit(
        {
            "manifestPath": str(built.manifest_path),
            "imagePath": str(built.image_path),
            "manifest": manifest.to_json(),
        },
        human,
    )


@app.command("publish")
def publish_command(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="The manifest.json `okai image build` wrote.")],
    image_url: Annotated[
        str | None,
        typer.Option(
            "--image-url",
            help="A mirror serving the same bytes at a URL ending in .qcow2/.img/.raw; "
            "Fluence boots from it instead of the aggregator.",
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Walrus epochs to store the image for (1 to 53).")
    ] = 1,
) -> None:
    """Store the image on Walrus, check the boot URL serves it, register it on chain.

    Records the quilt ID as the manifest's blobId (the file is updated in place).
    Running it again is safe: an image registered with the same values is reported.
    """
    cli = state(ctx)
    plan = plan_publish(manifest, cli.settings.network, image_url=image_url)
    result = publish_image(plan, cli.settings, epochs=epochs, progress=cli.transfer)

    def human(console: Console) -> None:
        table = Table(show_header=False, box=None)
        table.add_row("image", f"{result.image_digest} ({result.size} bytes)")
        table.add_row("quilt", result.quilt_id)
        table.add_row("walrus URL", f"{result.walrus_url} (read back, SHA-256 matches)")
        if result.mirrored:
            table.add_row("boot URL", f"{result.boot_url} (your mirror: not fetched by okai)")
        table.add_row("manifest", f"{result.manifest_blob_id} (written to {result.manifest_path})")
        table.add_row("toplevel", result.system_toplevel)
        table.add_row("registrant", result.registrant)
        if result.tx_hash is not None:
            table.add_row("transaction", result.explorer_url or result.tx_hash)
        verb = "registered" if result.registered else "was already registered with these values"
        console.print(f"published {plan.identifier}: {verb}")
        console.print(table)
        console.print(f"boot Fluence VMs from {result.boot_url}")

    cli.emit(result.to_json(), human)
