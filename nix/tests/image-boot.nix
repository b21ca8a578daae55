# Boots the image file itself, as a cloud would: the built qcow2 (BIOS or
# UEFI variant) behind an 8 GiB overlay disk, a NoCloud seed as a second
# disk, QEMU with KVM. cloud-init writes a job; a check started by cloud-init
# reports over the serial console that the root filesystem grew to the disk,
# that /etc/okai/image.json names the image's own toplevel, and that the
# agent started; then it powers the VM off. The NixOS test driver cannot do
# this: its machines boot the configuration, never the disk image.
#
# Run: nix build .#checks.x86_64-linux.image-boot-qemu -L   (needs KVM)
{
  self,
  pkgs,
  identity,
  variant,
}:
let
  fx = import ./fixtures.nix { inherit pkgs; };
  image = self.packages.x86_64-linux.${variant};
  efi = pkgs.lib.hasSuffix "-efi" variant;
  inherit (image.passthru.config.system.build) toplevel;

  check = ''
    export PATH=/run/current-system/sw/bin
    say() { echo "OKAI-CHECK $*" > /dev/ttyS0; }
    started=0
    for _ in $(seq 1 300); do
      started=$(systemctl show -P ExecMainStartTimestampMonotonic okai-node.service)
      [ "$started" != 0 ] && break
      sleep 1
    done
    say "agent-started $started"
    say "root-bytes $(df --output=size -B1 / | tail -n 1 | tr -d ' ')"
    say "identity $(tr -d ' \n' < /etc/okai/image.json)"
    say "hostname $(hostname)"
    say end
    systemctl poweroff
  '';

  seed = fx.nocloudSeed {
    name = "okai-image-boot-${variant}";
    metaData = builtins.toJSON {
      instance-id = "okai-image-boot";
      local-hostname = "okai-boot";
    };
    userData = fx.cloudConfig {
      write_files = fx.jobFiles {
        peers = [ ];
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
      # Outside cloud-final: the agent is ordered after cloud-init finishes.
      runcmd = [
        [
          "/run/current-system/sw/bin/systemd-run"
          "--no-block"
          "--unit=okai-boot-check"
          "/run/current-system/sw/bin/bash"
          "-c"
          check
        ]
      ];
    };
  };

  firmware = pkgs.lib.optionalString efi ''
    cp --no-preserve=mode ${pkgs.OVMF.fd.variables} vars.fd
    firmware=(
      -drive if=pflash,format=raw,unit=0,readonly=on,file=${pkgs.OVMF.fd.firmware}
      -drive if=pflash,format=raw,unit=1,file=vars.fd
    )
  '';
in
pkgs.runCommand "okai-image-boot-${variant}"
  {
    nativeBuildInputs = [ pkgs.qemu_kvm ];
    requiredSystemFeatures = [ "kvm" ];
  }
  ''
    set -euo pipefail
    qemu-img create -f qcow2 -F ${image.passthru.config.image.format} \
      -b ${image}/${image.passthru.filePath} disk.qcow2 8G
    firmware=()
    ${firmware}
    timeout 900 qemu-system-x86_64 -machine accel=kvm -cpu host -m 2048 -smp 2 \
      "''${firmware[@]}" \
      -display none -no-reboot -serial file:console.log \
      -drive if=virtio,file=disk.qcow2 \
      -drive if=virtio,format=raw,readonly=on,file=${seed} \
      -nic user,model=virtio-net-pci \
      || echo "qemu exited with status $?" >&2

    mkdir $out
    cp console.log $out/
    tr -d '\r' < console.log | grep -a '^OKAI-CHECK' > $out/checks.txt || true
    value() { sed -n "s/^OKAI-CHECK $1 //p" $out/checks.txt | head -n 1; }
    fail() { echo "image-boot-${variant}: $*" >&2; cat $out/checks.txt >&2; exit 1; }

    grep -q '^OKAI-CHECK end' $out/checks.txt || fail "the check never finished (see console.log)"
    [ "$(value agent-started)" != 0 ] || fail "the node agent did not start"
    [ "$(value root-bytes)" -gt $((6 * 1024 * 1024 * 1024)) ] || fail "the root filesystem did not grow to the disk"
    [ "$(value hostname)" = okai-boot ] || fail "cloud-init did not set the hostname"
    identity=$(value identity)
    for field in '"systemToplevel":"${toplevel}"' \
                 '"nixpkgsRevision":"${identity.nixpkgsRevision}"' \
                 '"schema":"okai.image-identity/v1"'; do
      case "$identity" in *"$field"*) ;; *) fail "identity lacks $field: $identity" ;; esac
    done
  ''
