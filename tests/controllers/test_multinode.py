"""A model larger than a node, served across nodes: the DeepSeek-R1 example in the sandbox, whose
LeaderWorkerSet controller (built from sigs.k8s.io/lws, its webhooks called by the API server) creates the
leader and worker pods the scheduler places on the two kwok nodes of 8 H100."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.controllers.conftest import condition, create, get_md, load_example
from tests.controllers.test_model_deployment import hf_secret, phase_is

pytestmark = pytest.mark.sandbox

LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
SET_NAME = "leaderworkerset.sigs.k8s.io/name"
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


def lws_pods(k8s: Any, namespace: str, name: str) -> list[Any]:
    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=f"{SET_NAME}={name}")
    return list(pods.items)


def get_lws(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = custom.get_namespaced_custom_object(*LWS[:2], namespace, LWS[2], name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return result


def test_deepseek_r1_example_is_served_by_a_leader_worker_set_across_two_nodes(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    hf_secret(k8s, namespace)
    body = load_example("deepseek-r1-multinode.yaml")
    core = client.CoreV1Api(k8s)
    with run_operator():
        create(custom, namespace, body)
        ready = wait_for(phase_is(custom, namespace, "deepseek-r1", "Ready"), 120, "deepseek-r1 Ready")
        plan = ready["status"]["plan"]
        assert (plan["nodesPerReplica"], plan["tensorParallelSize"], plan["pipelineParallelSize"]) == (
            2,
            8,
            2,
        )
        assert plan["gpusPerReplica"] == 16
        available = condition(ready, "Available")
        assert available is not None and "1/1 groups ready" in available["message"], available

        # the Deployment is not used: one LeaderWorkerSet, its leader and worker on separate H100 nodes
        assert client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items == []
        lws = get_lws(custom, namespace, "deepseek-r1")
        assert lws is not None and lws["spec"]["leaderWorkerTemplate"]["size"] == 2
        pods = {p.metadata.labels[WORKER_INDEX]: p for p in lws_pods(k8s, namespace, "deepseek-r1")}
        assert set(pods) == {"0", "1"}
        nodes = {n.metadata.name: n for n in core.list_node().items}
        placed = {index: pod.spec.node_name for index, pod in pods.items()}
        assert placed["0"] != placed["1"], placed
        for index, pod in pods.items():
            assert (
                nodes[pod.spec.node_name].metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
            )
            container = pod.spec.containers[0]
            assert container.resources.limits["nvidia.com/gpu"] == "8"
            # LWS's pod webhook ran: the group's environment the rendered arguments refer to
            env = {e.name: e.value for e in container.env or []}
            assert env["LWS_LEADER_ADDRESS"].startswith(f"deepseek-r1-0.deepseek-r1.{namespace}"), env
            assert env["LWS_WORKER_INDEX"] == index
            args = container.args
            assert args[args.index("--node-rank") + 1] == ("0" if index == "0" else "$(LWS_WORKER_INDEX)")
            assert (container.readiness_probe is not None) == (index == "0")  # probes on the leader only
        service = core.read_namespaced_service("deepseek-r1", namespace)
        assert service.spec.selector[WORKER_INDEX] == "0"

        # two groups on two nodes: the second group's pods cannot be placed, and status says why
        custom.patch_namespaced_custom_object(
            "modelyard.dev",
            "v1alpha1",
            namespace,
            "modeldeployments",
            "deepseek-r1",
            {"spec": {"replicas": 2}},
        )

        def unschedulable() -> dict[str, Any] | None:
            cond = condition(get_md(custom, namespace, "deepseek-r1"), "Available")
            return cond if cond and cond["reason"] == "Unschedulable" else None

        available = wait_for(unschedulable, 90, "Available=False Unschedulable")
        assert available["status"] == "False"
        assert "Insufficient nvidia.com/gpu" in available["message"], available
        assert get_md(custom, namespace, "deepseek-r1")["status"]["phase"] == "Deploying"

        # deleting the ModelDeployment removes the LeaderWorkerSet and its pods (owner references)
        custom.delete_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", namespace, "modeldeployments", "deepseek-r1"
        )
        wait_for(lambda: get_lws(custom, namespace, "deepseek-r1") is None, 60, "the LeaderWorkerSet deleted")
        wait_for(lambda: lws_pods(k8s, namespace, "deepseek-r1") == [], 60, "its pods deleted")


def test_a_plan_that_moves_between_one_node_and_several_swaps_the_server(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """Llama-3.1-70B fits one H100 node (a Deployment, TP 2); 405B in bf16 needs two (a LeaderWorkerSet):
    changing the model replaces one server with the other, and back."""
    hf_secret(k8s, namespace)
    body = load_example("llama-405b-multinode.yaml")
    body["metadata"]["name"] = "llama"
    body["spec"]["model"]["source"] = "hf://meta-llama/Llama-3.1-70B-Instruct"
    body["spec"]["cache"]["size"] = "1Ti"  # one claim for both (a bound claim's size cannot change here)
    apps = client.AppsV1Api(k8s)

    def deployments() -> list[str]:
        return [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items]

    def patch_source(size: str) -> None:
        source = f"hf://meta-llama/Llama-3.1-{size}-Instruct"
        custom.patch_namespaced_custom_object(
            "modelyard.dev",
            "v1alpha1",
            namespace,
            "modeldeployments",
            "llama",
            {"spec": {"model": {"source": source}}},
        )

    with run_operator():
        create(custom, namespace, body)
        wait_for(lambda: deployments() == ["llama"], 60, "the one-node Deployment")
        assert get_lws(custom, namespace, "llama") is None
        patch_source("405B")

        wait_for(lambda: get_lws(custom, namespace, "llama") is not None, 60, "the LeaderWorkerSet")
        wait_for(lambda: deployments() == [], 60, "the Deployment deleted")
        assert get_md(custom, namespace, "llama")["status"]["plan"]["nodesPerReplica"] == 2
        patch_source("70B")
        wait_for(lambda: deployments() == ["llama"], 60, "the Deployment again")
        wait_for(lambda: get_lws(custom, namespace, "llama") is None, 60, "the LeaderWorkerSet deleted")
        wait_for(lambda: lws_pods(k8s, namespace, "llama") == [], 60, "its pods deleted")
