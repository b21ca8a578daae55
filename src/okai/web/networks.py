"""The network presets as the web page reads them (`web/src/networks.json`).

The page is built with the same presets as the CLI: this module derives the JSON from
`okai.config.PRESETS`, and a test fails when the committed file is out of date.
Regenerate with `python -m okai.web.networks web/src/networks.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from okai.config import PRESETS, Network

SCHEMA = "okai.web-networks/v1"


def network_entry(network: Network) -> dict[str, Any]:
    """One network as the page describes it (camelCase, no secrets, nothing to publish)."""
    return {
        "name": network.name,
        "chainId": network.chain_id,
        "rpcUrl": network.rpc_url,
        "explorerUrl": network.explorer_url,
        "registryAddress": network.registry_address,
        "aggregators": list(network.walrus_aggregators),
        "isDev": network.is_dev,
    }


def networks_document() -> dict[str, Any]:
    """Every preset, in the CLI's order; `dev` first, the page's default."""
    networks = [
        network_entry(Network.model_validate({"name": name, **preset}))
        for name, preset in PRESETS.items()
    ]
    return {"schema": SCHEMA, "networks": networks}


def render() -> str:
    return json.dumps(networks_document(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    """Write the document to the path given, or print it."""
    if not argv:
        sys.stdout.write(render())
        return 0
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
