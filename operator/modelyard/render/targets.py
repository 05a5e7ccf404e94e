"""What a gateway serves: each route with its eligible backends, and where each backend is reached.

The routing decision (:mod:`modelyard.render.routing`) produces these; the engine's compiler
(:mod:`modelyard.render.litellm`) and the gateway's Kubernetes objects (:mod:`modelyard.render.gateway`) read
them. Plain frozen data: no engine, no Kubernetes object.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import AwsAuthType, AzureAuthType, ProviderBinding
from modelyard.api.route_policy import Backend, Route

from .model_deployment import endpoint as model_deployment_endpoint
from .public_api import PublicApiTarget, public_api_target


@dataclass(frozen=True, slots=True)
class SelfHostedTarget:
    """A ModelDeployment, reached through its Service, or through the cluster's inference Gateway when it
    has an InferencePool and the cluster policy names one (``via_gateway``)."""

    name: str
    namespace: str
    served_model: str
    via_gateway: str | None = None

    @property
    def api_base(self) -> str:
        if self.via_gateway is not None:
            return f"{self.via_gateway.rstrip('/')}/v1"
        return model_deployment_endpoint(self.name, self.namespace)


@dataclass(frozen=True, slots=True)
class BedrockTarget:
    """A Bedrock model of a ProviderBinding."""

    binding: str
    region: str
    model_id: str
    auth: AwsAuthType
    #: The bedrock-runtime VPC endpoint's URL, when known; None uses the regional name, which resolves to the
    #: endpoint when its private DNS is on.
    runtime_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class AzureTarget:
    """An Azure OpenAI deployment of a ProviderBinding."""

    binding: str
    endpoint: str
    api_version: str
    deployment: str
    auth: AzureAuthType


Target = SelfHostedTarget | BedrockTarget | AzureTarget | PublicApiTarget


@dataclass(frozen=True, slots=True)
class ResolvedBackend:
    """One eligible backend of a route, as the controller resolved it."""

    key: str  #: Backend.key, e.g. ProviderBinding/bedrock-eu/meta.llama3-1-70b-instruct-v1:0
    target: Target
    weight: int | None = None
    #: Where the provider's private endpoint lives; empty when unknown (egress then allows any HTTPS).
    egress_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_model_deployment(
        cls, backend: Backend, md: ModelDeployment, namespace: str, inference_gateway: str | None = None
    ) -> ResolvedBackend:
        # a LoRA adapter is served by the same server under its own name
        via = inference_gateway if md.spec.inference_pool.enabled else None
        target = SelfHostedTarget(md.metadata.name, namespace, backend.adapter or md.spec.model.name, via)
        return cls(key=backend.key, target=target, weight=backend.weight)

    @classmethod
    def from_provider_binding(
        cls,
        backend: Backend,
        binding: ProviderBinding,
        *,
        runtime_endpoint: str | None = None,
        egress_cidrs: tuple[str, ...] = (),
        policy: ClusterPolicy | None = None,
    ) -> ResolvedBackend:
        """Raises ValueError when ``backend.model`` is not listed in the binding (routing rejects such a
        backend first)."""
        spec, name, model = binding.spec, binding.metadata.name, str(backend.model)
        if model not in binding_models(binding):
            raise ValueError(f"model {model} not listed in ProviderBinding {name}")
        target: Target
        if spec.public_api is not None:
            target = public_api_target(binding, model, policy)
        elif spec.bedrock is not None:
            target = BedrockTarget(name, spec.bedrock.region, model, spec.bedrock.auth.type, runtime_endpoint)
        else:
            azure = spec.azure_open_ai
            assert azure is not None
            target = AzureTarget(name, azure.endpoint.rstrip("/"), azure.api_version, model, azure.auth.type)
        return cls(key=backend.key, target=target, weight=backend.weight, egress_cidrs=egress_cidrs)


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """A route and its eligible backends, in priority order; none means the route is left out."""

    route: Route
    backends: tuple[ResolvedBackend, ...]


def binding_models(binding: ProviderBinding) -> list[str]:
    """What routes may name in ``model`` for this binding: Bedrock model ids or Azure deployment names."""
    if binding.spec.public_api is not None:
        return list(binding.spec.public_api.models)
    if binding.spec.bedrock is not None:
        return list(binding.spec.bedrock.models)
    assert binding.spec.azure_open_ai is not None
    return [d.name for d in binding.spec.azure_open_ai.deployments]
