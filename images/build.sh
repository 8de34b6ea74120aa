#!/usr/bin/env bash
# `make images`: builds both images into the local image store (/var/lib/containers) with
# buildah, tagged with the chart's appVersion:
#
#     ghcr.io/llmfleet/llmfleet-operator:<appVersion>
#     ghcr.io/llmfleet/llmfleet-engine:<appVersion>
#
#   1. the base image, made locally when no registry is reachable (base-image.sh);
#   2. a wheelhouse of the dependencies already installed on this machine (wheelhouse.py),
#      mounted into the build at /wheels so torch is not downloaded again; LLMFLEET_WHEELHOUSE=
#      (empty) builds from PyPI instead;
#   3. `buildah build --layers`: unchanged steps come from the layer cache, and pip's cache
#      is a cache mount, so a rebuild after a code change only rebuilds llmfleet's wheel.
#
# Usage: images/build.sh [operator] [engine]    (default: both)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
CACHE=${LLMFLEET_CACHE:-$HOME/.cache/llmfleet}
WHEELHOUSE=${LLMFLEET_WHEELHOUSE-$CACHE/wheelhouse}
PY=${PY:-python3}
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$repo/charts/llmfleet/Chart.yaml")
[ -n "$version" ] || { echo "images: no appVersion in charts/llmfleet/Chart.yaml" >&2; exit 2; }
for tool in buildah podman; do
    command -v $tool >/dev/null || { echo "images: needs $tool (apt-get install buildah podman)" >&2; exit 2; }
done
log() { printf '[images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

"$here/base-image.sh"

# Where this machine reaches PyPI through a TLS proxy with a CA of its own (pip's `cert`,
# as PIP_CERT), pip inside the build must trust that CA too: mount the bundle and a pip.conf
# naming it. Only RUN steps see volumes; nothing of it lands in an image layer.
tls=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    conf=$(mktemp /tmp/llmfleet-pip.XXXXXX.conf)
    trap 'rm -f "$conf"' EXIT
    printf '[global]\ncert = /run/llmfleet-build-ca.crt\n' >"$conf"
    tls=(--volume "$PIP_CERT:/run/llmfleet-build-ca.crt:ro" --volume "$conf:/etc/pip.conf:ro")
fi
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(operator engine)
for c in "${components[@]}"; do
    start=$SECONDS
    mount=()
    if [ -n "$WHEELHOUSE" ]; then
        extras=$c; [ "$c" = operator ] && extras="operator router"
        # shellcheck disable=SC2086  # two words on purpose
        "$PY" "$here/wheelhouse.py" "$WHEELHOUSE" $extras
        mount=(--volume "$WHEELHOUSE:/wheels:ro")
    fi
    tag="ghcr.io/llmfleet/llmfleet-$c:$version"
    log "building $tag"
    (cd "$repo" && buildah build --layers --pull=never --network=host "${mount[@]}" "${tls[@]}" \
        -f "images/$c.Containerfile" -t "$tag" .)
    size=$(podman image inspect --format '{{.Size}}' "$tag")
    log "$tag built in $((SECONDS - start))s, $((size / 1000000)) MB"
    printf '%s\t%s\t%ss\t%s bytes\n' "$(date -u +%FT%TZ)" "$tag" "$((SECONDS - start))" "$size" >>"$CACHE/image-build-times.tsv"
done
