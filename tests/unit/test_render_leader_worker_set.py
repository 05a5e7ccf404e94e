"""A multi-node plan renders a LeaderWorkerSet instead of a Deployment (render/leader_worker_set.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.api.model_deployment import ModelDeployment
from modelyard.manifests import load
from modelyard.planning.spec import plan_deployment
from modelyard.render.leader_worker_set import MASTER_PORT, SET_NAME_LABEL, WORKER_INDEX_LABEL
from modelyard.render.model_deployment import render_model_deployment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _render(name: str, **spec: Any) -> dict[str, dict[str, Any]]:
    (manifest,) = [m for m in load(EXAMPLES / name) if isinstance(m.obj, ModelDeployment)]
    md = manifest.obj
    assert isinstance(md, ModelDeployment)
    md = ModelDeployment.model_validate(
        {
            **md.model_dump(by_alias=True, exclude_none=True),
            "metadata": {"name": md.metadata.name, "namespace": "ml"},
            "spec": {**md.spec.model_dump(by_alias=True, exclude_none=True), **spec},
        }
    )
    children = render_model_deployment(md, plan_deployment(md.spec))
    return {o["kind"]: o for o in children.all()} | {
        f"NetworkPolicy/{o['metadata']['name']}": o for o in children.all() if o["kind"] == "NetworkPolicy"
    }


def test_multi_node_plan_is_a_leader_worker_set_with_one_pod_per_node() -> None:
    objs = _render("deepseek-r1-multinode.yaml")
    assert "Deployment" not in objs
    lws = objs["LeaderWorkerSet"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and lws["spec"]["replicas"] == 1
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    for container in (leader, worker):
        assert container["command"] == ["vllm", "serve"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        args = container["args"]
        assert args[args.index("--tensor-parallel-size") + 1] == "8"
        assert args[args.index("--pipeline-parallel-size") + 1] == "2"
        assert args[args.index("--nnodes") + 1] == "2"
        assert args[args.index("--master-addr") + 1] == "$(LWS_LEADER_ADDRESS)"
        assert args[args.index("--master-port") + 1] == str(MASTER_PORT)
    assert (
        leader["args"][leader["args"].index("--node-rank") + 1] == "0" and "--headless" not in leader["args"]
    )
    assert worker["args"][worker["args"].index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
    assert "--headless" in worker["args"]
    # probes and the HTTP port on the leader only; /dev/shm on both
    assert {"startupProbe", "readinessProbe", "livenessProbe", "ports"} <= set(leader)
    assert not {"startupProbe", "readinessProbe", "livenessProbe", "ports"} & set(worker)
    for side in ("leaderTemplate", "workerTemplate"):
        volumes = {v["name"]: v for v in template[side]["spec"]["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert template[side]["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"


def test_service_selects_leaders_and_the_weights_claim_is_shared_across_nodes() -> None:
    objs = _render("deepseek-r1-multinode.yaml")
    assert objs["Service"]["spec"]["selector"][WORKER_INDEX_LABEL] == "0"
    assert objs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_group_pods_may_reach_each_other_and_nothing_else_changes() -> None:
    policy = _render("deepseek-r1-multinode.yaml")["NetworkPolicy/deepseek-r1"]["spec"]
    peer = [{"podSelector": {"matchLabels": {SET_NAME_LABEL: "deepseek-r1"}}}]
    assert {"from": peer} in policy["ingress"] and {"to": peer} in policy["egress"]
    single = _render("qwen3-235b-fp8.yaml")
    assert "LeaderWorkerSet" not in single and "Deployment" in single
    assert all(
        "to" not in rule or rule["to"] != peer
        for rule in single["NetworkPolicy/qwen3-235b"]["spec"]["egress"]
    )
    assert WORKER_INDEX_LABEL not in single["Service"]["spec"]["selector"]


def test_autoscaling_targets_the_leader_worker_set_and_the_pdb_covers_every_group_pod() -> None:
    objs = _render(
        "llama-405b-multinode.yaml",
        replicas=None,
        autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetInFlightRequests": 16},
    )
    assert objs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "llama-405b",
    }
    assert "replicas" not in objs["LeaderWorkerSet"]["spec"]  # the HPA owns it
    pdb = objs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and WORKER_INDEX_LABEL not in pdb["selector"]["matchLabels"]
