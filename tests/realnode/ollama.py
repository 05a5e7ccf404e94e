"""Ollama on the sandbox's real node, set up the way a user would: a tiny GGUF model on a claim, an
``engine: ollama`` ModelDeployment that serves it, and a RoutePolicy in front (tests/realnode/test_ollama.py,
the demo and the benchmarks use these).

- :func:`gguf_claim`: a claim bound to one of the sandbox's hostPath PersistentVolumes with the project's tiny
  GGUF (tests/realnode/tiny_gguf.py) at ``models/tiny.gguf``, owned by the pods' user (uid 1000): Ollama
  keeps its own copy (OLLAMA_MODELS) beside it on the claim.
- :func:`tiny_ollama_model`: the ModelDeployment, with the image ``make images`` built from Ollama's Go module
  (role ollama) in ``spec.image``, and a Modelfile whose chat template lists the request's tools, so a
  request's tools reach the model's prompt (its token count shows it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes import client

from modelyard_sandbox import images

from . import tiny_gguf
from .serving import GROUP, VERSION, _ready_pod, _wait, create

SERVED = "tiny-llama"
GGUF_FILE = "tiny.gguf"
MODELS_DIR = "models"
#: Ollama's chat template (Go template syntax): tool names, then each message, then the assistant's turn.
MODELFILE = '''TEMPLATE """{{- if .Tools }}Tools:{{ range .Tools }} {{ .Function.Name }}{{ end }}
{{ end }}{{- range .Messages }}{{ .Role }}: {{ .Content }}
{{ end }}assistant: """
PARAMETER num_predict 24
'''
#: Pulling nothing, creating a 3.5 MB model and loading it: seconds; the budget covers a busy machine.
OLLAMA_READY_TIMEOUT_S = 180.0
#: What Ollama's server logs for each OpenAI-compatible chat request it answers (gin's access log).
CHAT_LOG_LINE = '"/v1/chat/completions"'


def ollama_image() -> str:
    return images.built_image(images.OLLAMA).reference


def gguf_claim(k8s: client.ApiClient, namespace: str, name: str = "tiny-gguf") -> str:
    """A claim holding the tiny GGUF; returns the ``pvc://`` source."""
    core = client.CoreV1Api(k8s)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    volume = _wait(
        lambda: core.read_namespaced_persistent_volume_claim(name, namespace).spec.volume_name,
        60,
        f"claim {name} to bind",
    )
    root = Path(core.read_persistent_volume(volume).spec.host_path.path)
    target = root / MODELS_DIR
    target.mkdir(parents=True, exist_ok=True)
    tiny_gguf.write(target / GGUF_FILE)
    for path in (root, target, target / GGUF_FILE):
        os.chown(path, 1000, 1000)
    return f"pvc://{name}/{MODELS_DIR}"


def tiny_ollama_model(name: str, source: str, *, classification: str = "public") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "engine": "ollama",
            "image": ollama_image(),
            "model": {
                "name": SERVED,
                "source": source,
                "architecture": {
                    "parameters": tiny_gguf.parameters(),
                    "layers": tiny_gguf.LAYERS,
                    "attentionHeads": tiny_gguf.HEADS,
                    "kvHeads": tiny_gguf.KV_HEADS,
                    "headDim": tiny_gguf.EMBEDDING // tiny_gguf.HEADS,
                },
            },
            "ollama": {"ggufFile": GGUF_FILE, "quantization": "F32", "modelfile": MODELFILE},
            # the sandbox node has 2 CPUs, partly requested by CoreDNS and the gateway
            "resources": {"cpu": "200m", "memory": "2Gi"},
            "serving": {"maxModelLen": tiny_gguf.CONTEXT},
            "dataClassification": classification,
        },
    }


def serve_ollama(k8s: client.ApiClient, namespace: str, name: str) -> client.V1Pod:
    """The claim, the ModelDeployment and its Ready Ollama pod (the operator must be running)."""
    create(k8s, namespace, tiny_ollama_model(name, gguf_claim(k8s, namespace)))
    return ready_ollama_pod(k8s, namespace, name)


def ready_ollama_pod(k8s: client.ApiClient, namespace: str, name: str) -> client.V1Pod:
    selector = f"modelyard.dev/modeldeployment={name},app.kubernetes.io/component=model-server"
    return _ready_pod(k8s, namespace, selector, OLLAMA_READY_TIMEOUT_S, f"a Ready Ollama pod of {name}")


def chat_requests_logged(k8s: client.ApiClient, pod: client.V1Pod) -> int:
    """How many chat completions the Ollama pod has answered, from its own log."""
    # raw bytes: the client would hand back a repr() of a log holding the CLI's progress spinner
    response = client.CoreV1Api(k8s).read_namespaced_pod_log(
        pod.metadata.name, pod.metadata.namespace, _preload_content=False
    )
    log = response.data.decode(errors="replace")
    return sum(1 for line in log.splitlines() if CHAT_LOG_LINE in line and "| 200 |" in line)
