"""A model served across nodes: the LeaderWorkerSet that replaces the Deployment for a multi-node plan.

One LeaderWorkerSet (https://lws.sigs.k8s.io, ``leaderworkerset.x-k8s.io/v1``) per ModelDeployment; each
replica is one group of ``pipeline_parallel_size`` pods, one per node, each requesting the plan's
tensor-parallel size of GPUs. The engine runs the pinned vLLM release's own multi-node mode, without Ray:
every pod starts ``vllm serve`` with the same model arguments plus ``--nnodes``, ``--node-rank`` and
``--master-addr``/``--master-port`` (``EngineArgs.nnodes``/``node_rank``/``master_addr`` in
``engine/arg_utils.py``; ``ParallelConfig`` picks the multiprocessing backend when ``nnodes > 1``); the
leader (rank 0) runs the OpenAI API server and coordinates, the workers run ``--headless`` (no API server).
The LeaderWorkerSet's pod webhook gives every container ``LWS_LEADER_ADDRESS`` (the leader pod's DNS name
under the headless Service the LWS controller creates itself, named after the LeaderWorkerSet) and
``LWS_WORKER_INDEX``; Kubernetes expands ``$(NAME)`` references to them in the arguments.

- Probes run on the leader only (the workers serve no HTTP); a failed pod restarts the whole group
  (``restartPolicy: RecreateGroupOnPodRestart``): a pipeline with a missing stage cannot serve.
- The Service selects the leaders only (``worker-index: "0"``); the HPA scales the LeaderWorkerSet through its
  scale subresource, whose selector (``status.hpaPodSelector``) is the leaders, the pods that export vLLM's
  metrics; the PodDisruptionBudget covers every pod of every group, so a drain takes down at most one group.
- The server NetworkPolicy additionally lets the pods of this LeaderWorkerSet reach each other on any port
  (NCCL, torch.distributed's store on the master port, vLLM's ZeroMQ channels between nodes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import Manifest

if TYPE_CHECKING:
    from .model_deployment import _Context

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
#: Labels the LeaderWorkerSet controller and its pod webhook put on every pod of the set.
SET_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
#: The port torch.distributed's TCP store listens on in the leader (vLLM's ``--master-port``).
MASTER_PORT = 29500


def multi_node_args(args: list[str], *, nodes: int, pipeline: int, leader: bool) -> list[str]:
    """The engine's model arguments plus what vLLM needs to run one stage of a multi-node replica."""
    out = [*args, "--pipeline-parallel-size", str(pipeline), "--nnodes", str(nodes)]
    out += ["--master-addr", "$(LWS_LEADER_ADDRESS)", "--master-port", str(MASTER_PORT)]
    if leader:
        return [*out, "--node-rank", "0"]
    return [*out, "--node-rank", "$(LWS_WORKER_INDEX)", "--headless"]


def leader_worker_set(ctx: _Context, meta: dict[str, Any], template_labels: dict[str, str]) -> Manifest:
    """The LeaderWorkerSet serving ``ctx``'s model across ``ctx.plan.nodes_per_replica`` nodes, with the
    server's ``meta``data, its pods labelled ``template_labels`` as the Deployment's would be."""
    plan, spec = ctx.plan, ctx.spec
    nodes = plan.nodes_per_replica
    leader = ctx._pod_spec()
    worker = ctx._pod_spec()
    engine = ctx._engine_container()
    extra = list(spec.serving.extra_args)
    model_args = engine["args"][: len(engine["args"]) - len(extra)] if extra else list(engine["args"])
    leader["containers"] = [
        {
            **engine,
            "args": [
                *multi_node_args(model_args, nodes=nodes, pipeline=plan.pipeline_parallel_size, leader=True),
                *extra,
            ],
        }
    ]
    worker_container = {
        key: value
        for key, value in engine.items()
        if key not in ("startupProbe", "readinessProbe", "livenessProbe", "ports")
    }
    worker_container["args"] = [
        *multi_node_args(model_args, nodes=nodes, pipeline=plan.pipeline_parallel_size, leader=False),
        *extra,
    ]
    worker["containers"] = [worker_container]
    body: dict[str, Any] = {
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {
            "type": "RollingUpdate",
            # GPUs are scarce: replace one group at a time, never surge onto nodes that may not exist
            "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
        },
        "leaderWorkerTemplate": {
            "size": nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": {"metadata": {"labels": template_labels}, "spec": leader},
            "workerTemplate": {"metadata": {"labels": template_labels}, "spec": worker},
        },
    }
    if spec.autoscaling is None:
        body = {"replicas": spec.desired_replicas, **body}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": body}


def leader_selector(selector: dict[str, str]) -> dict[str, str]:
    """``selector`` narrowed to the leaders of the LeaderWorkerSet (the pods that serve HTTP)."""
    return {**selector, WORKER_INDEX_LABEL: "0"}


def scale_target(name: str) -> dict[str, str]:
    """The HPA's target: the LeaderWorkerSet's scale subresource (one replica = one group)."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name}


def group_peer_rules(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingress and egress rules letting the pods of LeaderWorkerSet ``name`` reach each other on any port."""
    peer = [{"podSelector": {"matchLabels": {SET_NAME_LABEL: name}}}]
    return {"from": peer}, {"to": peer}
