"""RoutePolicy -> LiteLLM config and gateway objects, checked without a cluster."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelyard.api import ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.route_policy import Backend
from modelyard.render.common import SPEC_HASH_ANNOTATION, selector_labels, to_yaml
from modelyard.render.gateway import CONFIG_HASH_ANNOTATION, LITELLM_IMAGE, gateway_endpoint, render_gateway
from modelyard.render.identity import IdentityWiring, identity_wiring, merge_wiring
from modelyard.render.litellm import NO_API_KEY, compile_litellm_config
from modelyard.render.targets import ResolvedBackend, ResolvedRoute

K8S_VERSION = "1.35.0"
NS = "llm"
PLANTED = "PLANTED-SECRET-VALUE-7d1f"
RUNTIME = "https://vpce-0abc1234def567890-x.bedrock-runtime.eu-central-1.vpce.amazonaws.com"
RESOURCE_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/c"
CLAUDE = "anthropic.claude-sonnet-4-5"


def policy(**spec: Any) -> RoutePolicy:
    body: dict[str, Any] = {
        "routes": [
            {
                "model": "chat",
                "dataClassification": "confidential",
                "backends": [
                    {"modelDeploymentRef": "llama-8b"},
                    {"providerBindingRef": "bedrock-eu", "model": CLAUDE},
                    {"providerBindingRef": "azure-weu", "model": "gpt-4o-prod"},
                ],
                "retries": 2,
                "timeoutSeconds": 30,
            },
            {
                "model": "general",
                "strategy": "weighted",
                "backends": [
                    {"modelDeploymentRef": "llama-8b", "weight": 80},
                    {"providerBindingRef": "azure-weu", "model": "gpt-4o-prod", "weight": 20},
                ],
            },
            {
                "model": "secret",
                "dataClassification": "restricted",
                "backends": [{"modelDeploymentRef": "gone"}],
            },
        ],
        "limits": {"requestsPerMinute": 600, "tokensPerMinute": 100000},
        **spec,
    }
    return RoutePolicy.model_validate({"metadata": {"name": "llm-gateway", "namespace": NS}, "spec": body})


def llama() -> ModelDeployment:
    spec = {
        "model": {"name": "llama-3.1-8b-instruct", "source": "pvc://weights/llama"},
        "gpu": {"type": "nvidia-l4"},
    }
    return ModelDeployment.model_validate({"metadata": {"name": "llama-8b", "namespace": NS}, "spec": spec})


def bedrock(**auth: Any) -> ProviderBinding:
    spec = {
        "provider": "bedrock",
        "bedrock": {
            "region": "eu-central-1",
            "models": [CLAUDE],
            "auth": auth or {"type": "irsa", "roleArn": "arn:aws:iam::123456789012:role/llm-gateway"},
            "vpcEndpoint": {"id": "vpce-0abc1234def567890"},
        },
        "dataClassification": "confidential",
    }
    return ProviderBinding.model_validate({"metadata": {"name": "bedrock-eu", "namespace": NS}, "spec": spec})


def azure(**auth: Any) -> ProviderBinding:
    ids = {
        "clientId": "11111111-2222-3333-4444-555555555555",
        "tenantId": "66666666-7777-8888-9999-000000000000",
    }
    spec = {
        "provider": "azureOpenAI",
        "azureOpenAI": {
            "endpoint": "https://contoso-llm.openai.azure.com/",
            "resourceId": RESOURCE_ID,
            "deployments": [{"name": "gpt-4o-prod", "model": "gpt-4o"}],
            "auth": auth or {"type": "workloadIdentity", **ids},
        },
    }
    return ProviderBinding.model_validate({"metadata": {"name": "azure-weu", "namespace": NS}, "spec": spec})


def resolve(
    rp: RoutePolicy, bindings: dict[str, ProviderBinding], cidrs: tuple[str, ...] = ()
) -> list[ResolvedRoute]:
    """Every backend that exists is eligible here; eligibility itself is tested in test_routing."""
    mds = {"llama-8b": llama()}

    def one(backend: Backend) -> ResolvedBackend | None:
        if backend.model_deployment_ref is not None:
            md = mds.get(backend.model_deployment_ref)
            return ResolvedBackend.from_model_deployment(backend, md, NS) if md else None
        binding = bindings[str(backend.provider_binding_ref)]
        endpoint = RUNTIME if binding.spec.bedrock else None
        return ResolvedBackend.from_provider_binding(
            backend, binding, runtime_endpoint=endpoint, egress_cidrs=cidrs
        )

    routes = []
    for route in rp.spec.routes:
        backends = tuple(b for b in map(one, route.backends) if b is not None)
        routes.append(ResolvedRoute(route=route, backends=backends))
    return routes


def default_bindings() -> dict[str, ProviderBinding]:
    return {"bedrock-eu": bedrock(), "azure-weu": azure()}


def wiring_for(bindings: dict[str, ProviderBinding]) -> IdentityWiring:
    return merge_wiring(identity_wiring(b) for b in bindings.values())


def config(
    rp: RoutePolicy | None = None, bindings: dict[str, ProviderBinding] | None = None
) -> dict[str, Any]:
    rp = rp or policy()
    return compile_litellm_config(rp, resolve(rp, bindings or default_bindings()))


def render(
    rp: RoutePolicy | None = None,
    bindings: dict[str, ProviderBinding] | None = None,
    cidrs: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    rp = rp or policy()
    bindings = bindings or default_bindings()
    objects = render_gateway(rp, resolve(rp, bindings, cidrs), wiring_for(bindings), namespace=NS)
    return {obj["kind"]: obj for obj in objects}


def entries(cfg: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in cfg["model_list"] if e["model_name"] == name]


def params(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = entries(cfg, name)
    result: dict[str, Any] = entry["litellm_params"]
    return result


# --- the LiteLLM config --------------------------------------------------------------------------


def test_fallback_is_one_group_per_backend_in_priority_order() -> None:
    cfg = config()
    assert params(cfg, "chat")["model"] == "openai/llama-3.1-8b-instruct"
    assert params(cfg, "chat@fallback-1")["model"] == f"bedrock/{CLAUDE}"
    assert params(cfg, "chat@fallback-2")["model"] == "azure/gpt-4o-prod"
    assert cfg["router_settings"]["fallbacks"] == [{"chat": ["chat@fallback-1", "chat@fallback-2"]}]
    assert all("weight" not in params(cfg, g) for g in ("chat", "chat@fallback-1", "chat@fallback-2"))


def test_fallback_order_follows_the_spec() -> None:
    rp = policy()
    rp.spec.routes[0].backends.reverse()
    cfg = config(rp)
    assert params(cfg, "chat")["model"] == "azure/gpt-4o-prod"
    assert params(cfg, "chat@fallback-2")["model"] == "openai/llama-3.1-8b-instruct"


def test_fallback_with_one_backend_has_no_fallbacks() -> None:
    rp = policy()
    del rp.spec.routes[0].backends[1:]
    assert "fallbacks" not in config(rp)["router_settings"]


def test_weighted_is_one_group_with_weights() -> None:
    cfg = config()
    group = entries(cfg, "general")
    assert [(e["litellm_params"]["model"], e["litellm_params"]["weight"]) for e in group] == [
        ("openai/llama-3.1-8b-instruct", 80),
        ("azure/gpt-4o-prod", 20),
    ]
    assert cfg["router_settings"]["routing_strategy"] == "simple-shuffle"
    assert all("general" not in f for f in cfg["router_settings"]["fallbacks"])


def test_self_hosted_through_its_service() -> None:
    assert params(config(), "chat") == {
        "model": "openai/llama-3.1-8b-instruct",
        "api_base": "http://llama-8b.llm.svc:8000/v1",
        "api_key": NO_API_KEY,
        "timeout": 30,
        "num_retries": 2,
        "rpm": 600,
        "tpm": 100000,
    }


def test_limits_are_optional() -> None:
    rp = policy(limits={})
    assert {"rpm", "tpm"}.isdisjoint(params(config(rp), "chat"))


def test_bedrock_keyless_through_the_vpc_endpoint() -> None:
    p = params(config(), "chat@fallback-1")
    assert p["aws_region_name"] == "eu-central-1"
    assert p["aws_bedrock_runtime_endpoint"] == RUNTIME
    assert not [
        k for k in p if k.startswith("aws_") and k not in ("aws_region_name", "aws_bedrock_runtime_endpoint")
    ]


def test_bedrock_static_keys_are_env_references() -> None:
    bindings = {
        **default_bindings(),
        "bedrock-eu": bedrock(type="staticSecret", secretRef={"name": "aws-keys"}),
    }
    p = params(config(bindings=bindings), "chat@fallback-1")
    assert p["aws_access_key_id"] == "os.environ/MODELYARD_BEDROCK_EU_AWS_ACCESS_KEY_ID"
    assert p["aws_secret_access_key"] == "os.environ/MODELYARD_BEDROCK_EU_AWS_SECRET_ACCESS_KEY"


def test_azure_keyless_uses_entra_id_token_refresh() -> None:
    cfg = config()
    assert params(cfg, "chat@fallback-2") == {
        "model": "azure/gpt-4o-prod",
        "api_base": "https://contoso-llm.openai.azure.com",
        "api_version": "2024-10-21",
        "timeout": 30,
        "num_retries": 2,
        "rpm": 600,
        "tpm": 100000,
    }
    assert cfg["litellm_settings"] == {"enable_azure_ad_token_refresh": True}


def test_azure_static_key_is_an_env_reference() -> None:
    bindings = {
        **default_bindings(),
        "azure-weu": azure(type="staticSecret", secretRef={"name": "azure-key"}),
    }
    cfg = config(bindings=bindings)
    assert params(cfg, "chat@fallback-2")["api_key"] == "os.environ/MODELYARD_AZURE_WEU_AZURE_API_KEY"
    assert "litellm_settings" not in cfg


def test_route_without_eligible_backend_is_left_out() -> None:
    cfg = config()
    assert not [e for e in cfg["model_list"] if e["model_name"].startswith("secret")]
    assert all("secret" not in f for f in cfg["router_settings"]["fallbacks"])


def test_master_key_is_an_env_reference() -> None:
    assert config()["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}


def test_deployment_ids_are_unique_and_stable() -> None:
    ids = [e["model_info"]["id"] for e in config()["model_list"]]
    assert len(ids) == len(set(ids))
    assert ids[0] == "chat:ModelDeployment/llama-8b"


def test_unlisted_provider_model_is_refused() -> None:
    backend = Backend(provider_binding_ref="bedrock-eu", model="meta.llama3-1-70b-instruct-v1:0")
    with pytest.raises(ValueError, match="not listed in ProviderBinding bedrock-eu"):
        ResolvedBackend.from_provider_binding(backend, bedrock())


# --- secrets -------------------------------------------------------------------------------------

STATIC = {
    "bedrock-eu": bedrock(type="staticSecret", secretRef={"name": "aws-keys"}),
    "azure-weu": azure(type="staticSecret", secretRef={"name": "azure-key"}),
}


def test_no_secret_value_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secret values live in Secrets and in the gateway's environment; the renderer reads neither."""
    for var in (
        "LITELLM_MASTER_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AZURE_API_KEY",
        "MODELYARD_AZURE_WEU_AZURE_API_KEY",
    ):
        monkeypatch.setenv(var, PLANTED)
    bindings = copy.deepcopy(STATIC)
    bindings["azure-weu"].metadata.annotations["note"] = "key is elsewhere"
    objects = render(bindings=bindings)
    assert PLANTED not in to_yaml(list(objects.values()))
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    plain = {var["name"] for var in container["env"] if "value" in var}
    assert plain == {"LITELLM_LOCAL_MODEL_COST_MAP", "AWS_REGION"}


def test_config_map_holds_only_env_references() -> None:
    cfg = yaml.safe_load(render(bindings=STATIC)["ConfigMap"]["data"]["config.yaml"])
    words = ("key", "secret", "token", "password")
    credentials = [v for k, v in _walk(cfg) if any(word in k for word in words)]
    assert set(credentials) == {
        NO_API_KEY,
        "os.environ/LITELLM_MASTER_KEY",
        "os.environ/MODELYARD_BEDROCK_EU_AWS_ACCESS_KEY_ID",
        "os.environ/MODELYARD_BEDROCK_EU_AWS_SECRET_ACCESS_KEY",
        "os.environ/MODELYARD_AZURE_WEU_AZURE_API_KEY",
    }


def _walk(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in [(str(k), v), *_walk(v)]]
    if isinstance(node, list):
        return [pair for item in node for pair in _walk(item)]
    return []


# --- Kubernetes objects --------------------------------------------------------------------------


def test_kinds_in_apply_order() -> None:
    rp = policy()
    objects = render_gateway(rp, resolve(rp, default_bindings()), IdentityWiring(), namespace=NS)
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "NetworkPolicy",
        "Deployment",
    ]


@pytest.mark.parametrize("bindings", [default_bindings(), STATIC], ids=["keyless", "static"])
def test_manifests_validate_against_kubernetes_schemas(bindings: dict[str, ProviderBinding]) -> None:
    for obj in render(bindings=bindings, cidrs=("10.0.12.0/24",)).values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_object_carries_labels_and_spec_hash() -> None:
    for obj in render().values():
        if obj["kind"] == "ServiceAccount":
            continue  # shared by the namespace's policies: see below
        meta = obj["metadata"]
        assert meta["namespace"] == NS
        assert meta["labels"]["app.kubernetes.io/component"] == "gateway"
        assert meta["labels"]["modelyard.dev/routepolicy"] == "llm-gateway"
        assert SPEC_HASH_ANNOTATION in meta["annotations"]


def test_render_is_deterministic() -> None:
    first = to_yaml(list(render().values()))
    assert first == to_yaml(list(render().values()))
    assert "&id" not in first  # no YAML anchors from shared objects


def test_config_hash_rolls_the_pods_only_when_the_config_changes() -> None:
    def hashes(rp: RoutePolicy) -> tuple[str, str]:
        deployment = render(rp)["Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION], deployment[
            "metadata"
        ]["annotations"][SPEC_HASH_ANNOTATION]

    base_config, base_spec = hashes(policy())
    retried = policy()
    retried.spec.routes[0].retries = 5
    assert hashes(retried)[0] != base_config
    scaled_config, scaled_spec = hashes(policy(gateway={"replicas": 3}))
    assert scaled_config == base_config
    assert scaled_spec != base_spec


def test_config_map_holds_the_compiled_config() -> None:
    rp = policy()
    config_map = render(rp)["ConfigMap"]
    assert config_map["metadata"]["name"] == "llm-gateway-gateway-config"
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == config(rp)


def test_deployment() -> None:
    deployment = render()["Deployment"]
    assert deployment["metadata"]["name"] == "llm-gateway-gateway"
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == LITELLM_IMAGE
    assert container["args"] == ["--config", "/etc/litellm/config.yaml", "--port", "4000"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveliness"
    env = {var["name"]: var for var in container["env"]}
    assert env["LITELLM_MASTER_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "llm-gateway-gateway-master-key", "key": "masterKey"}
    }
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"]["value"] == "True"
    assert env["AWS_REGION"]["value"] == "eu-central-1"
    assert pod["serviceAccountName"] == "modelyard-gateway"


def test_deployment_is_locked_down() -> None:
    pod = render()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_image_override_from_the_spec_and_the_operator() -> None:
    rp = policy(gateway={"image": "registry.local/litellm:pinned"})
    assert (
        render(rp)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.local/litellm:pinned"
    )
    objects = render_gateway(policy(), [], IdentityWiring(), namespace=NS, image="mirror.local/litellm:1")
    assert objects[-1]["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.local/litellm:1"


def test_pod_template_carries_identity_labels() -> None:
    labels = render()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert labels["app.kubernetes.io/component"] == "gateway"


def test_model_servers_admit_the_gateway_pods() -> None:
    """The ModelDeployment NetworkPolicy admits pods labelled component=gateway, part-of=modelyard."""
    labels = render()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "modelyard"


def test_service_account_carries_the_merged_identity() -> None:
    account = render()["ServiceAccount"]
    assert account["metadata"]["name"] == "modelyard-gateway"
    # Shared by every policy (and binding) in the namespace: nothing one policy would set differently.
    assert "modelyard.dev/routepolicy" not in account["metadata"]["labels"]
    assert SPEC_HASH_ANNOTATION not in account["metadata"]["annotations"]
    annotations = account["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/llm-gateway"
    assert annotations["azure.workload.identity/client-id"] == "11111111-2222-3333-4444-555555555555"


def test_service() -> None:
    service = render()["Service"]
    assert service["metadata"]["name"] == "llm-gateway-gateway"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 4000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == selector_labels("RoutePolicy", "llm-gateway", "gateway")


def test_endpoint() -> None:
    assert gateway_endpoint("llm-gateway", NS) == "http://llm-gateway-gateway.llm.svc:4000/v1"


def test_network_policy_ingress() -> None:
    (rule,) = render()["NetworkPolicy"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 4000}]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"modelyard.dev/gateway-client": "true"}}},
    ]


def test_network_policy_egress_reaches_only_eligible_backends() -> None:
    egress = render()["NetworkPolicy"]["spec"]["egress"]
    dns, servers, https = egress
    assert {p["port"] for p in dns["ports"]} == {53}
    assert servers == {
        "to": [
            {"podSelector": {"matchLabels": selector_labels("ModelDeployment", "llama-8b", "model-server")}}
        ],
        "ports": [{"protocol": "TCP", "port": 8000}],
    }
    assert https == {"ports": [{"protocol": "TCP", "port": 443}]}
    assert "gone" not in str(egress)


def test_network_policy_egress_to_known_endpoint_cidrs() -> None:
    bindings = {"bedrock-eu": bedrock(type="podIdentity")}
    rp = policy()
    rp.spec.routes[0].backends.pop()
    rp.spec.routes[1].backends.pop()
    objects = render(rp, bindings, cidrs=("10.0.12.0/24", "10.0.13.0/24"))
    egress = objects["NetworkPolicy"]["spec"]["egress"]
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "10.0.12.0/24"}}, {"ipBlock": {"cidr": "10.0.13.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    assert egress[3]["ports"] == [{"protocol": "TCP", "port": 80}]  # the EKS Pod Identity agent
    assert len(egress) == 4


def test_self_hosted_only_gateway_has_no_internet_egress() -> None:
    rp = policy()
    for route in rp.spec.routes:
        route.backends = [b for b in route.backends if b.model_deployment_ref]
    objects = render_gateway(rp, resolve(rp, {}), IdentityWiring(), namespace=NS)
    egress = objects[3]["spec"]["egress"]
    assert all("to" in rule for rule in egress)
