"""engine: ollama through the real API server and the operator (kwok nodes: nothing runs Ollama here; the
real node's tests do, in tests/realnode/test_ollama.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.controllers.conftest import ROOT, api_error, condition, create, get_md, kubectl

pytestmark = pytest.mark.sandbox

PROTOTYPE = yaml.safe_load((ROOT / "examples" / "lifecycle" / "prototype-ollama.yaml").read_text())


def prototype(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(PROTOTYPE)
    del body["metadata"]["namespace"]
    body["spec"].update(spec)
    return body


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"engine": "vllm"}, "gpu: required for engines vllm and nim"),
        ({"engine": "vllm", "gpu": {"type": "nvidia-l4"}}, "ollama:// sources need engine: ollama"),
        ({"serving": {"quantization": "awq"}}, "quantization, kvCacheDtype and extraArgs are vLLM/NIM"),
        ({"model": {"name": "m", "source": "hf://Qwen/Qwen2.5-7B-Instruct"}}, "engine ollama serves"),
        ({"autoscaling": {"maxReplicas": 2}}, "Ollama exports no in-flight request metric"),
        ({"ollama": {"modelfile": "from /etc/shadow"}}, "modelyard writes FROM"),
    ],
)
def test_the_api_server_refuses_what_cannot_work(
    custom: Any, namespace: str, crds: None, spec: dict[str, Any], message: str
) -> None:
    error = api_error(lambda: create(custom, namespace, prototype(**spec)))
    assert error.status == 422 and message in error.body


def test_prototype_is_planned_on_cpu_and_pulled(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    big = prototype(model={"name": "llama3.3:70b", "source": "ollama://llama3.3:70b"})
    big["metadata"]["name"] = "too-big"
    with run_operator():
        create(custom, namespace, prototype())
        create(custom, namespace, big)
        planned = wait_for(
            lambda: condition(get_md(custom, namespace, "qwen-proto"), "Planned"), 30, "Planned"
        )
        refused = wait_for(lambda: condition(get_md(custom, namespace, "too-big"), "Planned"), 30, "Planned")
        jobs = wait_for(
            lambda: client.BatchV1Api(k8s).list_namespaced_job(namespace).items, 30, "the download Job"
        )
    assert planned["status"] == "True"
    plan = get_md(custom, namespace, "qwen-proto")["status"]["plan"]
    assert plan["gpusPerReplica"] == 0 and plan["weightsGiB"] == 4.38 and plan["maxConcurrentSequences"] == 1
    assert (refused["status"], refused["reason"]) == ("False", "InsufficientMemory")
    assert "needs 43." in refused["message"] and "16Gi holds 16.0 GiB" in refused["message"]
    (job,) = jobs
    (container,) = job.spec.template.spec.containers
    assert "ollama pull" in container.command[2]
    assert {e.name: e.value for e in container.env}["PULLED"] == "qwen2.5:7b"


def test_kubectl_explain_describes_the_ollama_fields(sandbox: Any, crds: None) -> None:
    text = kubectl(sandbox, "explain", "modeldeployments.spec.ollama")
    assert "numParallel" in text and "kvCacheType" in text and "modelfile" in text and "ggufFile" in text
    assert "optional for ollama" in kubectl(sandbox, "explain", "modeldeployments.spec.gpu")
