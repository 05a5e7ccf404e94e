"""RoutePolicy -> the LiteLLM proxy gateway: its config (ConfigMap), Deployment, ServiceAccount, Service and
NetworkPolicy, given the backends the controller resolved as eligible (see :mod:`modelyard.render.routing`).

LiteLLM config, as the pinned proxy reads it:

- one deployment per backend in ``model_list``; self-hosted backends as ``openai/<served name>`` with the
  ModelDeployment's Service as ``api_base``; Bedrock as ``bedrock/<model id>`` with ``aws_region_name`` and,
  when known, the VPC endpoint as ``aws_bedrock_runtime_endpoint``; Azure as ``azure/<deployment>`` with
  ``api_base`` and ``api_version``;
- keyless auth passes no credential at all: with no ``aws_*`` credential parameter LiteLLM asks boto3's
  default chain, which exchanges the IRSA web identity token (``AWS_ROLE_ARN``,
  ``AWS_WEB_IDENTITY_TOKEN_FILE``) with STS or asks the EKS Pod Identity agent, and signs each Converse /
  InvokeModel request (SigV4) for the endpoint's own host; with
  ``litellm_settings.enable_azure_ad_token_refresh`` and no ``api_key`` it takes an azure-identity
  DefaultAzureCredential, whose WorkloadIdentityCredential exchanges ``AZURE_FEDERATED_TOKEN_FILE`` for an
  Entra token (Cognitive Services scope), sent as the bearer. tests/gateway/test_provider_auth.py runs
  exactly that against STS and Entra fakes. Static keys are ``os.environ/`` references to env vars filled
  from Secrets, so the ConfigMap never holds a secret value;
- fallback routes: one model group per backend, the first named after the route, and
  ``router_settings.fallbacks`` listing the others in priority order (tried in order after ``num_retries``);
- weighted routes: every backend in the route's group with ``weight`` (``simple-shuffle`` picks by weight).

A name the config does not hold is refused (400), so a route left out fails closed; the proxy also accepts a
configured deployment's ``model_info.id`` or ``litellm_params.model``, which reach only eligible backends.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.provider_binding import AwsAuthType, AzureAuthType, ProviderBinding
from modelyard.api.route_policy import Backend, Limits, Route, RoutePolicy, Strategy

from .common import (
    GATEWAY_COMPONENT,
    Manifest,
    dns_egress,
    labels,
    metadata,
    restricted_security_context,
    selector_labels,
    spec_hash,
    stamp_content_hashes,
)
from .identity import AWS_SECRET_KEYS, AZURE_SECRET_KEY, IdentityWiring, static_env_name
from .identity import service_account as identity_service_account
from .model_deployment import PORT as MODEL_SERVER_PORT
from .model_deployment import SERVER as MODEL_SERVER
from .model_deployment import endpoint as model_deployment_endpoint

KIND = "RoutePolicy"
#: The LiteLLM release the gateway runs (the non-root variant of the official image); `make tools` installs
#: the same release from PyPI for the tests, and this is the one place to change it. The newest whose
#: ``litellm[proxy]`` installs from PyPI: 1.108.8 and later require ``litellm-enterprise==0.1.79.post2``,
#: ``litellm-proxy-extras==0.4.110.post1`` / ``0.4.113`` or ``litellm-proxy``, which PyPI does not serve.
#: spec.gateway.image overrides the image per RoutePolicy, the ``image`` argument of :func:`render_gateway`
#: per operator.
LITELLM_VERSION = "1.108.7"
LITELLM_IMAGE = f"ghcr.io/berriai/litellm-non_root:main-v{LITELLM_VERSION}"
PORT = 4000
RUN_AS_USER = 65534
CONFIG_DIR = "/etc/litellm"
CONFIG_KEY = "config.yaml"
CONFIG_HASH_ANNOTATION = "modelyard.dev/config-hash"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
MASTER_KEY_SECRET_KEY = "masterKey"
#: Pods with this label, in any namespace, may call the gateway (besides every pod of its namespace).
GATEWAY_CLIENT_LABEL = "modelyard.dev/gateway-client"
#: Self-hosted engines run without --api-key (their NetworkPolicy admits only gateways); LiteLLM's openai/
#: provider still wants a non-empty key, so it gets this non-secret placeholder.
NO_API_KEY = "unused"
#: Separates a route's name from its fallback group number; route names cannot contain it.
FALLBACK_SEPARATOR = "@fallback-"
_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True, slots=True)
class SelfHostedTarget:
    """A ModelDeployment, reached through its Service."""

    name: str
    namespace: str
    served_model: str

    @property
    def api_base(self) -> str:
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


Target = SelfHostedTarget | BedrockTarget | AzureTarget


@dataclass(frozen=True, slots=True)
class ResolvedBackend:
    """One eligible backend of a route, as the controller resolved it."""

    key: str  #: Backend.key, e.g. ProviderBinding/bedrock-eu/meta.llama3-1-70b-instruct-v1:0
    target: Target
    weight: int | None = None
    #: Where the provider's private endpoint lives; empty when unknown (egress then allows any HTTPS).
    egress_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_model_deployment(cls, backend: Backend, md: ModelDeployment, namespace: str) -> ResolvedBackend:
        target = SelfHostedTarget(md.metadata.name, namespace, md.spec.model.name)
        return cls(key=backend.key, target=target, weight=backend.weight)

    @classmethod
    def from_provider_binding(
        cls,
        backend: Backend,
        binding: ProviderBinding,
        *,
        runtime_endpoint: str | None = None,
        egress_cidrs: tuple[str, ...] = (),
    ) -> ResolvedBackend:
        """Raises ValueError when ``backend.model`` is not listed in the binding (routing rejects such a
        backend first)."""
        spec, name, model = binding.spec, binding.metadata.name, str(backend.model)
        if model not in binding_models(binding):
            raise ValueError(f"model {model} not listed in ProviderBinding {name}")
        target: Target
        if spec.bedrock is not None:
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


@dataclass(frozen=True, slots=True)
class GatewayEngine:
    """What the gateway renderer needs from a data-plane engine. LiteLLM is the one modelyard runs; a second
    engine (Envoy AI Gateway) is another instance of this, with its own compiler."""

    name: str  #: container name
    image: str
    port: int
    compile: Callable[[RoutePolicy, Sequence[ResolvedRoute]], dict[str, Any]]  #: routes -> engine config
    args: tuple[str, ...]  #: command-line arguments (the config is mounted at CONFIG_DIR/CONFIG_KEY)
    readiness_path: str
    liveness_path: str
    env: tuple[tuple[str, str], ...] = ()  #: fixed, non-secret environment


def binding_models(binding: ProviderBinding) -> list[str]:
    """What routes may name in ``model`` for this binding: Bedrock model ids or Azure deployment names."""
    if binding.spec.bedrock is not None:
        return list(binding.spec.bedrock.models)
    assert binding.spec.azure_open_ai is not None
    return [d.name for d in binding.spec.azure_open_ai.deployments]


def gateway_name(policy: str) -> str:
    return f"{policy}-gateway"


def master_key_secret(policy: str) -> str:
    """The Secret (key ``masterKey``) holding the gateway's master key; the controller creates it."""
    return f"{gateway_name(policy)}-master-key"


def gateway_endpoint(policy: str, namespace: str) -> str:
    """The gateway's OpenAI-compatible base URL (the RoutePolicy's status.endpoint)."""
    return f"http://{gateway_name(policy)}.{namespace}.svc:{PORT}/v1"


# --- LiteLLM config ------------------------------------------------------------------------------


def compile_litellm_config(policy: RoutePolicy, routes: Sequence[ResolvedRoute]) -> dict[str, Any]:
    """The LiteLLM proxy config for the routes that have an eligible backend, in their given order."""
    served = [r for r in routes if r.backends]
    limits = policy.spec.limits
    router: dict[str, Any] = {"routing_strategy": "simple-shuffle"}
    fallbacks = [
        _fallbacks(r) for r in served if r.route.strategy is Strategy.FALLBACK and len(r.backends) > 1
    ]
    if fallbacks:
        router["fallbacks"] = fallbacks
    config: dict[str, Any] = {
        "model_list": [entry for r in served for entry in _model_entries(r, limits)],
        "router_settings": router,
    }
    if any(_azure_keyless(b.target) for r in served for b in r.backends):
        config["litellm_settings"] = {"enable_azure_ad_token_refresh": True}
    config["general_settings"] = {"master_key": _env_ref(MASTER_KEY_ENV)}
    return config


def config_yaml(config: dict[str, Any]) -> str:
    """The config as the ConfigMap holds it: deterministic YAML. libyaml's emitter when PyYAML has it (its
    wheels do), about 4 times faster than the pure-Python one: the operator compiles every RoutePolicy that
    references a backend each time the backend's status changes. Both give the same data, and for configs
    like these the same text (they lay out keys of 128 characters or more and long escaped strings
    differently)."""
    return yaml.dump(config, Dumper=_SAFE_DUMPER, sort_keys=False, default_flow_style=False, width=120)


LITELLM = GatewayEngine(
    name="litellm",
    image=LITELLM_IMAGE,
    port=PORT,
    compile=compile_litellm_config,
    args=("--config", f"{CONFIG_DIR}/{CONFIG_KEY}", "--port", str(PORT)),
    readiness_path="/health/readiness",
    liveness_path="/health/liveliness",
    env=(("LITELLM_LOCAL_MODEL_COST_MAP", "True"),),
)


def _group(route: Route, index: int) -> str:
    """The model group serving the route's backend at ``index`` under the fallback strategy."""
    return route.model if index == 0 else f"{route.model}{FALLBACK_SEPARATOR}{index}"


def _fallbacks(resolved: ResolvedRoute) -> dict[str, list[str]]:
    route = resolved.route
    return {route.model: [_group(route, i) for i in range(1, len(resolved.backends))]}


def _model_entries(resolved: ResolvedRoute, limits: Limits) -> list[dict[str, Any]]:
    route = resolved.route
    weighted = route.strategy is Strategy.WEIGHTED
    return [
        {
            "model_name": route.model if weighted else _group(route, index),
            "litellm_params": _litellm_params(backend, route, limits, weighted=weighted),
            "model_info": {"id": f"{route.model}:{backend.key}"},
        }
        for index, backend in enumerate(resolved.backends)
    ]


def _litellm_params(
    backend: ResolvedBackend, route: Route, limits: Limits, *, weighted: bool
) -> dict[str, Any]:
    params = _target_params(backend.target)
    params["timeout"] = route.timeout_seconds
    params["num_retries"] = route.retries
    if limits.requests_per_minute is not None:
        params["rpm"] = limits.requests_per_minute
    if limits.tokens_per_minute is not None:
        params["tpm"] = limits.tokens_per_minute
    if weighted:
        params["weight"] = backend.weight
    return params


def _target_params(target: Target) -> dict[str, Any]:
    if isinstance(target, SelfHostedTarget):
        return {"model": f"openai/{target.served_model}", "api_base": target.api_base, "api_key": NO_API_KEY}
    if isinstance(target, BedrockTarget):
        return _bedrock_params(target)
    return _azure_params(target)


def _bedrock_params(target: BedrockTarget) -> dict[str, Any]:
    """No credential parameter for keyless auth: LiteLLM then uses boto3's default credential chain."""
    params: dict[str, Any] = {"model": f"bedrock/{target.model_id}", "aws_region_name": target.region}
    if target.runtime_endpoint:
        params["aws_bedrock_runtime_endpoint"] = target.runtime_endpoint
    if target.auth is AwsAuthType.STATIC_SECRET:
        for key in AWS_SECRET_KEYS:
            params[key.lower()] = _env_ref(static_env_name(target.binding, key))
    return params


def _azure_params(target: AzureTarget) -> dict[str, Any]:
    """No api_key for workload identity: LiteLLM then fetches Entra ID tokens itself
    (``enable_azure_ad_token_refresh``)."""
    params: dict[str, Any] = {
        "model": f"azure/{target.deployment}",
        "api_base": target.endpoint,
        "api_version": target.api_version,
    }
    if target.auth is AzureAuthType.STATIC_SECRET:
        params["api_key"] = _env_ref(static_env_name(target.binding, AZURE_SECRET_KEY))
    return params


def _azure_keyless(target: Target) -> bool:
    return isinstance(target, AzureTarget) and target.auth is AzureAuthType.WORKLOAD_IDENTITY


def _env_ref(name: str) -> str:
    return f"os.environ/{name}"


# --- Kubernetes objects --------------------------------------------------------------------------


def render_gateway(
    policy: RoutePolicy,
    routes: Sequence[ResolvedRoute],
    wiring: IdentityWiring,
    *,
    namespace: str,
    image: str | None = None,
    engine: GatewayEngine = LITELLM,
) -> list[Manifest]:
    """ServiceAccount, ConfigMap, Service, NetworkPolicy and Deployment of the policy's gateway, in the
    order the controller applies them. The image is ``spec.gateway.image``, else ``image`` (the operator's
    setting), else the engine's pinned one."""
    chosen = policy.spec.gateway.image or image or engine.image
    gateway = _Gateway(policy, routes, wiring, namespace=namespace, image=chosen, engine=engine)
    owned = stamp_content_hashes(
        [gateway.config_map(), gateway.service(), gateway.network_policy(), gateway.deployment()]
    )
    return [gateway.service_account(), *owned]


class _Gateway:
    def __init__(
        self,
        policy: RoutePolicy,
        routes: Sequence[ResolvedRoute],
        wiring: IdentityWiring,
        *,
        namespace: str,
        image: str,
        engine: GatewayEngine,
    ) -> None:
        self.engine = engine
        self.policy_name = policy.metadata.name
        self.name = gateway_name(self.policy_name)
        self.namespace = namespace
        self.replicas = policy.spec.gateway.replicas
        self.backends = [b for r in routes for b in r.backends]
        self.wiring = wiring
        self.image = image
        self.config = config_yaml(engine.compile(policy, routes))
        self.config_hash = hashlib.sha256(self.config.encode()).hexdigest()[:16]
        egress_inputs = [(b.key, b.egress_cidrs) for b in self.backends]
        self.digest = spec_hash(policy.spec.to_wire(), self.config, egress_inputs, asdict(wiring), image)

    def _meta(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return metadata(name, self.namespace, self._labels(), self.digest, annotations)

    def _labels(self) -> dict[str, str]:
        return labels(KIND, self.policy_name, GATEWAY_COMPONENT, name="litellm")

    def _selector(self) -> dict[str, str]:
        return selector_labels(KIND, self.policy_name, GATEWAY_COMPONENT)

    def service_account(self) -> Manifest:
        """The namespace's gateway ServiceAccount, shared by every RoutePolicy and ProviderBinding there:
        exactly what the ProviderBinding controller applies (no policy's labels, no spec hash), so that
        appliers agree on every field and only add their own owner reference."""
        return identity_service_account(self.wiring, self.namespace)

    def config_map(self) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._meta(f"{self.name}-config"),
            "data": {CONFIG_KEY: self.config},
        }

    def service(self) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._meta(self.name),
            "spec": {
                "type": "ClusterIP",
                "selector": self._selector(),
                "ports": [
                    {"name": "http", "port": self.engine.port, "targetPort": "http", "protocol": "TCP"}
                ],
            },
        }

    def network_policy(self) -> Manifest:
        """Ingress on the gateway port from every pod of the namespace and from pods labelled
        ``modelyard.dev/gateway-client: "true"`` in any namespace; egress to DNS, the eligible backends and
        what the identities need (token endpoints over HTTPS, the EKS Pod Identity agent)."""
        clients = [
            {"podSelector": {}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {GATEWAY_CLIENT_LABEL: "true"}}},
        ]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self._meta(self.name),
            "spec": {
                "podSelector": {"matchLabels": self._selector()},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": clients, "ports": [{"protocol": "TCP", "port": self.engine.port}]}],
                "egress": self._egress(),
            },
        }

    def _egress(self) -> list[dict[str, Any]]:
        rules = [dns_egress(), *self._model_server_egress(), *self._provider_egress()]
        rules.extend(copy.deepcopy(rule) for rule in self.wiring.egress if rule not in rules)
        return rules

    def _model_server_egress(self) -> list[dict[str, Any]]:
        names = sorted({b.target.name for b in self.backends if isinstance(b.target, SelfHostedTarget)})
        if not names:
            return []
        peers = [
            {"podSelector": {"matchLabels": selector_labels("ModelDeployment", n, MODEL_SERVER)}}
            for n in names
        ]
        return [{"to": peers, "ports": [{"protocol": "TCP", "port": MODEL_SERVER_PORT}]}]

    def _provider_egress(self) -> list[dict[str, Any]]:
        """HTTPS to the providers: only to their endpoints' CIDRs when every one is known, else anywhere
        (a NetworkPolicy cannot name a host; private DNS of the verified endpoints keeps traffic private)."""
        providers = [b for b in self.backends if not isinstance(b.target, SelfHostedTarget)]
        https = [{"protocol": "TCP", "port": 443}]
        if not providers:
            return []
        if not all(b.egress_cidrs for b in providers):
            return [{"ports": https}]
        cidrs = sorted({cidr for b in providers for cidr in b.egress_cidrs})
        return [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs], "ports": https}]

    def deployment(self) -> Manifest:
        template_labels = {**self._labels(), **self.wiring.pod_labels}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._meta(self.name),
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": self._selector()},
                "template": {
                    "metadata": {
                        "labels": template_labels,
                        "annotations": {CONFIG_HASH_ANNOTATION: self.config_hash},
                    },
                    "spec": self._pod_spec(),
                },
            },
        }

    def _pod_spec(self) -> dict[str, Any]:
        return {
            "serviceAccountName": self.wiring.service_account,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [self._container()],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{self.name}-config"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }

    def _container(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "name": engine.name,
            "image": self.image,
            "args": list(engine.args),
            "ports": [{"name": "http", "containerPort": engine.port, "protocol": "TCP"}],
            "env": self._env(),
            "startupProbe": _probe(engine.readiness_path, period=5, failures=60),
            "readinessProbe": _probe(engine.readiness_path, period=10, failures=3),
            "livenessProbe": _probe(engine.liveness_path, period=15, failures=5),
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "securityContext": {**restricted_security_context(), "readOnlyRootFilesystem": True},
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }

    def _env(self) -> list[dict[str, Any]]:
        master_key = {"name": master_key_secret(self.policy_name), "key": MASTER_KEY_SECRET_KEY}
        return [
            {"name": MASTER_KEY_ENV, "valueFrom": {"secretKeyRef": master_key}},
            *({"name": name, "value": value} for name, value in self.engine.env),
            *copy.deepcopy(self.wiring.env),
        ]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
