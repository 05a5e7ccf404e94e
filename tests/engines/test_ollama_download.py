"""The download step modelyard renders for an ``engine: ollama`` model from ``hf://ORG/REPO/FILE.gguf``, run
by the huggingface_hub that the pinned vLLM release installs (the Job runs it in the vLLM image), against a
local server that answers the Hub's file endpoint (``/{repo}/resolve/{revision}/{file}``) as huggingface.co
does: the one GGUF file lands where the Ollama server will create the model from it, with the completion
marker; a file, revision or repository the Hub does not have exits with the code the Job fails at once on."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.api import ModelDeployment
from modelyard.planning.spec import plan_deployment
from modelyard.render.model_deployment import (
    COMPLETE_MARKER,
    PERMANENT_FAILURE,
    VLLM_VERSION,
    render_model_deployment,
)
from modelyard.render.ollama import gguf_path
from tests.realnode import tiny_gguf

pytestmark = pytest.mark.engines

VENV = Path(os.environ.get("MODELYARD_CACHE", Path.home() / ".cache" / "modelyard")) / f"vllm-{VLLM_VERSION}"
REPO, FILE, REVISION = "modelyard/tiny-GGUF", "tiny-F32.gguf", "0123456789abcdef0123456789abcdef01234567"


class Hub(http.server.BaseHTTPRequestHandler):
    """``HEAD`` and ``GET /{repo}/resolve/{revision}/{file}`` of one file, with the Hub's headers and error
    codes."""

    content = b""

    def _answer(self, body: bool) -> None:
        expected = f"/{REPO}/resolve/{REVISION}/{FILE}"
        if not self.path.startswith(f"/{REPO}/"):
            return self._error(404, "RepoNotFound", body)
        if f"/resolve/{REVISION}/" not in self.path:
            return self._error(404, "RevisionNotFound", body)
        if self.path != expected:
            return self._error(404, "EntryNotFound", body)
        etag = hashlib.sha256(self.content).hexdigest()
        self.send_response(200)
        for name, value in (
            ("Content-Length", str(len(self.content))),
            ("ETag", f'"{etag}"'),
            ("X-Linked-Etag", f'"{etag}"'),
            ("X-Linked-Size", str(len(self.content))),
            ("X-Repo-Commit", REVISION),
            ("Content-Type", "application/octet-stream"),
        ):
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(self.content)

    def _error(self, status: int, code: str, body: bool) -> None:
        message = f"{code}: {self.path}".encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if body:
            self.wfile.write(message)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (VENV / ".complete").exists():
        pytest.fail(f"vLLM {VLLM_VERSION} is not installed in {VENV}: run `make vllm` (hack/vllm.sh)")
    model = tmp_path_factory.mktemp("hub") / FILE
    tiny_gguf.write(model)
    Hub.content = model.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def download(hub: str, claim: Path, source: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the rendered download container's command and env, the claim mounted at /models (paths moved)."""
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "proto", "namespace": "team"},
            "spec": {
                "engine": "ollama",
                "model": {"name": "qwen2.5:0.5b", "source": source, "revision": REVISION},
            },
        }
    )
    children = render_model_deployment(md, plan_deployment(md.spec))
    (job,) = [c for c in children.cache if c["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"].replace("/models", str(claim)) for e in container["env"]}
    env |= {"HOME": str(claim.parent / "home"), "HF_ENDPOINT": hub}
    command = [str(VENV / "bin" / "python"), *container["command"][1:]]
    assert container["command"][0] == "python3"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    served = gguf_path(md) or ""
    return done, served.replace("/models", str(claim))


def test_the_one_gguf_file_lands_where_ollama_creates_the_model(hub: str, tmp_path: Path) -> None:
    done, served = download(hub, tmp_path / "claim", f"hf://{REPO}/{FILE}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(served).read_bytes() == Hub.content  # the path the server's GGUF variable names
    assert (Path(served).parent / COMPLETE_MARKER).exists()


@pytest.mark.parametrize(
    "source",
    [f"hf://{REPO}/missing.gguf", "hf://modelyard/no-such-repo/tiny-F32.gguf"],
)
def test_what_the_hub_does_not_have_fails_the_job_at_once(hub: str, tmp_path: Path, source: str) -> None:
    done, _ = download(hub, tmp_path / "claim", source)
    assert done.returncode == PERMANENT_FAILURE, done.stderr[-3000:]
