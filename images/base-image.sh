#!/usr/bin/env bash
# Makes the base image the Containerfiles start FROM, locally, the way Debian's official
# images are made (debuerreotype: debootstrap --variant=minbase, then "slimified"), and
# tags it with the exact name the Containerfiles use:
#
#     docker.io/library/debian:bookworm-slim
#
# Only needed where no image registry is reachable (this bed, CI machines without
# Docker Hub): anywhere else `podman build` pulls the real one. The apt mirror is the
# only network access. Skipped when the tag is already in the local store.
#
# Usage: images/base-image.sh [--force]
set -euo pipefail
TAG=docker.io/library/debian:bookworm-slim
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

if [ "${1:-}" != "--force" ] && podman image exists "$TAG"; then
    echo "base-image: $TAG is already in the local store"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
start=$SECONDS
work=$(mktemp -d /var/tmp/llmfleet-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }

# debuerreotype-slimify: what the -slim variant leaves out, for this and later installs.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/{groff,info,linda,lintian,man}/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
# The official image's sources: deb.debian.org, with security updates (deb822 as in bookworm).
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<'CFG'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
: >"$root/etc/hostname"; : >"$root/etc/resolv.conf"; rm -f "$root/etc/machine-id"; : >"$root/etc/machine-id"

tar --numeric-owner --xattrs -C "$root" -cf "$work/rootfs.tar" .
podman import --change 'CMD ["bash"]' "$work/rootfs.tar" "$TAG" >/dev/null
echo "base-image: $TAG built in $((SECONDS - start))s ($(podman image inspect --format '{{.Size}}' "$TAG") bytes)"
