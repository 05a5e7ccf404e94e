#!/usr/bin/env bash
# Install the vLLM release modelyard renders for (modelyard.render.model_deployment.VLLM_VERSION) into its own
# virtualenv under the cache, so tests/engines can judge every rendered `vllm serve` command line with vLLM's
# own parser and start-up validation. Its dependency tree stays out of modelyard's virtualenv.
#
# What is installed, and what is left out:
#   - the vllm wheel itself (--no-deps), and torch at the version vllm pins, with torch's own dependencies
#     (the CUDA runtime libraries torch needs to import at all; no GPU is used);
#   - every other dependency vllm declares, except the GPU kernel packages listed in SKIP below (attention
#     and GEMM kernels, video codecs), which start-up validation never imports;
#   - a stand-in libcuda.so.1 (the NVIDIA driver library, which no pip package ships): every driver call
#     returns CUDA_ERROR_NO_DEVICE. vLLM's compiled extensions link against it; loading them registers their
#     ops, which is all the judge needs. It is built with cc from the symbols those extensions import.
# About 7 GiB and 4-5 minutes the first time; keyed by the vLLM version, so a new pin installs anew.
set -euo pipefail

venv="${VENV:-.venv}"
python="$venv/bin/python"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
version="$("$python" -c 'from modelyard.render.model_deployment import VLLM_VERSION; print(VLLM_VERSION)')"
target="$cache/vllm-$version"
SKIP="flashinfer-python tilelang nvidia-cudnn-frontend fastsafetensors instanttensor nvidia-cutlass-dsl
quack-kernels tokenspeed-mla humming-kernels pynvvideocodec torchcodec torchaudio"

if [[ ! -f "$target/.complete" ]]; then
  echo "[vllm] installing vllm==$version (without GPU kernels) into $target (4-5 minutes the first time)" >&2
  rm -rf "$target"
  python3 -m venv "$target"
  pip=("$target/bin/pip" --quiet --disable-pip-version-check)
  echo "[vllm] 1/4 the vllm wheel" >&2
  "${pip[@]}" install --no-deps "vllm==$version"
  "$target/bin/python" - "$SKIP" > "$target/requirements.txt" <<'PY'
import importlib.metadata, re, sys
skip = set(sys.argv[1].split())
for requirement in importlib.metadata.requires("vllm") or []:
    if "extra ==" in requirement:
        continue
    if re.split(r"[ <>=!;\[~]", requirement, maxsplit=1)[0].lower() not in skip:
        print(requirement)
PY
  echo "[vllm] 2/4 torch and $(wc -l < "$target/requirements.txt") declared dependencies" >&2
  "${pip[@]}" install -r "$target/requirements.txt" 2>&1 | grep -v "requires\|dependency resolver" >&2 || true
  "$target/bin/python" -c 'import torch, transformers, fastapi' \
    || { echo "[vllm] dependencies did not install" >&2; exit 1; }
  echo "[vllm] 3/4 the libcuda.so.1 stand-in" >&2
  site="$("$target/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$target/cuda-stub"
  {
    echo "/* libcuda.so.1 stand-in for a machine without a GPU: every driver call reports no device (100). */"
    find "$site/vllm" -name '*.so' -print0 | while IFS= read -r -d '' so; do
      if readelf -d "$so" | grep -q 'libcuda\.so\.1'; then
        nm -D --undefined-only "$so" | awk '{print $2}' | grep -E '^cu[A-Z]' | grep -v '@' || true
      fi
    done | sort -u | sed 's/.*/int &(void) { return 100; }/'
  } > "$target/cuda-stub/libcuda.c"
  cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$target/cuda-stub/libcuda.so.1" "$target/cuda-stub/libcuda.c"
  echo "[vllm] 4/4 checking that vLLM's CUDA platform and serve arguments import" >&2
  LD_LIBRARY_PATH="$target/cuda-stub" "$target/bin/python" -c \
    'import vllm.platforms.cuda, vllm.entrypoints.common.cli_args' > /dev/null 2>&1 \
    || { echo "[vllm] vLLM does not import in $target" >&2; exit 1; }
  touch "$target/.complete"  # an interrupted install is redone, never half-used
fi
echo "[vllm] vllm $version in $target" >&2
