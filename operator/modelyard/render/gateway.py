"""RoutePolicy -> the Kubernetes objects of its gateway: ServiceAccount, ConfigMap (the engine's compiled
config), Service, NetworkPolicy and Deployment, given the backends the controller resolved as eligible (see
:mod:`modelyard.render.routing` and :mod:`modelyard.render.targets`).

The data plane is an engine behind :class:`GatewayEngine`: LiteLLM's proxy (:data:`LITELLM`, its config
compiler in :mod:`modelyard.render.litellm`) is the one modelyard runs.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from modelyard.api.route_policy import RoutePolicy

from .common import (
    GATEWAY_COMPONENT,
    Manifest,
    cluster_ip_service,
    dns_egress,
    http_probe,
    https_egress,
    labels,
    metadata,
    network_policy,
    pod_security_context,
    restricted_security_context,
    selector_labels,
    spec_hash,
    stamp_content_hashes,
    tmp_mount,
    tmp_volume,
)
from .identity import IdentityWiring
from .identity import service_account as identity_service_account
from .inference_pool import inference_gateway_egress
from .litellm import MASTER_KEY_ENV, compile_litellm_config, config_yaml
from .model_deployment import PORT as MODEL_SERVER_PORT
from .model_deployment import SERVER as MODEL_SERVER
from .public_api import PublicApiTarget, public_egress
from .targets import ResolvedRoute, SelfHostedTarget

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
MASTER_KEY_SECRET_KEY = "masterKey"
#: Pods with this label, in any namespace, may call the gateway (besides every pod of its namespace).
GATEWAY_CLIENT_LABEL = "modelyard.dev/gateway-client"


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
    #: the env var the engine reads its master key from (filled from the master key Secret)
    master_key_env: str
    env: tuple[tuple[str, str], ...] = ()  #: fixed, non-secret environment


LITELLM = GatewayEngine(
    name="litellm",
    image=LITELLM_IMAGE,
    port=PORT,
    compile=compile_litellm_config,
    args=("--config", f"{CONFIG_DIR}/{CONFIG_KEY}", "--port", str(PORT)),
    readiness_path="/health/readiness",
    liveness_path="/health/liveliness",
    master_key_env=MASTER_KEY_ENV,
    env=(("LITELLM_LOCAL_MODEL_COST_MAP", "True"),),
)


def gateway_name(policy: str) -> str:
    return f"{policy}-gateway"


def master_key_secret(policy: str) -> str:
    """The Secret (key ``masterKey``) holding the gateway's master key; the controller creates it."""
    return f"{gateway_name(policy)}-master-key"


def gateway_endpoint(policy: str, namespace: str) -> str:
    """The gateway's OpenAI-compatible base URL (the RoutePolicy's status.endpoint)."""
    return f"http://{gateway_name(policy)}.{namespace}.svc:{PORT}/v1"


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
        egress_inputs = [
            (b.key, b.egress_cidrs, b.target.excluded_cidrs if isinstance(b.target, PublicApiTarget) else ())
            for b in self.backends
        ]
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
        return cluster_ip_service(self._meta(self.name), self._selector(), self.engine.port)

    def network_policy(self) -> Manifest:
        """Ingress on the gateway port from every pod of the namespace and from pods labelled
        ``modelyard.dev/gateway-client: "true"`` in any namespace; egress to DNS, the eligible backends and
        what the identities need (token endpoints over HTTPS, the EKS Pod Identity agent)."""
        clients = [
            {"podSelector": {}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {GATEWAY_CLIENT_LABEL: "true"}}},
        ]
        ingress = [{"from": clients, "ports": [{"protocol": "TCP", "port": self.engine.port}]}]
        return network_policy(self._meta(self.name), self._selector(), ingress=ingress, egress=self._egress())

    def _egress(self) -> list[dict[str, Any]]:
        rules = [dns_egress(), *self._model_server_egress(), *self._provider_egress()]
        rules.extend(copy.deepcopy(rule) for rule in self.wiring.egress if rule not in rules)
        return rules

    def _model_server_egress(self) -> list[dict[str, Any]]:
        targets = [b.target for b in self.backends if isinstance(b.target, SelfHostedTarget)]
        names = sorted({t.name for t in targets if t.via_gateway is None})
        gateways = sorted({t.via_gateway for t in targets if t.via_gateway is not None})
        rules = [inference_gateway_egress(url) for url in gateways]
        if not names:
            return rules
        peers = [
            {"podSelector": {"matchLabels": selector_labels("ModelDeployment", n, MODEL_SERVER)}}
            for n in names
        ]
        return [{"to": peers, "ports": [{"protocol": "TCP", "port": MODEL_SERVER_PORT}]}, *rules]

    def _provider_egress(self) -> list[dict[str, Any]]:
        """HTTPS to the providers: only to their endpoints' CIDRs when every one is known, else anywhere
        (a NetworkPolicy cannot name a host; private DNS of the verified endpoints keeps traffic private).
        While a public model API is eligible, HTTPS to public IPv4 addresses too: everything but the private,
        link-local, shared and cluster ranges (render.public_api)."""
        public = [b.target for b in self.backends if isinstance(b.target, PublicApiTarget)]
        providers = [b for b in self.backends if not isinstance(b.target, SelfHostedTarget | PublicApiTarget)]
        if not providers:
            return public_egress(public)
        if not all(b.egress_cidrs for b in providers):
            return [https_egress(), *public_egress(public)]
        cidrs = sorted({cidr for b in providers for cidr in b.egress_cidrs})
        return [https_egress(cidrs), *public_egress(public)]

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
            "securityContext": pod_security_context(RUN_AS_USER),
            "containers": [self._container()],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{self.name}-config"}},
                tmp_volume(),
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
            "startupProbe": http_probe(engine.readiness_path, period=5, failures=60),
            "readinessProbe": http_probe(engine.readiness_path, period=10, failures=3),
            "livenessProbe": http_probe(engine.liveness_path, period=15, failures=5),
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "securityContext": restricted_security_context(read_only_root_filesystem=True),
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                tmp_mount(),
            ],
        }

    def _env(self) -> list[dict[str, Any]]:
        master_key = {"name": master_key_secret(self.policy_name), "key": MASTER_KEY_SECRET_KEY}
        return [
            {"name": self.engine.master_key_env, "valueFrom": {"secretKeyRef": master_key}},
            *({"name": name, "value": value} for name, value in self.engine.env),
            *copy.deepcopy(self.wiring.env),
        ]
