# okai as a Python application, on exactly the Python packages the tests
# run against: every runtime package is the very file requirements.lock
# names (nix/python-packages.json gives its URL and hash), torch included,
# which is the upstream CPU wheel. Not nixpkgs' Python set: its torch is
# another version and build, its numpy links another BLAS, so a model
# trained in the image could not be reproduced bit for bit elsewhere
# (docs/image.md, "One version set"). `extraPythonPackages` adds packages
# the jobs' code imports, from the same lock (pyproject.toml's `jobs` group).
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
  # Names of locked packages (nix/python-packages.json) to install beside
  # okai's own, each with what it requires.
  extraPythonPackages ? [ ],
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

  # okai's requirements and the extra packages, with everything they
  # require: the rest of the lock (other jobs' packages) stays out.
  known =
    name:
    if lock.packages ? ${name} then
      { key = name; }
    else
      throw ''
        nix/package.nix: extraPythonPackages names "${name}", which nix/python-packages.json does not lock.
        Add it to [project.optional-dependencies] jobs in pyproject.toml, run
        `python scripts/python-lock.py lock` and commit both lock files (names as the lock
        writes them: lowercase, `-` between words).
      '';
  installed = map (item: item.key) (
    builtins.genericClosure {
      startSet = map (name: { key = name; }) lock.okai ++ map known extraPythonPackages;
      operator = item: map (name: { key = name; }) lock.packages.${item.key}.requires;
    }
  );
  packages = map (name: locked name lock.packages.${name}) installed;

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

  # nixpkgs' runtime-deps check holds these to pyproject.toml's ranges:
  # no pythonRelaxDeps.
  dependencies = packages;

  # The test suite drives anvil, Node.js and Chromium; it runs in CI, not
  # inside the sandboxed build. Importing every module catches a missing
  # or mismatched package.
  doCheck = false;
  pythonImportsCheck = modules;

  passthru = {
    inherit python modules;
    lockedPackages = lock.packages;
    # The Python software of this package, as `okai image build` records it
    # in the image manifest (okai.manifest.ImagePython).
    pythonIdentity = {
      inherit (python) version;
      packages = map (name: {
        inherit name;
        inherit (lock.packages.${name}) version;
        sha256 = "sha256:${lock.packages.${name}.sha256}";
      }) (lib.sort lib.lessThan installed);
      extraPackages = extraPythonPackages;
    };
  };

  meta = {
    description = "Train models on rented VMs with provenance anyone can verify";
    license = lib.licenses.asl20;
    mainProgram = "okai";
    platforms = [ "x86_64-linux" ];
  };
}
