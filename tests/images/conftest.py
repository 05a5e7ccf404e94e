"""Fixtures for the image tests: the built images (skipped when `make images` has not run) and a network
namespace per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from modelyard.errors import UserError
from modelyard_sandbox.images import BuiltImage, built_images

from .runtime import Netns


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    try:
        found = built_images()
    except UserError as error:
        pytest.skip(f"images not built ({error})")
    if os.geteuid() != 0:
        pytest.fail("running the images needs root (runc, network namespaces)")
    return found


@pytest.fixture
def netns() -> Iterator[Netns]:
    namespace = Netns()
    yield namespace
    namespace.close()
