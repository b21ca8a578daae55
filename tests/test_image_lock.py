"""Reading the pinned nixpkgs revision from flake.lock, including hostile lock files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okai.errors import DocumentError
from okai.image.lock import locked_revision

REV = "5c623338d0c62d15a11b12e46ee8b04a48482c2f"


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "flake.lock"
    path.write_text(json.dumps(data))
    return path


def lock_with(root_input: object, nodes: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "nodes": {
            "root": {"inputs": {"nixpkgs": root_input}},
            "nixpkgs_2": {"locked": {"rev": REV, "type": "github"}},
            **(nodes or {}),
        },
        "root": "root",
        "version": 7,
    }


def test_direct_input(tmp_path: Path) -> None:
    assert locked_revision(write(tmp_path, lock_with("nixpkgs_2"))) == REV


def test_follows_path(tmp_path: Path) -> None:
    other = {"other": {"inputs": {"nixpkgs": "nixpkgs_2"}, "locked": {"rev": "x"}}}
    data = lock_with(["other", "nixpkgs"], other)
    data["nodes"]["root"]["inputs"]["other"] = "other"  # type: ignore[index]
    assert locked_revision(write(tmp_path, data)) == REV


def test_cyclic_follows_end(tmp_path: Path) -> None:
    data = lock_with(["nixpkgs"])
    with pytest.raises(DocumentError, match="cannot follow"):
        locked_revision(write(tmp_path, data))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"version": 7}, "nodes"),
        ({"nodes": {"root": {"inputs": {}}}, "root": "root"}, "nodes.root.inputs.nixpkgs"),
        (lock_with("missing"), "nodes.missing.locked.rev"),
        (
            lock_with("bad", {"bad": {"locked": {"rev": "$(rm -rf /)"}}}),
            "nodes.bad.locked.rev",
        ),
        (lock_with("short", {"short": {"locked": {"rev": "abc123"}}}), "nodes.short.locked.rev"),
        (lock_with("text", {"text": "not a node"}), "nodes.text.locked.rev"),
        (lock_with(["text", "x"], {"text": ["no inputs"]}), "nodes.root.inputs"),
        ([1, 2, 3], None),
    ],
)
def test_malformed_lock_names_the_field(tmp_path: Path, data: object, field: str | None) -> None:
    with pytest.raises(DocumentError) as caught:
        locked_revision(write(tmp_path, data))
    assert caught.value.field == field


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "flake.lock"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(DocumentError, match=r"flake\.lock: not UTF-8 text \(byte 0\)"):
        locked_revision(path)
