#!/usr/bin/env bash
# The Gateway API Inference Extension's InferencePool CRD (inference.networking.k8s.io/v1), taken from the
# pinned release's Go module: `go mod download` checks the module against the Go checksum database, this
# script against the hash pinned below, and the CRD is copied unchanged next to this script, where the
# sandbox tests install it from.
#   crd.sh            write inference.networking.k8s.io_inferencepools.yaml
#   crd.sh --verify   fail when the checked-in copy differs from the pinned release's
set -euo pipefail
MODULE=sigs.k8s.io/gateway-api-inference-extension
VERSION=v1.1.0
SUM=h1:MqRYk+3LNUWB0MbTgTZVhmJGNDTvm8l3ze4MOlzR7MU=
CRD=config/crd/bases/inference.networking.k8s.io_inferencepools.yaml

here="$(cd "$(dirname "$0")" && pwd)"
out="$here/inference.networking.k8s.io_inferencepools.yaml"
command -v go >/dev/null || { echo "go is not installed; install Go >= 1.26" >&2; exit 2; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
info="$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION")"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$info" "$1"; }
if [ "$(field Sum)" != "$SUM" ]; then
  echo "$MODULE@$VERSION: module hash $(field Sum), expected $SUM" >&2; exit 1
fi
source="$(field Dir)/$CRD"
if [ "${1:-}" = "--verify" ]; then
  diff -u "$out" "$source" >/dev/null \
    || { echo "$out differs from $MODULE@$VERSION: run hack/sandbox/inference-pool/crd.sh and commit the result" >&2; exit 1; }
  echo "[inference-pool] $(basename "$out") is $MODULE@$VERSION's"
else
  install -m 0644 "$source" "$out"
  echo "[inference-pool] wrote $(basename "$out") from $MODULE@$VERSION"
fi
