"""The ollama image (Ollama's Go module at the pinned release, CPU build) runs the server container exactly
as modelyard renders it for an ``engine: ollama`` ModelDeployment: its command, environment, user 1000,
read-only root filesystem and no capabilities, the claim holding the project's tiny GGUF. The container
creates the model from the GGUF, loads it, and answers OpenAI-compatible chat completions with real token
counts; every Ollama setting modelyard renders is one the binary knows."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from modelyard.api import ModelDeployment
from modelyard.planning.spec import plan_deployment
from modelyard.render.model_deployment import (
    OLLAMA_VERSION,
    PORT,
    RUN_AS_USER,
    Images,
    render_model_deployment,
)
from modelyard_sandbox.images import OLLAMA, BuiltImage
from tests.realnode import ollama as tiny
from tests.realnode import tiny_gguf

from .runtime import Container, Netns, running, wait_until
from .test_images import send

pytestmark = pytest.mark.images


def rendered(image: BuiltImage) -> tuple[dict[str, Any], dict[str, Any]]:
    body = tiny.tiny_ollama_model("tiny", "pvc://weights/models")
    body["spec"]["image"] = None
    md = ModelDeployment.model_validate({**body, "metadata": {"name": "tiny", "namespace": "team"}})
    children = render_model_deployment(md, plan_deployment(md.spec), Images(ollama=image.reference))
    (deployment,) = [c for c in children.serving if c["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    return pod["containers"][0], pod


def test_every_rendered_ollama_setting_is_one_the_binary_knows(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    image = images[OLLAMA]
    container, _ = rendered(image)
    settings = {e["name"] for e in container["env"] if e["name"].startswith("OLLAMA_")}
    help_text = Container(image, command=["ollama", "serve", "--help"], read_only_root=True, tmpfs=["/tmp"])
    with running(help_text, netns, tmp_path / "run") as handle:
        assert handle.wait(60) == 0, handle.output()
    known = set(re.findall(r"\b(OLLAMA_[A-Z_]+)\b", handle.output()))
    assert settings and settings <= known, settings - known
    assert "OLLAMA_KV_CACHE_TYPE" in known and "OLLAMA_FLASH_ATTENTION" in known  # the q8_0 KV settings
    version = Container(image, command=["ollama", "--version"], read_only_root=True, tmpfs=["/tmp"])
    with running(version, netns, tmp_path / "run2") as handle:
        handle.wait(60)
    assert f"client version is {OLLAMA_VERSION}" in handle.output()


def test_the_rendered_server_creates_loads_and_serves_the_tiny_model(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    image = images[OLLAMA]
    manifest, pod = rendered(image)
    claim = tmp_path / "claim"
    (claim / tiny.MODELS_DIR).mkdir(parents=True)
    tiny_gguf.write(claim / tiny.MODELS_DIR / tiny.GGUF_FILE)
    for path in (claim, claim / tiny.MODELS_DIR):  # a provisioner's volume honours the pod's fsGroup
        os.chown(path, RUN_AS_USER, RUN_AS_USER)
    container = Container.from_manifest(image, manifest, pod, host_dirs={"weights": claim})
    assert container.read_only_root and container.user == (RUN_AS_USER, RUN_AS_USER)
    assert not container.capabilities

    def loaded() -> bool:
        status, body = send(netns, PORT, "GET", "/api/ps")
        return status == 200 and any(m["name"] == f"{tiny.SERVED}:latest" for m in json.loads(body)["models"])

    with running(container, netns, tmp_path / "run") as handle:
        wait_until(loaded, "the model created and loaded (what the readiness probe checks)", handle, 120)
        status, body = send(
            netns,
            PORT,
            "POST",
            "/v1/chat/completions",
            {
                "model": tiny.SERVED,
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 6,
                "temperature": 0,  # greedy: sampling a random model may pick </s> before the sixth token
            },
        )
        output = handle.output()
    assert status == 200, body
    answer = json.loads(body)
    assert answer["usage"]["prompt_tokens"] > 2 and answer["usage"]["completion_tokens"] == 6, answer
    assert answer["choices"][0]["finish_reason"] == "length", answer
    assert f"serving {tiny.SERVED}" in output
    # Ollama's copy of the model is on the claim, next to the GGUF: nothing was written to the image
    assert any((claim / tiny.MODELS_DIR / ".ollama" / "blobs").iterdir())
