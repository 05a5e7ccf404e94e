"""Fixtures the gateway tests share with the controller tests."""

from tests.controllers.conftest import moto_url  # noqa: F401 - moto's server on loopback, one per session
