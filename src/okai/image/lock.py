"""Reading the nixpkgs revision a flake is pinned to, from its `flake.lock`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from okai.documents import read_document_if_exists
from okai.errors import DocumentError

_REVISION = re.compile(r"^[0-9a-f]{40}$")
_MAX_FOLLOWS = 32  # a lock file whose `follows` chains loop must not recurse forever


def locked_revision(lock_file: Path, input_name: str = "nixpkgs") -> str:
    """The git revision the root flake's input `input_name` is locked to."""
    data = read_document_if_exists(lock_file, "json")
    if data is None:
        raise DocumentError(
            lock_file,
            None,
            "missing; run `nix flake lock` in the flake's folder and commit flake.lock, "
            "so that every build of the image uses the same nixpkgs",
        )
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        raise DocumentError(lock_file, "nodes", "missing; not a flake lock file")
    root = nodes.get(data.get("root", "root"))
    inputs = root.get("inputs") if isinstance(root, dict) else None
    if not isinstance(inputs, dict) or input_name not in inputs:
        raise DocumentError(lock_file, f"nodes.root.inputs.{input_name}", "missing")
    node_name = _resolve(nodes, inputs[input_name], lock_file)
    locked = _node(nodes, node_name).get("locked")
    revision = locked.get("rev") if isinstance(locked, dict) else None
    if not isinstance(revision, str) or not _REVISION.match(revision):
        raise DocumentError(
            lock_file,
            f"nodes.{node_name}.locked.rev",
            f"expected a 40-hex git revision, got {str(revision)[:60]!r}",
        )
    return revision


def _resolve(nodes: dict[str, Any], spec: object, lock_file: Path, depth: int = 0) -> str:
    """An input is a node name, or a `follows` path of input names from the root."""
    if isinstance(spec, str):
        return spec
    if (
        depth < _MAX_FOLLOWS
        and isinstance(spec, list)
        and spec
        and all(isinstance(part, str) for part in spec)
    ):
        node = "root"
        for part in spec:
            inputs = _node(nodes, node).get("inputs")
            target = inputs.get(part) if isinstance(inputs, dict) else None
            node = _resolve(nodes, target, lock_file, depth + 1)
        return node
    raise DocumentError(lock_file, "nodes.root.inputs", f"cannot follow input {str(spec)[:80]!r}")


def _node(nodes: dict[str, Any], name: str) -> dict[str, Any]:
    node = nodes.get(name)
    return node if isinstance(node, dict) else {}
