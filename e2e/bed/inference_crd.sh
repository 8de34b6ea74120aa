#!/usr/bin/env bash
# Prints the path of the Gateway API Inference Extension's InferencePool CRD at the pinned
# version (versions.env), fetching it once from the Go module proxy into the bed's cache:
#   $LLMFLEET_CACHE/crds/gateway-api-inference-extension-<version>/inferencepools.yaml
# The CRD ships in the extension's Go module (config/crd/bases/); a cached copy is used
# without any network access. Exits non-zero with a message when it cannot be had.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
CACHE=${LLMFLEET_CACHE:-$HOME/.cache/llmfleet}
MODULE=sigs.k8s.io/gateway-api-inference-extension
SRC=config/crd/bases/inference.networking.k8s.io_inferencepools.yaml
dir="$CACHE/crds/gateway-api-inference-extension-$INFERENCE_EXTENSION_VERSION"
out="$dir/inferencepools.yaml"
if [ -s "$out" ]; then echo "$out"; exit 0; fi

GOROOT_FALLBACK=${LLMFLEET_GOROOT:-/usr/local/go}
command -v go >/dev/null 2>&1 || export PATH="$GOROOT_FALLBACK/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "inference_crd.sh: no Go toolchain to fetch $MODULE@$INFERENCE_EXTENSION_VERSION" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'module fetch\n\ngo 1.22\n' >"$tmp/go.mod"
moddir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=${GOPROXY:-https://proxy.golang.org} \
    go mod download -json "$MODULE@$INFERENCE_EXTENSION_VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d.get("Error")) if d.get("Error") else print(d["Dir"])') ||
    { echo "inference_crd.sh: could not download $MODULE@$INFERENCE_EXTENSION_VERSION from the Go module proxy" >&2; exit 2; }
[ -s "$moddir/$SRC" ] || { echo "inference_crd.sh: $SRC is not in $MODULE@$INFERENCE_EXTENSION_VERSION" >&2; exit 2; }
mkdir -p "$dir"
cp "$moddir/$SRC" "$tmp/crd.yaml" && mv "$tmp/crd.yaml" "$out"  # whole or not at all
echo "$out"
