"""The gateway serves for real: a ModelDeployment's model server and a RoutePolicy's LiteLLM gateway run on
the sandbox's real node, and the OpenAI Python SDK gets the model server's answers through the gateway
Service, streaming included; a request without the master key is refused with 401.

The operator runs in-process (kopf's KopfRunner, as the controller tests run it): the chart's operator pod
has its own test (test_operator.py), and here the test needs to stop the operator at will."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from kubernetes import client

from modelyard.render.gateway import CONFIG_KEY, gateway_name
from modelyard_sandbox.nodeconfig import NODE_NAME
from tests.conftest import RealSandbox

from .serving import (
    SERVED,
    container_rss_mib,
    create,
    fresh_namespace,
    gateway_url,
    install_crds,
    master_key,
    operator,
    ready_gateway_pod,
    real_gpu,
    route_policy,
    serve_on_real_node,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

MODEL = "tiny"
POLICY = "edge"
ROUTE = "chat"


@dataclass(frozen=True)
class Gateway:
    url: str
    key: str = field(repr=False)  #: the master key: never in a report
    first_answer_s: float = 0.0  #: from the RoutePolicy's creation to the gateway's first answer
    server: client.V1Pod = field(repr=False, default=None)
    gateway: client.V1Pod = field(repr=False, default=None)


@pytest.fixture(scope="module")
def real_namespace(real_k8s: client.ApiClient) -> Iterator[str]:
    """One namespace for the module: its tests share one model server and one gateway."""
    with fresh_namespace(real_k8s, "gateway") as name:
        yield name


@pytest.fixture(scope="module")
def gateway(real_sandbox: RealSandbox, real_k8s: client.ApiClient, real_namespace: str) -> Iterator[Gateway]:
    install_crds(real_sandbox.kubeconfig)
    with real_gpu(real_k8s), operator(real_sandbox.kubeconfig, real_namespace):
        server = serve_on_real_node(real_k8s, real_namespace, MODEL)
        route = {
            "model": ROUTE,
            "dataClassification": "internal",
            "backends": [{"modelDeploymentRef": MODEL}],
        }
        created = time.monotonic()
        create(real_k8s, real_namespace, route_policy(POLICY, [route]))
        pod = ready_gateway_pod(real_k8s, real_namespace, POLICY)
        url, key = gateway_url(real_k8s, real_namespace, POLICY), master_key(real_k8s, real_namespace, POLICY)
        sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)
        deadline = time.monotonic() + 60
        while True:  # Ready means LiteLLM started; the first routed answer can lag it by a moment
            try:
                sdk.chat.completions.create(model=ROUTE, messages=[{"role": "user", "content": "warm"}])
                break
            except openai.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        first_answer_s = time.monotonic() - created
        yield Gateway(url, key, first_answer_s, server, pod)


def test_the_openai_sdk_gets_the_model_servers_answers_through_the_gateway(
    gateway: Gateway, real_k8s: client.ApiClient, real_namespace: str, record_property: Any
) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key, max_retries=0, timeout=30)
    # measurements, in the JUnit report (--junitxml): stdout belongs to kopf's runner while it runs
    record_property("gateway_first_answer_s", round(gateway.first_answer_s, 1))
    record_property("gateway_rss_mib", round(container_rss_mib(gateway.gateway)))
    record_property("model_server_rss_mib", round(container_rss_mib(gateway.server)))

    answer = sdk.chat.completions.create(
        model=ROUTE, messages=[{"role": "user", "content": "what is a NetworkPolicy?"}]
    )
    chunks = list(
        sdk.chat.completions.create(
            model=ROUTE, messages=[{"role": "user", "content": "stream this please"}], stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    models = [m.id for m in sdk.models.list()]

    assert gateway.server.spec.node_name == NODE_NAME
    assert gateway.gateway.spec.node_name == NODE_NAME
    # the test model server's deterministic answer, under the name it serves: it went all the way there
    assert answer.choices[0].message.content == f"{SERVED} echoes: what is a NetworkPolicy?"
    assert len(chunks) > 3, "the answer came in one piece, not as a stream"
    assert streamed == f"{SERVED} echoes: stream this please"
    assert models == [ROUTE]
    logs = client.CoreV1Api(real_k8s).read_namespaced_pod_log(gateway.server.metadata.name, real_namespace)
    assert logs.count('"POST /v1/chat/completions HTTP/1.1" 200') >= 3, logs
    config = client.CoreV1Api(real_k8s).read_namespaced_config_map(
        f"{gateway_name(POLICY)}-config", real_namespace
    )
    assert f"{MODEL}.{real_namespace}.svc:8000" in config.data[CONFIG_KEY]


def test_a_request_without_the_master_key_is_refused_with_401(gateway: Gateway) -> None:
    body = {"model": ROUTE, "messages": [{"role": "user", "content": "hello"}]}
    wrong = openai.OpenAI(base_url=gateway.url, api_key="sk-not-the-master-key", max_retries=0, timeout=30)

    anonymous = httpx.post(f"{gateway.url}/chat/completions", json=body, timeout=30)
    # LiteLLM takes any key but the master key for a virtual key and, with no database to look it up in,
    # refuses it with 400 "No connected db." (LiteLLM 1.108.7, proxy/auth/user_api_key_auth.py), not 401
    with pytest.raises(openai.BadRequestError) as refused:
        wrong.chat.completions.create(model=ROUTE, messages=[{"role": "user", "content": "hello"}])
    allowed = httpx.post(
        f"{gateway.url}/chat/completions",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {gateway.key}"},
    )

    assert anonymous.status_code == 401, anonymous.text
    assert refused.value.status_code == 400 and "No connected db" in str(refused.value)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["choices"][0]["message"]["content"] == f"{SERVED} echoes: hello"
