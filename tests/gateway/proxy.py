"""The real LiteLLM proxy from `make tools` as a process, running a config the tests write."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

MASTER_KEY = "sk-test-master-key"
READY_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def litellm_proxy(
    config: str, directory: Path, env: Mapping[str, str] | None = None, *, inherit: bool = True
) -> Iterator[str]:
    """Start the proxy with ``config`` (YAML text) and ``env`` on top of this process's environment (or of
    nothing but the proxy's own settings when not ``inherit``); yield its URL once ready, stop it
    afterwards."""
    litellm = shutil.which("litellm")
    assert litellm, "the litellm command is installed by `make tools`"
    (directory / "config.yaml").write_text(config)
    port = free_port()
    full = {
        **(os.environ if inherit else {}),
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
        **(env or {}),
    }
    log_path = directory / "litellm.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [litellm, "--config", str(directory / "config.yaml"), "--port", str(port), "--host", "127.0.0.1"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health/readiness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "LiteLLM did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(20)


def chat(proxy: str, model: str, timeout_s: float = 30) -> httpx.Response:
    return httpx.post(
        f"{proxy}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=timeout_s,
    )
