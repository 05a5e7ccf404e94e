#!/usr/bin/env bash
# Install the real LiteLLM proxy, the release the gateway image pins (modelyard.render.gateway.LITELLM_VERSION),
# into its own virtualenv under the cache (its dependencies stay out of modelyard's), and link the `litellm`
# command into the project's virtualenv. The gateway tests start it as a process.
set -euo pipefail

venv="${VENV:-.venv}"
python="$venv/bin/python"
cache="${MODELYARD_CACHE:-$HOME/.cache/modelyard}"
version="$("$python" -c 'from modelyard.render.gateway import LITELLM_VERSION; print(LITELLM_VERSION)')"
target="$cache/litellm-$version"

if [[ ! -f "$target/.complete" ]]; then
  echo "[litellm] installing litellm[proxy]==$version into $target (about a minute the first time)" >&2
  rm -rf "$target"
  python3 -m venv "$target"
  "$target/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$version"
  touch "$target/.complete"  # an interrupted install is redone, never half-used
fi
ln -sf "$target/bin/litellm" "$venv/bin/litellm"
echo "[litellm] litellm $version in $venv/bin" >&2
