#!/usr/bin/env bash
# Build the sandbox control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok)
# from the Go modules pinned in hack/sandbox/{k8s,kwok}, into a cache outside the clone:
#
#   ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/bin/<k8s-version>-<hash>/
#
# <hash> covers the go.mod/go.sum files, the main packages and this script, so any change rebuilds into a
# new directory; an existing complete directory is reused and nothing is built. The build happens in a
# temporary directory that is renamed into place at the end, so an interrupted build leaves nothing behind.
#
# MODELYARD_KUBE_BIN=DIR: use prebuilt official binaries from DIR instead and build nothing (only the kwok
# module source is downloaded, for its default stage definitions).
#
# The last line printed on success is the binary directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
binaries=(etcd kwok kube-scheduler kube-apiserver kube-controller-manager)
stages_file="kwok-stages.yaml"
started=$SECONDS

log_tag="${log_tag:-sandbox-bin}"

log() { printf '[%s %4ds] %s\n' "$log_tag" "$((SECONDS - started))" "$*" >&2; }

module_version() { # module_version DIR MODULE -> the version DIR's module graph selects for MODULE
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

module_dir() { # module_dir DIR MODULE -> where the Go module cache holds MODULE's source
  (cd "$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2")
}

write_kwok_stages() { # write_kwok_stages OUT -> kwok's own default ("fast") node and pod stages, one file
  local dir
  dir="$(module_dir "$here/kwok" sigs.k8s.io/kwok)"
  local parts=(
    node/fast/node-initialize.yaml
    node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    pod/fast/pod-ready.yaml
    pod/fast/pod-complete.yaml
    pod/fast/pod-delete.yaml
  )
  local part
  for part in "${parts[@]}"; do
    printf -- '---\n'
    cat "$dir/kustomize/stage/$part"
  done >"$1"
}

use_prebuilt() { # use_prebuilt DIR -> check DIR has every binary; stages go next to the cache
  local dir="$1" name
  for name in "${binaries[@]}"; do
    [[ -x "$dir/$name" ]] || { echo "MODELYARD_KUBE_BIN: $dir/$name is missing or not executable" >&2; exit 2; }
  done
  mkdir -p "$cache"
  [[ -s "$dir/$stages_file" || -s "$cache/$stages_file" ]] || write_kwok_stages "$cache/$stages_file"
  log "using prebuilt binaries in $dir"
  echo "$dir"
}

ticker() { # ticker NAME -> a progress line every 30 s while a long go build runs
  local begin=$SECONDS
  while sleep 30; do log "  ... still building $1 ($((SECONDS - begin))s)"; done
}

build_one() { # build_one NAME MODULE_DIR LDFLAGS OUT_DIR
  local name="$1" dir="$2" ldflags="$3" out="$4" begin=$SECONDS tick
  log "building $name"
  ticker "$name" &
  tick=$!
  if ! (cd "$dir" && go build -p "${GO_BUILD_P:-2}" -trimpath -ldflags="-s -w $ldflags" \
    -o "$out/$name" "./cmd/$name"); then
    kill "$tick" 2>/dev/null || true
    log "FAILED building $name"
    exit 1
  fi
  kill "$tick" 2>/dev/null || true
  wait "$tick" 2>/dev/null || true
  log "built $name in $((SECONDS - begin))s"
}

k8s_ldflags() { # k8s_ldflags VERSION -> -X flags so --version reports the real Kubernetes version
  local version="$1" minor flags="" pkg
  minor="$(cut -d. -f2 <<<"$version")"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(module_time "$here/k8s" k8s.io/kubernetes)"
  done
  echo "$flags"
}

module_time() { # module_time DIR MODULE -> the release time the module proxy records
  (cd "$1" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$2")
}

main() {
  if [[ -n "${MODELYARD_KUBE_BIN:-}" ]]; then
    use_prebuilt "$MODELYARD_KUBE_BIN"
    return
  fi
  command -v go >/dev/null || { echo "go is not installed; install Go >= 1.26 or set MODELYARD_KUBE_BIN" >&2; exit 2; }
  local k8s_version hash out tmp
  k8s_version="$(module_version "$here/k8s" k8s.io/kubernetes)"
  hash="$(cat "$here"/k8s/go.mod "$here"/k8s/go.sum "$here"/kwok/go.mod "$here"/kwok/go.sum \
    "$here"/*/cmd/*/main.go "$here/build.sh" | sha256sum | cut -c1-12)"
  out="$cache/bin/$k8s_version-$hash"
  if [[ -f "$out/.complete" ]]; then
    log "up to date: $out"
    echo "$out"
    return
  fi
  mkdir -p "$cache/bin"
  tmp="$(mktemp -d "$cache/bin/.build-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  log "building Kubernetes $k8s_version control plane into $out (first build takes a while)"
  local etcd_version kwok_version
  etcd_version="$(module_version "$here/k8s" go.etcd.io/etcd/server/v3)"
  kwok_version="$(module_version "$here/kwok" sigs.k8s.io/kwok)"
  build_one etcd "$here/k8s" "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" "$tmp"
  build_one kwok "$here/kwok" "-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" "$tmp"
  local name
  for name in kube-scheduler kube-apiserver kube-controller-manager; do
    build_one "$name" "$here/k8s" "$(k8s_ldflags "$k8s_version")" "$tmp"
  done
  write_kwok_stages "$tmp/$stages_file"
  touch "$tmp/.complete"
  chmod 755 "$tmp"
  rm -rf "$out"
  mv "$tmp" "$out"
  trap - EXIT
  log "done: $out ($(du -sh "$out" | cut -f1))"
  echo "$out"
}

# build-node.sh sources this file for its helpers (log, ticker, k8s_ldflags, module_version).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
