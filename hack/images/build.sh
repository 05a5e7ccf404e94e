#!/usr/bin/env bash
# Build the images the sandbox's real node runs, with no registry and no Docker daemon (`make images`):
#
#   pause               registry.k8s.io/pause:<containerd's default>  static C program (pause.c), no userland
#   coredns             registry.k8s.io/coredns/coredns:v<pinned>   the static coredns hack/sandbox builds
#   (base)              docker.io/library/python:3.11-slim-bookworm Debian bookworm via mmdebstrap, local only
#   operator            <chart image.repository>:<appVersion>      the project's own Dockerfile, on the base
#   gateway             modelyard.render.gateway.LITELLM_IMAGE     litellm[proxy]==LITELLM_VERSION from PyPI
#   test-model-server   localhost/modelyard/test-model-server:<h>  test-model-server/, Python stdlib only
#   aws-cli             localhost/modelyard/aws-cli:<h>            awscli (v1, pinned in aws-cli.Containerfile) from PyPI
#   ollama              localhost/modelyard/ollama:<v>-<h>         Ollama's Go module, CPU build (ollama.sh), on the base
#
# Each image is one docker-archive tarball (RepoTags = its reference, so `ctr -n k8s.io images import` names
# it) under ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/images/, named after a hash of its inputs: an image
# whose inputs did not change is not rebuilt, so a second run takes seconds. The index the sandbox reads
# (modelyard_sandbox.images) is images/index.json. buildah keeps its storage under images/buildah/; nothing
# stays mounted or running after a build. Debian packages the build needs are installed when missing.
#
#   hack/images/build.sh [ROLE...]    all images, or only the roles named (base, pause, coredns, operator, ...)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
out="$cache/images"
python="${PYTHON:-$root/.venv/bin/python}"
started=$SECONDS
packages=(buildah mmdebstrap skopeo umoci runc gcc libc6-dev iproute2)
storage="$out/buildah"
buildah_flags=(--root "$storage/root" --runroot "$storage/run" --storage-driver overlay
  --storage-opt overlay.skip_mount_home=true)
base_ref="docker.io/library/python:3.11-slim-bookworm"
debian_sources=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
declare -A reference=() archive=() inputs=()

log() { printf '[images %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

ensure_packages() {
  local missing=() pkg
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return
  log "installing Debian packages: ${missing[*]}"
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

hash_inputs() { # hash_inputs ITEM... -> 16 hex digits over each file's or directory's content, or the literal
  local item
  (
    cd "$root"
    for item in "$@"; do
      if [[ -d "$item" ]]; then
        find "$item" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
          | LC_ALL=C sort -z | xargs -0 sha256sum
      elif [[ -f "$item" ]]; then
        sha256sum "$item"
      else
        printf 'literal %s\n' "$item"
      fi
    done
  ) | sha256sum | cut -c1-16
}

bah() { buildah "${buildah_flags[@]}" "$@"; }

cleanup_builder() { # no build containers, mounts or dangling layers left behind
  [[ -d "$storage/root" ]] || return 0
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --prune >/dev/null 2>&1 || true
  local mnt
  while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; done \
    < <(findmnt -rn -o TARGET | grep -F "$storage/" | sort -r)
}

ticker() { # ticker WHAT: a progress line every 30 s while a long step runs
  while sleep 30; do log "still building $1"; done
}

with_ticker() { # with_ticker WHAT CMD...: run CMD, printing progress every 30 s
  local what="$1" tick rc=0
  shift
  ticker "$what" &
  tick=$!
  "$@" || rc=$?
  kill "$tick" 2>/dev/null || true
  wait "$tick" 2>/dev/null || true
  return "$rc"
}

# Each image's hash covers its inputs: files, versions, and a recipe literal ("pause-v1", ...) to bump when
# the recipe in this script changes in a way that changes the image.
done_or_build() { # done_or_build ROLE REF HASH: true when ROLE's archive for HASH exists; else removes old ones
  local role="$1" ref="$2" hash="$3" tar="$out/$1-$3.tar"
  reference[$role]="$ref" archive[$role]="$tar" inputs[$role]="$hash"
  if [[ -s "$tar" ]]; then
    log "$role: $ref up to date ($(du -h "$tar" | cut -f1), inputs $hash)"
    return 0
  fi
  find "$out" -maxdepth 1 -name "$role-*.tar" -delete
  log "$role: building $ref (inputs $hash)"
  building_since=$SECONDS
  return 1
}

built() { # after a role's build function: how long it took and how big it is
  [[ -n "${building_since:-}" ]] || return 0
  log "$1: built in $((SECONDS - building_since)) s ($(du -h "${archive[$1]}" | cut -f1))"
  building_since=""
}

build_pause() {
  local ref hash tmp
  ref="$(containerd_sandbox_image)"
  hash="$(hash_inputs hack/images/pause.c hack/images/archive.py "$ref" "pause-v1")"
  done_or_build pause "$ref" "$hash" && return
  tmp="$(mktemp -d "$out/.pause.XXXXXX")"
  gcc -static -Os -Wall -Wextra -Werror -o "$tmp/pause" "$here/pause.c"
  strip "$tmp/pause"
  # 65535 is the user the upstream pause image runs as.
  python3 "$here/archive.py" --out "${archive[pause]}" --tag "$ref" --file "$tmp/pause:/pause:0755" \
    --config '{"Entrypoint": ["/pause"], "User": "65535:65535"}'
  rm -rf "$tmp"
}

containerd_sandbox_image() { # the sandbox image containerd (the version hack/sandbox pins) uses by default
  local dir
  dir="$(cd "$root/hack/sandbox/containerd" && go mod download -json github.com/containerd/containerd/v2 \
    | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  sed -n 's/^\s*DefaultSandboxImage\s*=\s*"\(.*\)"\s*$/\1/p' "$dir/internal/cri/config/config.go"
}

build_coredns() {
  local ref version bin hash
  version="$(cd "$root/hack/sandbox/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns)"
  ref="registry.k8s.io/coredns/coredns:$version"
  log "coredns: the node binaries (hack/sandbox/build-node.sh; built once, cached)"
  bin="$("$root/hack/sandbox/build-node.sh" | tail -n 1)/coredns"
  hash="$(hash_inputs "$(sha256sum <"$bin")" hack/images/archive.py "$ref" "coredns-v1")"
  done_or_build coredns "$ref" "$hash" && return
  # As upstream's image: user nonroot (65532) with cap_net_bind_service=+ep on the binary, so it binds :53
  # when the Deployment adds NET_BIND_SERVICE (and drops ALL else). Without that capability in the bounding
  # set the kernel refuses to exec it (EPERM); a Corefile on a port above 1023 needs neither.
  python3 "$here/archive.py" --out "${archive[coredns]}" --tag "$ref" \
    --file "$bin:/coredns:0755:cap_net_bind_service" \
    --config '{"Entrypoint": ["/coredns"], "User": "65532:65532",
               "ExposedPorts": {"53/tcp": {}, "53/udp": {}, "9153/tcp": {}}}'
}

build_base() {
  local hash tmp
  hash="$(hash_inputs hack/images/base-packages.txt hack/images/archive.py "${debian_sources[@]}" "base-v1")"
  base_hash="$hash"
  done_or_build base "$base_ref" "$hash" && return
  tmp="$(mktemp -d "$out/.base.XXXXXX")"
  local include
  include="$(grep -v '^#' "$here/base-packages.txt" | paste -sd, -)"
  log "base: mmdebstrap bookworm minbase + $include (about 2 minutes)"
  # The official python image has `python` and `pip` on PATH (python-is-python3, python3-pip here) and no
  # PEP 668 marker, so `pip install` outside a virtualenv works as the Dockerfile expects: the
  # customize hook removes Debian's EXTERNALLY-MANAGED. Docs, man pages and locales are left out; /dev is
  # emptied (the runtime mounts its own).
  with_ticker "base (mmdebstrap)" mmdebstrap --quiet --variant=minbase --format=directory \
    --include="$include" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    bookworm "$tmp/rootfs" "${debian_sources[@]}" </dev/null
  rm -rf "${tmp:?}/rootfs/dev/"*
  tar --create --file "$tmp/rootfs.tar" --directory "$tmp/rootfs" --numeric-owner --xattrs \
    --xattrs-include='security.capability' --sort=name .
  rm -rf "$tmp/rootfs"
  python3 "$here/archive.py" --out "${archive[base]}" --tag "$base_ref" --layer "$tmp/rootfs.tar" \
    --config '{"Cmd": ["python3"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG=C.UTF-8"]}'
  rm -rf "$tmp"
}

load_base() { # the base in buildah's storage, once per run and only when an image on it is built
  [[ -n "${base_loaded:-}" ]] && return
  log "base: loading into buildah's storage"
  bah pull --quiet "docker-archive:${archive[base]}" >/dev/null
  bah tag "$(bah images --quiet --no-trunc --filter "reference=$base_ref" | head -n 1)" "$base_ref"
  base_loaded=1
}

# RUN steps reach PyPI through whatever the host trusts (a TLS-inspecting egress proxy's CA, say): the host's
# CA bundle and a pip.conf naming it are mounted into each build step, never committed into an image.
build_trust=()
host_trust() {
  local bundle=/etc/ssl/certs/ca-certificates.crt
  [[ -s "$bundle" ]] || return 0
  printf '[global]\ncert = %s\nroot-user-action = ignore\n' "$bundle" >"$storage/pip.conf"
  build_trust=(--volume "$bundle:$bundle:ro" --volume "$storage/pip.conf:/etc/pip.conf:ro")
}

buildah_image() { # buildah_image ROLE REF CONTEXT BUD_ARGS...: build on the base, save as ROLE's archive
  local role="$1" ref="$2" context="$3" tmp
  shift 3
  load_base
  with_ticker "$role" bah bud --quiet --pull=never --network=host --layers "${build_trust[@]}" --tag "$ref" \
    "$@" "$context" >/dev/null
  tmp="${archive[$role]}.partial"
  rm -f "$tmp"
  bah push --quiet "$ref" "docker-archive:$tmp:$ref"
  mv "$tmp" "${archive[$role]}"
}

build_operator() {
  local repository version ref hash
  read -r repository version < <("$python" - "$root/charts/modelyard" <<'EOF'
import sys, pathlib, yaml
chart = pathlib.Path(sys.argv[1])
values = yaml.safe_load((chart / "values.yaml").read_text())
print(values["image"]["repository"], values["image"].get("tag") or yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"])
EOF
  )
  ref="$repository:$version"
  hash="$(hash_inputs "$base_hash" Dockerfile .dockerignore pyproject.toml README.md operator "$version")"
  done_or_build operator "$ref" "$hash" && return
  buildah_image operator "$ref" "$root" --file "$root/Dockerfile" --build-arg "VERSION=$version"
}

build_gateway() {
  local version ref hash
  read -r version ref < <("$python" -c \
    'from modelyard.render.gateway import LITELLM_VERSION as v, LITELLM_IMAGE as i; print(v, i)')
  hash="$(hash_inputs "$base_hash" hack/images/gateway.Containerfile "$version")"
  done_or_build gateway "$ref" "$hash" && return
  buildah_image gateway "$ref" "$here" --file "$here/gateway.Containerfile" \
    --build-arg "LITELLM_VERSION=$version"
}

build_test_model_server() {
  local hash ref
  hash="$(hash_inputs "$base_hash" hack/images/test-model-server)"
  ref="localhost/modelyard/test-model-server:$hash"
  done_or_build test-model-server "$ref" "$hash" && return
  buildah_image test-model-server "$ref" "$here/test-model-server" \
    --file "$here/test-model-server/Containerfile"
}

build_aws_cli() {
  local hash ref
  hash="$(hash_inputs "$base_hash" hack/images/aws-cli.Containerfile)"
  ref="localhost/modelyard/aws-cli:$hash"
  done_or_build aws-cli "$ref" "$hash" && return
  buildah_image aws-cli "$ref" "$here" --file "$here/aws-cli.Containerfile"
}

build_ollama() { # the CPU build of hack/images/ollama.sh (cached; about 15 min cold) on the base
  local bin version hash ref
  log "ollama: the binary (hack/images/ollama.sh; built once, cached)"
  bin="$("$here/ollama.sh" | tail -n 1)"
  version="$(sed -n 's/^OLLAMA_VERSION=//p' "$here/ollama.sh")"
  hash="$(hash_inputs "$base_hash" hack/images/ollama.Containerfile "$(sha256sum <"$bin")")"
  ref="localhost/modelyard/ollama:$version-$hash"
  done_or_build ollama "$ref" "$hash" && return
  buildah_image ollama "$ref" "$(dirname "$bin")" --file "$here/ollama.Containerfile"
}

write_index() {
  local role entries=()
  for role in "$@"; do
    entries+=("$role" "${reference[$role]}" "${archive[$role]}" "${inputs[$role]}")
  done
  "$python" - "$out/index.json" "${entries[@]}" <<'EOF'
import json, os, sys
path, rest = sys.argv[1], sys.argv[2:]
try:  # a partial run (build.sh ROLE...) keeps the other roles' entries
    with open(path) as handle:
        images = json.load(handle)["images"]
except (OSError, ValueError, KeyError):
    images = {}
images.update(
    (rest[i], {"reference": rest[i + 1], "archive": rest[i + 2], "inputs": rest[i + 3]})
    for i in range(0, len(rest), 4)
)
with open(path + ".partial", "w") as handle:
    json.dump({"images": images}, handle, indent=2, sort_keys=True)
os.replace(path + ".partial", path)
EOF
}

main() { # main [ROLE...]: every image by default
  local roles=("$@") role
  ((${#roles[@]})) || roles=(pause base operator gateway test-model-server aws-cli ollama coredns)
  if ((EUID != 0)); then
    echo "make images needs root (apt-get, mmdebstrap's chroot, buildah's storage)" >&2
    exit 2
  fi
  mkdir -p "$out" "$storage"
  # One build at a time per cache (two would write the same archives and share buildah's storage).
  exec 9>"$out/.lock"
  flock --nonblock 9 || { log "waiting for another images build to finish"; flock 9; }
  ensure_packages
  host_trust
  trap cleanup_builder EXIT
  for role in "${roles[@]}"; do
    case "$role" in
      base) build_base ;;
      operator | gateway | test-model-server | aws-cli | ollama)
        [[ -n "${base_hash:-}" ]] || { build_base && built base; }
        "build_${role//-/_}"
        ;;
      pause | coredns) "build_$role" ;;
      *) echo "unknown image $role" >&2 && exit 2 ;;
    esac
    built "$role"
  done
  write_index "${!reference[@]}"
  log "done: $(du -ch "${archive[@]}" | tail -n 1 | cut -f1) in $out (index: $out/index.json)"
}

main "$@"
