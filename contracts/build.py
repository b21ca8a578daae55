"""Compile contracts/ProvenanceRegistry.sol with the pinned solc and write the committed artifact.

    python contracts/build.py                      # (re)write src/okai/chain/artifacts/...
    python contracts/build.py --check              # exit 1 if the artifact drifted from the source
    python contracts/build.py --standard-json F    # the exact input to upload to an explorer

The compiler is the npm package `solc` at the exact version pinned in package.json, run by
`compile.js` under Node.js; the settings (evmVersion cancun, optimizer, metadata) live in
`solc-input.json`, a solc standard-JSON input whose sources are inlined here. Run it with the
okai package importable (PYTHONPATH=src, or the project's virtual environment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from okai.nodejs import node_binary, node_package

CONTRACTS = Path(__file__).resolve().parent
REPO = CONTRACTS.parent
INPUT = CONTRACTS / "solc-input.json"
CONTRACT = "ProvenanceRegistry"
SOURCE_NAME = f"{CONTRACT}.sol"
ARTIFACT = REPO / "src" / "okai" / "chain" / "artifacts" / f"{CONTRACT}.json"
SOLC_VERSION = "0.8.28"


def standard_input() -> dict[str, Any]:
    """The standard-JSON input with every source's content inlined from contracts/."""
    document = json.loads(INPUT.read_text(encoding="utf-8"))
    for name, entry in document["sources"].items():
        (url,) = entry.pop("urls")
        entry["content"] = (CONTRACTS / url).read_text(encoding="utf-8")
        if name != url:
            raise SystemExit(f"{INPUT}: source {name!r} must name its own file, not {url!r}")
    return document


def compile_standard_json(document: dict[str, Any]) -> dict[str, Any]:
    """Run the pinned solc on a standard-JSON input; exits on errors or warnings."""
    result = subprocess.run(
        [node_binary(), str(CONTRACTS / "compile.js"), str(node_package("solc")), SOLC_VERSION],
        input=json.dumps(document).encode(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"solc failed: {result.stderr.decode(errors='replace')}")
    output: dict[str, Any] = json.loads(result.stdout)
    problems = [e for e in output.get("errors", []) if e["severity"] != "info"]
    for problem in problems:
        print(problem["formattedMessage"], file=sys.stderr)
    if any(problem["severity"] == "error" for problem in problems):
        raise SystemExit("compilation failed")
    if problems:
        raise SystemExit("compilation produced warnings; the committed contract compiles cleanly")
    return output


def compile_artifact() -> dict[str, Any]:
    """Compile with the pinned solc; the artifact the Python package loads."""
    document = standard_input()
    output = compile_standard_json(document)
    compiled = output["contracts"][SOURCE_NAME][CONTRACT]
    source = document["sources"][SOURCE_NAME]["content"].encode("utf-8")
    settings = {k: v for k, v in document["settings"].items() if k != "outputSelection"}
    return {
        "contractName": CONTRACT,
        "sourceName": SOURCE_NAME,
        "sourceSha256": "sha256:" + hashlib.sha256(source).hexdigest(),
        "compiler": {"name": "solc", "version": output["compilerVersion"], "settings": settings},
        "abi": compiled["abi"],
        "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the artifact drifted")
    parser.add_argument("--standard-json", type=Path, help="write the explorer input here")
    args = parser.parse_args(argv)
    if args.standard_json:
        args.standard_json.write_text(json.dumps(standard_input(), indent=2) + "\n")
        print(f"wrote {args.standard_json}")
        return 0
    text = render(compile_artifact())
    if args.check:
        committed = ARTIFACT.read_text(encoding="utf-8") if ARTIFACT.exists() else ""
        if committed != text:
            print(f"{ARTIFACT} differs from a fresh build; run contracts/build.py", file=sys.stderr)
            return 1
        print(f"{ARTIFACT.name} matches a fresh build of {SOURCE_NAME}")
        return 0
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(text, encoding="utf-8")
    print(f"wrote {ARTIFACT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
