"""modelyard's own Kubernetes client against the sandbox's real API server."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from unittest import mock

import pytest

from modelyard.kube import Kube
from modelyard.kube.login import login_with_kubeconfig

pytestmark = pytest.mark.sandbox


def test_server_side_apply_keeps_characters_outside_the_basic_plane(sandbox: Any) -> None:
    """An apply body is read as YAML, and YAML refuses JSON's surrogate-pair escapes ("\\ud83d\\ude00"):
    a spec field with an emoji in it (a revision, a model id) must reach the API server as UTF-8."""
    value = "rev-\U0001f600"

    async def apply_and_read() -> dict[str, Any]:
        with mock.patch.dict(os.environ, {"KUBECONFIG": str(sandbox.kubeconfig)}):
            info = login_with_kubeconfig(logger=mock.Mock())
        assert info is not None
        kube = Kube.from_connection(info)
        try:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "unicode-apply", "namespace": "default"},
                "data": {"revision": value},
            }
            await kube.apply(body)
            read = await kube.get("v1", "ConfigMap", "default", "unicode-apply")
            await kube.delete("v1", "ConfigMap", "default", "unicode-apply")
        finally:
            await kube.close()
        assert read is not None
        return read

    assert asyncio.run(apply_and_read())["data"]["revision"] == value
