# okai as a Python application, on exactly the Python packages the tests
# run against: every runtime package is the very file requirements.lock
# names (nix/python-packages.json gives its URL and hash), torch included,
# which is the upstream CPU wheel. Not nixpkgs' Python set: its torch is
# another version and build, its numpy links another BLAS, so a model
# trained in the image could not be reproduced bit for bit elsewhere
# (docs/image.md, "One version set").
#
# Called with pkgs.callPackage. The wheels are manylinux builds;
# autoPatchelfHook points their native libraries at the store's libc and
# libstdc++ (it rewrites only the ELF interpreter and search path).
{
  lib,
  stdenv,
  python311,
  fetchurl,
  autoPatchelfHook,
  zlib,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
  lock = lib.importJSON ./python-packages.json;

  # The interpreter the lock was made for (its wheels are built for it).
  python =
    {
      "3.11" = python311;
    }
    .${lock.python} or (throw "nix/package.nix: no interpreter for the lock's Python ${lock.python}");

  # One locked file as a Python package: installed as is, no dependencies
  # of its own (the lock is already the whole, resolved set).
  locked =
    name: entry:
    python.pkgs.buildPythonPackage {
      pname = name;
      inherit (entry) version;
      format = "wheel";
      src = fetchurl {
        inherit (entry) url sha256;
        name = entry.file;
      };
      nativeBuildInputs = [ autoPatchelfHook ];
      buildInputs = [
        stdenv.cc.cc.lib # libstdc++, libgcc_s
        zlib
      ];
      dontStrip = true; # the libraries stay the wheel's bytes, up to the patched ELF paths
      # Its requirements are met by the other locked packages, which sit
      # beside it in okai's environment, not in its own inputs.
      dontCheckRuntimeDeps = true;
    };

  packages = lib.mapAttrsToList locked lock.packages;

  # Every module of okai (but `python -m okai`, which runs the CLI), so a
  # missing dependency fails the build, not a run.
  modules =
    let
      root = toString ../src;
      files = lib.filter (
        file: lib.hasSuffix ".py" file && baseNameOf file != "__main__.py"
      ) (map toString (lib.filesystem.listFilesRecursive ../src/okai));
      name =
        file:
        lib.replaceStrings [ "/" ] [ "." ] (
          lib.removeSuffix ".py" (
            lib.removeSuffix "/__init__.py" (lib.removePrefix "${root}/" file)
          )
        );
    in
    lib.sort lib.lessThan (map name files);
in
python.pkgs.buildPythonApplication {
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

  build-system = [ python.pkgs.setuptools ];

  # The whole lock. nixpkgs' runtime-deps check then holds these to
  # pyproject.toml's ranges: no pythonRelaxDeps.
  dependencies = packages;

  # The test suite drives anvil, Node.js and Chromium; it runs in CI, not
  # inside the sandboxed build. Importing every module catches a missing
  # or mismatched package.
  doCheck = false;
  pythonImportsCheck = modules;

  passthru = {
    inherit python modules;
    lockedPackages = lock.packages;
  };

  meta = {
    description = "Train models on rented VMs with provenance anyone can verify";
    license = lib.licenses.asl20;
    mainProgram = "okai";
    platforms = [ "x86_64-linux" ];
  };
}
