"""modelyard's own Kubernetes client against the sandbox's real API server."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from unittest import mock

import kopf
import pytest

from modelyard.controllers.runtime import login
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


def test_a_client_taken_before_a_relogin_keeps_working_after_it(sandbox: Any) -> None:
    """kopf logs in again when the API server answers 401 (an exec credential ran out). Each object's pass
    holds the client from kopf's shallow copy of the memo, so a re-login must renew that same client's
    credentials, not close it under the passes and retries that hold it."""

    async def relogin_then_read() -> dict[str, Any] | None:
        memo = kopf.Memo()
        with mock.patch.dict(os.environ, {"KUBECONFIG": str(sandbox.kubeconfig)}):
            await login(memo=memo, logger=mock.Mock(), settings=kopf.OperatorSettings())
            held = memo.kube  # what a pass scheduled before the re-login holds
            await login(memo=memo, logger=mock.Mock(), settings=kopf.OperatorSettings())
        try:
            assert memo.kube is held
            return await held.get("v1", "Namespace", None, "default")
        finally:
            await held.close()

    namespace = asyncio.run(relogin_then_read())
    assert namespace is not None and namespace["metadata"]["name"] == "default"
