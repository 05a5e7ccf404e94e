"""Operator-wide setup: settings, where kopf keeps its state, credentials and the shared API client.

Everything shared lives in kopf's ``memo`` (passed to every handler), not in module globals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable
from functools import partial
from typing import Any, cast

import kopf

from modelyard.api import GROUP, VERSION, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.config import Settings
from modelyard.kube import Kube
from modelyard.kube.client import CONNECTIONS
from modelyard.kube.login import login_with_kubeconfig
from modelyard.render.common import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, label_selector
from modelyard.render.model_deployment import SERVER

from .common import KnownChildren, LatestBodies, PassSlots, WatchedChildren, WorkQueue
from .errors import RetryLater

#: Status field where kopf keeps a failed handler's progress (its retries): in status, not annotations, so
#: GitOps tools see no drift in the manifests they own.
KOPF_STATE = "kopf"
MANAGED_SELECTOR = label_selector({MANAGED_BY_LABEL: MANAGED_BY})
SERVER_SELECTOR = label_selector({COMPONENT_LABEL: SERVER})
#: reconcile passes at once (and the work queue's workers): twice the API connections, so one pass prepares
#: while another waits for the API server
WORKERS = 2 * CONNECTIONS
#: seconds a replica's peering keep-alive is valid (kopf touches it every lifetime - 5..10 s)
PEERING_LIFETIME_S = 15


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    memo.settings = Settings.from_env()
    memo.known_children = KnownChildren()
    memo.watched_children = WatchedChildren()
    memo.latest = LatestBodies()
    memo.retries = RetryLater()
    memo.work = WorkQueue(WORKERS)
    memo.passes = PassSlots(WORKERS)
    _quiet_kopf_log()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API request is noise
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field=f"status.{KOPF_STATE}.progress")
    settings.persistence.diffbase_storage = memo.diff_base = RememberedDiffBase()
    settings.posting.level = (
        logging.WARNING
    )  # our own Events, and kopf's warnings; not its per-handler chatter
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf peering pauses *every* replica that shares a priority: a random one makes one replica active.
    settings.peering.priority = random.randint(1, 32767)
    # A standby takes over when the active replica's keep-alive expires: kopf's 60 s default left objects
    # unhandled for up to a minute after the active pod was killed. Keep-alives then come every 5-10 s.
    settings.peering.lifetime = PEERING_LIFETIME_S
    # With -n the chart grants nothing cluster-wide: don't list namespaces or watch CRDs (kopf's scanning).
    settings.scanning.disabled = not settings.peering.clusterwide
    # Children are watched with a server-side label selector: only modelyard's own objects cross the wire.
    for resource in (("apps", "deployments"), ("batch", "jobs")):
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
    # Of the pods, only model servers: whether the scheduler can place them is all their events tell us
    # (a download pod's progress reaches us as its Job's status); half the pod events, never read.
    settings.watching.label_selectors[("v1", "pods")] = f"{MANAGED_SELECTOR},{SERVER_SELECTOR}"
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount credentials, else the kubeconfig (its exec credential plugin run, as kubectl
    runs it, in a thread: a plugin may take seconds); the same credentials serve our client. An exec
    credential's expiry makes kopf log in again when it runs out."""
    info = kopf.login_with_service_account(**kwargs) or await asyncio.to_thread(
        partial(login_with_kubeconfig, **kwargs)
    )
    if info is not None:
        if memo.get("kube") is None:
            memo.kube = Kube.from_connection(info)
        else:  # a re-login (kopf saw a 401): the same client, new credentials
            memo.kube.relogin(info)
    return info


class RememberedDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base (the last handled spec, labels and annotations of each object) kept in this process
    instead of written to the object: no status patch records a handled change. kopf needs it only to tell
    a spec change from a status one; after a restart every object reads as new, which is harmless here
    because each kind has one handler for create, update and resume, a full reconcile. Kept as compact JSON
    per uid (about 1 KiB) and dropped when the object is deleted (``forget_deleted``)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_uid: dict[str, str] = {}

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        """kopf's essence (spec, labels, annotations), built from those alone: kopf deep-copies the whole
        body first (status and managedFields included) only to drop most of it, for every event of every
        object; that copy was a tenth of the operator's CPU while 1,000 models converged."""
        if extra_fields:  # a handler that follows a status field (none here): kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        kept = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        kept["metadata"] = {key: meta[key] for key in ("labels", "annotations") if key in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, kept)))

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        encoded = self._by_uid.get(body.metadata.uid or "")
        return None if encoded is None else cast(kopf.BodyEssence, json.loads(encoded))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._by_uid[body.metadata.uid or ""] = json.dumps(essence, separators=(",", ":"))

    def forget(self, uid: str) -> None:
        self._by_uid.pop(uid, None)

    def __len__(self) -> int:
        return len(self._by_uid)


def _deleted(type: str | None, **_: Any) -> bool:  # kopf's keyword
    return type == "DELETED"


@kopf.on.event(GROUP, VERSION, ModelDeployment.PLURAL, when=_deleted)
@kopf.on.event(GROUP, VERSION, ProviderBinding.PLURAL, when=_deleted)
@kopf.on.event(GROUP, VERSION, RoutePolicy.PLURAL, when=_deleted)
async def forget_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A deleted object's diff base and known children go with it (kopf forgets its own records too)."""
    meta = body.metadata
    memo.diff_base.forget(meta.uid or "")
    memo.known_children.forget(str(body.get("kind")), str(meta.namespace), str(meta.name))


@kopf.on.event(GROUP, VERSION, ModelDeployment.PLURAL)
async def remember_latest(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every ModelDeployment event feeds the bodies its passes start from (kopf runs event handlers before
    the create and update handlers of the same event, so those find the body they were called for)."""
    body = event.get("object") or {}
    meta = body.get("metadata") or {}
    if event.get("type") == "DELETED":
        memo.latest.drop(ModelDeployment.KIND, str(meta.get("namespace")), str(meta.get("name")))
    else:
        memo.latest.put(body)


def _quiet_kopf_log() -> None:
    """kopf logs every temporary failure of a handler, and posts its error logs as Events: a retried
    failure would post one Event per attempt. The failure's condition already posted one, on its transition;
    the log line stays, with kopf's own switch (``k8s_skip``) keeping it off the object's Events.

    kopf also logs ``Handler '...' succeeded.`` for every handler call, event handlers included: a line
    per watch event of every child, which is most of the log of a busy operator and says nothing. Those
    lines are dropped; an object's own create, update and resume handlers keep kopf's ``... is processed``
    line."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _KopfLogFilter) for f in objects.filters):
        objects.addFilter(_KopfLogFilter())


class _KopfLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Handler '") and message.endswith("' succeeded."):
            return False
        if " failed temporarily" in message:
            record.k8s_skip = True
        return True


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    for pending in (memo.get("retries"), memo.get("work")):
        if pending is not None:
            await pending.close()  # before the client their passes use is closed
    kube = memo.get("kube")
    if kube is not None:
        await kube.close()
