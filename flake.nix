{
  description = "okai: the NixOS worker image (qcow2 and raw), the okai package and its NixOS module";

  # nixpkgs builds the images itself (system.build.images, since 25.05); no
  # nixos-generators. `nix flake lock` pins the exact revision in flake.lock,
  # which `okai image build` records in the image manifest.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux"; # Fluence VMs are AMD Zen (x86_64)
      inherit (nixpkgs) lib;
      pkgs = nixpkgs.legacyPackages.${system};

      # The image's own okai package (with its job packages): what `nix run
      # .#okai` runs is what the image runs.
      okai = self.nixosConfigurations.okai-node.config.services.okai-node.package;

      # What the image says about itself (/etc/okai/image.json): the nixpkgs
      # revision, and at boot its own toplevel. Not this flake's revision,
      # which names a commit rather than content (nix/identity.nix):
      # `okai image build` records it in the image manifest instead.
      identity = {
        nixpkgsRevision = nixpkgs.rev;
      };

      images = self.nixosConfigurations.okai-node.config.system.build.images;

      vmTest = file: pkgs.testers.runNixOSTest (import file { inherit self pkgs identity; });
      imageBoot =
        variant: import ./nix/tests/image-boot.nix { inherit self pkgs identity variant; };
    in
    {
      nixosModules = {
        okai-node = ./nix/module.nix;
        image-identity = ./nix/identity.nix;
        default = self.nixosModules.okai-node;
      };

      nixosConfigurations.okai-node = lib.nixosSystem {
        modules = [
          self.nixosModules.okai-node
          ./nix/host.nix
          {
            nixpkgs.hostPlatform = system;
            # Python packages the jobs' code imports, besides okai's own: names
            # from pyproject.toml's `jobs` group, as locked in
            # nix/python-packages.json (docs/image.md, "Python packages for jobs").
            services.okai-node.extraPythonPackages = [ "einops" ];
            okai.image.identity = identity;
          }
        ];
      };

      packages.${system} = {
        inherit okai;
        # The four disk-image variants of nixpkgs, by their nixpkgs names
        # (what `okai image build --variant` takes) ...
        qemu = images.qemu; # qcow2, BIOS (GRUB)
        qemu-efi = images.qemu-efi; # qcow2, UEFI (systemd-boot)
        raw = images.raw; # raw (.img), BIOS
        raw-efi = images.raw-efi; # raw (.img), UEFI
        # ... and by format.
        qcow2 = images.qemu;
        qcow2-efi = images.qemu-efi;
        default = images.qemu;
      };

      # VM tests: need KVM. `nix build .#checks.x86_64-linux.ddp -L`
      checks.${system} = {
        cloud-init = vmTest ./nix/tests/cloud-init.nix;
        ddp = vmTest ./nix/tests/ddp.nix;
        image-boot-qemu = imageBoot "qemu";
        image-boot-qemu-efi = imageBoot "qemu-efi";
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = [
          okai
          pkgs.qemu # boot an image locally (docs/image.md)
          pkgs.cdrkit # genisoimage: the NoCloud seed ISO
        ];
        # UEFI firmware for booting the -efi variants under QEMU
        OVMF_FD = "${pkgs.OVMF.fd}/FV/OVMF.fd";
      };
    };
}
