"""One version set: the lock the tests run against is the package set of the image.

requirements.lock (what `make setup` installs) and nix/python-packages.json (what
nix/package.nix installs) are written together by scripts/python-lock.py; these
tests fail when they drift apart, when pyproject.toml or the imports of src/okai
ask for something neither carries, when this environment is not the locked one,
and when the Nix package does not take the whole lock (evaluated with a stub of
nixpkgs: Nix 2.8 cannot evaluate nixpkgs itself).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

from conftest import REPO


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_lock", REPO / "scripts/python-lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _load_script()
LOCKED: dict[str, tuple[str, str]] = lock.read_requirements()
IMAGE: dict[str, dict[str, str]] = lock.read_nix_packages()


def runtime_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [Requirement(text) for text in pyproject["project"]["dependencies"]]


def test_the_image_carries_exactly_the_locked_packages() -> None:
    assert lock.disagreements(LOCKED, IMAGE) == []
    assert "torch" in LOCKED and LOCKED["torch"][0] == "2.13.0+cpu"


def test_a_drifted_image_set_is_named() -> None:
    drifted = json.loads(json.dumps(IMAGE))
    drifted["torch"]["version"] = "2.9.0"
    drifted["numpy"]["sha256"] = "0" * 64
    del drifted["typer"]
    drifted["extra-package"] = {"version": "1.0", "sha256": "1" * 64}
    found = lock.disagreements(LOCKED, drifted)
    assert len(found) == 4, found
    assert any(line.startswith("torch: locked 2.13.0+cpu") for line in found)
    assert any(line.startswith("numpy: locked") for line in found)
    assert "typer: locked, but not in the image" in found
    assert "extra-package: in the image, but not locked" in found


def test_the_lock_is_for_this_interpreter_and_every_file_is_fetchable() -> None:
    document = json.loads((REPO / "nix/python-packages.json").read_text())
    assert document["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    for name, entry in IMAGE.items():
        assert entry["url"].startswith("https://"), name
        assert entry["file"].endswith(".whl"), name  # the image builds nothing from source
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name


def test_every_runtime_dependency_is_locked_within_its_range() -> None:
    for requirement in runtime_requirements():
        name = lock.normalize(requirement.name)
        assert name in LOCKED, f"{requirement} is not in requirements.lock"
        version = LOCKED[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_every_third_party_import_is_declared_and_locked() -> None:
    providers = metadata.packages_distributions()
    declared = {lock.normalize(requirement.name) for requirement in runtime_requirements()}
    imports = lock.third_party_imports(REPO / "src" / "okai")
    assert {"torch", "yaml", "eth_abi", "eth_utils"} <= imports  # the walk sees them
    for module in sorted(imports):
        distributions = {lock.normalize(name) for name in providers.get(module, [])}
        assert distributions, f"src/okai imports {module}, which no installed package provides"
        assert distributions & declared, f"{module} ({distributions}) is not in pyproject.toml"
        assert distributions & set(LOCKED), f"{module} is not locked"
        assert distributions & set(IMAGE), f"{module} is not in the image"


def test_the_import_walk_sees_a_new_import(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text(
        "import os\nimport brand_new.sub\nfrom okai import x\nfrom . import y\n"
    )
    assert lock.third_party_imports(tmp_path) == {"brand_new"}


def test_the_tests_run_in_the_locked_environment() -> None:
    assert lock.environment_differences(LOCKED) == []


def test_an_environment_off_the_lock_is_named() -> None:
    skewed = dict(LOCKED)
    skewed["typer"] = ("0.12.0", LOCKED["typer"][1])
    skewed["not-installed-anywhere"] = ("1.0", "0" * 64)
    assert lock.environment_differences(skewed) == [
        "not-installed-anywhere: locked 1.0, installed missing",
        f"typer: locked 0.12.0, installed {metadata.version('typer')}",
    ]


def test_a_malformed_lock_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "requirements.lock"
    broken.write_text("torch>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match="not a locked requirement"):
        lock.read_requirements(broken)


# ------------------------------------------------------------ nix/package.nix

STUB = r"""
{ packagePath }:
let
  hasSuffix = suffix: text:
    let n = builtins.stringLength text; m = builtins.stringLength suffix;
    in n >= m && builtins.substring (n - m) m text == suffix;
  hasPrefix = prefix: text:
    builtins.substring 0 (builtins.stringLength prefix) text == prefix;
  removeSuffix = suffix: text:
    if hasSuffix suffix text
    then builtins.substring 0 (builtins.stringLength text - builtins.stringLength suffix) text
    else text;
  removePrefix = prefix: text:
    if hasPrefix prefix text
    then builtins.substring (builtins.stringLength prefix) (builtins.stringLength text) text
    else text;
  listFilesRecursive = dir: builtins.concatLists (builtins.attrValues (builtins.mapAttrs
    (name: type: if type == "directory" then listFilesRecursive (dir + "/${name}")
                 else [ (dir + "/${name}") ])
    (builtins.readDir dir)));
  lib = {
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (builtins.attrNames attrs);
    inherit hasSuffix removeSuffix removePrefix;
    filter = builtins.filter;
    replaceStrings = builtins.replaceStrings;
    sort = builtins.sort;
    lessThan = a: b: a < b;
    filesystem.listFilesRecursive = listFilesRecursive;
    fileset = { toSource = args: args; unions = paths: paths; };
    licenses.asl20 = "asl20";
  };
  python311.pkgs = {
    buildPythonPackage = args: args;
    buildPythonApplication = args: args;
    setuptools = "setuptools";
  };
  package = import packagePath {
    inherit lib python311;
    stdenv.cc.cc.lib = "libstdc++";
    fetchurl = args: args;
    autoPatchelfHook = "autoPatchelfHook";
    zlib = "zlib";
  };
in {
  imports = package.pythonImportsCheck;
  relaxed = package ? pythonRelaxDeps || package ? pythonRemoveDeps;
  version = package.version;
  mainProgram = package.meta.mainProgram;
  dependencies = map (dependency: {
    inherit (dependency) pname version format dontCheckRuntimeDeps;
    inherit (dependency.src) url sha256 name;
  }) package.dependencies;
}
"""


def evaluate_package() -> Any:
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    result = subprocess.run(
        [
            *(nix, "--eval", "--strict", "--json", "--expr"),
            f"({STUB}) {{ packagePath = {REPO / 'nix' / 'package.nix'}; }}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def package() -> Any:
    return evaluate_package()


def okai_modules() -> list[str]:
    source = REPO / "src"
    modules = []
    for path in (source / "okai").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        parts = path.relative_to(source).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(modules)


def test_the_nix_package_takes_the_whole_lock_file_by_file(package: Any) -> None:
    assert not package["relaxed"]  # no pythonRelaxDeps hiding skew
    assert package["mainProgram"] == "okai"
    installed = {lock.normalize(entry["pname"]): entry for entry in package["dependencies"]}
    assert set(installed) == set(LOCKED)
    for name, entry in installed.items():
        assert entry["version"] == LOCKED[name][0], name
        assert entry["sha256"] == LOCKED[name][1], name
        assert entry["format"] == "wheel" and entry["name"] == IMAGE[name]["file"], name


def test_the_nix_package_imports_every_module(package: Any) -> None:
    assert package["imports"] == okai_modules()
    assert "okai.cli.app" in package["imports"] and "okai.__main__" not in package["imports"]


def test_every_module_imports_in_a_build_like_sandbox() -> None:
    """What pythonImportsCheck does in the Nix build: no home, no okai settings."""
    env = {"PATH": os.environ["PATH"], "HOME": "/homeless-shelter"}
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-c", code, *okai_modules()],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
