"""The committed contract artifact is exactly what the pinned compiler makes of the source."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from okai.chain import load_artifact
from okai.digest import Digest

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
SOURCE = CONTRACTS / "ProvenanceRegistry.sol"


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts_build", CONTRACTS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recompiling_gives_the_committed_artifact_byte_for_byte() -> None:
    build = _build_module()
    fresh = build.compile_artifact()
    committed = json.loads(build.ARTIFACT.read_text())
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
    assert build.render(fresh) == build.ARTIFACT.read_text()  # ABI, settings, source digest too


def test_compiler_settings_are_pinned_explicitly() -> None:
    artifact = load_artifact()
    assert artifact.compiler_version == "0.8.28+commit.7893614a"
    settings = artifact.compiler_settings
    assert settings["evmVersion"] == "cancun"  # never the compiler's default (see flare.md)
    assert settings["optimizer"] == {"enabled": True, "runs": 200}
    assert settings["viaIR"] is False
    assert artifact.source_sha256 == Digest.of_file(SOURCE)
    package = json.loads((CONTRACTS.parent / "package.json").read_text())
    assert package["devDependencies"]["solc"] == "0.8.28"


def test_standard_json_for_explorers_inlines_the_source(tmp_path: Path) -> None:
    build = _build_module()
    out = tmp_path / "input.json"
    assert build.main(["--standard-json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["sources"]["ProvenanceRegistry.sol"]["content"] == SOURCE.read_text()
    assert document["settings"]["evmVersion"] == "cancun"


def _functions_with_docs(source: str) -> list[tuple[str, str]]:
    """(function name, the comment block right above it) for every function."""
    found = []
    lines = source.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"\s*function (\w+)\(", line)
        if not match:
            continue
        above = []
        cursor = index - 1
        while cursor >= 0 and lines[cursor].strip().startswith("///"):
            above.append(lines[cursor].strip())
            cursor -= 1
        found.append((match.group(1), "\n".join(reversed(above))))
    return found


def test_every_function_error_and_event_has_natspec() -> None:
    source = SOURCE.read_text()
    functions = _functions_with_docs(source)
    assert len(functions) > 10
    for name, doc in functions:
        assert any(tag in doc for tag in ("@notice", "@inheritdoc", "@dev")), name
    interface = source.split("contract ProvenanceRegistry is")[0]
    for name, doc in _functions_with_docs(interface):
        assert "@notice" in doc and "@param" in doc, name
    for kind in ("error", "event"):
        for match in re.finditer(rf"\n(\s*///[^\n]*\n)*\s*{kind} (\w+)", interface):
            assert match.group(1), f"{kind} {match.group(2)} lacks NatSpec"


@pytest.mark.parametrize("word", ["owner", "selfdestruct", "delegatecall", "upgrade"])
def test_no_owner_and_no_upgrade_path(word: str) -> None:
    code = "\n".join(
        line for line in SOURCE.read_text().splitlines() if not line.strip().startswith("//")
    )
    assert word not in code.lower()
