# okai as a Python application, from nixpkgs' own Python packages.
# Called with python3Packages.callPackage, so `torch` is nixpkgs' source
# build (CPU unless nixpkgs.config.cudaSupport is set), never `torch-bin`:
# the binary wheel is unfree and drags CUDA libraries into the closure.
{
  lib,
  buildPythonApplication,
  setuptools,
  eth-account,
  httpx,
  matplotlib,
  numpy,
  pyarrow,
  pydantic,
  rfc8785,
  rich,
  safetensors,
  scikit-learn,
  tomli-w,
  torch,
  typer,
  web3,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
in
buildPythonApplication {
  pname = "okai";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the Python build reads, so editing docs or tests does not
  # change the package (or the image).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../src
    ];
  };

  build-system = [ setuptools ];

  dependencies = [
    eth-account
    httpx
    matplotlib
    numpy
    pyarrow
    pydantic
    rfc8785
    rich
    safetensors
    scikit-learn
    tomli-w
    torch
    typer
    web3
  ];

  # pyproject.toml pins versions for pip (torch exactly, to keep pip off the
  # CUDA wheels); in Nix the versions are nixpkgs' coherent set instead.
  pythonRelaxDeps = true;

  # The test suite drives anvil, Node.js and Chromium; it runs in CI, not
  # inside the sandboxed build. The import check catches a broken package.
  doCheck = false;
  pythonImportsCheck = [
    "okai"
    "okai.cli.app"
  ];

  meta = {
    description = "Train models on rented VMs with provenance anyone can verify";
    license = lib.licenses.asl20;
    mainProgram = "okai";
    platforms = lib.platforms.linux;
  };
}
