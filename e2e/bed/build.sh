#!/usr/bin/env bash
# Builds the test bed's binaries once, from the Go module proxy, into a cache outside
# the clone keyed by version:  $LLMFLEET_CACHE/bin/<tool>-<version>/<binary>.
# A tool whose binaries are all present is skipped, so a second run (or a fresh clone
# on the same machine) costs nothing. Binaries land in a temp dir first and are moved
# in only when the build succeeded: a killed build never leaves a half binary behind.
#
#   tool        source (module@version from versions.env)
#   kubernetes  k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler},
#               with every k8s.io/* staging module pinned by `replace` to v0.<minor>.<patch>,
#               unpatched
#   etcd        go.etcd.io/etcd/server/v3/etcdmain behind a three-line main package
#   kwok        sigs.k8s.io/kwok/cmd/kwok, only on demand (`build.sh kwok`): the scale bench's
#               simulated nodes (make bench-operator), which neither `make test` nor the demo needs
#   helm        helm.sh/helm/v3/cmd/helm
#   node        k8s.io/kubernetes/cmd/{kubelet,kube-proxy} from the same pinned module, unpatched
#   coredns     github.com/coredns/coredns (module root), for the real nodes' cluster DNS
#   kubectl     k8s.io/kubernetes/cmd/kubectl, same pins, unpatched: the e2e scenarios and the
#               packaging tests shell out to kubectl, which a fresh machine does not have
#
# Usage: build.sh            build what is missing, print where everything is
#        build.sh --check    exit 0 if everything is built, 1 otherwise (builds nothing)
#        build.sh kubectl    build kubectl alone (the packaging tests, when there is none)
#        build.sh kwok       build kwok alone (make bench-operator)
set -euo pipefail
{ # The whole script is one block: bash reads it all before running, so editing
  # this file while a build runs cannot derail that build.

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
CACHE=${LLMFLEET_CACHE:-$HOME/.cache/llmfleet}
JOBS=${LLMFLEET_BUILD_JOBS:-2}
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=${GOPROXY:-https://proxy.golang.org}

# Not kubernetes-<version>: that directory held an API server built with a patch (loopback
# endpoint addresses) that the bed no longer applies; a cache that has only it builds this one.
K8S_BIN="$CACHE/bin/kubernetes-control-plane-$KUBERNETES_VERSION"
ETCD_BIN="$CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN="$CACHE/bin/kwok-$KWOK_VERSION"
HELM_BIN="$CACHE/bin/helm-$HELM_VERSION"
NODE_BIN="$CACHE/bin/kubernetes-node-$KUBERNETES_VERSION"
COREDNS_BIN="$CACHE/bin/coredns-$COREDNS_VERSION"
KUBECTL_BIN="$CACHE/bin/kubectl-$KUBERNETES_VERSION"
PAUSE_BIN="$CACHE/bin/pause-$(cat "$here/pause/main.go" | sha256sum | cut -c1-12)"

log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 2; }

present() {  # present DIR BIN... -> all binaries there and executable
    local dir=$1; shift
    local b
    for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

all_present() {
    present "$K8S_BIN" kube-apiserver kube-controller-manager kube-scheduler &&
        present "$ETCD_BIN" etcd && present "$HELM_BIN" helm &&
        present "$NODE_BIN" kubelet kube-proxy && present "$COREDNS_BIN" coredns && present "$PAUSE_BIN" pause &&
        present "$KUBECTL_BIN" kubectl
}

if [ "${1:-}" = "--check" ]; then
    all_present
    exit $?
fi

only=${1:-}
case $only in
    "") if all_present; then log "all binaries present under $CACHE/bin (nothing to build)"; exit 0; fi ;;
    kubectl) if present "$KUBECTL_BIN" kubectl; then echo "$KUBECTL_BIN/kubectl"; exit 0; fi ;;
    kwok) if present "$KWOK_BIN" kwok; then echo "$KWOK_BIN/kwok"; exit 0; fi ;;
    *) die "unknown argument: $only (build.sh [--check | kubectl | kwok])" ;;
esac

# A missing toolchain is the commonest failure on a new machine: say so plainly.
GOROOT_FALLBACK=${LLMFLEET_GOROOT:-/usr/local/go}
if ! command -v go >/dev/null 2>&1; then
    if [ -x "$GOROOT_FALLBACK/bin/go" ]; then
        export PATH="$GOROOT_FALLBACK/bin:$PATH"
    else
        die "no Go toolchain found (looked for 'go' on PATH and $GOROOT_FALLBACK/bin/go).
Install Go >= 1.26 (e.g. 'apt-get install golang-go' or a Go release in /usr/local/go),
or put prebuilt binaries in $CACHE/bin/<tool>-<version>/ as listed in e2e/bed/versions.env."
    fi
fi
# kwok, etcd and helm at the pinned versions need go >= 1.26; GOTOOLCHAIN=local means no download.
gover=$(go env GOVERSION)
minor=${gover#go1.}; minor=${minor%%.*}
if ! [ "$minor" -ge 26 ] 2>/dev/null; then
    die "Go $gover is too old: the pinned kwok/etcd/helm need go >= 1.26 (found $(command -v go))"
fi
log "using $(go version), -p $JOBS, cache $CACHE"

mkdir -p "$CACHE/bin" "$CACHE/src"
# One build at a time per cache: a second `make e2e` waits instead of racing.
exec 9>"$CACHE/build.lock"
if ! flock -w 3600 9; then die "another build holds $CACHE/build.lock for over an hour"; fi
rm -rf "$CACHE"/bin/.tmp-*  # what a killed build left (we hold the lock: nobody else is building)

# finish DIR TMPDIR SECONDS NAME: move built binaries in and record the time taken.
finish() {
    local dir=$1 tmp=$2 secs=$3 name=$4
    mkdir -p "$dir"
    mv "$tmp"/* "$dir"/
    rm -rf "$tmp"
    printf '%s\t%s\t%ss\t%s\n' "$(date -u +%FT%TZ)" "$name" "$secs" "$(nproc) cores, -p $JOBS" >>"$CACHE/bin/build-times.tsv"
    log "built $name in ${secs}s -> $dir"
}

k8s_gomod() {  # k8s_gomod DIR NAME: a go.mod requiring k8s.io/kubernetes with its staging modules pinned
    local src=$1 name=$2 staging="v0.${KUBERNETES_VERSION#v1.}" gomod
    mkdir -p "$src"
    log "kubernetes $KUBERNETES_VERSION: resolving modules for $name (staging modules pinned to $staging)"
    gomod=$(cd "$src" && timeout 600 go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
        echo "module llmfleet.local/e2e-bed/$name"
        echo
        echo "go 1.24.0"
        echo
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo
        echo "replace ("
        # k8s.io/kubernetes replaces each staging module with ./staging/...; a replace in a
        # dependency is ignored, so pin each one to its published version instead.
        sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
        echo ")"
    } >"$src/go.mod"
}

build_kubernetes() {
    present "$K8S_BIN" kube-apiserver kube-controller-manager kube-scheduler && return 0
    local start=$SECONDS src="$CACHE/src/kubernetes-$KUBERNETES_VERSION" tmp
    k8s_gomod "$src" kubernetes
    local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler)
    (cd "$src" && timeout 1800 go get "${pkgs[@]/%/@$KUBERNETES_VERSION}" >/dev/null)
    # What the patched builds of earlier versions of this script left: a hard-linked copy of the module.
    if [ -d "$src/k8s.io-kubernetes" ]; then
        find "$src/k8s.io-kubernetes" -type d -exec chmod u+w {} +
        rm -rf "$src/k8s.io-kubernetes"
    fi
    tmp=$(mktemp -d "$CACHE/bin/.tmp-kubernetes.XXXXXX")
    log "kubernetes $KUBERNETES_VERSION: compiling kube-apiserver, kube-controller-manager, kube-scheduler (the long one)"
    (cd "$src" && timeout 7200 go build -p "$JOBS" -trimpath -ldflags "$(k8s_ldflags)" -o "$tmp/" "${pkgs[@]}")
    finish "$K8S_BIN" "$tmp" $((SECONDS - start)) "kubernetes-control-plane-$KUBERNETES_VERSION"
}

k8s_ldflags() {
    local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%FT%TZ)"
    done
    echo "$ld"
}

build_node() {
    # kubelet and kube-proxy: the control plane's go.mod (staging modules pinned), upstream and
    # unpatched like every binary here.
    present "$NODE_BIN" kubelet kube-proxy && return 0
    build_kubernetes  # resolves the module set this build reuses
    local start=$SECONDS cp="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
    local src="$CACHE/src/kubernetes-node-$KUBERNETES_VERSION" tmp
    mkdir -p "$src"
    grep -v '^replace k8s.io/kubernetes ' "$cp/go.mod" | sed 's#^module .*#module llmfleet.local/e2e-bed/kubernetes-node#' >"$src/go.mod"
    cp "$cp/go.sum" "$src/go.sum"
    local pkgs=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
    (cd "$src" && timeout 1800 go get "${pkgs[@]/%/@$KUBERNETES_VERSION}" >/dev/null)
    tmp=$(mktemp -d "$CACHE/bin/.tmp-kubernetes-node.XXXXXX")
    log "kubernetes $KUBERNETES_VERSION: compiling kubelet, kube-proxy (unpatched)"
    (cd "$src" && timeout 3600 go build -p "$JOBS" -trimpath -ldflags "$(k8s_ldflags)" -o "$tmp/" "${pkgs[@]}")
    finish "$NODE_BIN" "$tmp" $((SECONDS - start)) "kubernetes-node-$KUBERNETES_VERSION"
}

build_kubectl() {
    # Upstream and unpatched, from its own module set, so that it can be built alone.
    present "$KUBECTL_BIN" kubectl && return 0
    local start=$SECONDS src="$CACHE/src/kubectl-$KUBERNETES_VERSION" tmp
    k8s_gomod "$src" kubectl
    (cd "$src" && timeout 1800 go get "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION" >/dev/null)
    tmp=$(mktemp -d "$CACHE/bin/.tmp-kubectl.XXXXXX")
    log "kubernetes $KUBERNETES_VERSION: compiling kubectl"
    (cd "$src" && timeout 3600 go build -p "$JOBS" -trimpath -ldflags "$(k8s_ldflags)" -o "$tmp/" k8s.io/kubernetes/cmd/kubectl)
    finish "$KUBECTL_BIN" "$tmp" $((SECONDS - start)) "kubectl-$KUBERNETES_VERSION"
}

build_pause() {  # the real nodes' sandbox program (pause/main.go), keyed by its source
    present "$PAUSE_BIN" pause && return 0
    local start=$SECONDS tmp
    tmp=$(mktemp -d "$CACHE/bin/.tmp-pause.XXXXXX")
    (cd "$here/pause" && go build -trimpath -ldflags "-s -w" -o "$tmp/pause" .)
    finish "$PAUSE_BIN" "$tmp" $((SECONDS - start)) "pause"
}

build_etcd() {
    present "$ETCD_BIN" etcd && return 0
    local start=$SECONDS src="$CACHE/src/etcd-$ETCD_VERSION" tmp
    mkdir -p "$src"
    log "etcd $ETCD_VERSION: resolving modules"
    printf 'module llmfleet.local/e2e-bed/etcd\n\ngo 1.24.0\n' >"$src/go.mod"
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$src/main.go"
    (cd "$src" && timeout 1800 go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null && timeout 600 go mod tidy >/dev/null)
    tmp=$(mktemp -d "$CACHE/bin/.tmp-etcd.XXXXXX")
    log "etcd $ETCD_VERSION: compiling"
    (cd "$src" && timeout 3600 go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
    finish "$ETCD_BIN" "$tmp" $((SECONDS - start)) "etcd-$ETCD_VERSION"
}

build_go_install() {  # build_go_install DIR BINARY PACKAGE VERSION
    local dir=$1 bin=$2 pkg=$3 ver=$4
    present "$dir" "$bin" && return 0
    local start=$SECONDS tmp
    tmp=$(mktemp -d "$CACHE/bin/.tmp-$bin.XXXXXX")
    log "$bin $ver: go install $pkg@$ver"
    GOBIN="$tmp" timeout 3600 go install -p "$JOBS" -trimpath -ldflags "-s -w" "$pkg@$ver"
    finish "$dir" "$tmp" $((SECONDS - start)) "$bin-$ver"
}

total_start=$SECONDS
if [ "$only" = kubectl ]; then
    build_kubectl
    echo "$KUBECTL_BIN/kubectl"
    exit 0
fi
if [ "$only" = kwok ]; then
    build_go_install "$KWOK_BIN" kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
    echo "$KWOK_BIN/kwok"
    exit 0
fi
build_etcd
build_kubernetes
build_go_install "$HELM_BIN" helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
build_node
build_pause
build_go_install "$COREDNS_BIN" coredns github.com/coredns/coredns "$COREDNS_VERSION"
build_kubectl
log "done in $((SECONDS - total_start))s; binaries under $CACHE/bin (times in $CACHE/bin/build-times.tsv)"
exit 0
}
