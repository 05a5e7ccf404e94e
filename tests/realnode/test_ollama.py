"""engine: ollama for real: Ollama (built from its Go module at the pinned release, CPU) serves the project's
tiny GGUF model from a claim on the sandbox's real node, a RoutePolicy's LiteLLM gateway routes to it, and
real clients get its answers through the gateway: the OpenAI Python SDK (chat, streaming, a request with
tools), LangChain's ChatOpenAI and a two-node LangGraph graph.

Each client reads the gateway the way the README tells users to: ``OPENAI_BASE_URL`` (the gateway Service,
``/v1``) and ``OPENAI_API_KEY`` (the master key, from the RoutePolicy's Secret), in the environment, nothing
passed in code. Every answer must come from the Ollama pod: its own log counts each request, and the usage
the gateway returns (the tokens Ollama's tokenizer counted and the model generated) is non-zero."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

import openai
import pytest
from kubernetes import client

from modelyard.render.gateway import MASTER_KEY_SECRET_KEY, master_key_secret
from modelyard_sandbox.nodeconfig import NODE_NAME
from tests.conftest import RealSandbox

from .ollama import chat_requests_logged, serve_ollama
from .serving import (
    create,
    fresh_namespace,
    gateway_url,
    install_crds,
    operator,
    ready_gateway_pod,
    route_policy,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

MODEL = "tiny-ollama"
POLICY = "prototype"
ROUTE = "chat"
FIRST_ANSWER_TIMEOUT_S = 90.0
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass(frozen=True)
class Prototype:
    url: str
    key: str = field(repr=False)  #: the master key: never in a report
    server: client.V1Pod = field(repr=False)
    gateway: client.V1Pod = field(repr=False)
    start_to_first_answer_s: float


@pytest.fixture(scope="module")
def prototype(real_sandbox: RealSandbox, real_k8s: client.ApiClient) -> Iterator[Prototype]:
    """The tiny model on Ollama and a gateway in front of it, until the module's tests are done."""
    install_crds(real_sandbox.kubeconfig)
    with (
        fresh_namespace(real_k8s, "ollama") as namespace,
        operator(real_sandbox.kubeconfig, namespace),
    ):
        started = time.monotonic()
        server = serve_ollama(real_k8s, namespace, MODEL)
        route = {"model": ROUTE, "dataClassification": "public", "backends": [{"modelDeploymentRef": MODEL}]}
        create(real_k8s, namespace, route_policy(POLICY, [route]))
        gateway = ready_gateway_pod(real_k8s, namespace, POLICY)
        url = gateway_url(real_k8s, namespace, POLICY)
        # as the README says: the master key from the RoutePolicy's Secret
        secret = client.CoreV1Api(real_k8s).read_namespaced_secret(master_key_secret(POLICY), namespace)
        key = base64.b64decode(secret.data[MASTER_KEY_SECRET_KEY]).decode()
        sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)
        deadline = time.monotonic() + FIRST_ANSWER_TIMEOUT_S
        while True:  # Ready means LiteLLM started; the first routed answer can lag it by a moment
            try:
                sdk.chat.completions.create(
                    model=ROUTE, messages=[{"role": "user", "content": "warm"}], max_tokens=2
                )
                break
            except openai.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield Prototype(url, key, server, gateway, time.monotonic() - started)


@pytest.fixture
def client_env(prototype: Prototype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", prototype.url)
    monkeypatch.setenv("OPENAI_API_KEY", prototype.key)


def test_the_openai_sdk_gets_ollamas_answers_through_the_gateway(
    prototype: Prototype, real_k8s: client.ApiClient, client_env: None, record_property: Any
) -> None:
    record_property("ollama_start_to_first_answer_s", round(prototype.start_to_first_answer_s, 1))
    sdk = openai.OpenAI(max_retries=0, timeout=60)
    before = chat_requests_logged(real_k8s, prototype.server)

    answer = sdk.chat.completions.create(
        model=ROUTE,
        messages=[{"role": "user", "content": "hello model, what is a pod?"}],
        max_tokens=12,
        temperature=0,  # greedy: the same answer every run
    )
    chunks = list(
        sdk.chat.completions.create(
            model=ROUTE,
            messages=[{"role": "user", "content": "stream a reply"}],
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert prototype.server.spec.node_name == NODE_NAME and prototype.gateway.spec.node_name == NODE_NAME
    engine = prototype.server.spec.containers[0]
    assert engine.security_context.read_only_root_filesystem and engine.security_context.run_as_non_root
    assert engine.readiness_probe._exec.command[-1].startswith("ollama ps")  # loaded, not only listening
    assert chat_requests_logged(real_k8s, prototype.server) == before + 2, "Ollama's log lacks the requests"
    assert answer.choices[0].message.content, answer
    assert answer.usage is not None and answer.usage.prompt_tokens > 5
    assert answer.usage.completion_tokens == 12 and answer.choices[0].finish_reason == "length"
    # one event per generated token (a random model's token can be part of a UTF-8 character: empty text)
    streamed = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len(streamed) > 3 and "".join(streamed), f"the answer came in one piece, not as a stream: {chunks}"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0 and usage[-1].prompt_tokens > 0


def test_a_request_with_tools_reaches_the_model_with_its_tools(
    prototype: Prototype, real_k8s: client.ApiClient, client_env: None
) -> None:
    """The tiny model's chat template writes the request's tool names into the prompt: the same message costs
    more prompt tokens with the tool than without, so the tool definition went through the gateway into
    Ollama's template (a random model answers with text, not a call: finish_reason length)."""
    sdk = openai.OpenAI(max_retries=0, timeout=60)
    messages: list[Any] = [{"role": "user", "content": "the weather in Paris?"}]
    before = chat_requests_logged(real_k8s, prototype.server)

    plain = sdk.chat.completions.create(model=ROUTE, messages=messages, max_tokens=4, temperature=0)
    with_tools = sdk.chat.completions.create(
        model=ROUTE, messages=messages, max_tokens=4, temperature=0, tools=[WEATHER_TOOL], tool_choice="auto"
    )

    assert chat_requests_logged(real_k8s, prototype.server) == before + 2
    assert plain.usage is not None and with_tools.usage is not None
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens, (plain.usage, with_tools.usage)
    assert with_tools.choices[0].finish_reason in ("length", "stop", "tool_calls")


def test_langchain_chat_openai_gets_an_answer(
    prototype: Prototype, real_k8s: client.ApiClient, client_env: None
) -> None:
    from langchain_openai import ChatOpenAI  # noqa: PLC0415 (imports take a second; only this test needs it)

    before = chat_requests_logged(real_k8s, prototype.server)
    llm = ChatOpenAI(model=ROUTE, max_tokens=10, temperature=0, max_retries=0, timeout=60)

    reply = llm.invoke("Say hello to the cluster.")

    assert chat_requests_logged(real_k8s, prototype.server) == before + 1
    assert isinstance(reply.content, str) and reply.content
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0 and reply.usage_metadata["output_tokens"] > 0


class DraftState(TypedDict):
    question: str
    draft: str
    review: str
    tokens: int


def test_a_two_node_langgraph_graph_is_answered_by_ollama(
    prototype: Prototype, real_k8s: client.ApiClient, client_env: None
) -> None:
    from langchain_openai import ChatOpenAI  # noqa: PLC0415
    from langgraph.graph import END, START, StateGraph  # noqa: PLC0415

    llm = ChatOpenAI(model=ROUTE, max_tokens=8, temperature=0, max_retries=0, timeout=60)

    def draft(state: DraftState) -> dict[str, Any]:
        reply = llm.invoke(f"Draft an answer: {state['question']}")
        return {"draft": str(reply.content), "tokens": (reply.usage_metadata or {}).get("total_tokens", 0)}

    def review(state: DraftState) -> dict[str, Any]:
        reply = llm.invoke(f"Review this draft: {state['draft']}")
        used = (reply.usage_metadata or {}).get("total_tokens", 0)
        return {"review": str(reply.content), "tokens": state["tokens"] + used}

    graph = StateGraph(DraftState)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", END)
    before = chat_requests_logged(real_k8s, prototype.server)

    result = graph.compile().invoke(
        {"question": "what is a gateway?", "draft": "", "review": "", "tokens": 0}
    )

    assert chat_requests_logged(real_k8s, prototype.server) == before + 2
    assert result["draft"] and result["review"] and result["tokens"] > 16
