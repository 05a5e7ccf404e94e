"""GPU workloads are scheduled onto the simulated GPU nodes and become Ready; oversized ones stay Pending."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.sandbox

GPU = "nvidia.com/gpu"


def _gpu_deployment(name: str, gpus: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="server",
        image="registry.k8s.io/pause:3.10",
        resources=client.V1ResourceRequirements(limits={GPU: str(gpus)}),
    )
    pod = client.V1PodSpec(
        containers=[container],
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")],
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod),
        ),
    )


@pytest.fixture
def gpu_nodes(k8s: client.ApiClient) -> list[client.V1Node]:
    nodes = client.CoreV1Api(k8s).list_node(label_selector="nvidia.com/gpu.present=true").items
    if not nodes:
        pytest.skip("the cluster has no nodes labelled nvidia.com/gpu.present=true")
    return list(nodes)


def test_gpu_deployment_lands_on_gpu_node_and_becomes_ready(
    k8s: client.ApiClient, namespace: str, gpu_nodes: list[client.V1Node], wait_for: Callable[..., Any]
) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _gpu_deployment("two-gpus", 2))

    wait_for(
        lambda: apps.read_namespaced_deployment("two-gpus", namespace).status.ready_replicas == 1,
        45,
        "Deployment two-gpus to have 1 ready replica",
    )
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=two-gpus").items
    assert pod.status.phase == "Running"
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert int(node.status.allocatable[GPU]) >= 2


def test_deployment_asking_for_too_many_gpus_stays_pending(
    k8s: client.ApiClient, namespace: str, gpu_nodes: list[client.V1Node], wait_for: Callable[..., Any]
) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    most = max(int(n.status.allocatable.get(GPU, "0")) for n in gpu_nodes)
    apps.create_namespaced_deployment(namespace, _gpu_deployment("too-big", most + 1))

    def failed_scheduling() -> list[client.CoreV1Event]:
        events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
        return [e for e in events if e.involved_object.kind == "Pod"]

    (event, *_) = wait_for(failed_scheduling, 45, "a FailedScheduling event")
    assert f"Insufficient {GPU}" in event.message
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=too-big").items
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name
