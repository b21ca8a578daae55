# What the VM tests share: job and cluster documents, cloud-init seeds.
#
# The cluster file's fields belong to the node agent (okai.compute, `okai
# node run --cluster`); clusterDocument is the one place the tests spell
# them, so keep it in step with the agent.
{ pkgs }:
let
  inherit (pkgs) lib;
in
rec {
  # nixpkgs' throw-away SSH key pair for tests: snakeOilPrivateKey, snakeOilPublicKey.
  sshKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;

  rendezvousPort = 29400;

  clusterDocument =
    {
      rank,
      nodes,
      rendezvousHost,
      clusterId ? "vmtest",
    }:
    {
      schema = "okai.cluster/v1";
      inherit clusterId nodes;
      nodeRank = rank;
      rendezvous = {
        host = rendezvousHost;
        port = rendezvousPort;
        id = clusterId;
      };
    };

  # The demo job: `okai train` with the built-in digits CNN. `datasets`
  # holds okai.dataset/v1 manifest references ({manifestBlobId, sha256}).
  jobDocument =
    { datasets, nodes }:
    {
      schema = "okai.job/v1";
      name = "digits-vmtest";
      model.builtin = "digits-cnn";
      seed = 0;
      deterministic = true;
      inherit datasets nodes;
      procsPerNode = 1;
    };

  # A dataset reference that points nowhere: for tests that only check the
  # agent starts.
  placeholderDataset = {
    manifestBlobId = lib.fixedWidthString 43 "A" "";
    sha256 = "sha256:${lib.fixedWidthString 64 "0" ""}";
  };

  # cloud-init write_files entries delivering a job in the order the node
  # module expects: peers, job, then cluster.json (which starts the agent).
  jobFiles =
    {
      peers,
      job,
      cluster,
    }:
    map
      (file: file // { permissions = "0644"; })
      [
        {
          path = "/var/lib/okai/job/peers";
          content = lib.concatMapStrings (address: "${address}\n") peers;
        }
        {
          path = "/var/lib/okai/job/job.json";
          content = builtins.toJSON job;
        }
        {
          path = "/var/lib/okai/job/cluster.json";
          content = builtins.toJSON cluster;
        }
      ];

  # JSON is YAML, so a #cloud-config document can be written as JSON.
  cloudConfig = settings: "#cloud-config\n" + builtins.toJSON settings + "\n";

  # A NoCloud seed: an ISO 9660 volume labelled `cidata` holding user-data
  # and meta-data (what `cloud-localds` makes).
  nocloudSeed =
    {
      name,
      userData,
      metaData,
    }:
    pkgs.runCommand "${name}-seed.iso" { nativeBuildInputs = [ pkgs.cdrkit ]; } ''
      mkdir seed
      cp ${pkgs.writeText "user-data" userData} seed/user-data
      cp ${pkgs.writeText "meta-data" metaData} seed/meta-data
      genisoimage -volid cidata -joliet -rock -output $out seed
    '';
}
