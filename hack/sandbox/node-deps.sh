#!/usr/bin/env bash
# Debian packages the sandbox's real node runs with: runc (containerd's shim starts containers with it),
# iptables and ipset (kube-proxy's service rules and kube-router's NetworkPolicy chains and sets), nftables
# (the nft backend iptables uses on Debian 12; kube-proxy's cleanup lists nft tables), conntrack (to inspect
# and flush connection tracking) and iproute2 (links, addresses, network namespaces).
#
# Installs only what is missing, so a second run takes a fraction of a second and never takes the apt lock.
set -euo pipefail

packages=(runc iptables ipset nftables conntrack iproute2)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "node-deps: need root to install ${missing[*]} (the real node runs as root); or use --no-real-node" >&2
  exit 2
fi
echo "[node-deps] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "[node-deps] installed: $(runc --version | head -1), $(iptables --version)" >&2
