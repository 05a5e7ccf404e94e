"""ProviderBinding controller: the gateway ServiceAccount's identity wiring, then the cloud's own verdict on
that identity and on the network path, in status.

One reconcile function serves the binding's create/update/resume and the periodic re-verification, under a
per-object lock, retried with back-off when the API server fails transiently (common.reconcile_guarded).
The gateway ServiceAccount carries the merged wiring of every binding in its namespace
(server-side apply as field manager ``modelyard-providerbinding``, so the RoutePolicy controller's apply of
the same ServiceAccount neither removes nor fights these fields); each binding it serves is a non-controller
owner, so it is garbage-collected with the last of them and no finalizer is needed. When bindings disagree
(two IAM roles on one ServiceAccount), the older binding wins and the newer one reports the conflict.

Re-verification follows ``spec.verifyEvery`` with up to 10 % jitter, from a background task over an index of
bindings (a kopf timer would put a finalizer on every binding; modelyard keeps none). A cloud that gives no
verdict (throttled, unreachable) leaves every verdict as it was, with reason ``VerificationUnavailable``,
and is asked again one interval later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
import kopf
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION
from modelyard.api.common import Finding, SecretRef
from modelyard.api.conditions import Cond, condition, now_rfc3339, summary
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import (
    AwsAuthType,
    AzureAuthType,
    BedrockSpec,
    IdentityMode,
    IdentityStatus,
    ProviderBinding,
    ProviderBindingSpec,
    ProviderBindingStatus,
    service_account_subject,
)
from modelyard.audit.findings import Observed, provider_binding_findings
from modelyard.audit.route_policy import region_findings
from modelyard.cloud import Check, CloudUnavailable
from modelyard.cloud.aws import STS_AUDIENCE, BedrockTarget, BedrockVerifier
from modelyard.cloud.azure import TOKEN_AUDIENCE, AzureTarget, AzureVerifier
from modelyard.cloud.network import resolver_from
from modelyard.cloud.scrub import scrub
from modelyard.config import Settings
from modelyard.kube import ApiError, Kube
from modelyard.render.identity import (
    AWS_SECRET_KEYS,
    AZURE_SECRET_KEY,
    IdentityWiring,
    identity_wiring,
    merge_wiring,
    service_account,
)

from .common import READY, ObjectLocks, Owner, reconcile_guarded
from .metrics import instrumented, record_verification
from .peering import is_active

API_VERSION = f"{GROUP}/{VERSION}"
KIND, PLURAL = ProviderBinding.KIND, ProviderBinding.PLURAL
FIELD_MANAGER = "modelyard-providerbinding"
IDENTITY, CREDENTIALS, CONNECTIVITY = (
    "IdentityConfigured",
    "CredentialsVerified",
    "PrivateConnectivityVerified",
)
UNAVAILABLE = "VerificationUnavailable"
TOKEN_TTL_S = 600  # the shortest TokenRequest lifetime the API server accepts
JITTER = 0.1
WATCH_TICK_S = 1.0
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "azure", "msal")
_DURATION_PART = re.compile(r"([0-9]+)(s|m|h)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}

logger = logging.getLogger(__name__)
_locks = ObjectLocks()


# --- kopf wiring ------------------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_provider_binding(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    await reconcile(memo, dict(body), strict=True, retry=retry)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_deleted(type: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A binding is gone: its wiring leaves the gateway ServiceAccount (the others' is applied again)."""
    if type != "DELETED":
        return
    namespace, uid = body["metadata"]["namespace"], body["metadata"].get("uid")
    index: kopf.Index[str, dict[str, Any]] = kwargs["provider_bindings"]
    others = [b for b in index.get(namespace, []) if b["metadata"].get("uid") != uid]
    try:
        await sync_service_account(memo.kube, namespace, others)
    except ApiError as exc:
        logger.warning("updating the gateway ServiceAccount in %s failed: %s", namespace, exc.message)


@kopf.index(GROUP, VERSION, PLURAL)
def provider_bindings(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Bindings by namespace (metadata, spec and status), for the ServiceAccount wiring and the watcher."""
    meta = body["metadata"]
    entry = {
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "creationTimestamp")},
        "spec": dict(body.get("spec") or {}),
        "status": {"lastVerifiedTime": (body.get("status") or {}).get("lastVerifiedTime")},
    }
    return {meta["namespace"]: entry}


@kopf.on.startup()
async def start_verifier(memo: kopf.Memo, **kwargs: Any) -> None:
    """The cloud verifiers, and the background re-verification of every binding."""
    settings: Settings = memo.get("settings") or Settings.from_env()
    for sdk in QUIET_LOGGERS:  # their debug logs carry request bodies: web identity tokens, assertions
        logging.getLogger(sdk).setLevel(logging.WARNING)
    resolver = resolver_from(settings.hosts_file)
    memo.bedrock = BedrockVerifier(resolver)
    memo.azure = AzureVerifier(
        resolver, settings.azure_resource_manager_url, settings.azure_resource_manager_scope
    )
    index: kopf.Index[str, dict[str, Any]] = kwargs["provider_bindings"]  # kopf passes indexes by name
    memo.binding_index = index
    memo.binding_verifier = asyncio.create_task(_reverify_due(memo, index))


@kopf.on.cleanup()
async def stop_verifier(memo: kopf.Memo, **_: Any) -> None:
    """Stop the re-verification and wait for it, before the API client it uses is closed."""
    task = memo.get("binding_verifier")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- periodic re-verification -----------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """``1h30m`` -> 5400.0 seconds (the API's DURATION pattern: digits with s, m or h, repeated)."""
    return float(sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text)))


def _epoch(rfc3339: str | None) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else 0.0


def next_verification(entry: dict[str, Any], last_attempt: float = 0.0) -> float:
    """When a binding is due again (epoch seconds): ``verifyEvery`` after its last verification (or creation,
    or this process's last attempt, whichever is latest), stretched by a jitter of up to 10 % that is fixed
    for that interval, so bindings created together spread out."""
    last = max(
        _epoch(entry["status"].get("lastVerifiedTime")),
        _epoch(entry["metadata"].get("creationTimestamp")),
        last_attempt,
    )
    interval = parse_duration(str(entry["spec"].get("verifyEvery") or "10m"))
    spread = zlib.crc32(f"{entry['metadata'].get('uid')}@{last}".encode()) / 0xFFFFFFFF
    return last + interval * (1 + JITTER * spread)


async def _reverify_due(memo: kopf.Memo, index: kopf.Index[str, dict[str, Any]]) -> None:
    """Every second, start the verification of each binding that is due and not already being verified;
    when cancelled, cancel those verifications and wait for them."""
    attempts: dict[tuple[str, str], float] = {}
    running: dict[tuple[str, str], asyncio.Task[None]] = {}
    try:
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            for done in [key for key, task in running.items() if task.done()]:
                del running[done]
            now = time.time()
            for namespace in list(index):
                for entry in list(index.get(namespace, [])):
                    key = (namespace, entry["metadata"]["name"])
                    if key in running or next_verification(entry, attempts.get(key, 0.0)) > now:
                        continue
                    attempts[key] = now
                    running[key] = asyncio.create_task(_reverify(memo, *key))
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)


async def _reverify(memo: kopf.Memo, namespace: str, name: str) -> None:
    try:
        if not await is_active(memo, namespace):
            return  # a standby replica: the active peer verifies
        body = await memo.kube.get(API_VERSION, KIND, namespace, name)
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            await reconcile(memo, body, strict=False)
    except (ApiError, httpx.HTTPError) as exc:
        logger.warning("re-verifying ProviderBinding %s/%s failed: %s", namespace, name, scrub(str(exc)))


# --- reconcile --------------------------------------------------------------------------------------------
@instrumented("ProviderBinding")
async def reconcile(memo: kopf.Memo, body: dict[str, Any], *, strict: bool, retry: int = 0) -> None:
    """Wire, verify and report one binding. ``strict`` (the binding's own handlers) turns an invalid spec
    into a PermanentError for kopf; from the watcher the condition and Event are enough. A retry after a
    transient failure reads the binding again."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    await _reconcile(memo, namespace, name, body, strict=strict, retry=retry)


async def _reconcile(
    memo: kopf.Memo, namespace: str, name: str, body: dict[str, Any] | None, *, strict: bool, retry: int = 0
) -> None:
    async def one_pass() -> _Reconcile | None:
        current = body or await memo.kube.get(API_VERSION, KIND, namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        owner = _Reconcile(memo, current)
        await owner.reconcile(strict=strict)
        return owner

    async def again() -> None:
        await _reconcile(memo, namespace, name, None, strict=False)

    key = (KIND, namespace, name)
    await reconcile_guarded(
        memo.retries, _locks, key, one_pass, strict=strict, retry=retry, coalesce=False, again=again
    )


async def sync_service_account(
    kube: Kube, namespace: str, bindings: Iterable[dict[str, Any]]
) -> dict[str, str]:
    """Apply the gateway ServiceAccount with the wiring of ``bindings``; returns the bindings left out, by
    name, with why (a conflict with an older binding)."""
    accepted, conflicts = merge_in_order(bindings)
    if accepted:
        wiring = merge_wiring(identity_wiring(b) for b in accepted)
        account = service_account(wiring, namespace)
        account["metadata"]["ownerReferences"] = [_owner_reference(b) for b in accepted]
        current = await kube.get("v1", "ServiceAccount", namespace, account["metadata"]["name"])
        if current is None or not applied_already(current, account, FIELD_MANAGER):
            await kube.apply(account, field_manager=FIELD_MANAGER)
    return conflicts


def applied_already(current: dict[str, Any], want: dict[str, Any], manager: str) -> bool:
    """Whether ``manager``'s last server-side apply to ``current`` was ``want``'s labels, annotations and
    owner references, exactly (the fields it owns, from managedFields, and their values), so applying
    ``want`` again would change nothing: a re-verification then writes nothing."""
    entries = (current.get("metadata") or {}).get("managedFields") or []
    entry = next((m for m in entries if m.get("manager") == manager and m.get("operation") == "Apply"), None)
    if entry is None:
        return False
    owned = (entry.get("fieldsV1") or {}).get("f:metadata") or {}
    have, wanted = current["metadata"], want["metadata"]
    for field in ("labels", "annotations"):
        keys = {key[2:] for key in owned.get(f"f:{field}") or {} if key.startswith("f:")}
        values = wanted.get(field) or {}
        if keys != set(values) or any((have.get(field) or {}).get(k) != v for k, v in values.items()):
            return False
    refs = {
        json.loads(key[2:])["uid"] for key in owned.get("f:ownerReferences") or {} if key.startswith("k:")
    }
    present = {ref.get("uid") for ref in have.get("ownerReferences") or []}
    wanted_refs = {ref["uid"] for ref in wanted.get("ownerReferences") or []}
    return refs == wanted_refs <= present and current.get("automountServiceAccountToken") == want.get(
        "automountServiceAccountToken"
    )


def merge_in_order(bodies: Iterable[dict[str, Any]]) -> tuple[list[ProviderBinding], dict[str, str]]:
    """Valid bindings, oldest first, each kept only if its wiring merges with those kept before it."""
    parsed = []
    for body in bodies:
        try:
            parsed.append(ProviderBinding.model_validate(body))
        except ValidationError:
            continue  # its own reconcile reports it
    parsed.sort(
        key=lambda b: (str((b.metadata.model_extra or {}).get("creationTimestamp") or ""), b.metadata.name)
    )
    accepted: list[ProviderBinding] = []
    wirings: list[IdentityWiring] = []
    conflicts: dict[str, str] = {}
    for binding in parsed:
        wiring = identity_wiring(binding)
        try:
            merge_wiring([*wirings, wiring])
        except ValueError as exc:
            conflicts[binding.metadata.name] = str(exc)
            continue
        accepted.append(binding)
        wirings.append(wiring)
    return accepted, conflicts


def _owner_reference(binding: ProviderBinding) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": binding.metadata.name,
        "uid": binding.metadata.uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }


class _Verdict:
    """What one verification produced, before it becomes status."""

    def __init__(self, credentials: Cond, connectivity: Cond, observed: Observed) -> None:
        self.credentials = credentials
        self.connectivity = connectivity
        self.observed = observed
        self.gate: Cond | None = None  #: a requirement outside the conditions that keeps Ready False
        self.principal: str | None = None
        self.region: str | None = None
        self.endpoint: str | None = None


class _Reconcile(Owner[ProviderBinding]):
    model = ProviderBinding

    def __init__(self, memo: kopf.Memo, body: dict[str, Any]) -> None:
        super().__init__(memo.kube, body)
        self.memo = memo
        self.settings: Settings = memo.settings

    async def invalid(self, ready: Cond) -> None:
        await self._finish([ready], ProviderBindingStatus())

    async def run(self, binding: ProviderBinding, *, strict: bool) -> None:
        spec, policy = binding.spec, self.settings.policy
        unverified = ProviderBindingStatus(
            identity=self._identity(binding, None),
            region=spec.region,
            findings=_findings(spec, policy, spec.region),
        )
        if spec.static_credentials and not policy.allow_static_credentials:
            refused = "static credentials are not allowed by the cluster policy (allowStaticCredentials)"
            refusal = Cond.false(IDENTITY, "StaticCredentialsNotAllowed", refused)
            await self._finish(_not_verified(refusal), unverified)
            return
        wired = await self._wire_identity(binding)
        if wired.status != "True":
            await self._finish(_not_verified(wired), unverified)
            return
        try:
            verdict = await self._verify(binding)
        except CloudUnavailable as exc:
            # verdicts stay as they were; a binding never verified still shows what its spec says
            kept = ProviderBindingStatus() if self.status.get("identity") else unverified
            await self._finish(self._kept(wired, scrub(str(exc))), kept)
            return
        conds = [wired, verdict.credentials, verdict.connectivity]
        ready = summary(conds)
        if verdict.gate is not None and ready.status == "True":
            ready = verdict.gate
        fields = ProviderBindingStatus(
            identity=self._identity(binding, verdict.principal),
            region=verdict.region or spec.region,
            endpoint=verdict.endpoint,
            findings=_findings(spec, policy, verdict.region or spec.region, verdict.observed),
            last_verified_time=now_rfc3339(),
        )
        await self._finish([*conds, ready], fields)

    def _identity(self, binding: ProviderBinding, principal: str | None) -> IdentityStatus:
        """status.identity, with the principal set even when None, so a merge patch removes a stale one."""
        spec = binding.spec
        return IdentityStatus(
            mode=IdentityMode.STATIC if spec.static_credentials else IdentityMode.KEYLESS,
            principal=principal,
            subject=service_account_subject(self.namespace, spec.service_account_name),
        )

    # --- identity ---------------------------------------------------------------------------------------
    async def _wire_identity(self, binding: ProviderBinding) -> Cond:
        """The gateway ServiceAccount with this binding's wiring, as the IdentityConfigured condition."""
        index: kopf.Index[str, dict[str, Any]] | None = self.memo.get("binding_index")
        bodies = list(index.get(self.namespace, [])) if index is not None else []
        bodies = [b for b in bodies if b["metadata"].get("uid") != binding.metadata.uid] + [self.body]
        try:
            conflicts = await sync_service_account(self.kube, self.namespace, bodies)
        except (ApiError, httpx.HTTPError) as exc:
            return self.failed(IDENTITY, "ServiceAccountFailed", "ServiceAccount", exc)
        if self.name in conflicts:
            return Cond.false(IDENTITY, "IdentityConflict", conflicts[self.name])
        return Cond.true(IDENTITY, "ServiceAccountConfigured", _wiring_message(binding, self.namespace))

    async def _token(self, binding: ProviderBinding, audience: str) -> str:
        return await self.kube.create_token(
            self.namespace, binding.spec.service_account_name, audience, TOKEN_TTL_S
        )

    # --- verification -----------------------------------------------------------------------------------
    async def _verify(self, binding: ProviderBinding) -> _Verdict:
        if binding.spec.bedrock is not None:
            return await self._verify_bedrock(binding, binding.spec.bedrock)
        return await self._verify_azure(binding)

    async def _verify_bedrock(self, binding: ProviderBinding, bedrock: BedrockSpec) -> _Verdict:
        auth = bedrock.auth
        token = await self._token(binding, STS_AUDIENCE) if auth.type is AwsAuthType.IRSA else None
        report = await self.memo.bedrock.verify(
            BedrockTarget(
                region=bedrock.region,
                models=tuple(bedrock.models),
                role_arn=auth.role_arn,
                web_identity_token=token,
                vpc_endpoint_id=bedrock.vpc_endpoint.id if bedrock.vpc_endpoint else None,
                require_invocation_logging=bedrock.require_invocation_logging,
            )
        )
        if report.credentials is not None:
            credentials = _cond(CREDENTIALS, report.credentials)
        elif auth.type is AwsAuthType.POD_IDENTITY:
            credentials = Cond.true(
                CREDENTIALS,
                "AssociationCheckedByGateway",
                "EKS Pod Identity serves credentials to the gateway pod only; the operator cannot assume "
                "the association's role, so the gateway checks its caller identity when it starts",
            )
        else:
            credentials = await self._static_secret(auth.secret_ref, AWS_SECRET_KEYS)
        logging_check = report.invocation_logging
        verdict = _Verdict(
            credentials,
            _cond(CONNECTIVITY, report.connectivity),
            Observed(
                private_connectivity=report.connectivity.passed,
                invocation_logging=None if logging_check is None else logging_check.passed,
                unavailable_models=report.unavailable_models,
                models_unverified=report.models_unverified,
            ),
        )
        if logging_check is not None and not logging_check.passed:
            verdict.gate = Cond.false(READY, logging_check.reason, logging_check.message)
        verdict.principal = report.principal or (
            auth.role_arn if auth.type is AwsAuthType.POD_IDENTITY else None
        )
        verdict.endpoint = report.endpoint
        return verdict

    async def _verify_azure(self, binding: ProviderBinding) -> _Verdict:
        azure = binding.spec.azure_open_ai
        assert azure is not None
        keyless = azure.auth.type is AzureAuthType.WORKLOAD_IDENTITY
        report = await self.memo.azure.verify(
            AzureTarget(
                resource_id=azure.resource_id,
                endpoint=azure.endpoint,
                deployments=tuple(d.name for d in azure.deployments),
                tenant_id=azure.auth.tenant_id,
                client_id=azure.auth.client_id,
                federated_token=await self._token(binding, TOKEN_AUDIENCE) if keyless else None,
            )
        )
        credentials = (
            _cond(CREDENTIALS, report.credentials)
            if report.credentials is not None
            else await self._static_secret(azure.auth.secret_ref, (AZURE_SECRET_KEY,))
        )
        verdict = _Verdict(
            credentials,
            _cond(CONNECTIVITY, report.connectivity),
            Observed(
                private_connectivity=report.connectivity.passed,
                public_network_access=report.public_network_access,
                local_auth_enabled=report.local_auth_enabled,
                unavailable_models=report.missing_deployments,
                models_unverified=report.deployments_unverified,
            ),
        )
        verdict.principal = report.principal
        verdict.region = report.region
        verdict.endpoint = azure.endpoint.rstrip("/")
        return verdict

    async def _static_secret(self, ref: SecretRef | None, keys: Iterable[str]) -> Cond:
        """A static-credential binding (allowed by policy): its Secret holds the keys. Only the key names are
        looked at; values never leave the API response."""
        assert ref is not None
        name = ref.name
        secret = await self.kube.get("v1", "Secret", self.namespace, name)
        if secret is None:
            return Cond.false(CREDENTIALS, "SecretNotFound", f"Secret {name} does not exist")
        present = set(secret.get("data") or {})
        missing = [k for k in keys if k not in present]
        if missing:
            return Cond.false(CREDENTIALS, "SecretKeyMissing", f"Secret {name} lacks {', '.join(missing)}")
        return Cond.true(
            CREDENTIALS,
            "StaticSecretPresent",
            f"Secret {name} holds the keys (static credentials: only their presence is checked)",
        )

    def _kept(self, wired: Cond, error: str) -> list[Cond]:
        """No verdict from the cloud: every verdict stays as it was, saying why it was not renewed."""
        since = self.status.get("lastVerifiedTime") or "never"
        message = f"{error}; keeping the verdict of {since}"
        kept = [wired]
        for type_ in (CREDENTIALS, CONNECTIVITY):
            previous = condition(self.status, type_) or {}
            kept.append(Cond(type_, previous.get("status", "Unknown"), UNAVAILABLE, message))
        previous_ready = condition(self.status, READY) or {}
        if previous_ready.get("status") == "True" and wired.status == "True":
            kept.append(Cond.true(READY, previous_ready.get("reason", "Ready"), message))
        else:
            status = previous_ready.get("status", "Unknown") if wired.status == "True" else "False"
            kept.append(Cond(READY, status, UNAVAILABLE, message))
        return kept

    # --- status -----------------------------------------------------------------------------------------
    async def _finish(self, conds: list[Cond], fields: ProviderBindingStatus) -> None:
        record_verification(await self.write_status(conds, fields))


def _cond(type_: str, check: Check) -> Cond:
    return Cond(type_, "True" if check.passed else "False", check.reason, check.message)


def _not_verified(identity: Cond) -> list[Cond]:
    """Conditions when the identity is not configured: nothing was verified."""
    message = f"not verified: {identity.reason}"
    return [
        identity,
        Cond.unknown(CREDENTIALS, identity.reason, message),
        Cond.unknown(CONNECTIVITY, identity.reason, message),
        Cond.false(READY, identity.reason, identity.message),
    ]


def _findings(
    spec: ProviderBindingSpec, policy: ClusterPolicy, region: str | None, observed: Observed | None = None
) -> list[Finding]:
    """status.findings: the binding's own, and REGION_NOT_ALLOWED when its region is outside the cluster
    policy (routes refuse it; the binding says why), high severity first."""
    return [*region_findings(region, policy), *provider_binding_findings(spec, policy, observed)]


def _wiring_message(binding: ProviderBinding, namespace: str) -> str:
    spec = binding.spec
    subject = service_account_subject(namespace, spec.service_account_name)
    if spec.bedrock is not None and spec.bedrock.auth.type is AwsAuthType.IRSA:
        role = spec.bedrock.auth.role_arn
        return f"IRSA: ServiceAccount carries role {role}; its trust policy must name {subject}"
    if spec.bedrock is not None and spec.bedrock.auth.type is AwsAuthType.POD_IDENTITY:
        return f"EKS Pod Identity: the association (EKS API) must name {subject}"
    if spec.azure_open_ai is not None and spec.azure_open_ai.auth.type is AzureAuthType.WORKLOAD_IDENTITY:
        return (
            f"Workload Identity: ServiceAccount carries client {spec.azure_open_ai.auth.client_id}; its "
            f"federated credential must name subject {subject}"
        )
    return "static credentials from a Secret, allowed by the cluster policy"
