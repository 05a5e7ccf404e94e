"""Operator settings: typed, read once from ``MODELYARD_*`` environment variables (the Helm chart sets
them from its values)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network

from modelyard.api import DataClassification
from modelyard.api.policy import ClusterPolicy
from modelyard.render.gateway import LITELLM_IMAGE
from modelyard.render.model_deployment import AWS_CLI_IMAGE, OLLAMA_IMAGE, VLLM_IMAGE

PREFIX = "MODELYARD_"
TRUE = ("1", "true", "yes", "on")
AZURE_RESOURCE_MANAGER_URL = "https://management.azure.com"
AZURE_RESOURCE_MANAGER_SCOPE = "https://management.azure.com/.default"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the operator reads from its environment."""

    policy: ClusterPolicy = field(default_factory=ClusterPolicy)
    vllm_image: str = VLLM_IMAGE
    aws_cli_image: str = AWS_CLI_IMAGE
    ollama_image: str = OLLAMA_IMAGE
    litellm_image: str = LITELLM_IMAGE
    #: Azure Resource Manager: where ProviderBinding verification reads accounts, and the token scope for it
    #: (sovereign clouds differ, e.g. https://management.usgovcloudapi.net).
    azure_resource_manager_url: str = AZURE_RESOURCE_MANAGER_URL
    azure_resource_manager_scope: str = AZURE_RESOURCE_MANAGER_SCOPE
    #: A hosts(5) file whose names the endpoint DNS check answers from instead of DNS (split-horizon setups
    #: where the operator's resolver cannot see the private zone; offline tests).
    hosts_file: str | None = None
    #: Whether ModelDeployments may have an InferencePool (spec.inferencePool); off where the Gateway API
    #: Inference Extension is not used (Helm value inferencePool.enabled).
    inference_pools: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """``MODELYARD_ALLOW_STATIC_CREDENTIALS``, ``MODELYARD_REQUIRE_PRIVATE_CONNECTIVITY_FROM``,
        ``MODELYARD_ALLOWED_REGIONS`` (comma-separated), ``MODELYARD_PUBLIC_API_MAX_CLASSIFICATION``,
        ``MODELYARD_CLUSTER_CIDRS`` (comma-separated), ``MODELYARD_{VLLM,AWS_CLI,OLLAMA,LITELLM}_IMAGE``,
        ``MODELYARD_AZURE_RESOURCE_MANAGER_URL``, ``MODELYARD_AZURE_RESOURCE_MANAGER_SCOPE`` and
        ``MODELYARD_HOSTS_FILE``."""
        values = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return values.get(PREFIX + name, "").strip() or default

        policy = ClusterPolicy(
            allow_static_credentials=get("ALLOW_STATIC_CREDENTIALS").lower() in TRUE,
            require_private_connectivity_from=DataClassification(
                get("REQUIRE_PRIVATE_CONNECTIVITY_FROM", DataClassification.CONFIDENTIAL.value)
            ),
            allowed_regions=tuple(r.strip() for r in get("ALLOWED_REGIONS").split(",") if r.strip()),
            public_api_max_classification=DataClassification(
                get("PUBLIC_API_MAX_CLASSIFICATION", DataClassification.PUBLIC.value)
            ),
            cluster_cidrs=tuple(
                str(ip_network(c.strip(), strict=False)) for c in get("CLUSTER_CIDRS").split(",") if c.strip()
            ),
            inference_gateway_url=get("INFERENCE_GATEWAY_URL") or None,
        )
        return cls(
            policy=policy,
            vllm_image=get("VLLM_IMAGE", VLLM_IMAGE),
            aws_cli_image=get("AWS_CLI_IMAGE", AWS_CLI_IMAGE),
            ollama_image=get("OLLAMA_IMAGE", OLLAMA_IMAGE),
            litellm_image=get("LITELLM_IMAGE", LITELLM_IMAGE),
            azure_resource_manager_url=get("AZURE_RESOURCE_MANAGER_URL", AZURE_RESOURCE_MANAGER_URL),
            azure_resource_manager_scope=get("AZURE_RESOURCE_MANAGER_SCOPE", AZURE_RESOURCE_MANAGER_SCOPE),
            hosts_file=get("HOSTS_FILE") or None,
            inference_pools=get("INFERENCE_POOLS", "true").lower() in TRUE,
        )
