"""ModelDeployment controller: plan, render, apply; status that follows the download Job and the Deployment.

One reconcile function serves every trigger (the ModelDeployment's own create/update/resume, and events of
the Job and Deployment it owns), under a per-object lock, retried with back-off when the API server fails
transiently (common.reconcile_guarded). It is idempotent: children carry the spec hash and are applied only
when it differs, and status is patched only when it changed, so a pass with nothing new writes nothing.
"""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION, ModelDeployment
from modelyard.api.adapters import adapter_statuses
from modelyard.api.common import Finding
from modelyard.api.conditions import Cond, condition, summary
from modelyard.api.model_deployment import Engine, ModelDeploymentStatus, Phase, PlanStatus, SourceScheme
from modelyard.audit.model_deployment import model_deployment_findings
from modelyard.config import Settings
from modelyard.errors import Infeasible, UserError
from modelyard.kube.client import ApiError, Unreachable
from modelyard.planning.capacity import Plan
from modelyard.planning.spec import plan_deployment
from modelyard.render import leader_worker_set as lws
from modelyard.render.common import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, label_selector, owner_label
from modelyard.render.model_deployment import (
    DOWNLOADER,
    SERVER,
    Images,
    ModelDeploymentChildren,
    cache_claim_name,
    endpoint,
    render_model_deployment,
)

from .common import READY, ObjectLocks, Owner, reconcile_guarded
from .inference_pool import sync_inference_pool
from .metrics import instrumented

API_VERSION = f"{GROUP}/{VERSION}"
KIND = ModelDeployment.KIND
PLURAL = ModelDeployment.PLURAL
OWNER_LABEL = owner_label(KIND)
MANAGED: dict[str, Any] = {MANAGED_BY_LABEL: MANAGED_BY, OWNER_LABEL: kopf.PRESENT}

PLANNED, MODEL_CACHED, AVAILABLE = "Planned", "ModelCached", "Available"

_locks = ObjectLocks()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_model_deployment(meta: kopf.Meta, memo: kopf.Memo, retry: int, **_: Any) -> None:
    await reconcile(memo, str(meta["namespace"]), str(meta["name"]), strict=True, retry=retry)


@kopf.on.startup()
async def track_pods(memo: kopf.Memo, **_: Any) -> None:
    memo.unschedulable_pods = UnschedulablePods()


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "pods", labels=MANAGED)
@kopf.on.event("inference.networking.k8s.io", "v1", "inferencepools", labels=MANAGED)
@kopf.on.event("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", labels=MANAGED)
async def on_child(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A child changed: reconcile its owner when something its status follows changed — the Job's or the
    Deployment's status or spec hash, or whether the scheduler can place a serving pod. The watches carry
    a server-side label selector (runtime.py), so only modelyard's own objects reach here."""
    meta = body.get("metadata", {})
    owner, namespace, name = meta.get("labels", {}).get(OWNER_LABEL), meta.get("namespace"), meta.get("name")
    if not owner or not namespace or not name:
        return
    deleted = event.get("type") == "DELETED"
    kind = body.get("kind")
    if kind == "Pod":
        changed = memo.unschedulable_pods.observe(namespace, owner, body, deleted=deleted)
    elif deleted:
        memo.watched_children.drop(kind, namespace, name)
        changed = True
    else:
        changed = memo.watched_children.put(dict(body))
    if changed:
        memo.work.add((KIND, namespace, owner), lambda: reconcile(memo, namespace, owner, strict=False))


class UnschedulablePods:
    """Serving pods the scheduler cannot place, with its message, by owner: kept from pod events, so a
    reconcile never lists pods and a pod event reconciles only when this changes."""

    def __init__(self) -> None:
        self._by_owner: dict[tuple[str, str], dict[str, str]] = {}

    def observe(self, namespace: str, owner: str, body: kopf.Body, *, deleted: bool) -> bool:
        """Record one pod's event; True when whether it can be placed (or why not) changed."""
        meta = body.get("metadata", {})
        if meta.get("labels", {}).get(COMPONENT_LABEL) != SERVER:
            return False  # download pods: their Job's events tell the story
        key, name = (namespace, owner), meta["name"]
        pods = self._by_owner.get(key, {})
        before = pods.get(name)
        message = None if deleted else _unschedulable_message(body)
        if message is None:
            pods.pop(name, None)
        else:
            pods[name] = message
        if pods:
            self._by_owner[key] = pods
        else:
            self._by_owner.pop(key, None)
        return before != message

    def message(self, namespace: str, owner: str) -> str | None:
        pods = self._by_owner.get((namespace, owner))
        return next(iter(sorted(pods.items())))[1] if pods else None


def _unschedulable_message(pod: kopf.Body) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message", ""))
    return None


@instrumented("ModelDeployment")
async def reconcile(memo: kopf.Memo, namespace: str, name: str, *, strict: bool, retry: int = 0) -> None:
    """Bring one ModelDeployment's children and status in line with its spec.

    ``strict`` (the object's own handlers) reads every child and turns an invalid spec into a
    PermanentError for kopf. A child's event (not strict) reads only the Job and the Deployment whose state
    it follows, and gives way to a reconcile of the same object already waiting to run.
    """

    async def one_pass() -> _Reconcile | None:
        # The latest body seen, the answer to the last status write included (another trigger may have just
        # written one); the API server's when none is kept yet (a child's event before the object's own).
        current = memo.latest.get(KIND, namespace, name) or await memo.kube.get(
            API_VERSION, KIND, namespace, name
        )
        if current is None or current["metadata"].get("deletionTimestamp"):
            memo.known_children.forget(KIND, namespace, name)
            return None
        owner = _Reconcile(memo, current)
        await owner.reconcile(strict=strict)
        return owner

    async def again() -> None:
        await reconcile(memo, namespace, name, strict=False)

    key = (KIND, namespace, name)
    await reconcile_guarded(
        memo.retries, _locks, key, one_pass, strict=strict, retry=retry, again=again, passes=memo.passes
    )


#: children whose state the status does not follow: a child's event need not read them again
_UNREAD_KINDS = frozenset(
    {"ServiceAccount", "Service", "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget"}
    | {"HorizontalPodAutoscaler"}
)


class _Reconcile(Owner[ModelDeployment]):
    model = ModelDeployment
    #: pod counts move at every step of a rollout: written with the next phase or condition change
    lagging = frozenset({"replicas", "readyReplicas"})

    def __init__(self, memo: kopf.Memo, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        super().__init__(
            memo.kube,
            body,
            quiet_reasons=_QUIET_REASONS,
            known=memo.known_children.of(KIND, meta["namespace"], meta["name"]),
            watched=memo.watched_children,
            latest=memo.latest,
        )
        self.settings: Settings = memo.settings
        self.pods: UnschedulablePods = memo.unschedulable_pods
        self.findings: list[Finding] | None = None  # set once the spec parses
        self.md: ModelDeployment | None = None
        #: the InferencePool's conditions, shown beside the others and never holding back Ready
        self.pool: list[Cond] = []

    async def invalid(self, ready: Cond) -> None:
        await self._finish([ready], phase=Phase.FAILED)

    async def run(self, md: ModelDeployment, *, strict: bool) -> None:
        self.findings = model_deployment_findings(md.spec)
        self.md = md
        try:
            plan = plan_deployment(md.spec)
        except Infeasible as exc:
            # Ollama without GPUs is planned against spec.resources.memory: no GPU is short
            cpu = md.spec.engine is Engine.OLLAMA and md.spec.gpu is None
            short = "InsufficientMemory" if cpu else "InsufficientGPUMemory"
            await self._finish([Cond.false(PLANNED, short, str(exc))], phase=Phase.FAILED)
            return
        except UserError as exc:
            await self._finish([Cond.false(PLANNED, "InvalidSpec", str(exc))], phase=Phase.FAILED)
            return
        planned = Cond.true(PLANNED, "Planned", _plan_message(plan))
        images = Images(self.settings.vllm_image, self.settings.aws_cli_image, self.settings.ollama_image)
        children = render_model_deployment(md, plan, images)
        trust = () if strict else _UNREAD_KINDS
        # the ServiceAccount, Service and NetworkPolicies together, then the claim and the Job together: no
        # download pod starts before the policies that fence it exist
        failed = await self.apply_children(children.base, trust_known=trust, together=True)
        if failed is None:
            failed = await self.apply_children(children.cache, trust_known=trust, together=True)
        if failed is not None:
            await self._finish([planned, failed], phase=Phase.FAILED, plan=plan)
            return
        self.pool = await sync_inference_pool(self, md, allowed=self.settings.inference_pools)
        cached = await self._cache_condition(md, children)
        if cached.status != "True":
            phase = Phase.FAILED if cached.reason == "DownloadFailed" else Phase.DOWNLOADING
            waiting = Cond.false(AVAILABLE, "WaitingForCache", "weights not cached yet")
            await self._finish([planned, cached, waiting], phase=phase, plan=plan)
            return
        previous = condition(self.status, MODEL_CACHED) or {}
        # once, when the cache becomes ready; a first generation has had one source only, and needs no LIST
        # (the API server matches the selector against every Job in the namespace: a thousand per model)
        if strict or (
            (self.generation or 1) > 1
            and (previous.get("status"), previous.get("message")) != ("True", cached.message)
        ):
            await self._remove_stale_jobs(children)
        failed = await self.apply_children(children.serving, trust_known=trust)
        if failed is not None:
            await self._finish([planned, cached, failed], phase=Phase.FAILED, plan=plan)
            return
        failed = await self._remove_other_server(plan)
        if failed is not None:
            await self._finish([planned, cached, failed], phase=Phase.FAILED, plan=plan)
            return
        if plan.multi_node:
            server = self.children.get((lws.KIND, self.name), {})
            available, replicas = lws_availability(server, md.spec.desired_replicas)
        else:
            deployment = self.children.get(("Deployment", self.name), {})
            available, replicas = _availability(deployment, md.spec.desired_replicas)
        if available.status != "True":
            available = await self._unschedulable() or available
        phase = Phase.READY if available.status == "True" else Phase.DEPLOYING
        await self._finish([planned, cached, available], phase=phase, plan=plan, replicas=replicas)

    # --- children -------------------------------------------------------------------------------
    async def _cache_condition(self, md: ModelDeployment, children: ModelDeploymentChildren) -> Cond:
        if md.spec.model.scheme is SourceScheme.PVC:
            claim = cache_claim_name(md)
            if await self.kube.get("v1", "PersistentVolumeClaim", self.namespace, claim) is None:
                return Cond.false(
                    MODEL_CACHED, "ClaimNotFound", f"PersistentVolumeClaim {claim} does not exist"
                )
            return Cond.true(MODEL_CACHED, "ExistingClaim", f"weights on PersistentVolumeClaim {claim}")
        job_name = next(o["metadata"]["name"] for o in children.cache if o["kind"] == "Job")
        job = self.children.get(("Job", job_name), {})
        return _job_condition(job_name, job)

    async def _remove_other_server(self, plan: Plan) -> Cond | None:
        """A plan that moved between one node and several: delete the Deployment a LeaderWorkerSet replaced,
        or the LeaderWorkerSet a Deployment replaced (its pods go with it), if one exists (the watch cache
        holds both kinds; without it, a GET)."""
        api_version, kind = ("apps/v1", "Deployment") if plan.multi_node else (lws.API_VERSION, lws.KIND)
        try:
            if self.watched is not None:
                if self.watched.get(kind, self.namespace, self.name) is None:
                    return None
            elif await self.kube.get(api_version, kind, self.namespace, self.name) is None:
                return None
            await self.kube.delete(api_version, kind, self.namespace, self.name)
        except ApiError as exc:
            if exc.status != 404:  # no LeaderWorkerSet CRD: nothing of that kind can exist
                return self.failed(READY, f"{kind}Failed", f"{kind} {self.name}", exc)
        except Unreachable as exc:
            return self.failed(READY, f"{kind}Failed", f"{kind} {self.name}", exc)
        if self.watched is not None:
            self.watched.drop(kind, self.namespace, self.name)
        return None

    async def _unschedulable(self) -> Cond | None:
        """The scheduler's reason when a serving pod cannot be placed (e.g. not enough GPUs)."""
        message = self.pods.message(self.namespace, self.name)
        return None if message is None else Cond.false(AVAILABLE, "Unschedulable", message)

    async def _remove_stale_jobs(self, children: ModelDeploymentChildren) -> None:
        """Download Jobs of an earlier source or revision, once the current one has cached the weights."""
        current = {o["metadata"]["name"] for o in children.cache if o["kind"] == "Job"}
        selector = label_selector({OWNER_LABEL: self.name, COMPONENT_LABEL: DOWNLOADER})
        for job in await self.kube.list("batch/v1", "Job", self.namespace, labels=selector):
            if job["metadata"]["name"] not in current:
                await self.kube.delete("batch/v1", "Job", self.namespace, job["metadata"]["name"])

    # --- status ---------------------------------------------------------------------------------
    async def _finish(
        self,
        conds: list[Cond],
        *,
        phase: Phase,
        plan: Plan | None = None,
        replicas: tuple[int, int] | None = None,
    ) -> None:
        status = ModelDeploymentStatus(phase=phase, endpoint=endpoint(self.name, self.namespace))
        if plan is not None:
            status.plan = PlanStatus.model_validate(plan.to_status())
        if replicas is not None:
            status.replicas, status.ready_replicas = replicas
        if self.findings is not None:
            status.findings = self.findings
        ready = conds[-1] if conds[-1].type == "Ready" else summary(conds)
        if self.md is not None:
            served = ready.status == "True"
            why = _served_message(replicas) if served else f"{ready.reason}: {ready.message}"
            status.adapters = adapter_statuses(self.md.spec.adapters, served=served, why=why)
        await self.write_status([*conds, *self.pool, ready], status)


#: steps of progress: no Event (the Job's and Deployment's own Events tell them; status.conditions shows them)
_QUIET_REASONS = {"Downloading", "WaitingForCache", "Progressing", "Scaling", "NoParent"}


def _served_message(replicas: tuple[int, int] | None) -> str:
    ready = replicas[1] if replicas is not None else 0
    return f"loaded at start (--lora-modules) by {ready} ready replica{'s' if ready != 1 else ''}"


def _plan_message(plan: Plan) -> str:
    layout = f"tensor-parallel {plan.tensor_parallel_size}"
    if plan.multi_node:
        layout += f" x pipeline-parallel {plan.pipeline_parallel_size} on {plan.nodes_per_replica} nodes"
    return (
        f"{plan.gpus_per_replica} x {plan.gpu_type} per replica "
        f"({layout}); {plan.weights_gib:.1f} GiB weights; "
        f"{plan.max_concurrent_sequences} concurrent {plan.max_model_len}-token sequences"
    )


def lws_availability(server: dict[str, Any], desired: int) -> tuple[Cond, tuple[int, int]]:
    """Available when the LeaderWorkerSet's own ``Available`` condition is True (its controller sets it
    when every group is ready at the current revision) and ``readyReplicas`` (groups whose leader and workers
    are all ready) reaches the wanted groups; its condition's message otherwise. ``replicas`` counts groups,
    as the LeaderWorkerSet does."""
    status = server.get("status") or {}
    replicas, ready = status.get("replicas", 0), status.get("readyReplicas", 0)
    wanted = (server.get("spec") or {}).get("replicas", desired)
    own = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), None)
    if own is not None and own.get("status") == "True" and ready >= max(wanted, 1):
        message = f"{ready}/{wanted} groups ready (LeaderWorkerSet {own.get('reason', 'Available')})"
        return Cond.true(AVAILABLE, "MinimumReplicasAvailable", message), (replicas, ready)
    current = next((c for c in status.get("conditions") or [] if c.get("status") == "True"), None)
    why = f": {current['message']}" if current is not None and current.get("message") else ""
    message = f"{ready}/{wanted} groups ready{why}"
    return Cond.false(AVAILABLE, "Progressing", message), (replicas, ready)


def _job_condition(name: str, job: dict[str, Any]) -> Cond:
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Complete" and cond.get("status") == "True":
            return Cond.true(MODEL_CACHED, "Downloaded", f"Job {name} cached the weights")
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            reason = cond.get("reason") or "Failed"
            return Cond.false(
                MODEL_CACHED,
                "DownloadFailed",
                f"Job {name} failed: {reason}: {cond.get('message', '')}".strip(": "),
            )
    # one message while the download runs (a pod starting or running is not news); a failed attempt is news
    failed = status.get("failed", 0)
    retried = f" ({failed} failed attempt{'s' if failed != 1 else ''}, retrying)" if failed else ""
    return Cond.false(MODEL_CACHED, "Downloading", f"Job {name} is downloading the weights{retried}")


def _availability(deployment: dict[str, Any], desired: int) -> tuple[Cond, tuple[int, int]]:
    """Available once the Deployment's rollout is complete, by the rule ``kubectl rollout status`` uses: the
    controller has seen the current spec, every replica runs the current template, none of an old one is
    left, and all are ready. A just-changed spec therefore reads Progressing until the new pods are up.
    The message stays the same while a rollout progresses, so status is not rewritten at every step."""
    status = deployment.get("status") or {}
    replicas, ready = status.get("replicas", 0), status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    wanted = (deployment.get("spec") or {}).get("replicas", desired)
    observed = status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
    rolled_out = observed and updated >= wanted and replicas <= updated
    if rolled_out and ready >= max(wanted, 1):
        message = f"{ready}/{wanted} replicas ready"
        return Cond.true(AVAILABLE, "MinimumReplicasAvailable", message), (replicas, ready)
    # "rollout in progress" only while pods of an earlier template may still serve; with none ready (a new
    # Deployment at any step of its first rollout) the count says it all, in one message
    counted = rolled_out or ready == 0
    message = f"{ready}/{wanted} replicas ready" if counted else f"rollout in progress ({wanted} wanted)"
    return Cond.false(AVAILABLE, "Progressing", message), (replicas, ready)
