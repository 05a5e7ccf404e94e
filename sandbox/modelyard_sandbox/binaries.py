"""Where the control-plane binaries are: built by ``make sandbox-bin`` or given by MODELYARD_KUBE_BIN."""

from __future__ import annotations

import os
from pathlib import Path

from modelyard.errors import UserError

BINARIES = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
STAGES_FILE = "kwok-stages.yaml"
COMPLETE_MARKER = ".complete"


def cache_dir() -> Path:
    """``$MODELYARD_CACHE`` or ``~/.cache/modelyard``."""
    return Path(os.environ.get("MODELYARD_CACHE") or Path.home() / ".cache" / "modelyard")


def find_bin_dir(explicit: Path | None = None) -> Path:
    """The binary directory: ``explicit``, else MODELYARD_KUBE_BIN, else the newest complete build.

    Raises UserError naming the first missing binary.
    """
    env = os.environ.get("MODELYARD_KUBE_BIN")
    directory = explicit or (Path(env) if env else _newest_build())
    for name in BINARIES:
        if not (directory / name).is_file():
            raise UserError(
                f"{name} not found in {directory}; run `make sandbox-bin` or set MODELYARD_KUBE_BIN"
            )
    return directory.resolve()


def find_stages(bin_dir: Path) -> Path:
    """kwok's default node and pod stages, written by ``make sandbox-bin`` next to the binaries."""
    for candidate in (bin_dir / STAGES_FILE, cache_dir() / STAGES_FILE):
        if candidate.is_file():
            return candidate
    raise UserError(f"{STAGES_FILE} not found in {bin_dir}; run `make sandbox-bin`")


def _newest_build() -> Path:
    builds = sorted(
        (d for d in (cache_dir() / "bin").glob("v*") if (d / COMPLETE_MARKER).is_file()),
        key=lambda d: d.stat().st_mtime,
    )
    return builds[-1] if builds else cache_dir() / "bin"
