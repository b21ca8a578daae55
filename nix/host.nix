# The worker image: a small headless NixOS that boots on Fluence (or any
# cloud taking a qcow2/raw image), takes its SSH keys, hostname and job
# files from cloud-init, and runs the okai node agent.
#
# The disk layout (root labelled `nixos`, ext4, grown to the disk at boot;
# GRUB on BIOS variants, systemd-boot on -efi ones) comes from nixpkgs'
# virtualisation/disk-image.nix, which each image variant imports
# (system.build.images.<variant>). Settings that only exist in that module
# go inside image.modules.<variant>.
{
  lib,
  modulesPath,
  ...
}:
let
  variants = [
    "qemu"
    "qemu-efi"
    "raw"
    "raw-efi"
  ];
in
{
  imports = [
    (modulesPath + "/profiles/minimal.nix") # no documentation, no default packages
    (modulesPath + "/profiles/qemu-guest.nix") # virtio drivers in the initrd
    ./identity.nix
  ];

  # Stable file names: okai-node-qemu.qcow2, okai-node-raw.img, ...
  image.modules = lib.genAttrs variants (variant: {
    image.baseName = "okai-node-${variant}";
  });

  # Serial console: cloud consoles and `qemu -nographic` show the boot log.
  boot.kernelParams = [
    "console=tty0"
    "console=ttyS0,115200n8" # last one is /dev/console
  ];
  boot.loader.timeout = lib.mkDefault 1;
  boot.loader.grub.extraConfig = ''
    serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
    terminal_input --append serial
    terminal_output --append serial
  '';

  # What the configuration itself boots from, so that evaluating it (`nix
  # flake check`, `nixos-rebuild`, the VM tests) meets NixOS's assertions:
  # the same root and boot disk the image variants lay out. disk-image.nix
  # overrides both (fileSystems with mkImageMediaOverride, GRUB devices with
  # mkDefault, and systemd-boot instead of GRUB on -efi variants); the VM
  # test framework overrides them with its own disks.
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  # Below mkDefault (1000), so disk-image.nix's own choice wins in the variants.
  boot.loader.grub.devices = lib.mkOverride 1100 [ "/dev/vda" ];

  # The root partition and filesystem grow to whatever disk the VM gets
  # (disk-image.nix also sets fileSystems."/".autoResize); cloud-init's
  # growpart and resizefs modules do the same later if this did not.
  boot.growPartition = true;

  # Networking: DHCP on every Ethernet interface, except where cloud-init's
  # datasource gives a network configuration (rendered for networkd, and
  # taking precedence over the catch-all).
  networking.useNetworkd = true;
  networking.useDHCP = lib.mkDefault true;
  # The host name comes from the metadata: cloud-init writes /etc/hostname,
  # which NixOS leaves alone only while networking.hostName is empty. Until
  # then, or on a cloud that gives none, systemd falls back to os-release's
  # DEFAULT_HOSTNAME, so the machine is never nameless ("localhost").
  networking.hostName = lib.mkDefault "";
  system.nixos.extraOSReleaseArgs.DEFAULT_HOSTNAME = "okai-node";

  services.cloud-init = {
    enable = true;
    network.enable = true;
    # Fluence does not document its datasource: probe the usual ones, NoCloud
    # (a `cidata` seed volume) first. `None` boots without any metadata.
    settings.datasource_list = [
      "NoCloud"
      "ConfigDrive"
      "OpenStack"
      "None"
    ];
  };

  # SSH with keys only; root's keys come from cloud-init.
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  # Secrets: `okai cluster up` writes them over SSH to systemd's credential
  # store, /run/credstore/okai-node.secrets (root-only, tmpfs), which the
  # agent imports as a credential (the module's default, secretsFile = null).
  services.okai-node.enable = true;
  okai.image.identity.enable = true;

  # Small: no docs (also set by minimal.nix), no fonts config, no channel.
  documentation.enable = false;
  fonts.fontconfig.enable = false;
  nix.channel.enable = false;

  time.timeZone = "UTC";
  system.stateVersion = "25.11";
}
