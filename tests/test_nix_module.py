"""services.okai-node and the image identity, evaluated with a STUB of nixpkgs' lib.

Nix 2.8 cannot evaluate nixpkgs, so these tests evaluate nix/module.nix and
nix/identity.nix with a small hand-written stand-in for the parts of `lib`
and `pkgs` they use (mkIf, mkMerge, mkOption, writeShellScript, ...). That is
no NixOS evaluation (types and option merging are not checked), but it runs
every expression of the modules' `config`, so a misspelt option value or a
wrong path fails here, and it yields the real text of the scripts the units
run: the peers script is then executed against hostile input with a logging
stand-in for iptables.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from okai.compute.node.files import SECRETS_CREDENTIAL, SECRETS_FILE
from okai.image import VARIANTS
from okai.manifest import JobSpec

STUB = r"""
{ modulePath, overrides, networking }:
let
  absent = { __stubAbsent = true; };
  recursiveUpdate = a: b: a // builtins.mapAttrs (name: value:
    if builtins.isAttrs value && builtins.isAttrs (a.${name} or null)
    then recursiveUpdate a.${name} value else value) b;
  clean = value:
    if builtins.isAttrs value then
      builtins.mapAttrs (_: clean) (removeAttrs value (builtins.filter
        (name: builtins.isAttrs value.${name} && value.${name} ? __stubAbsent)
        (builtins.attrNames value)))
    else if builtins.isList value then map clean value
    else value;
  escapeShellArg = arg: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg) + "'";
  nothing = _: null;
  lib = {
    mkOption = attrs: attrs;
    mkEnableOption = description: { default = false; inherit description; };
    literalExpression = text: text;
    mkIf = condition: content: if condition then content else absent;
    mkMerge = builtins.foldl' recursiveUpdate { };
    mkDefault = value: value;
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
    optional = condition: x: if condition then [ x ] else [ ];
    optionalString = condition: text: if condition then text else "";
    all = builtins.all;
    elem = builtins.elem;
    concatStringsSep = builtins.concatStringsSep;
    inherit escapeShellArg;
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
    getExe = package: "${package}/bin/${package.meta.mainProgram}";
    types = {
      package = null; port = null; str = null; listOf = nothing; nullOr = nothing;
      attrsOf = nothing; submodule = nothing; strMatching = nothing;
      ints.between = _: nothing;
    };
  };
  pkgs = {
    # The unit gets the script's text instead of a store path to it.
    writeShellScript = name: text: "# stub of ${name}\n" + text;
    # What nix/package.nix would build, with what the module passed it.
    callPackage = path: args: okaiWith args.extraPythonPackages "/stub/okai-built";
    coreutils = "/stub/coreutils";
    bubblewrap = "/stub/bubblewrap";
  };
  okaiWith = extra: outPath: {
    inherit outPath;
    meta.mainProgram = "okai";
    pythonIdentity.packages = map (name: { inherit name; }) ([ "numpy" ] ++ extra);
  };
  okai = okaiWith [ ] "/stub/okai";
  module = import modulePath { inherit config lib pkgs; };
  defaults = builtins.mapAttrs (_: option: option.default or null)
    (module.options.services.okai-node or module.options.okai.image.identity);
  config = {
    # `package = "default"` leaves the option's default, the module's own build.
    services.okai-node = defaults // { enable = true; package = okai; } // overrides
      // (if overrides.package or null == "default" then { inherit (defaults) package; } else { });
    okai.image.identity = defaults // { enable = true; } // overrides;
    networking = networking;
    security.allowUserNamespaces = overrides.allowUserNamespaces or true;
    systemd.package = "/stub/systemd";
  };
in clean module.config
"""


def nix_eval(module: str, overrides: dict[str, Any], networking: dict[str, Any]) -> Any:
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    result = subprocess.run(
        [
            nix,
            "--eval",
            "--strict",
            "--json",
            "--expr",
            f"({STUB}) {{ modulePath = {REPO / module}; "
            f"overrides = builtins.fromJSON {json.dumps(json.dumps(overrides))}; "
            f"networking = builtins.fromJSON {json.dumps(json.dumps(networking))}; }}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


NETWORKING = {
    "enableIPv6": True,
    "nftables": {"enable": False},
    "firewall": {"enable": True, "package": "/stub/iptables"},
}


def node_config(**overrides: Any) -> Any:
    networking = overrides.pop("networking", NETWORKING)
    return nix_eval("nix/module.nix", overrides, networking)


def test_agent_runs_the_fixed_command_as_a_hardened_unit() -> None:
    config = node_config()
    unit = config["systemd"]["services"]["okai-node"]
    assert shlex.split(unit["serviceConfig"]["ExecStart"]) == [
        "/stub/okai/bin/okai",
        "node",
        "run",
        "--job",
        "/var/lib/okai/job/job.json",
        "--cluster",
        "/var/lib/okai/job/cluster.json",
        "--state-dir",
        "/var/lib/okai",
    ]
    service = unit["serviceConfig"]
    assert service["User"] == "okai" and service["StateDirectory"] == "okai"
    assert service["Type"] == "oneshot" and service["TimeoutStartSec"] == "infinity"
    assert service["RemainAfterExit"] is True and service["Restart"] == "no"
    assert service["CapabilityBoundingSet"] == "" and service["NoNewPrivileges"] is True
    assert service["ProtectSystem"] == "strict" and service["PrivateDevices"] is True
    assert "EnvironmentFile" not in service
    assert "wantedBy" not in unit  # only the path unit starts it
    # The ports are the job's: opened before it, closed when it ends, however it ends.
    assert "okai-node-peers.service" in unit["wants"] and "okai-node-peers.service" in unit["after"]
    assert "requires" not in unit  # a stopped peers unit must not stop the finished agent
    close = "+/stub/systemd/bin/systemctl stop --no-block okai-node-peers.service"
    assert service["ExecStartPost"] == close and service["ExecStopPost"] == close
    peers = config["systemd"]["services"]["okai-node-peers"]
    assert peers["partOf"] == ["okai-node.service"] and peers["before"] == ["okai-node.service"]

    path = config["systemd"]["paths"]["okai-node"]
    assert path["pathConfig"] == {
        "PathExists": "/var/lib/okai/job/cluster.json",
        "Unit": "okai-node.service",
    }
    assert config["users"]["users"]["okai"]["isSystemUser"] is True
    assert config["boot"]["kernel"]["sysctl"]["net.ipv4.ip_local_port_range"] == "32768 60999"


def test_the_agent_can_sandbox_the_job_and_nothing_more() -> None:
    """The job runs in bubblewrap (okai.train.sandbox, network shared): the unit gives the
    agent bwrap and the namespaces and mount calls it needs, not the network namespace."""
    config = node_config()
    unit = config["systemd"]["services"]["okai-node"]
    service = unit["serviceConfig"]
    assert unit["path"] == ["/stub/bubblewrap"]
    assert set(service["RestrictNamespaces"].split()) == {
        "user",
        "mnt",
        "pid",
        "ipc",
        "uts",
        "cgroup",
    }
    assert service["SystemCallFilter"] == ["@system-service", "@mount"]
    # These mount over /proc, and the kernel then refuses the sandbox's own /proc.
    assert "ProtectKernelTunables" not in service and "ProtectKernelLogs" not in service
    assert service["ProtectProc"] == "invisible" and service["NoNewPrivileges"] is True

    def user_namespaces(config: Any) -> bool:
        (found,) = [
            a["assertion"]
            for a in config["assertions"]
            if "security.allowUserNamespaces" in a["message"]
        ]
        return bool(found)

    assert user_namespaces(config)
    assert not user_namespaces(node_config(allowUserNamespaces=False))


def test_extra_python_packages_are_built_into_the_agent_s_package() -> None:
    def holds_extras(config: Any) -> bool:
        (found,) = [
            a["assertion"] for a in config["assertions"] if "extraPythonPackages" in a["message"]
        ]
        return bool(found)

    built = node_config(extraPythonPackages=["einops"], package="default")
    assert holds_extras(built)
    start = built["systemd"]["services"]["okai-node"]["serviceConfig"]["ExecStart"]
    assert shlex.split(start)[:3] == ["/stub/okai-built/bin/okai", "node", "run"]
    assert holds_extras(node_config())  # none asked, none needed
    # A package set by hand would silently lack them: refused, saying what to do.
    by_hand = node_config(extraPythonPackages=["einops"])
    assert not holds_extras(by_hand)
    (message,) = [a["message"] for a in by_hand["assertions"] if not a["assertion"]]
    assert "lacks some of services.okai-node.extraPythonPackages\n(einops)" in message
    assert "Leave `package` at its default" in message


def test_secrets_are_a_credential_of_the_agent_only() -> None:
    service = node_config()["systemd"]["services"]["okai-node"]["serviceConfig"]
    # By default from systemd's credential store, where `okai cluster up` writes them;
    # optional there: a node whose job needs no secret starts without it.
    assert Path("/run/credstore") / SECRETS_CREDENTIAL == SECRETS_FILE
    assert service["ImportCredential"] == SECRETS_CREDENTIAL
    assert not {"LoadCredential", "EnvironmentFile"} & set(service)
    given = node_config(secretsFile="/run/secrets/okai.env")["systemd"]["services"]["okai-node"]
    assert given["serviceConfig"]["LoadCredential"] == f"{SECRETS_CREDENTIAL}:/run/secrets/okai.env"
    assert "ImportCredential" not in given["serviceConfig"]


def test_the_image_takes_secrets_from_the_credential_store() -> None:
    host = (REPO / "nix" / "host.nix").read_text()
    assert "services.okai-node.enable = true;" in host
    code = [line.split("#")[0] for line in host.splitlines()]
    assert not any("secretsFile" in line or "environmentFile" in line for line in code)


def test_ports_open_on_cluster_interfaces_only() -> None:
    config = node_config(clusterInterfaces=["ens4"])
    firewall = config["networking"]["firewall"]
    assert firewall["interfaces"] == {
        "ens4": {
            "allowedTCPPorts": [29400],
            "allowedTCPPortRanges": [{"from": 32768, "to": 60999}],
        }
    }
    assert "allowedTCPPorts" not in firewall  # nothing opened on every interface
    assert "ip46tables -A nixos-fw -j okai-peers" in firewall["extraCommands"]


def test_without_a_peers_file_there_is_no_peer_unit() -> None:
    config = node_config(peersFile=None)
    assert "okai-node-peers" not in config["systemd"]["services"]
    service = config["systemd"]["services"]["okai-node"]["serviceConfig"]
    assert not {"ExecStartPre", "ExecStartPost", "ExecStopPost"} & set(service)
    assert "extraCommands" not in config["networking"]["firewall"]


# ------------------------------------------------------------ the peers script


@pytest.mark.parametrize(("peers_failed", "starts"), [(True, False), (False, True)])
def test_a_refused_peers_file_keeps_the_job_from_starting(
    tmp_path: Path, peers_failed: bool, starts: bool
) -> None:
    systemctl = tmp_path / "systemctl"
    log = tmp_path / "systemctl.log"
    # FAKE systemctl: `is-failed` answers as told, and every call is logged.
    systemctl.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit {0 if peers_failed else 1}\n')
    systemctl.chmod(0o755)
    script = node_config()["systemd"]["services"]["okai-node"]["serviceConfig"]["ExecStartPre"]
    check = tmp_path / "check.sh"
    check.write_text(script.replace("/stub/systemd/bin/systemctl", str(systemctl)))
    result = subprocess.run(
        ["/bin/bash", str(check)], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode == 0) is starts
    assert log.read_text() == "is-failed --quiet okai-node-peers.service\n"
    if not starts:
        assert "refused the peers file" in result.stderr


@pytest.fixture
def fake_iptables(tmp_path: Path) -> Path:
    """FAKE iptables/ip6tables that only log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "iptables.log"
    for name in ("iptables", "ip6tables"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return log


def run_peers_script(
    tmp_path: Path, log: Path, peers: str, **overrides: Any
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    peers_file = tmp_path / "peers"
    peers_file.write_text(peers)
    config = node_config(peersFile=str(peers_file), **overrides)
    script = tmp_path / "open-to-peers.sh"
    script.write_text(
        config["systemd"]["services"]["okai-node-peers"]["serviceConfig"]["ExecStart"]
    )
    result = subprocess.run(
        ["/bin/bash", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": f"{log.parent / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"},
    )
    lines = log.read_text().splitlines() if log.exists() else []
    return result, lines


def test_peers_get_exactly_the_cluster_ports(tmp_path: Path, fake_iptables: Path) -> None:
    peers = "10.0.0.2\n  10.0.1.0/24  # the other subnet\n\n# a comment\n2001:db8::5\n"
    result, calls = run_peers_script(tmp_path, fake_iptables, peers)
    assert result.returncode == 0, result.stderr
    assert "open to 3 peers" in result.stdout
    assert calls == [
        "iptables -w -F okai-peers",
        "ip6tables -w -F okai-peers",
        "iptables -w -A okai-peers -s 10.0.0.2 -p tcp --dport 29400 -j nixos-fw-accept",
        "iptables -w -A okai-peers -s 10.0.0.2 -p tcp --dport 32768:60999 -j nixos-fw-accept",
        "iptables -w -A okai-peers -s 10.0.1.0/24 -p tcp --dport 29400 -j nixos-fw-accept",
        "iptables -w -A okai-peers -s 10.0.1.0/24 -p tcp --dport 32768:60999 -j nixos-fw-accept",
        "ip6tables -w -A okai-peers -s 2001:db8::5 -p tcp --dport 29400 -j nixos-fw-accept",
        "ip6tables -w -A okai-peers -s 2001:db8::5 -p tcp --dport 32768:60999 -j nixos-fw-accept",
    ]


def test_an_empty_peers_file_closes_the_ports(tmp_path: Path, fake_iptables: Path) -> None:
    result, calls = run_peers_script(tmp_path, fake_iptables, "")
    assert result.returncode == 0, result.stderr
    assert calls == ["iptables -w -F okai-peers", "ip6tables -w -F okai-peers"]


@pytest.mark.parametrize(
    "hostile",
    [
        "0.0.0.0/0",
        "0.0.0.0",
        "10.0.0.0/4",
        "::/0",
        "::",
        "2001:db8::/16",
        "1.2.3.4; reboot",
        "$(reboot)",
        "-j ACCEPT",
        "1.2.3.4 -j ACCEPT",
        "example.org",
        "1.2.3.4/33",
    ],
)
def test_a_hostile_entry_refuses_the_whole_file(
    tmp_path: Path, fake_iptables: Path, hostile: str
) -> None:
    result, calls = run_peers_script(tmp_path, fake_iptables, f"10.0.0.2\n{hostile}\n")
    assert result.returncode == 1
    assert "refusing" in result.stderr
    assert calls == []  # no rule changed, not even for the good entry


def test_too_many_peers_are_refused(tmp_path: Path, fake_iptables: Path) -> None:
    peers = "".join(f"10.0.0.{n}\n" for n in range(1, 6))
    result, calls = run_peers_script(tmp_path, fake_iptables, peers, maxPeers=4)
    assert result.returncode == 1 and "more than 4 peers" in result.stderr
    assert calls == []


def test_ipv6_peers_are_refused_when_ipv6_is_off(tmp_path: Path, fake_iptables: Path) -> None:
    networking = {**NETWORKING, "enableIPv6": False}
    result, calls = run_peers_script(
        tmp_path, fake_iptables, "2001:db8::5\n", networking=networking
    )
    assert result.returncode == 1 and "IPv6" in result.stderr
    assert calls == []
    result, calls = run_peers_script(tmp_path, fake_iptables, "10.0.0.2\n", networking=networking)
    assert result.returncode == 0
    assert not any(call.startswith("ip6tables") for call in calls)


# ------------------------------------------------------------ identity


def test_identity_file_is_a_link_into_run_written_at_boot() -> None:
    nixpkgs = "5c623338d0c62d15a11b12e46ee8b04a48482c2f"
    config = nix_eval("nix/identity.nix", {"nixpkgsRevision": nixpkgs}, NETWORKING)
    assert config["environment"]["etc"]["okai/image.json"]["source"] == "/run/okai/image.json"
    unit = config["systemd"]["services"]["okai-image-identity"]
    assert unit["before"] == ["okai-node.service"]
    assert unit["serviceConfig"]["RuntimeDirectory"] == "okai"
    script = unit["serviceConfig"]["ExecStart"]
    assert "readlink -f /run/current-system" in script
    assert f"'{nixpkgs}' \"$toplevel\"" in script
    assert '"schema": "okai.image-identity/v1"' in script
    # Content, not a commit: the flake's revision would change the system at every commit.
    assert "flakeRevision" not in script


# ------------------------------------------------------------ VM test fixtures

FIXTURES = r"""
let
  lib = {
    fixedWidthString = width: filler: text: builtins.concatStringsSep ""
      (builtins.genList (_: filler) (width - builtins.stringLength text)) + text;
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
  };
  fx = import FIXTURES_PATH { pkgs = { inherit lib; }; };
  job = fx.jobDocument { datasets = [ fx.placeholderDataset ]; nodes = 2; };
  cluster = fx.clusterDocument { rank = 1; nodes = 2; rendezvousHost = "192.168.1.1"; };
in {
  inherit job cluster;
  userData = fx.cloudConfig {
    write_files = fx.jobFiles { peers = [ "192.168.1.1" ]; inherit job cluster; };
  };
}
"""


def test_vm_test_fixtures_are_what_okai_reads() -> None:
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    expression = FIXTURES.replace("FIXTURES_PATH", str(REPO / "nix" / "tests" / "fixtures.nix"))
    result = subprocess.run(
        [nix, "--eval", "--strict", "--json", "--expr", expression],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fixtures = json.loads(result.stdout)

    job = JobSpec.from_data(fixtures["job"], "nix/tests/fixtures.nix")
    assert job.world_size == 2 and job.model.builtin == "digits-cnn"  # type: ignore[union-attr]
    assert fixtures["cluster"]["rendezvous"]["port"] == 29400

    header, body = fixtures["userData"].split("\n", 1)
    assert header == "#cloud-config"
    files = json.loads(body)["write_files"]
    assert [entry["path"] for entry in files] == [
        "/var/lib/okai/job/peers",
        "/var/lib/okai/job/job.json",
        "/var/lib/okai/job/cluster.json",  # last: its arrival starts the agent
    ]
    assert json.loads(files[1]["content"]) == fixtures["job"]
    assert files[0]["content"] == "192.168.1.1\n"


# ------------------------------------------------------------ the host configuration

HOST = r"""
let
  override = priority: content: { __override = priority; inherit content; };
  lib = {
    mkDefault = override 1000;
    mkOverride = override;
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  };
in import HOST_PATH { inherit lib; modulesPath = "/stub/modules"; }
"""


def host_config() -> Any:
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    expression = HOST.replace("HOST_PATH", str(REPO / "nix" / "host.nix"))
    result = subprocess.run(
        [nix, "--eval", "--strict", "--json", "--expr", expression],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_configuration_boots_without_an_image_variant() -> None:
    """What `nix flake check`, nixos-rebuild and the VM tests evaluate: NixOS asserts a root
    filesystem and a GRUB disk. Defaults, below the priority disk-image.nix sets them at
    (mkImageMediaOverride for fileSystems, mkDefault = 1000 for the GRUB disk)."""
    host = host_config()
    root = host["fileSystems"]["/"]
    assert root["__override"] >= 1000
    assert root["content"] == {
        "device": "/dev/disk/by-label/nixos",  # the label make-disk-image gives the root
        "fsType": "ext4",
        "autoResize": True,
    }
    devices = host["boot"]["loader"]["grub"]["devices"]
    assert devices == {"__override": 1100, "content": ["/dev/vda"]}
    # The boot loader stays on: systemd-boot replaces GRUB in the -efi variants only.
    assert "enable" not in host["boot"]["loader"]["grub"]


def test_every_variant_okai_builds_gets_a_stable_file_name() -> None:
    modules = host_config()["image"]["modules"]
    assert modules == {name: {"image": {"baseName": f"okai-node-{name}"}} for name in VARIANTS}


def test_the_host_name_comes_from_the_metadata_with_a_non_empty_default() -> None:
    host = host_config()
    # Empty, so NixOS leaves /etc/hostname to cloud-init; systemd falls back to os-release.
    assert host["networking"]["hostName"] == {"__override": 1000, "content": ""}
    assert host["system"]["nixos"]["extraOSReleaseArgs"] == {"DEFAULT_HOSTNAME": "okai-node"}
