"""The container images the sandbox's real node runs, built locally by ``make images`` (no registry).

``hack/images/build.sh`` builds one docker-archive tarball per image (its RepoTags hold the image's reference,
so ``ctr -n k8s.io images import`` names it) and writes an index next to them::

    $MODELYARD_CACHE/images/index.json
    {"images": {"<role>": {"reference": "...", "archive": "/abs/path.tar", "inputs": "<content hash>"}}}

This module only reads that index; it knows nothing of kopf or of the builder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import UserError

from .binaries import cache_dir as default_cache_dir

PAUSE = "pause"
COREDNS = "coredns"
OPERATOR = "operator"
GATEWAY = "gateway"
TEST_MODEL_SERVER = "test-model-server"
#: The s3:// download Job's image (the AWS CLI, v1 from PyPI): not the amazon/aws-cli image modelyard names by
#: default, so a sandbox operator is given it with MODELYARD_AWS_CLI_IMAGE.
AWS_CLI = "aws-cli"
#: engine: ollama's server (a CPU build of Ollama's pinned release): not the docker.io/ollama/ollama image
#: modelyard names by default, so sandbox ModelDeployments name it in spec.image (or the operator gets it with
#: MODELYARD_OLLAMA_IMAGE).
OLLAMA = "ollama"
#: Every image ``make images`` builds, in the order a node needs them.
ROLES = (PAUSE, COREDNS, OPERATOR, GATEWAY, TEST_MODEL_SERVER, AWS_CLI, OLLAMA)

IMAGES_DIR = "images"
INDEX_FILE = "index.json"
_HINT = "run `make images`"


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """One locally built image: its role, the reference it is tagged with, and its docker-archive tarball."""

    role: str
    reference: str
    archive: Path


def images_dir(cache_dir: Path | None = None) -> Path:
    """Where ``make images`` puts its archives and index: ``<cache>/images``."""
    return (cache_dir or default_cache_dir()) / IMAGES_DIR


def index_path(cache_dir: Path | None = None) -> Path:
    return images_dir(cache_dir) / INDEX_FILE


def built_images(cache_dir: Path | None = None) -> dict[str, BuiltImage]:
    """Every role's built image, read from the index.

    Raises UserError when the index is missing or unreadable, a role is missing from it, or an archive it
    names is gone.
    """
    path = index_path(cache_dir)
    try:
        entries = json.loads(path.read_text())["images"]
    except FileNotFoundError:
        raise UserError(f"no image index at {path}; {_HINT}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"unreadable image index {path} ({error}); {_HINT}") from None
    images: dict[str, BuiltImage] = {}
    for role in ROLES:
        entry = entries.get(role) if isinstance(entries, dict) else None
        if not isinstance(entry, dict) or not entry.get("reference") or not entry.get("archive"):
            raise UserError(f"the image index {path} has no {role} image; {_HINT}")
        archive = Path(entry["archive"])
        if not archive.is_absolute():
            archive = path.parent / archive
        if not archive.is_file():
            raise UserError(f"the {role} image archive {archive} is gone; {_HINT}")
        images[role] = BuiltImage(role=role, reference=str(entry["reference"]), archive=archive)
    return images


def built_image(role: str, cache_dir: Path | None = None) -> BuiltImage:
    """One role's built image (see :func:`built_images`)."""
    if role not in ROLES:
        raise ValueError(f"unknown image role {role!r}; known: {', '.join(ROLES)}")
    return built_images(cache_dir)[role]
