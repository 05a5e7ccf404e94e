#!/usr/bin/env bash
# Build the sandbox's real node from pinned Go modules, into a cache outside the clone:
#
#   ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/node-bin/<k8s-version>-<hash>/
#
#   kubelet, kube-proxy             k8s.io/kubernetes, the version the control plane pins (k8s/, node/*/main.go)
#   containerd, ctr,                github.com/containerd/containerd/v2 (containerd/go.mod)
#     containerd-shim-runc-v2
#   bridge, host-local, loopback,   github.com/containernetworking/plugins (cni/go.mod); they go to cni/
#     portmap
#   coredns                         github.com/coredns/coredns with the cluster-DNS plugins only (coredns/)
#   kube-router                     github.com/cloudnativelabs/kube-router/v2, run as the NetworkPolicy
#                                   firewall only (kube-router/go.mod)
#
# Every binary is static (CGO_ENABLED=0): hack/images copies coredns into its image. <hash> covers the
# go.mod/go.sum files, the main packages and this script; a complete directory is reused, builds go to a
# temporary directory renamed at the end. Debian packages the node needs (runc, iptables, ipset) come from
# node-deps.sh. The last line printed on success is the binary directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag="node-bin"
# shellcheck source=build.sh
source "$here/build.sh"
started=$SECONDS

containerd_tags="no_btrfs no_devmapper no_zfs urfave_cli_no_docs"

build_pkg() { # build_pkg NAME MODULE_DIR PACKAGE LDFLAGS OUT [TAGS]
  local name="$1" dir="$2" pkg="$3" ldflags="$4" out="$5" tags="${6:-}" begin=$SECONDS tick
  log "building $name"
  ticker "$name" &
  tick=$!
  if ! (cd "$dir" && CGO_ENABLED=0 go build -p "${GO_BUILD_P:-2}" -trimpath -tags "$tags" \
    -ldflags="-s -w $ldflags" -o "$out" "$pkg"); then
    kill "$tick" 2>/dev/null || true
    log "FAILED building $name"
    exit 1
  fi
  kill "$tick" 2>/dev/null || true
  wait "$tick" 2>/dev/null || true
  log "built $name in $((SECONDS - begin))s"
}

node_hash() {
  local mod
  for mod in k8s containerd cni coredns kube-router; do
    cat "$here/$mod/go.mod" "$here/$mod/go.sum"
  done
  cat "$here"/k8s/node/*/main.go "$here/coredns/main.go" "$here/build-node.sh"
}

main_node() {
  command -v go >/dev/null || { echo "go is not installed; install Go >= 1.26" >&2; exit 2; }
  local k8s_version hash out tmp
  k8s_version="$(module_version "$here/k8s" k8s.io/kubernetes)"
  hash="$(node_hash | sha256sum | cut -c1-12)"
  out="$cache/node-bin/$k8s_version-$hash"
  if [[ -f "$out/.complete" ]]; then
    log "up to date: $out"
    echo "$out"
    return
  fi
  mkdir -p "$cache/node-bin"
  tmp="$(mktemp -d "$cache/node-bin/.build-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  log "building the real node (Kubernetes $k8s_version) into $out (first build takes a while)"
  local name k8s_flags containerd_version router_version
  k8s_flags="$(k8s_ldflags "$k8s_version")"
  for name in kubelet kube-proxy; do
    build_pkg "$name" "$here/k8s" "./node/$name" "$k8s_flags" "$tmp/$name"
  done
  containerd_version="$(module_version "$here/containerd" github.com/containerd/containerd/v2)"
  local cflags="-X github.com/containerd/containerd/v2/version.Version=$containerd_version"
  build_pkg containerd "$here/containerd" github.com/containerd/containerd/v2/cmd/containerd \
    "$cflags" "$tmp/containerd" "$containerd_tags"
  build_pkg containerd-shim-runc-v2 "$here/containerd" \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$cflags" "$tmp/containerd-shim-runc-v2" \
    "$containerd_tags no_grpc"
  build_pkg ctr "$here/containerd" github.com/containerd/containerd/v2/cmd/ctr "$cflags" "$tmp/ctr" \
    "$containerd_tags"
  mkdir "$tmp/cni"
  local plugin
  for plugin in main/bridge ipam/host-local main/loopback meta/portmap; do
    build_pkg "${plugin#*/}" "$here/cni" "github.com/containernetworking/plugins/plugins/$plugin" "" \
      "$tmp/cni/${plugin#*/}"
  done
  build_pkg coredns "$here/coredns" . "" "$tmp/coredns"
  router_version="$(module_version "$here/kube-router" github.com/cloudnativelabs/kube-router/v2)"
  build_pkg kube-router "$here/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$router_version" "$tmp/kube-router"
  touch "$tmp/.complete"
  chmod 755 "$tmp"
  rm -rf "$out"
  mv "$tmp" "$out"
  trap - EXIT
  log "done: $out ($(du -sh "$out" | cut -f1))"
  echo "$out"
}

main_node "$@"
