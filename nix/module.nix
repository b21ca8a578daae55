# services.okai-node: the okai node agent, started when a job arrives.
#
# A job is delivered as files in /var/lib/okai/job/ (by cloud-init
# write_files at first boot, or over SSH): `peers` (optional, first),
# `job.json`, then `cluster.json` last. A path unit starts the agent as soon
# as cluster.json exists:
#
#   okai node run --job /var/lib/okai/job/job.json \
#     --cluster /var/lib/okai/job/cluster.json --state-dir /var/lib/okai
#
# Firewall. torchrun's c10d rendezvous listens on `rendezvousPort` on the
# first node; gloo and torchrun's worker store also listen on ports taken
# from the kernel's ephemeral range, so every node must accept those from
# every other member. Nothing of this is opened to the world. Two ways, both
# usable together:
#   - `peersFile`: at job start a root oneshot reads the members' addresses
#     (one per line) and accepts the rendezvous port and the ephemeral range
#     from exactly those sources, in the iptables chain `okai-peers`, until
#     the job ends. This
#     works on any network, including public addresses, because the members
#     are only known when the job is.
#   - `clusterInterfaces`: interfaces that carry nothing but cluster traffic
#     (a private network); the ports are opened on them to any sender there.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.okai-node;
  fw = config.networking.firewall;

  stateDir = "/var/lib/okai";
  jobDir = "${stateDir}/job";
  clusterFile = "${jobDir}/cluster.json";
  jobFile = "${jobDir}/job.json";

  portRange = "${toString cfg.peerPorts.from}:${toString cfg.peerPorts.to}";
  ipv6 = config.networking.enableIPv6;
  ipv6Check = lib.optionalString (!ipv6) ''
    echo "okai-node: refusing $peers_file: '$address' is IPv6, which is off here" >&2
    exit 1
  '';

  # Reads the member addresses and accepts the cluster ports from them only.
  # Every entry is checked before any rule changes: anything that is not an
  # address, or a prefix wider than /8 (IPv4) or /32 (IPv6), refuses the
  # whole file, so a bad file can never open the ports to the internet.
  openToPeers = pkgs.writeShellScript "okai-node-open-to-peers" ''
    set -euo pipefail
    peers_file=${lib.escapeShellArg cfg.peersFile}
    v4=()
    v6=()
    while IFS= read -r line || [ -n "$line" ]; do
      address=''${line%%#*}
      address=''${address//[[:space:]]/}
      [ -n "$address" ] || continue
      if [ $(( ''${#v4[@]} + ''${#v6[@]} )) -ge ${toString cfg.maxPeers} ]; then
        echo "okai-node: more than ${toString cfg.maxPeers} peers in $peers_file; refusing them all" >&2
        exit 1
      fi
      if [[ $address =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}(/([89]|[12][0-9]|3[0-2]))?$ ]] \
         && [[ $address != 0.* ]]; then
        v4+=("$address")
      elif [[ $address == *:* ]] \
         && [[ $address =~ ^[0-9a-fA-F:]+(/(3[2-9]|[4-9][0-9]|1[01][0-9]|12[0-8]))?$ ]] \
         && [[ $address != ::* ]]; then
        ${ipv6Check}
        v6+=("$address")
      else
        echo "okai-node: refusing $peers_file: '$address' is not an address, or a prefix wider than /8 (IPv4) or /32 (IPv6)" >&2
        exit 1
      fi
    done < "$peers_file"

    iptables -w -F okai-peers
    ${lib.optionalString ipv6 "ip6tables -w -F okai-peers"}
    for address in "''${v4[@]}"; do
      iptables -w -A okai-peers -s "$address" -p tcp --dport ${toString cfg.rendezvousPort} -j nixos-fw-accept
      iptables -w -A okai-peers -s "$address" -p tcp --dport ${portRange} -j nixos-fw-accept
    done
    for address in "''${v6[@]}"; do
      ip6tables -w -A okai-peers -s "$address" -p tcp --dport ${toString cfg.rendezvousPort} -j nixos-fw-accept
      ip6tables -w -A okai-peers -s "$address" -p tcp --dport ${portRange} -j nixos-fw-accept
    done
    echo "okai-node: cluster ports open to $(( ''${#v4[@]} + ''${#v6[@]} )) peers"
  '';

  closeToPeers = pkgs.writeShellScript "okai-node-close-to-peers" ''
    iptables -w -F okai-peers
    ${lib.optionalString ipv6 "ip6tables -w -F okai-peers"}
  '';

  usePeersFile = cfg.peersFile != null && fw.enable;

  # The ports are the job's, not the machine's: the agent's unit refuses to
  # run after a refused peers file, and closes the ports when its job ends,
  # however it ends (ExecStartPost after success, ExecStopPost after failure
  # or a stop). Only a stop, never `Requires=`: stopping a required unit
  # would stop the agent's finished unit too, and its path unit would then
  # start the job again.
  peersRefused = pkgs.writeShellScript "okai-node-peers-refused" ''
    if ${config.systemd.package}/bin/systemctl is-failed --quiet okai-node-peers.service; then
      echo "okai-node: okai-node-peers.service refused the peers file; not starting the job" >&2
      exit 1
    fi
  '';
  closePeersUnit = "+${config.systemd.package}/bin/systemctl stop --no-block okai-node-peers.service";
in
{
  options.services.okai-node = {
    enable = lib.mkEnableOption "the okai node agent, which runs the training job delivered to this machine";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { inherit (cfg) extraPythonPackages; };
      defaultText = lib.literalExpression ''
        pkgs.callPackage ./package.nix { inherit (config.services.okai-node) extraPythonPackages; }
      '';
      description = "The okai package whose `okai node run` is the agent.";
    };

    extraPythonPackages = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "einops" ];
      description = ''
        Python packages the jobs' code imports, installed into okai's Python
        environment with what they require, so nothing is installed at run
        time. Each must be in okai's lock (`nix/python-packages.json`), which
        has the packages of pyproject.toml's `jobs` group: same version set as
        okai's own. `okai image build` records them in the image manifest.
      '';
    };

    rendezvousPort = lib.mkOption {
      type = lib.types.port;
      default = 29400;
      description = ''
        TCP port of torchrun's c10d rendezvous on the cluster network. Opened
        only to the job's peers (`peersFile`) and on `clusterInterfaces`.
      '';
    };

    peerPorts = lib.mkOption {
      type = lib.types.submodule {
        options = {
          from = lib.mkOption {
            type = lib.types.port;
            description = "First port of the range.";
          };
          to = lib.mkOption {
            type = lib.types.port;
            description = "Last port of the range.";
          };
        };
      };
      default = {
        from = 32768;
        to = 60999;
      };
      example = {
        from = 40000;
        to = 40999;
      };
      description = ''
        Ports gloo and torchrun's worker store listen on. They are taken from
        the kernel's ephemeral range, so this option also sets
        `net.ipv4.ip_local_port_range`; the default is the kernel's own.
        Opened like `rendezvousPort`.
      '';
    };

    clusterInterfaces = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "ens4" ];
      description = ''
        Network interfaces that carry only cluster traffic (a private network
        no one else reaches). The rendezvous port and `peerPorts` are opened on
        them to any sender. Never list an interface that faces the internet.
      '';
    };

    peersFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "${jobDir}/peers";
      description = ''
        File listing the addresses of the job's members, one per line (`#`
        starts a comment). When the job starts, the rendezvous port and
        `peerPorts` are accepted from exactly these sources (iptables chain
        `okai-peers`); when the job ends (or fails, or the agent is stopped)
        the rules are removed. A file that is refused stops the job. Deliver it
        before cluster.json. Null turns this off. Needs the iptables firewall
        backend (the NixOS default).
      '';
    };

    maxPeers = lib.mkOption {
      type = lib.types.ints.between 1 4096;
      default = 1024;
      description = "Most entries `peersFile` may hold; a longer file is refused.";
    };

    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        OKAI_NETWORK = "coston2";
      };
      description = ''
        Extra environment of the agent. These values land in the Nix store,
        which anyone on the machine can read: no secrets here, use
        `secretsFile`.
      '';
    };

    secretsFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/okai-node.env";
      description = ''
        The agent's secrets, such as OKAI_WALRUS_JWT, as a file of
        `NAME=value` lines, handed to the agent as the systemd credential
        `okai-node.secrets` (only the agent's unit can read it; the agent
        puts the variables in its environment). Null (the default) imports
        the credential from systemd's credential store when it is there,
        `/run/credstore/okai-node.secrets`, where `okai cluster up` writes
        it; a job that needs no secret runs without it. A path here is
        loaded instead (LoadCredential=), and the agent does not start
        without it. A string, not a Nix path, so that it is never copied
        into the store.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            # A package set by hand is not rebuilt with the option's packages.
            assertion = lib.all (
              name: lib.elem name (map (package: package.name) cfg.package.pythonIdentity.packages or [ ])
            ) cfg.extraPythonPackages;
            message = ''
              services.okai-node.package lacks some of services.okai-node.extraPythonPackages
              (${lib.concatStringsSep ", " cfg.extraPythonPackages}). Leave `package` at its default,
              which builds okai with them, or build it with
              `pkgs.callPackage <okai>/nix/package.nix { extraPythonPackages = [ ... ]; }`.
            '';
          }
          {
            assertion = cfg.peerPorts.from <= cfg.peerPorts.to;
            message = "services.okai-node.peerPorts: `from` must not be above `to`.";
          }
          {
            # The job runs in a bubblewrap sandbox, which needs user namespaces.
            assertion = config.security.allowUserNamespaces;
            message = ''
              services.okai-node runs each job in a bubblewrap sandbox, which needs user
              namespaces: set security.allowUserNamespaces = true (the default).
            '';
          }
          {
            assertion = !usePeersFile || !config.networking.nftables.enable;
            message = ''
              services.okai-node.peersFile opens ports with iptables rules, but the nftables
              firewall is enabled; set services.okai-node.peersFile = null and use
              clusterInterfaces (or your own nftables rules) instead.
            '';
          }
        ];

        users.users.okai = {
          isSystemUser = true;
          group = "okai";
          home = stateDir;
          description = "okai node agent";
        };
        users.groups.okai = { };

        # `okai node status --json` for whoever logs in.
        environment.systemPackages = [ cfg.package ];

        boot.kernel.sysctl."net.ipv4.ip_local_port_range" =
          "${toString cfg.peerPorts.from} ${toString cfg.peerPorts.to}";

        # The job folder is written by root (cloud-init, SSH) and read by the agent.
        systemd.tmpfiles.rules = [
          "d ${stateDir} 0750 okai okai - -"
          "d ${jobDir} 0750 root okai - -"
        ];

        networking.firewall.interfaces = lib.genAttrs cfg.clusterInterfaces (_: {
          allowedTCPPorts = [ cfg.rendezvousPort ];
          allowedTCPPortRanges = [ { inherit (cfg.peerPorts) from to; } ];
        });

        systemd.paths.okai-node = {
          description = "Start the okai node agent when a job arrives";
          wantedBy = [ "multi-user.target" ];
          pathConfig = {
            PathExists = clusterFile;
            Unit = "okai-node.service";
          };
        };

        systemd.services.okai-node = {
          description = "okai node agent (runs the job in ${jobDir})";
          # Started by okai-node.path, not at boot.
          wants = [ "network-online.target" ] ++ lib.optional usePeersFile "okai-node-peers.service";
          after = [
            "network-online.target"
            "cloud-final.service" # let cloud-init finish what it delivers
            "okai-image-identity.service"
          ]
          ++ lib.optional usePeersFile "okai-node-peers.service";
          # bwrap: the job's code runs in a sandbox (okai.train.sandbox, network shared).
          path = [ pkgs.bubblewrap ];
          environment = {
            HOME = stateDir;
            XDG_CACHE_HOME = "/var/cache/okai";
            PYTHONUNBUFFERED = "1";
          }
          // cfg.environment;
          unitConfig = {
            # A path unit starts its service again whenever it stops while the
            # file is there. A finished job stays active (RemainAfterExit); a
            # failed one is retried at most twice per boot. `systemctl
            # reset-failed okai-node.service` allows more.
            StartLimitIntervalSec = "infinity";
            StartLimitBurst = 3;
          };
          serviceConfig = {
            # oneshot: ExecStartPost runs when the job has ended, not when it starts.
            Type = "oneshot";
            RemainAfterExit = true;
            TimeoutStartSec = "infinity"; # a training run takes as long as it takes
            ExecStartPre = lib.mkIf usePeersFile peersRefused;
            ExecStartPost = lib.mkIf usePeersFile closePeersUnit;
            ExecStopPost = lib.mkIf usePeersFile closePeersUnit;
            ExecStart = lib.escapeShellArgs [
              (lib.getExe cfg.package)
              "node"
              "run"
              "--job"
              jobFile
              "--cluster"
              clusterFile
              "--state-dir"
              stateDir
            ];
            # torchrun restarts failed workers itself; systemd must not re-run a job.
            Restart = "no";
            # Secrets as a credential: readable by this unit only, never its environment block.
            ImportCredential = lib.mkIf (cfg.secretsFile == null) "okai-node.secrets";
            LoadCredential = lib.mkIf (cfg.secretsFile != null) "okai-node.secrets:${cfg.secretsFile}";
            User = "okai";
            Group = "okai";
            StateDirectory = "okai";
            StateDirectoryMode = "0750";
            CacheDirectory = "okai";
            UMask = "0027";
            LimitNOFILE = 65536; # gloo holds a socket per peer and process

            # Hardening. Each relaxation says why.
            NoNewPrivileges = true;
            CapabilityBoundingSet = "";
            AmbientCapabilities = "";
            ProtectSystem = "strict";
            ProtectHome = true;
            PrivateTmp = true;
            PrivateDevices = true; # CPU training; /dev/shm stays available
            # Not ProtectKernelTunables nor ProtectKernelLogs: they mount over parts of
            # /proc, and the kernel then refuses the fresh /proc of the job's sandbox (a
            # new PID namespace must not see more than its parent). The job's code runs
            # in that sandbox, where /proc shows only its own processes.
            ProtectKernelModules = true;
            ProtectControlGroups = true;
            ProtectClock = true;
            ProtectHostname = true;
            ProtectProc = "invisible";
            # not ProcSubset = "pid": torch reads /proc/cpuinfo and /proc/meminfo
            # The job's sandbox: every namespace but the network's, which it shares.
            RestrictNamespaces = "user mnt pid ipc uts cgroup";
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            LockPersonality = true;
            RemoveIPC = true;
            MemoryDenyWriteExecute = false; # oneDNN, torch's CPU kernels, compiles code at run time
            RestrictAddressFamilies = [
              "AF_UNIX"
              "AF_INET"
              "AF_INET6"
              "AF_NETLINK" # gloo lists the interfaces to find its address
            ];
            SystemCallArchitectures = "native";
            SystemCallFilter = [
              "@system-service"
              "@mount" # bwrap builds the job's root file system in its own mount namespace
            ];
            SystemCallErrorNumber = "EPERM"; # an unexpected call fails instead of killing a rank
          };
        };
      }

      (lib.mkIf usePeersFile {
        networking.firewall.extraCommands = ''
          # okai-node: the chain okai-node-peers.service fills at job start.
          ip46tables -N okai-peers 2>/dev/null || true
          ip46tables -A nixos-fw -j okai-peers
        '';

        systemd.services.okai-node-peers = {
          description = "Open the okai cluster ports to the job's peers";
          after = [ "firewall.service" ];
          requires = [ "firewall.service" ];
          before = [ "okai-node.service" ];
          partOf = [ "okai-node.service" ]; # stopping the agent closes the ports
          unitConfig.ConditionPathExists = cfg.peersFile;
          path = [ fw.package ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = openToPeers;
            ExecStop = closeToPeers;
            # Root with the two capabilities iptables needs, and little else.
            CapabilityBoundingSet = [
              "CAP_NET_ADMIN"
              "CAP_NET_RAW"
            ];
            NoNewPrivileges = true;
            ProtectSystem = "full";
            ProtectHome = true;
            PrivateTmp = true;
            PrivateDevices = true;
            ProtectKernelTunables = true;
            ProtectControlGroups = true;
            RestrictAddressFamilies = [
              "AF_UNIX"
              "AF_INET"
              "AF_INET6"
              "AF_NETLINK"
            ];
            SystemCallArchitectures = "native";
          };
        };
      })
    ]
  );
}
