"""What the clouds say about one ProviderBinding: the gateway identity's token exchange and the private path,
as the CredentialsVerified and PrivateConnectivityVerified conditions and the facts the findings are made of.

The operator mints a short-lived token of the gateway ServiceAccount and performs the exchange the gateway
will (AssumeRoleWithWebIdentity, the Azure federated token exchange), so a wrong trust policy is a verdict
here, not a 403 in production. A cloud that gives no verdict (throttled, a server error, unreachable) raises
``CloudUnavailable`` from the verifiers: no verdict is made of it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from modelyard.api.common import SecretRef
from modelyard.api.conditions import Cond
from modelyard.api.provider_binding import AwsAuthType, AzureAuthType, BedrockSpec, ProviderBinding
from modelyard.audit.findings import Observed
from modelyard.catalog.public_apis import public_api
from modelyard.cloud import Check
from modelyard.cloud.aws import STS_AUDIENCE, BedrockTarget, BedrockVerifier
from modelyard.cloud.azure import TOKEN_AUDIENCE, AzureTarget, AzureVerifier
from modelyard.cloud.public_api import PublicApiTarget, PublicApiVerifier
from modelyard.kube import Kube
from modelyard.render.identity import AWS_SECRET_KEYS, AZURE_SECRET_KEY

from .common import READY

CREDENTIALS, CONNECTIVITY = "CredentialsVerified", "PrivateConnectivityVerified"
PUBLIC_ENDPOINT = "PublicEndpoint"
TOKEN_TTL_S = 600  # the shortest TokenRequest lifetime the API server accepts


class Verdict:
    """What one verification produced, before it becomes status."""

    def __init__(self, credentials: Cond, connectivity: Cond, observed: Observed) -> None:
        self.credentials = credentials
        self.connectivity = connectivity
        self.observed = observed
        self.gate: Cond | None = None  #: a requirement outside the conditions that keeps Ready False
        self.principal: str | None = None
        self.region: str | None = None
        self.endpoint: str | None = None
        #: Ready follows identity and credentials only (public APIs: no private path can exist)
        self.ready_without_connectivity = False


class Verification:
    """Verifies the bindings of one namespace with the operator's cloud verifiers; raises
    ``CloudUnavailable`` when a cloud gave no verdict."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        bedrock: BedrockVerifier,
        azure: AzureVerifier,
        public: PublicApiVerifier | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.bedrock = bedrock
        self.azure = azure
        self.public = public or PublicApiVerifier()

    async def verify(self, binding: ProviderBinding) -> Verdict:
        if binding.spec.public_api is not None:
            return await self._public_api(binding)
        if binding.spec.bedrock is not None:
            return await self._bedrock(binding, binding.spec.bedrock)
        return await self._azure(binding)

    async def _token(self, binding: ProviderBinding, audience: str) -> str:
        return await self.kube.create_token(
            self.namespace, binding.spec.service_account_name, audience, TOKEN_TTL_S
        )

    async def _bedrock(self, binding: ProviderBinding, bedrock: BedrockSpec) -> Verdict:
        auth = bedrock.auth
        token = await self._token(binding, STS_AUDIENCE) if auth.type is AwsAuthType.IRSA else None
        report = await self.bedrock.verify(
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
        verdict = Verdict(
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

    async def _azure(self, binding: ProviderBinding) -> Verdict:
        azure = binding.spec.azure_open_ai
        assert azure is not None
        keyless = azure.auth.type is AzureAuthType.WORKLOAD_IDENTITY
        report = await self.azure.verify(
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
        verdict = Verdict(
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

    async def _public_api(self, binding: ProviderBinding) -> Verdict:
        """The key, read from its Secret into memory only, proven against the vendor's models endpoint. A
        public API has no private path: PrivateConnectivityVerified is False with reason PublicEndpoint and
        does not hold Ready back (the cluster policy's publicAPIMaxClassification keeps sensitive routes
        away)."""
        spec = binding.spec.public_api
        assert spec is not None
        api = public_api(spec.vendor.value)
        base = spec.base_url or api.base_url
        assert base is not None  # required by the API for the vendors without a default
        connectivity = Cond.false(
            CONNECTIVITY,
            PUBLIC_ENDPOINT,
            f"not applicable: {api.title} is reached over the public internet (no private endpoint exists); "
            "routes above the cluster policy's publicAPIMaxClassification never use it",
        )
        ref = spec.api_key_secret_ref
        key, missing = await self._secret_value(ref.name, ref.key)
        if key is None:
            verdict = Verdict(missing, connectivity, Observed(models_unverified="no key to ask with"))
        else:
            report = await self.public.verify(
                PublicApiTarget(spec.vendor.value, base, key, tuple(spec.models))
            )
            observed = Observed(
                private_connectivity=False,
                unlisted_models=report.unlisted_models,
                models_unverified=report.models_unverified,
            )
            verdict = Verdict(_cond(CREDENTIALS, report.credentials), connectivity, observed)
        verdict.endpoint = base.rstrip("/")
        verdict.principal = f"API key in Secret {ref.name} (key {ref.key})"
        verdict.ready_without_connectivity = True
        return verdict

    async def _secret_value(self, name: str, key: str) -> tuple[str | None, Cond]:
        """The value of ``key`` in Secret ``name``, or None and the condition saying why not."""
        secret = await self.kube.get("v1", "Secret", self.namespace, name)
        if secret is None:
            return None, Cond.false(CREDENTIALS, "SecretNotFound", f"Secret {name} does not exist")
        encoded = (secret.get("data") or {}).get(key)
        try:
            value = base64.b64decode(encoded, validate=True).decode().strip() if encoded else ""
        except (binascii.Error, UnicodeDecodeError):
            value = ""
        if not value:
            return None, Cond.false(CREDENTIALS, "SecretKeyMissing", f"Secret {name} holds no value at {key}")
        return value, Cond.true(CREDENTIALS, "SecretKeyPresent", f"Secret {name} holds {key}")

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


def _cond(type_: str, check: Check) -> Cond:
    return Cond(type_, "True" if check.passed else "False", check.reason, check.message)
