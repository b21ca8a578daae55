#!/usr/bin/env bash
# Install the Debian packages okai's tests and demo use, only those missing:
#   chromium   headless browser for the verification page tests
#   nix-bin    nix-instantiate, to parse every .nix file in the tests
#   iproute2   `ip netns` for multi-host training tests
#   nodejs/npm anvil, solc, walrus-wasm and the web page build
#   bubblewrap the sandbox `okai verify --reproduce` runs recorded code in
#   openssl    a self-signed certificate for the HTTPS tests
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v nix-instantiate >/dev/null || need+=(nix-bin)
command -v ip >/dev/null || need+=(iproute2)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v openssl >/dev/null || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
