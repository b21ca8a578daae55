"""Locating the Node.js tools okai drives (anvil, solc, walrus-wasm).

They come from the npm packages listed in the repository's package.json and are
installed by `make setup`. `OKAI_NODE_MODULES` points at another install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from okai.errors import OperationalError

_INSTALL_HINT = "run `make setup` in the okai checkout (it runs `npm ci`)"


class ToolMissingError(OperationalError):
    """A Node.js tool or package okai needs is not installed."""


def node_modules_dirs() -> list[Path]:
    """Candidate node_modules folders, most specific first."""
    found: list[Path] = []
    if env := os.environ.get("OKAI_NODE_MODULES"):
        found.append(Path(env))
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "node_modules"
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
    return found


def node_package(name: str) -> Path:
    """The installed folder of npm package `name`."""
    for modules in node_modules_dirs():
        if (modules / name / "package.json").is_file():
            return modules / name
    raise ToolMissingError(f"the npm package {name} is not installed", hint=_INSTALL_HINT)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolMissingError("Node.js is not installed", hint="apt-get install nodejs")
    return node


def anvil_binary() -> Path:
    """anvil from `@foundry-rs/anvil-linux-amd64`, or `OKAI_ANVIL`."""
    if env := os.environ.get("OKAI_ANVIL"):
        return Path(env)
    return node_package("@foundry-rs/anvil-linux-amd64") / "bin" / "anvil"
