# The image identity file /etc/okai/image.json:
#   {"schema": "okai.image-identity/v1", "nixpkgsRevision", "systemToplevel"}
#
# No flake revision: a revision names a commit, not content, so baking it in
# would give every commit (a docs change, an uncommitted edit) another
# system and another image. The image manifest of `okai image build`
# records the revision beside the toplevel, and the node agent passes it on
# from there to the run's receipt.
#
# The system toplevel cannot name its own store path (a file inside it would
# have to contain its own hash), so the nixpkgs revision is fixed at build time
# and the toplevel is read at boot: a oneshot unit resolves
# /run/current-system, which is the toplevel actually running, and writes
# /run/okai/image.json. /etc/okai/image.json is a link to it, the way
# resolved.nix links /etc/resolv.conf into /run. Images are booted, not
# switched: after a `nixos-rebuild switch` on the same nixpkgs, run
# `systemctl restart okai-image-identity` to name the new toplevel.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.okai.image.identity;
  runtimeFile = "/run/okai/image.json";

  # Every value is constrained (hex revisions, a store path), so printf
  # writes valid JSON without a JSON tool in the image.
  writeIdentity = pkgs.writeShellScript "okai-image-identity" ''
    set -euo pipefail
    toplevel=$(${pkgs.coreutils}/bin/readlink -f /run/current-system)
    if ! [[ $toplevel =~ ^/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+$ ]]; then
      echo "okai-image-identity: /run/current-system is not a store path: $toplevel" >&2
      exit 1
    fi
    printf '{\n  "schema": "okai.image-identity/v1",\n  "nixpkgsRevision": "%s",\n  "systemToplevel": "%s"\n}\n' \
      ${lib.escapeShellArg cfg.nixpkgsRevision} "$toplevel" \
      > ${runtimeFile}.tmp
    ${pkgs.coreutils}/bin/mv ${runtimeFile}.tmp ${runtimeFile}
  '';
in
{
  options.okai.image.identity = {
    enable = lib.mkEnableOption "the image identity file /etc/okai/image.json, read by okai for run receipts";

    nixpkgsRevision = lib.mkOption {
      type = lib.types.strMatching "[0-9a-f]{40}";
      example = "5c623338d0c62d15a11b12e46ee8b04a48482c2f";
      description = "Git revision of nixpkgs the image was built from, as locked in flake.lock. Set by flake.nix.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.etc."okai/image.json".source = runtimeFile;

    systemd.services.okai-image-identity = {
      description = "Write the okai image identity file";
      wantedBy = [ "multi-user.target" ];
      before = [ "okai-node.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = writeIdentity;
        DynamicUser = true;
        RuntimeDirectory = "okai";
        RuntimeDirectoryMode = "0755";
        RuntimeDirectoryPreserve = true;
        UMask = "0022";
        # It only reads a symlink and writes one file.
        CapabilityBoundingSet = "";
        NoNewPrivileges = true;
        PrivateNetwork = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = "none";
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
      };
    };
  };
}
