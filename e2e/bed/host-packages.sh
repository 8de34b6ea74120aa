#!/usr/bin/env bash
# The Debian packages real nodes and the images need (containerd, runc, the CNI plugins, the
# image tools, the network tools kube-proxy and the bed use), installed with apt-get when
# missing. `make cluster-up`, `make e2e`, `make demo` and .ci/run call it; a
# machine that has them all installs nothing. Without root or apt-get it names what is missing
# and fails: real nodes need root anyway.
set -euo pipefail

missing=()
for pair in containerd:containerd ctr:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
            buildah:buildah podman:podman debootstrap:debootstrap conntrack:conntrack \
            iptables:iptables nft:nftables ip:iproute2; do
    tool=${pair%%:*}
    command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || missing+=("${pair#*:}")
done
[ ${#missing[@]} = 0 ] && exit 0
# one name per package (containerd is listed for two tools)
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "host-packages: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "host-packages: real nodes need ${missing[*]} (Debian: apt-get install ${missing[*]}, as root)" >&2
    exit 1
fi
