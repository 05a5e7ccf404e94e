"""Helpers for the Helm chart tests: the real ``helm`` binary (from ``make tools``) on the chart."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelyard"


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True, timeout_s: float = 120) -> str:
    """Run ``helm`` and return its stdout; a failure raises with helm's stderr."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=env, check=False, timeout=timeout_s
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout if check else result.stdout + result.stderr


def set_args(values: dict[str, Any]) -> list[str]:
    """``--set-json key=<json>`` for each top-level value (types survive, unlike ``--set``)."""
    import json  # noqa: PLC0415

    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def template(
    values: dict[str, Any], *, namespace: str = "modelyard-system", release: str = "modelyard"
) -> list[dict[str, Any]]:
    """The chart rendered by ``helm template`` (CRDs included), as dicts."""
    out = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", *set_args(values))
    return [doc for doc in yaml.safe_load_all(out) if doc]
