"""One version set: the lock the tests run against is the package set of the image.

requirements.lock (what `make setup` installs) and nix/python-packages.json (what
nix/package.nix installs) are written together by scripts/python-lock.py, from
pyproject.toml's runtime dependencies and its `jobs` group; these tests fail when
they drift apart, when pyproject.toml or the imports of src/okai ask for something
neither carries, when this environment is not the locked one, and when the Nix
package does not install exactly okai's packages and the named job packages
(evaluated with a stub of nixpkgs: Nix 2.8 cannot evaluate nixpkgs itself).
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


NIX_LOCK: dict[str, Any] = json.loads((REPO / "nix/python-packages.json").read_text())
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())


def runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def job_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"]["jobs"]]


def requires() -> dict[str, list[str]]:
    return {name: entry["requires"] for name, entry in IMAGE.items()}


OKAI_OWN: set[str] = lock.closure(NIX_LOCK["okai"], requires())
"""okai's requirements and everything they require: what every image holds."""


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


def test_okai_and_its_jobs_are_one_resolution_marked_apart() -> None:
    # The Nix package starts from exactly pyproject's runtime dependencies ...
    assert NIX_LOCK["okai"] == sorted(lock.normalize(r.name) for r in runtime_requirements())
    jobs = sorted(lock.normalize(requirement.name) for requirement in job_requirements())
    assert jobs, "pyproject.toml's `jobs` group is the example docs/image.md shows"
    # ... every requirement is itself locked, and nothing is locked for nobody.
    for name, entry in IMAGE.items():
        assert set(entry["requires"]) <= set(IMAGE), name
    assert OKAI_OWN | lock.closure(jobs, requires()) == set(IMAGE)
    for requirement in job_requirements():
        version = LOCKED[lock.normalize(requirement.name)][0]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    # requirements.lock lists okai's packages first, then those only jobs need.
    text = (REPO / "requirements.lock").read_text()
    okai_part, jobs_part = text.split(lock.JOBS_SECTION)
    assert set(lock.parse_requirements(okai_part, Path())) == OKAI_OWN
    assert set(lock.parse_requirements(jobs_part, Path())) == set(IMAGE) - OKAI_OWN
    assert "einops" in set(IMAGE) - OKAI_OWN


def pip_item(name: str, requires_dist: list[str], **extra: Any) -> dict[str, Any]:
    url = f"file:///opt/wheels/{name}-1.0-py3-none-any.whl"
    return {
        "metadata": {"name": name, "version": "1.0", "requires_dist": requires_dist},
        "download_info": {"url": url, "archive_info": {"hashes": {"sha256": "ab" * 32}}},
        **extra,
    }


def test_a_pip_report_becomes_packages_with_their_requirements() -> None:
    report = {
        "install": [
            pip_item(
                "okai", ["Base_Lib>=1", 'job-lib; extra == "jobs"'], requested_extras=["jobs"]
            ),
            pip_item("base-lib", ['colorama; sys_platform == "win32"', "Shared"]),
            pip_item("shared", ['job-helper; extra == "fancy"']),
            pip_item("job-lib", ["shared[fancy]", 'base-lib; python_version < "3"']),
            pip_item("job-helper", []),
        ]
    }
    # job-lib asked shared for its `fancy` extra: pip reports it on shared.
    report["install"][2]["requested_extras"] = ["fancy"]
    okai, packages = lock.packages_of(report)
    assert okai == ["base-lib"]  # the `jobs` extra is not okai's own
    by_name = {package["name"]: package for package in packages}
    assert by_name["base-lib"]["requires"] == ["shared"]  # not colorama (Windows only)
    assert by_name["shared"]["requires"] == ["job-helper"]
    assert by_name["job-lib"]["requires"] == ["shared"]
    assert [(p["name"], p["okai"]) for p in packages] == [
        ("base-lib", True),
        ("job-helper", True),  # through shared[fancy], counted with okai's: over, never under
        ("shared", True),
        ("job-lib", False),
    ]
    assert by_name["job-lib"]["url"].startswith("https://files.pythonhosted.org/packages/py3/j/")


def test_a_requirement_pip_did_not_lock_is_refused() -> None:
    report = {"install": [pip_item("okai", ["missing-lib"])]}
    with pytest.raises(SystemExit, match="requires missing-lib, which pip did not lock"):
        lock.packages_of(report)


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
{ packagePath, extraPythonPackages }:
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
  python311.version = "3.11.99";
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
    inherit extraPythonPackages;
  };
in {
  inherit (package.passthru) pythonIdentity;
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


def evaluate_package(
    extra: list[str] | None = None, package_path: Path = REPO / "nix" / "package.nix"
) -> subprocess.CompletedProcess[str]:
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    return subprocess.run(
        [
            *(nix, "--eval", "--strict", "--json", "--expr"),
            f"({STUB}) {{ packagePath = {package_path}; "
            f"extraPythonPackages = builtins.fromJSON {json.dumps(json.dumps(extra or []))}; }}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def evaluated(extra: list[str] | None = None, package_path: Path | None = None) -> Any:
    result = evaluate_package(extra, package_path or REPO / "nix" / "package.nix")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def package() -> Any:
    return evaluated()


def installed_wheels(package: Any) -> dict[str, Any]:
    return {lock.normalize(entry["pname"]): entry for entry in package["dependencies"]}


def okai_modules() -> list[str]:
    source = REPO / "src"
    modules = []
    for path in (source / "okai").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        parts = path.relative_to(source).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(modules)


def test_the_nix_package_takes_okai_s_packages_file_by_file(package: Any) -> None:
    assert not package["relaxed"]  # no pythonRelaxDeps hiding skew
    assert package["mainProgram"] == "okai"
    installed = installed_wheels(package)
    assert set(installed) == OKAI_OWN  # no job package unless the image names it
    for name, entry in installed.items():
        assert entry["version"] == LOCKED[name][0], name
        assert entry["sha256"] == LOCKED[name][1], name
        assert entry["format"] == "wheel" and entry["name"] == IMAGE[name]["file"], name
    identity = package["pythonIdentity"]
    assert identity["version"] == "3.11.99" and identity["extraPackages"] == []
    assert identity["packages"] == [
        {"name": name, "version": LOCKED[name][0], "sha256": f"sha256:{LOCKED[name][1]}"}
        for name in sorted(OKAI_OWN)
    ]


def test_extra_python_packages_add_exactly_the_named_locked_wheels(package: Any) -> None:
    jobs = sorted(set(IMAGE) - OKAI_OWN)
    with_jobs = evaluated(jobs)
    installed = installed_wheels(with_jobs)
    assert set(installed) == OKAI_OWN | set(jobs)
    for name in jobs:
        assert installed[name]["sha256"] == LOCKED[name][1]
        assert installed[name]["name"] == IMAGE[name]["file"]
    assert with_jobs["pythonIdentity"]["extraPackages"] == jobs
    assert {entry["name"] for entry in with_jobs["pythonIdentity"]["packages"]} == set(installed)
    # One of okai's own packages named again changes nothing.
    assert installed_wheels(evaluated(["numpy"])) == installed_wheels(package)


def test_an_extra_package_brings_what_it_requires_and_nothing_else(tmp_path: Path) -> None:
    """On a small lock: the job package's requirements come along, other jobs' stay out."""
    (tmp_path / "nix").mkdir()
    shutil.copy(REPO / "nix" / "package.nix", tmp_path / "nix" / "package.nix")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src").symlink_to(REPO / "src")

    def entry(name: str, requires: list[str]) -> dict[str, Any]:
        url = f"https://files.pythonhosted.org/packages/py3/{name[0]}/{name}/{name}-1.0-py3-none-any.whl"
        return {
            "version": "1.0",
            "file": url.rsplit("/", 1)[1],
            "url": url,
            "sha256": "ab" * 32,
            "requires": requires,
        }

    small = {
        "python": "3.11",
        "okai": ["base"],
        "packages": {
            "base": entry("base", ["shared"]),
            "shared": entry("shared", []),
            "job-a": entry("job-a", ["helper", "shared"]),
            "helper": entry("helper", ["deeper"]),
            "deeper": entry("deeper", []),
            "job-b": entry("job-b", ["other"]),
            "other": entry("other", []),
        },
    }
    (tmp_path / "nix" / "python-packages.json").write_text(json.dumps(small))
    path = tmp_path / "nix" / "package.nix"
    assert set(installed_wheels(evaluated([], path))) == {"base", "shared"}
    with_a = evaluated(["job-a"], path)
    assert set(installed_wheels(with_a)) == {"base", "shared", "job-a", "helper", "deeper"}
    assert [p["name"] for p in with_a["pythonIdentity"]["packages"]] == [
        "base",
        "deeper",
        "helper",
        "job-a",
        "shared",
    ]


def test_an_extra_package_the_lock_lacks_is_refused_with_the_fix() -> None:
    result = evaluate_package(["einops", "not-locked-anywhere"])
    assert result.returncode != 0
    assert 'extraPythonPackages names "not-locked-anywhere"' in result.stderr
    assert "nix/python-packages.json does not lock" in result.stderr
    assert "[project.optional-dependencies] jobs in pyproject.toml" in result.stderr
    assert "python scripts/python-lock.py lock" in result.stderr
    # Names are the lock's: PyPI's spelling of a locked package is not guessed at.
    assert 'names "PyYAML"' in evaluate_package(["PyYAML"]).stderr


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
