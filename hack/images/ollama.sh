#!/usr/bin/env bash
# Build Ollama (CPU) from its Go module at the pinned release, into a cache outside the clone:
#
#   ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/ollama/<version>-<hash>/ollama
#
# `go install github.com/ollama/ollama@v$OLLAMA_VERSION` with cgo builds the server, its ggml CPU backend and
# llama.cpp. The module is checked against the Go checksum database by `go` and against the h1: hash pinned
# below. The Go module zip drops llama.cpp's vendor/ directory, so three header-only libraries come from
# elsewhere: nlohmann/json (Debian nlohmann-json3-dev) and stb_image (Debian libstb-dev) from /usr/include,
# and miniaudio.h from the PyPI sdist miniaudio==$MINIAUDIO_VERSION (no Debian package has it), downloaded
# from its pinned URL and checked against its sha256, given to cgo with CGO_CPPFLAGS=-I.
#
# <hash> covers the version, the module hash, the headers' contents, the Go version, the flags and $RECIPE:
# an unchanged build is reused in a second (older builds are removed); a cold build takes about 15 minutes on 2 cores (progress
# every 30 s). Debian packages the build needs are installed when missing. The last line printed is the
# binary's path.
#
#   hack/images/ollama.sh      build (or reuse) the binary; print its path
set -euo pipefail

OLLAMA_VERSION=0.17.4
OLLAMA_MODULE_SUM="h1:X3KNm9x4BlHqk/AXMGtC7pBAFd46nmJmy8yDaBZLo9s="
MINIAUDIO_VERSION=1.71
MINIAUDIO_URL="https://files.pythonhosted.org/packages/d8/d5/e5439dc08561f73656bfeb3340fc64ab63163e101426593d8fb9a025ff1e/miniaudio-$MINIAUDIO_VERSION.tar.gz"
MINIAUDIO_SHA256=ff51e2887bb673e2e757752b586b3dc924d59aa5fbcae9bbc45f4a111bd3262b
#: Bump when a change to this script changes the binary it builds (the hash covers it, not the whole script).
RECIPE=ollama-cpu-v1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
started=$SECONDS
packages=(g++ nlohmann-json3-dev libstb-dev curl)
flags=(-trimpath -ldflags "-s -w -X github.com/ollama/ollama/version.Version=$OLLAMA_VERSION")

log() { printf '[ollama %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

ensure_packages() {
  local missing=() pkg
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return
  if ((EUID != 0)); then
    echo "ollama: need root to install ${missing[*]}" >&2
    exit 2
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

miniaudio_header() { # miniaudio_header DIR: DIR/miniaudio/miniaudio.h from the pinned sdist
  local dir="$1" sdist="$cache/ollama/miniaudio-$MINIAUDIO_VERSION.tar.gz"
  if ! echo "$MINIAUDIO_SHA256  $sdist" | sha256sum --check --status 2>/dev/null; then
    log "downloading miniaudio $MINIAUDIO_VERSION's sdist (PyPI) for miniaudio.h"
    curl --fail --silent --show-error --location --retry 3 -o "$sdist.partial" "$MINIAUDIO_URL"
    echo "$MINIAUDIO_SHA256  $sdist.partial" | sha256sum --check --status \
      || { echo "ollama: miniaudio sdist does not match its pinned sha256" >&2; exit 1; }
    mv "$sdist.partial" "$sdist"
  fi
  mkdir -p "$dir/miniaudio"
  tar -xzf "$sdist" -O "miniaudio-$MINIAUDIO_VERSION/miniaudio/miniaudio.h" >"$dir/miniaudio/miniaudio.h"
}

main() {
  command -v go >/dev/null || { echo "go is not installed; install Go >= 1.26" >&2; exit 2; }
  ensure_packages
  mkdir -p "$cache/ollama"
  local include hash out tmp sum tick
  include="$(mktemp -d "$cache/ollama/.include-XXXXXX")"
  trap 'rm -rf "${include:-}" "${tmp:-}"' EXIT
  miniaudio_header "$include"
  hash="$(
    {
      echo "$OLLAMA_VERSION $OLLAMA_MODULE_SUM $(go version) ${flags[*]}"
      sha256sum "$include/miniaudio/miniaudio.h" /usr/include/nlohmann/json.hpp /usr/include/stb/stb_image.h \
        | cut -d' ' -f1
      echo "$RECIPE"
    } | sha256sum | cut -c1-12
  )"
  out="$cache/ollama/$OLLAMA_VERSION-$hash"
  if [[ -x "$out/ollama" ]]; then
    log "up to date: $out/ollama"
    echo "$out/ollama"
    return
  fi
  sum="$(go mod download -json "github.com/ollama/ollama@v$OLLAMA_VERSION" \
    | sed -n 's/^\s*"Sum": "\(.*\)",\?$/\1/p')"
  [[ "$sum" == "$OLLAMA_MODULE_SUM" ]] \
    || { echo "ollama: module hash $sum is not the pinned $OLLAMA_MODULE_SUM" >&2; exit 1; }
  tmp="$(mktemp -d "$cache/ollama/.build-XXXXXX")"
  log "building Ollama $OLLAMA_VERSION (CPU; Go server + ggml + llama.cpp with cgo) into $out (about 15 min cold)"
  (while sleep 30; do log "still building Ollama $OLLAMA_VERSION"; done) &
  tick=$!
  if ! CGO_ENABLED=1 CGO_CPPFLAGS="-I$include" GOBIN="$tmp" GOFLAGS=-mod=mod \
    go install -p "${GO_BUILD_P:-2}" "${flags[@]}" "github.com/ollama/ollama@v$OLLAMA_VERSION"; then
    kill "$tick" 2>/dev/null || true
    log "FAILED building Ollama"
    exit 1
  fi
  kill "$tick" 2>/dev/null || true
  wait "$tick" 2>/dev/null || true
  "$tmp/ollama" --version 2>&1 | grep -q "$OLLAMA_VERSION" \
    || { echo "ollama: the built binary does not report version $OLLAMA_VERSION" >&2; exit 1; }
  chmod 755 "$tmp"
  rm -rf "$out"
  mv "$tmp" "$out"
  find "$cache/ollama" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' ! -path "$out" -exec rm -rf {} +
  tmp=""
  log "built in $((SECONDS - started)) s: $out/ollama ($(du -h "$out/ollama" | cut -f1))"
  echo "$out/ollama"
}

main "$@"
