"""The image index `make images` writes, as the sandbox reads it (no images needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelyard.errors import UserError
from modelyard_sandbox.images import ROLES, BuiltImage, built_image, built_images, index_path


def _write_index(cache: Path, *, skip: str | None = None, missing_archive: str | None = None) -> None:
    directory = index_path(cache).parent
    directory.mkdir(parents=True)
    entries = {}
    for role in ROLES:
        if role == skip:
            continue
        archive = directory / f"{role}.tar"
        if role != missing_archive:
            archive.write_bytes(b"tar")
        entries[role] = {"reference": f"example.test/{role}:1", "archive": archive.name, "inputs": "h"}
    index_path(cache).write_text(json.dumps({"images": entries}))


def test_reads_every_role_with_archives_relative_to_the_index(tmp_path: Path) -> None:
    _write_index(tmp_path)
    images = built_images(tmp_path)
    assert set(images) == set(ROLES)
    assert images["gateway"] == BuiltImage(
        "gateway", "example.test/gateway:1", tmp_path / "images" / "gateway.tar"
    )
    assert built_image("pause", tmp_path).reference == "example.test/pause:1"


def test_missing_index_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no image index .* run `make images`"):
        built_images(tmp_path)


def test_missing_role_or_archive_says_how_to_build(tmp_path: Path) -> None:
    _write_index(tmp_path / "a", skip="coredns")
    with pytest.raises(UserError, match=r"has no coredns image; run `make images`"):
        built_images(tmp_path / "a")
    _write_index(tmp_path / "b", missing_archive="operator")
    with pytest.raises(UserError, match=r"operator image archive .* is gone; run `make images`"):
        built_images(tmp_path / "b")


def test_corrupt_index_is_a_user_error(tmp_path: Path) -> None:
    index_path(tmp_path).parent.mkdir(parents=True)
    index_path(tmp_path).write_text("{not json")
    with pytest.raises(UserError, match="unreadable image index"):
        built_images(tmp_path)
