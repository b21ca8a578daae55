# Two nodes run the demo DDP job (`okai train`, built-in digits-cnn) over the
# test network, rendezvousing through torchrun's c10d on node0, and produce a
# model. Data comes from okai's local Walrus-compatible server on node0
# (`okai walrus serve`), which both nodes reach at 127.0.0.1:31415 (node1
# through a relay), the dev network's default. A third machine, outside the
# job, checks that the cluster ports are open to members only.
#
# Run: nix build .#checks.x86_64-linux.ddp -L   (needs KVM)
{
  self,
  pkgs,
  identity,
}:
let
  fx = import ./fixtures.nix { inherit pkgs; };
  walrusPort = 31415;
  relayPort = 31416;
  walrusUrl = "http://127.0.0.1:${toString walrusPort}";
  okaiEnv = {
    OKAI_NETWORK = "dev";
    OKAI_WALRUS_AGGREGATORS = walrusUrl;
    OKAI_WALRUS_PUBLISHER = walrusUrl;
  };
  port = toString fx.rendezvousPort;

  # The digits data scikit-learn bundles (no download), as files to push.
  # Keep the layout in step with the digits-cnn loader of okai.train.
  writeDigits =
    let
      python = pkgs.python3.withPackages (ps: [
        ps.numpy
        ps.scikit-learn
      ]);
    in
    pkgs.writeShellScript "okai-vmtest-digits" ''
      set -euo pipefail
      mkdir -p "$1"
      ${python}/bin/python3 - "$1" <<'EOF'
      import pathlib
      import sys

      import numpy as np
      from sklearn.datasets import load_digits

      digits = load_digits()
      np.savez(
          pathlib.Path(sys.argv[1]) / "digits.npz",
          images=digits.images.astype(np.float32),
          labels=digits.target.astype(np.int64),
      )
      EOF
    '';

  member =
    { ... }:
    {
      imports = [
        self.nixosModules.okai-node
        self.nixosModules.image-identity
      ];
      okai.image.identity = identity // {
        enable = true;
      };
      services.okai-node = {
        enable = true;
        environment = okaiEnv;
      };
      environment.variables = okaiEnv // {
        OKAI_HOME = "/root/.okai";
      };
      environment.systemPackages = [
        pkgs.curl
        pkgs.netcat
      ];
      virtualisation.memorySize = 3072;
      virtualisation.cores = 2;
    };

  relay =
    listen: target:
    { ... }:
    {
      systemd.services.okai-walrus-relay = {
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ];
        wants = [ "network-online.target" ];
        serviceConfig = {
          ExecStart = "${pkgs.socat}/bin/socat TCP-LISTEN:${listen},fork,reuseaddr TCP:${target}";
          DynamicUser = true;
          Restart = "always";
        };
      };
    };
in
{
  name = "okai-ddp-two-nodes";

  nodes = {
    node0 =
      { ... }:
      {
        imports = [
          member
          (relay "${toString relayPort}" "127.0.0.1:${toString walrusPort}")
        ];
        # Test only: okai's local Walrus-compatible server, and the relay's port.
        systemd.services.okai-walrus = {
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            ExecStart = "${self.packages.x86_64-linux.okai}/bin/okai walrus serve --dir /var/lib/okai-walrus --port ${toString walrusPort}";
            DynamicUser = true;
            StateDirectory = "okai-walrus";
          };
        };
        networking.firewall.allowedTCPPorts = [ relayPort ];
      };

    node1 =
      { ... }:
      {
        imports = [
          member
          (relay "${toString walrusPort},bind=127.0.0.1" "node0:${toString relayPort}")
        ];
      };

    outsider =
      { ... }:
      {
        environment.systemPackages = [ pkgs.netcat ];
      };
  };

  testScript =
    { nodes, ... }:
    let
      ip0 = nodes.node0.networking.primaryIPAddress;
      ip1 = nodes.node1.networking.primaryIPAddress;
      cluster =
        rank:
        builtins.toJSON (
          fx.clusterDocument {
            inherit rank;
            nodes = 2;
            rendezvousHost = ip0;
          }
        );
      jobTemplate = builtins.toJSON (
        fx.jobDocument {
          datasets = [ ];
          nodes = 2;
        }
      );
    in
    ''
      import base64
      import json


      def deliver(machine, name, text):
          """Write a job file the way the deployer does: whole, then renamed into place."""
          data = base64.b64encode(text.encode()).decode()
          machine.succeed(
              f"echo {data} | base64 -d > /var/lib/okai/job/.{name}.tmp"
              f" && mv /var/lib/okai/job/.{name}.tmp /var/lib/okai/job/{name}"
          )


      start_all()
      for machine in (node0, node1, outsider):
          machine.wait_for_unit("multi-user.target")

      with subtest("cluster ports stay closed until a job names its peers"):
          node0.succeed("systemd-run --unit=probe ${pkgs.python3}/bin/python3 -m http.server ${port}")
          node0.wait_for_open_port(${port})
          node1.fail("nc -z -w 3 ${ip0} ${port}")
          deliver(node0, "peers", "${ip1}\n")
          node0.succeed("systemctl start okai-node-peers.service")
          node1.succeed("nc -z -w 3 ${ip0} ${port}")
          outsider.fail("nc -z -w 3 ${ip0} ${port}")
          node0.succeed("systemctl stop okai-node-peers.service")
          node1.fail("nc -z -w 3 ${ip0} ${port}")
          node0.succeed("systemctl stop probe.service")

      with subtest("the digits dataset is on node0's Walrus server, reachable from node1"):
          node0.wait_for_unit("okai-walrus.service")
          node0.wait_for_open_port(${toString walrusPort})
          node1.wait_until_succeeds("curl -sf ${walrusUrl}/status", timeout=120)
          node0.succeed("${writeDigits} /root/digits")
          pushed = json.loads(node0.succeed("okai --json data push /root/digits"))
          dataset = {"manifestBlobId": pushed["manifestBlobId"], "sha256": pushed["sha256"]}

      with subtest("two nodes train the demo job and rank 0 writes the model"):
          job = json.loads(r"""${jobTemplate}""")
          job["datasets"] = [dataset]
          members = (
              (node0, "${ip1}", r"""${cluster 0}"""),
              (node1, "${ip0}", r"""${cluster 1}"""),
          )
          for machine, peer, _ in members:
              deliver(machine, "peers", peer + "\n")
              deliver(machine, "job.json", json.dumps(job))
          for machine, _, cluster in members:
              deliver(machine, "cluster.json", cluster)
          for machine, _, _ in members:
              machine.wait_until_succeeds(
                  "test \"$(systemctl show -P ExecMainExitTimestampMonotonic okai-node.service)\" != 0",
                  timeout=1800,
              )
              machine.wait_until_succeeds("systemctl is-active okai-node.service", timeout=60)
              result = machine.succeed("systemctl show -P Result okai-node.service").strip()
              assert result == "success", f"{machine.name}: okai-node.service ended with {result}"
              # The job's ports closed with the job.
              machine.wait_until_succeeds("test \"$(iptables -S okai-peers)\" = '-N okai-peers'")
              json.loads(machine.succeed("okai node status --json"))
          model = node0.succeed("find /var/lib/okai -name '*.safetensors' -print -quit").strip()
          assert model, "rank 0 wrote no model"
          print(node0.succeed(f"sha256sum {model}"))
    '';
}
