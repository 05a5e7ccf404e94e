"""What every controller does the same way, the reconcile skeleton:

1. ``reconcile_guarded``: one pass per object at a time (ObjectLocks), from the object's latest body
   (LatestBodies, or a GET); a transient API failure anywhere in the pass is retried with back-off
   (errors.py says which are transient and how each trigger retries);
2. ``Owner.reconcile``: parse the body into its API model once; an invalid spec becomes
   ``Ready=False/InvalidSpec`` with a Warning Event naming the field, and a PermanentError for kopf;
3. the controller's ``run``: gather, compute conditions with pure functions, ``apply_children`` (only those
   whose spec hash changed; a refused child becomes a condition naming its kind);
4. ``write_status``: the typed status model, written only when it changed, with a Warning Event per
   condition that turned False and a Normal one when the object becomes Ready.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable
from typing import Any, ClassVar, Generic, TypeVar, cast

import kopf
from pydantic import ValidationError

from modelyard.api.common import ApiModel, Resource
from modelyard.api.conditions import Cond, merge_conditions, now_rfc3339, summary
from modelyard.kube import ApiError, Kube, Unreachable
from modelyard.manifests import format_validation_error
from modelyard.render.common import SPEC_HASH_ANNOTATION, Manifest

from .errors import Failure, RetryLater, backoff, classify

READY = "Ready"
INVALID_SPEC = "InvalidSpec"
MAX_EVENT_MESSAGE = 1024
#: the end of a condition message whose cause is retried
RETRYING = "; retrying"

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=Resource)


class ObjectLocks:
    """One lock per object, so two triggers for one object (its own event and a child's) never reconcile it
    at the same time, and a burst of triggers costs at most two passes: a trigger that may ``coalesce``
    returns at once when another is already waiting for that object (the waiter reads the object's latest
    body when its turn comes, so it sees whatever the later trigger saw). This is a controller work queue's
    de-duplication, for kopf's one-task-per-event model.

    Locks belong to the running event loop (a restarted operator runs a new one; an asyncio.Lock used on
    two loops raises) and are dropped once nobody holds or waits for them."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Turn]] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable, *, coalesce: bool = False) -> AsyncIterator[bool]:
        """Yields True once this caller holds the object's lock; False at once when ``coalesce`` and
        another caller is already waiting for it."""
        turns = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        turn = turns.get(key)
        if coalesce and turn is not None and turn.waiting:
            yield False
            return
        if turn is None:
            turn = turns[key] = _Turn()
        turn.users += 1
        turn.waiting += 1
        acquired = False
        try:
            await turn.lock.acquire()
            acquired = True
            turn.waiting -= 1
            yield True
        finally:
            if acquired:
                turn.lock.release()
            else:
                turn.waiting -= 1
            turn.users -= 1
            if not turn.users:
                del turns[key]

    def __len__(self) -> int:
        """Objects locked or waited for on the running loop (for tests)."""
        return len(self._by_loop.get(asyncio.get_running_loop(), {}))


class _Turn:
    __slots__ = ("lock", "users", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.waiting = 0


class WorkQueue:
    """Reconciles asked for by watch events of other objects (a child's, a backend's), run off kopf's
    per-object workers: the handler adds the owner's key and returns, so kopf's worker takes that object's
    next watch event at once. Awaiting the pass in the handler instead kept every event that arrived
    meanwhile in kopf's backlog for the object, whole (managedFields and all): two thirds of the
    operator's memory at its peak while 300 models converged. The queue holds keys; a key already waiting
    is not added twice (its pass reads the object afresh); at most ``workers`` passes run at once
    (controller-runtime's work queue, for kopf's one-task-per-event model)."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._waiting: dict[Hashable, Callable[[], Awaitable[None]]] = {}
        self._order: asyncio.Queue[Hashable] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def add(self, key: Hashable, run: Callable[[], Awaitable[None]]) -> None:
        if key in self._waiting or self._closed:  # closed: the operator stops, and so does its client
            return
        if self._order is None:  # started on the first use, on the operator's own loop
            self._order = asyncio.Queue()
            self._tasks = [asyncio.create_task(self._work(self._order)) for _ in range(self._workers)]
        self._waiting[key] = run
        self._order.put_nowait(key)

    def __len__(self) -> int:
        return len(self._waiting)

    async def _work(self, order: asyncio.Queue[Hashable]) -> None:
        while True:
            key = await order.get()
            run = self._waiting.pop(key)
            try:
                await run()
            except Exception:  # a bug in one pass must not stop the queue: log it, as kopf would
                logger.exception("reconcile of %s failed", key)

    async def close(self) -> None:
        """Cancel the workers (the operator stops) and wait for them; nothing is added from here on."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._order = [], None
        self._waiting.clear()


class PassSlots:
    """At most ``size`` reconcile passes at once, and the next free slot goes to a pass that moves an object
    already underway (a child's event, a retry: ``urgent``) before a new object's first pass or a spec
    change. A burst of new objects then never holds back the passes that turn their finished downloads
    into Deployments: the cluster's rollouts start while the burst is still being applied, instead of
    after every first pass (a plain FIFO semaphore put 1,000 first passes ahead of them)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # urgent
            collections.deque(),
        )

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[0 if urgent else 1].append(handed)
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():  # handed a slot, then cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():  # a cancelled waiter's future is done: skipped
                    waiter.set_result(None)  # the slot goes straight to it
                    return
        self._free += 1


class KnownChildren:
    """Spec hashes of the children this operator process last applied or read, per owner. A reconcile
    triggered by a child's event trusts them for children whose state it does not read (a Service, a
    NetworkPolicy), instead of a GET per child per event; the owner's own create, update and resume
    handlers always read every child, so drift is repaired there."""

    def __init__(self) -> None:
        self._by_owner: dict[tuple[str, str, str], dict[tuple[str, str], str]] = {}

    def of(self, kind: str, namespace: str, name: str) -> dict[tuple[str, str], str]:
        return self._by_owner.setdefault((kind, namespace, name), {})

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._by_owner.pop((kind, namespace, name), None)


class LatestBodies:
    """The latest body of each custom resource a controller reconciles from its watch events (the only way
    an object gets in, and a DELETED event the way out) and from the answers to the operator's own status
    writes (which only replace a kept object's body): a pass starts from here instead of a GET of the
    object, as a Go controller reads its informer's cache. An answer never brings back an object whose
    deletion was seen, and a body older than the one kept is ignored (by etcd's integer resourceVersions).
    ``managedFields`` are not kept: nothing reads them, and they are a third of a body."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._bodies.get((kind, namespace, name))

    def put(self, body: dict[str, Any]) -> None:
        """Keep ``body`` (from a watch event) unless a newer version is kept already."""
        self._keep(body, add=True)

    def refresh(self, body: dict[str, Any]) -> None:
        """Replace the kept body of this object with ``body`` (an API server's answer), if one is kept."""
        self._keep(body, add=False)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        self._bodies.pop((kind, namespace, name), None)

    def _keep(self, body: dict[str, Any], *, add: bool) -> None:
        meta = body.get("metadata") or {}
        key = (str(body.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
        old = self._bodies.get(key)
        if old is None and not add:
            return
        if old is not None and _older(meta.get("resourceVersion", ""), old["metadata"]["resourceVersion"]):
            return
        self._bodies[key] = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}

    def __len__(self) -> int:
        return len(self._bodies)


class WatchedChildren:
    """The latest Jobs and Deployments the operator owns, kept from their watch events and from apply
    responses, so a reconcile reads them here instead of with a GET each (an informer cache, in kopf's
    terms an index of our own). Only what the controllers read is kept: name, generation, spec hash,
    ``spec.replicas`` and status."""

    KINDS = frozenset({"Job", "Deployment", "LeaderWorkerSet"})

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((kind, namespace, name))

    def put(self, body: dict[str, Any]) -> bool:
        """Keep ``body`` unless a newer version is kept already; True when what controllers read changed."""
        slim = _slim(body)
        meta = slim["metadata"]
        key = (slim["kind"], meta["namespace"], meta["name"])
        old = self._objects.get(key)
        if old is not None and _older(meta["resourceVersion"], old["metadata"]["resourceVersion"]):
            return False  # an event that was in flight while we applied: the apply's answer is newer
        self._objects[key] = slim
        return old is None or _without_version(old) != _without_version(slim)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        self._objects.pop((kind, namespace, name), None)


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    annotations = meta.get("annotations") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion", ""),
            "annotations": {k: v for k, v in annotations.items() if k == SPEC_HASH_ANNOTATION},
        },
        "spec": {"replicas": spec["replicas"]} if "replicas" in spec else {},
        "status": _status_read(body.get("kind"), body.get("status") or {}),
    }


#: the status fields the controllers read, by kind (model_deployment.py: ``_job_condition``,
#: ``_availability``, ``lws_availability``); a kind not named here is kept whole (an InferencePool's)
_STATUS_READ = {
    "Job": ("conditions", "failed"),
    "Deployment": ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas"),
    "LeaderWorkerSet": ("replicas", "readyReplicas", "conditions"),
}
#: a Job's conditions that decide anything: the rest (SuccessCriteriaMet, a pod's progress) cause no pass
_JOB_CONDITIONS = frozenset({"Complete", "Failed"})


def _status_read(kind: Any, status: dict[str, Any]) -> dict[str, Any]:
    """The part of a child's status a reconcile reads, so an event that changes only the rest (a pod
    starting, a Deployment's timestamps and available counts) is not a change and runs no pass."""
    fields = _STATUS_READ.get(kind)
    if fields is None:
        return status
    kept = {field: status[field] for field in fields if field in status}
    if kind == "Job" and "conditions" in kept:
        deciding = [c for c in kept.pop("conditions") or [] if c.get("type") in _JOB_CONDITIONS]
        if deciding:
            kept["conditions"] = deciding
    return kept


def _without_version(slim: dict[str, Any]) -> dict[str, Any]:
    return {**slim, "metadata": {**slim["metadata"], "resourceVersion": None}}


def _older(version: str, than: str) -> bool:
    """resourceVersions are opaque to clients; etcd's are integers, and only then is the order used."""
    return version.isdigit() and than.isdigit() and int(version) < int(than)


async def reconcile_guarded(
    retries: RetryLater,
    locks: ObjectLocks,
    key: tuple[str, str, str],
    one_pass: Callable[[], Awaitable[Owner[Any] | None]],
    *,
    strict: bool,
    retry: int = 0,
    coalesce: bool = True,
    again: Callable[[], Awaitable[None]],
    passes: PassSlots | None = None,
) -> None:
    """Run ``one_pass`` for the object ``key`` (kind, namespace, name) under its lock, and retry it when it
    failed transiently: an object's own handler (``strict``) raises ``kopf.TemporaryError`` with the
    back-off for kopf's ``retry`` count; any other trigger hands ``again`` to ``retries``. A trigger that may
    ``coalesce`` (not strict) returns at once when another is already waiting for the object. ``one_pass``
    returns the Owner it ran (None when the object is gone). With ``passes``, a pass also takes one of its
    slots once it holds the object's lock: a burst of new objects waits as small kopf events, not as
    passes each holding its rendered children and the API server's answers; a pass that is not ``strict``
    (an object underway) is served first."""
    failure: Failure | None = None
    async with locks.hold(key[1:], coalesce=coalesce and not strict) as turn:
        if not turn:
            return  # a pass of this object is already waiting: it will see this change
        try:
            async with passes.slot(urgent=not strict) if passes else contextlib.nullcontext():
                owner = await one_pass()
            failure = owner.retry if owner is not None else None
        except (ApiError, Unreachable) as exc:  # not turned into a condition: reads, status writes
            failure = classify(exc)
    if failure is None:
        retries.succeeded(key)
    elif not failure.transient:
        retries.succeeded(key)
        logger.error("%s %s/%s: %s", *key, failure.message)
        if strict:
            raise kopf.PermanentError(failure.message)
    elif strict:
        # kopf calls the handler again only once it has recorded the attempt on the object; when the API
        # server cannot write (etcd away), that record fails and kopf never calls again. A retry of our own
        # covers it: whichever pass succeeds first cancels it (or finds nothing left to do).
        retries.schedule(key, again)
        raise kopf.TemporaryError(failure.message, delay=backoff(retry))
    else:
        delay = retries.schedule(key, again)
        logger.info("%s %s/%s: %s; retrying in %.0f s", *key, failure.message, delay)


#: spec fields the API server refuses to change once an object exists, by kind
IMMUTABLE_SPEC_FIELDS = {"PersistentVolumeClaim": ("accessModes", "storageClassName", "volumeMode")}


def keep_immutable(obj: Manifest, current: dict[str, Any] | None) -> Manifest:
    """``obj`` with the immutable spec fields of the existing ``current`` (a claim keeps its access modes when
    a ModelDeployment goes from two replicas to one, instead of every apply failing with 422)."""
    fields = IMMUTABLE_SPEC_FIELDS.get(obj["kind"], ())
    live = (current or {}).get("spec") or {}
    kept = {f: live[f] for f in fields if f in live and live[f] != obj["spec"].get(f)}
    if not kept:
        return obj
    return {**obj, "spec": {**obj["spec"], **kept}}


class Owner(abc.ABC, Generic[M]):
    """One custom resource being reconciled: where it is, its last status, and how to write the next."""

    #: the API model its body parses into
    model: ClassVar[type[Resource]]
    #: status fields that alone do not cause a status write (progress counts): they are written with the
    #: next change of anything else, so a rollout costs one write per state, not one per pod
    lagging: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        kube: Kube,
        body: dict[str, Any],
        *,
        quiet_reasons: Collection[str] = (),
        known: dict[tuple[str, str], str] | None = None,
        watched: WatchedChildren | None = None,
        latest: LatestBodies | None = None,
    ) -> None:
        self.kube = kube
        self.body = body
        self.api_version: str = body["apiVersion"]
        self.kind: str = body["kind"]
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.generation: int | None = body["metadata"].get("generation")
        self.status: dict[str, Any] = dict(body.get("status") or {})
        self.kopf_body = kopf.Body(cast(kopf.RawBody, body))
        #: reasons of a False condition that post no Event: steps of progress, or what another Event tells
        self._quiet = set(quiet_reasons)
        #: children as the API server returned them in this reconcile, by (kind, name): read once, reused
        self.children: dict[tuple[str, str], dict[str, Any]] = {}
        #: spec hashes of children known current (see KnownChildren), by (kind, name)
        self.known: dict[tuple[str, str], str] = {} if known is None else known
        self.watched = watched
        self.latest = latest
        #: never reconciled (no status written yet): its children are applied without being read first
        self.fresh = "observedGeneration" not in self.status
        #: the first transient failure this pass reported as a condition: the pass is retried
        self.retry: Failure | None = None

    async def reconcile(self, *, strict: bool) -> None:
        """Parse the body, then ``run``. An invalid spec is ``Ready=False/InvalidSpec`` (its Warning Event
        names the field) and, from the object's own handlers (``strict``), a PermanentError for kopf."""
        try:
            parsed = cast(M, self.model.model_validate(self.body))
        except ValidationError as exc:
            message = format_validation_error(exc)
            await self.invalid(Cond.false(READY, INVALID_SPEC, message))
            if strict:
                raise kopf.PermanentError(f"invalid spec: {message}") from None
            return
        await self.run(parsed, strict=strict)

    @abc.abstractmethod
    async def run(self, parsed: M, *, strict: bool) -> None:
        """Gather, compute the conditions, apply the children and write status."""

    @abc.abstractmethod
    async def invalid(self, ready: Cond) -> None:
        """Write the status of an object whose spec does not parse (``ready`` says why)."""

    def failed(self, type_: str, reason: str, what: str, exc: ApiError | Unreachable) -> Cond:
        """A False condition for an API request that failed (``what`` names the object); a transient
        failure also marks this pass for a retry, and says so in the message."""
        failure = classify(exc)
        if failure.transient and self.retry is None:
            self.retry = failure
        return Cond.false(type_, reason, f"{what}: {failure.message}{RETRYING if failure.transient else ''}")

    async def apply_children(
        self,
        objects: list[Manifest],
        failed_type: str = READY,
        *,
        trust_known: Collection[str] = (),
        together: bool = False,
    ) -> Cond | None:
        """Server-side apply each child (owned by this object) whose spec hash differs from the cluster's;
        on failure, a False condition of ``failed_type`` whose reason names the child's kind (the first
        failed child in ``objects``' order). Children of the kinds in ``trust_known`` whose hash is known
        current are neither read nor applied; a fresh owner's children are applied without a read
        (server-side apply makes that safe). One after another, stopping at the first failure; or, with
        ``together``, all at once (children that do not depend on each other: one round trip, not one per
        child)."""
        if together:
            results = await asyncio.gather(*(self._apply_child(o, failed_type, trust_known) for o in objects))
            return next((failed for failed in results if failed is not None), None)
        for obj in objects:
            failed = await self._apply_child(obj, failed_type, trust_known)
            if failed is not None:
                return failed
        return None

    async def _apply_child(
        self, obj: Manifest, failed_type: str, trust_known: Collection[str]
    ) -> Cond | None:
        kopf.append_owner_reference(obj, owner=self.kopf_body)
        meta = obj["metadata"]
        key, want = (obj["kind"], meta["name"]), meta["annotations"][SPEC_HASH_ANNOTATION]
        if obj["kind"] in trust_known and self.known.get(key) == want:
            return None
        try:
            current = self._watched(obj["kind"], meta["name"])
            if current is None and not self.fresh:
                current = await self.kube.get(
                    obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]
                )
            have = ((current or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
            if current is None or have != want:
                current = await self.kube.apply(keep_immutable(obj, current))
                if self.watched is not None and obj["kind"] in WatchedChildren.KINDS:
                    self.watched.put(current)
            self.children[key] = current
            self.known[key] = want
        except (ApiError, Unreachable) as exc:
            kind = obj["kind"]
            self.known.pop(key, None)
            return self.failed(failed_type, f"{kind}Failed", f"{kind} {meta['name']}", exc)
        return None

    def _watched(self, kind: str, name: str) -> dict[str, Any] | None:
        if self.watched is None or kind not in WatchedChildren.KINDS:
            return None
        return self.watched.get(kind, self.namespace, name)

    async def write_status(self, conds: list[Cond], fields: ApiModel) -> list[dict[str, Any]]:
        """Status with ``conds`` (plus the summary Ready condition unless ``conds`` ends with one) and the
        fields set in ``fields`` (the kind's typed Status model; a field set to None is removed); nothing is
        written when it would not change. Returns the merged conditions."""
        ready = conds[-1] if conds[-1].type == READY else summary(conds)
        merged = merge_conditions(
            self.status.get("conditions", []),
            [*(c for c in conds if c.type != READY), ready],
            self.generation,
            now_rfc3339(),
        )
        wire = fields.model_dump(by_alias=True, mode="json", exclude_unset=True)
        for written_here in ("observedGeneration", "conditions"):
            wire.pop(written_here, None)
        status = {"observedGeneration": self.generation, **wire, "conditions": merged}
        if all(
            key in self.lagging or _pruned(self.status.get(key)) == _pruned(value)
            for key, value in status.items()
        ):
            return merged
        answer = await self.kube.patch_status(self.api_version, self.kind, self.namespace, self.name, status)
        if self.latest is not None:
            self.latest.refresh(answer)
        self._post_transitions(merged)
        self.status.update(status)
        return merged

    def _post_transitions(self, conditions: list[dict[str, Any]]) -> None:
        """Events for what a user acts on: a Warning per condition that turned False for a reason not in
        ``quiet_reasons`` (with the condition's reason), and one Normal Event when the object becomes Ready.
        Progress and the other conditions' True transitions are in status.conditions and post no Event. The
        summary Ready condition gets its own Warning only when it says something the others do not."""
        before = {c.get("type"): c for c in self.status.get("conditions", [])}
        reasons = {c["reason"] for c in conditions if c["type"] != READY}
        for cond in conditions:
            old = before.get(cond["type"])
            if old is not None and (old.get("status"), old.get("reason")) == (cond["status"], cond["reason"]):
                continue
            if cond["status"] == "True":
                if cond["type"] != READY:
                    continue
                kind = "Normal"
            elif cond["reason"] in self._quiet or (cond["type"] == READY and cond["reason"] in reasons):
                continue
            else:
                kind = "Warning"
            message = f"{cond['type']}={cond['status']}: {cond['message']}"[:MAX_EVENT_MESSAGE]
            kopf.event(self.kopf_body, type=kind, reason=cond["reason"], message=message)


def _pruned(value: Any) -> Any:
    """``value`` without null map entries (a merge patch's null removes the key, so it reads back absent)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    return value
