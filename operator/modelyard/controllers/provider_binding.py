"""ProviderBinding controller: the kopf handlers and the reconcile. A binding's identity wiring goes onto the
namespace's gateway ServiceAccount (gateway_account.py), the clouds give their verdict on that identity and
on the network path (verification.py), and both become status.

One reconcile function serves the binding's create/update/resume and the periodic re-verification
(reverification.py), under a per-object lock, retried with back-off when the API server fails transiently
(common.reconcile_guarded).

A cloud that gives no verdict (throttled, a server error, unreachable: STS or Entra ID answering 429 or 5xx,
after their SDKs' own bounded retries) leaves every verdict and status field as it was; the verdicts' reason
becomes ``VerificationUnavailable`` with the cloud's status code and message (scrubbed), one Warning Event
says so, and the binding is verified again with the skeleton's capped exponential back-off (errors.backoff:
2, 4, ... 60 s), not one ``verifyEvery`` later. Only a definitive answer (AccessDenied, invalid_client: a
trust policy or federated credential that refuses the gateway's identity) is a verdict.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.common import Finding
from modelyard.api.conditions import Cond, condition, now_rfc3339, summary
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import (
    AwsAuthType,
    AzureAuthType,
    IdentityMode,
    IdentityStatus,
    ProviderBinding,
    ProviderBindingSpec,
    ProviderBindingStatus,
    service_account_subject,
)
from modelyard.audit.findings import Observed, provider_binding_findings
from modelyard.audit.route_policy import region_findings
from modelyard.cloud import CloudUnavailable
from modelyard.cloud.aws import BedrockVerifier
from modelyard.cloud.azure import AzureVerifier
from modelyard.cloud.network import resolver_from
from modelyard.cloud.public_api import PublicApiVerifier
from modelyard.cloud.scrub import scrub
from modelyard.config import Settings
from modelyard.kube import ApiError, Unreachable

from . import reverification
from .common import MAX_EVENT_MESSAGE, READY, RETRYING, ObjectLocks, Owner, reconcile_guarded
from .errors import Failure
from .gateway_account import sync_for_bindings
from .metrics import instrumented, record_verification
from .peering import is_active
from .verification import CONNECTIVITY, CREDENTIALS, Verification

API_VERSION = f"{GROUP}/{VERSION}"
KIND, PLURAL = ProviderBinding.KIND, ProviderBinding.PLURAL
IDENTITY = "IdentityConfigured"
UNAVAILABLE = "VerificationUnavailable"
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "azure", "msal")

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
        await sync_for_bindings(memo.kube, namespace, others)
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
    memo.public_api = PublicApiVerifier()
    index: kopf.Index[str, dict[str, Any]] = kwargs["provider_bindings"]  # kopf passes indexes by name
    memo.binding_index = index
    reverification.start(memo, index, functools.partial(_reverify, memo))


@kopf.on.cleanup()
async def stop_verifier(memo: kopf.Memo, **_: Any) -> None:
    """Stop the re-verification and wait for it, before the API client it uses is closed."""
    await reverification.stop(memo)


async def _reverify(memo: kopf.Memo, namespace: str, name: str) -> None:
    try:
        if not await is_active(memo, namespace):
            return  # a standby replica: the active peer verifies
        body = await memo.kube.get(API_VERSION, KIND, namespace, name)
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            await reconcile(memo, body, strict=False)
    except (ApiError, Unreachable) as exc:
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
    # no pass slot (common.reconcile_guarded): a binding's pass waits on the cloud's APIs, up to their
    # timeouts while a cloud is slow, and must not hold the slots ModelDeployments and RoutePolicies share
    await reconcile_guarded(
        memo.retries, _locks, key, one_pass, strict=strict, retry=retry, coalesce=False, again=again
    )


class _Reconcile(Owner[ProviderBinding]):
    model = ProviderBinding

    def __init__(self, memo: kopf.Memo, body: dict[str, Any]) -> None:
        # the verdicts' VerificationUnavailable transitions post one Event of their own, not one per condition
        super().__init__(memo.kube, body, quiet_reasons={UNAVAILABLE})
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
        if spec.static_credentials and not policy.allow_static_credentials and spec.public_api is None:
            refused = "static credentials are not allowed by the cluster policy (allowStaticCredentials)"
            refusal = Cond.false(IDENTITY, "StaticCredentialsNotAllowed", refused)
            await self._finish(_not_verified(refusal), unverified)
            return
        wired = await self._wire_identity(binding)
        if wired.status != "True":
            await self._finish(_not_verified(wired), unverified)
            return
        try:
            verification = Verification(
                self.kube, self.namespace, self.memo.bedrock, self.memo.azure, self.memo.get("public_api")
            )
            verdict = await verification.verify(binding)
        except CloudUnavailable as exc:
            await self._unavailable(wired, unverified, scrub(str(exc)))
            return
        conds = [wired, verdict.credentials, verdict.connectivity]
        ready = summary(conds[:2] if verdict.ready_without_connectivity else conds)
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
            conflicts = await sync_for_bindings(self.kube, self.namespace, bodies)
        except (ApiError, Unreachable) as exc:
            return self.failed(IDENTITY, "ServiceAccountFailed", "ServiceAccount", exc)
        if self.name in conflicts:
            return Cond.false(IDENTITY, "IdentityConflict", conflicts[self.name])
        return Cond.true(IDENTITY, "ServiceAccountConfigured", _wiring_message(binding, self.namespace))

    async def _unavailable(self, wired: Cond, unverified: ProviderBindingStatus, error: str) -> None:
        """No verdict from the cloud: every verdict and status field stays as it was (a binding never verified
        still shows what its spec says), the verdicts say why they were not renewed, one Warning Event when
        that begins, and this pass is retried with back-off."""
        since = self.status.get("lastVerifiedTime") or "never"
        message = f"{error}; keeping the verdict of {since}{RETRYING}"
        began = (condition(self.status, CREDENTIALS) or {}).get("reason") != UNAVAILABLE
        kept = ProviderBindingStatus() if self.status.get("identity") else unverified
        await self._finish(self._kept(wired, message), kept)
        if began:
            kopf.event(
                self.kopf_body,
                type="Warning",
                reason=UNAVAILABLE,
                message=f"not verified: {message}"[:MAX_EVENT_MESSAGE],
            )
        self.retry = Failure(True, error)

    def _kept(self, wired: Cond, message: str) -> list[Cond]:
        """Every verdict as it was, with ``message`` saying why it was not renewed."""
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
    if spec.public_api is not None:
        ref = spec.public_api.api_key_secret_ref
        return (
            f"API key from Secret {ref.name} (key {ref.key}) as a gateway env var; public model APIs take "
            "only keys, so allowStaticCredentials does not gate it"
        )
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
