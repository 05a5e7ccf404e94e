#!/usr/bin/env bash
# Build the LeaderWorkerSet controller (sigs.k8s.io/lws, the release pinned in hack/sandbox/lws/go.mod)
# into a cache outside the clone, with the CRD and webhook manifests of the same module version:
#
#   ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/bin/lws-<version>-<hash>/
#     lws-manager                       the controller manager (cmd/main.go of the module)
#     leaderworkerset.yaml              config/crd/bases: the LeaderWorkerSet CRD
#     webhook-manifests.yaml            config/webhook: the webhook configurations and their kustomize patches
#     webhook-mutating-patch.yaml
#     webhook-validating-patch.yaml
#
# <hash> covers go.mod, go.sum and this script; an existing complete directory is reused. The sandbox runs
# the manager as a host process next to the control plane (sandbox/modelyard_sandbox/lws.py).
# The last line printed on success is the directory.
set -euo pipefail

lws_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag="sandbox-lws"
# log, ticker, module_version and module_dir (build.sh sets $here and $cache for itself)
# shellcheck source=../build.sh
source "$lws_here/../build.sh"
here="$lws_here"

main() {
  command -v go >/dev/null || { echo "go is not installed; install Go >= 1.26" >&2; exit 2; }
  local version hash out tmp dir tick begin
  version="$(module_version "$here" sigs.k8s.io/lws)"
  hash="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
  out="$cache/bin/lws-$version-$hash"
  if [[ -f "$out/.complete" ]]; then
    log "up to date: $out"
    echo "$out"
    return
  fi
  mkdir -p "$cache/bin"
  tmp="$(mktemp -d "$cache/bin/.build-lws-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  dir="$(module_dir "$here" sigs.k8s.io/lws)"
  log "building the LeaderWorkerSet controller $version into $out"
  begin=$SECONDS
  ticker lws-manager &
  tick=$!
  if ! (cd "$here" && go build -p "${GO_BUILD_P:-2}" -trimpath \
    -ldflags="-s -w -X sigs.k8s.io/lws/pkg/version.GitVersion=$version" -o "$tmp/lws-manager" sigs.k8s.io/lws/cmd); then
    kill "$tick" 2>/dev/null || true
    log "FAILED building lws-manager"
    exit 1
  fi
  kill "$tick" 2>/dev/null || true
  wait "$tick" 2>/dev/null || true
  log "built lws-manager in $((SECONDS - begin))s"
  cp "$dir/config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml" "$tmp/leaderworkerset.yaml"
  cp "$dir/config/webhook/manifests.yaml" "$tmp/webhook-manifests.yaml"
  cp "$dir/config/webhook/mutating-patch.yaml" "$tmp/webhook-mutating-patch.yaml"
  cp "$dir/config/webhook/validating-patch.yaml" "$tmp/webhook-validating-patch.yaml"
  chmod -R u+w,go+rX "$tmp"
  touch "$tmp/.complete"
  rm -rf "$out"
  mv "$tmp" "$out"
  trap - EXIT
  log "done: $out ($(du -sh "$out" | cut -f1))"
  echo "$out"
}

main "$@"
