# One node with the image's host configuration boots from a NoCloud seed:
# cloud-init installs the SSH key, sets the hostname and writes the job
# files; the path unit then starts the node agent. Also checks the identity
# file, keys-only SSH, and that the cluster ports open to the listed peer only.
#
# Run: nix build .#checks.x86_64-linux.cloud-init -L   (needs KVM)
{
  self,
  pkgs,
  identity,
}:
let
  fx = import ./fixtures.nix { inherit pkgs; };
  peer = "192.0.2.10"; # TEST-NET-1: documentation only, never routed

  seed = fx.nocloudSeed {
    name = "okai-cloud-init-test";
    metaData = builtins.toJSON {
      instance-id = "okai-cloud-init-test";
      local-hostname = "okai-node-0";
      public-keys = [ fx.sshKeys.snakeOilPublicKey ];
    };
    userData = fx.cloudConfig {
      write_files = fx.jobFiles {
        peers = [ peer ];
        job = fx.jobDocument {
          datasets = [ fx.placeholderDataset ];
          nodes = 1;
        };
        cluster = fx.clusterDocument {
          rank = 0;
          nodes = 1;
          rendezvousHost = "127.0.0.1";
        };
      };
    };
  };
in
{
  name = "okai-cloud-init";

  nodes.node =
    { lib, ... }:
    {
      imports = [
        self.nixosModules.okai-node
        ../host.nix
      ];
      okai.image.identity = identity;
      virtualisation.qemu.options = [
        "-cdrom"
        "${seed}"
      ];
      virtualisation.memorySize = 2048;

      # What differs from the image: the test framework provides the disk
      # (one unpartitioned filesystem, nothing to grow) and the addresses.
      boot.growPartition = lib.mkForce false;
      networking.useDHCP = lib.mkForce false;
      networking.hostName = lib.mkForce ""; # as in the image: cloud-init names the host
    };

  testScript = ''
    import json

    ssh = (
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "
        "-o ConnectTimeout=5 -o BatchMode=yes"
    )

    node.start()
    node.wait_for_unit("cloud-final.service")

    with subtest("cloud-init applied the metadata"):
        node.succeed("test \"$(hostname)\" = okai-node-0")
        node.succeed("test -s /var/lib/okai/job/cluster.json")

    with subtest("the image identity names the running system"):
        node.wait_for_unit("okai-image-identity.service")
        found = json.loads(node.succeed("cat /etc/okai/image.json"))
        toplevel = node.succeed("readlink -f /run/current-system").strip()
        assert found == {
            "schema": "okai.image-identity/v1",
            "nixpkgsRevision": "${identity.nixpkgsRevision}",
            "systemToplevel": toplevel,
        }, found

    with subtest("the job files started the agent"):
        node.wait_until_succeeds(
            "test \"$(systemctl show -P ExecMainStartTimestampMonotonic okai-node.service)\" != 0",
            timeout=300,
        )
        assert node.succeed("systemctl show -P User okai-node.service").strip() == "okai"
        json.loads(node.succeed("okai node status --json"))

    with subtest("the job's cluster ports close when the job ends"):
        # The placeholder dataset does not exist: the job fails, and its ports close.
        node.wait_until_succeeds(
            "test \"$(systemctl show -P ExecMainExitTimestampMonotonic okai-node.service)\" != 0",
            timeout=300,
        )
        node.wait_until_fails("systemctl is-active okai-node-peers.service")
        assert node.succeed("iptables -S okai-peers").strip() == "-N okai-peers"

    with subtest("cluster ports are open to the listed peer only"):
        node.succeed("systemctl start okai-node-peers.service")
        rules = node.succeed("iptables -S okai-peers")
        assert "-s ${peer}/32 -p tcp -m tcp --dport ${toString fx.rendezvousPort}" in rules, rules
        assert rules.count("-j nixos-fw-accept") == 2, rules
        general = node.succeed("iptables -S nixos-fw")
        assert "${toString fx.rendezvousPort}" not in general, general
        node.succeed("systemctl stop okai-node-peers.service")
        assert node.succeed("iptables -S okai-peers").strip() == "-N okai-peers"

    with subtest("SSH takes the key from the metadata, and no password"):
        node.wait_for_unit("sshd.service")
        node.succeed("install -m 600 ${fx.sshKeys.snakeOilPrivateKey} /root/id_snakeoil")
        node.succeed(f"{ssh} -i /root/id_snakeoil root@localhost true")
        settings = node.succeed("sshd -T")
        for line in ("passwordauthentication no", "kbdinteractiveauthentication no"):
            assert line in settings.splitlines(), settings
  '';
}
