"""RoutePolicy -> the LiteLLM proxy's config: what the gateway's ConfigMap holds (the Kubernetes objects that
run it are :mod:`modelyard.render.gateway`'s). The proxy release it targets is the one the gateway runs
(``LITELLM_VERSION`` there); tests/gateway starts that release with compiled configs.

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
- public model APIs as ``<vendor's LiteLLM provider>/<model>`` with the key as such a reference,
  ``drop_params`` and, for OpenRouter, the ``provider`` preferences in ``extra_body``
  (:mod:`modelyard.render.public_api`; tests/gateway/test_public_apis.py);
- fallback routes: one model group per backend, the first named after the route, and
  ``router_settings.fallbacks`` listing the others in priority order (tried in order after ``num_retries``);
- weighted routes: every backend in the route's group with ``weight`` (``simple-shuffle`` picks by weight).

A name the config does not hold is refused (400), so a route left out fails closed; the proxy also accepts a
configured deployment's ``model_info.id`` or ``litellm_params.model``, which reach only eligible backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from modelyard.api.provider_binding import AwsAuthType, AzureAuthType
from modelyard.api.route_policy import Limits, Route, RoutePolicy, Strategy

from .identity import AWS_SECRET_KEYS, AZURE_SECRET_KEY, static_env_name
from .public_api import PublicApiTarget
from .public_api import litellm_params as public_api_params
from .targets import AzureTarget, BedrockTarget, ResolvedBackend, ResolvedRoute, SelfHostedTarget, Target

#: The env var the proxy reads its master key from; the gateway fills it from the master key Secret.
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
#: Self-hosted engines run without --api-key (their NetworkPolicy admits only gateways); LiteLLM's openai/
#: provider still wants a non-empty key, so it gets this non-secret placeholder.
NO_API_KEY = "unused"
#: Separates a route's name from its fallback group number; route names cannot contain it.
FALLBACK_SEPARATOR = "@fallback-"
_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


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
    if isinstance(target, PublicApiTarget):
        return public_api_params(target)
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
