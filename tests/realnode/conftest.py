"""The lifecycle tests stop and restart the session's real sandbox (new certificates, new API clients), so
they run after every other test of the session: the session-scoped clients of the other real-node tests
trust the certificates of the first start."""

from __future__ import annotations

import pytest

RESTARTS_THE_SANDBOX = "test_lifecycle.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name == RESTARTS_THE_SANDBOX)  # stable: the rest keep their order
