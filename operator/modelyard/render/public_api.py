"""Public model APIs in the gateway: the LiteLLM entry of a ProviderBinding of ``provider: publicAPI`` and the
gateway's HTTPS egress to the public internet while such a backend is eligible.

The vendor facts (LiteLLM provider, default base URL, parameters the vendor refuses) are
:mod:`modelyard.catalog.public_apis`'s; the API key reaches the gateway only as the environment variable
:func:`modelyard.render.identity.public_api_key_env` names, filled from the binding's Secret (secretKeyRef),
and the config refers to it as ``os.environ/<NAME>``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBinding
from modelyard.catalog.public_apis import public_api

from .common import HTTPS_PORT
from .identity import public_api_key_env

#: IPv4 ranges the public-API egress never reaches: RFC 1918 private ranges, link-local (which holds the
#: cloud metadata address 169.254.169.254 and the EKS Pod Identity agent), RFC 6598 shared address space (pod
#: and Service ranges on GKE and EKS custom networking; Alibaba's metadata 100.100.100.200) and loopback. The
#: cluster's own ranges outside these come from the cluster policy (clusterCIDRs). No IPv6 egress is granted
#: at all: a NetworkPolicy ipBlock of 0.0.0.0/0 matches IPv4 only, and the vendors serve IPv4.
ALWAYS_EXCLUDED = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)


@dataclass(frozen=True, slots=True)
class PublicApiTarget:
    """A model of a public model API, as a ProviderBinding names it."""

    binding: str
    vendor: str
    model: str
    #: spec.publicAPI.baseURL, else the vendor's documented one: always given to LiteLLM as ``api_base``, so
    #: the gateway calls the host the verifier proved the key against (LiteLLM's own defaults differ for some:
    #: api.together.ai, api.deepseek.com/beta)
    base_url: str = ""
    #: OpenRouter's ``provider`` object for the request body
    provider_preferences: Mapping[str, Any] | None = field(default=None, hash=False)
    #: IPv4 ranges the gateway's egress to it excludes
    excluded_cidrs: tuple[str, ...] = ALWAYS_EXCLUDED

    @property
    def api_key_env(self) -> str:
        return public_api_key_env(self.binding)


def public_api_target(binding: ProviderBinding, model: str, policy: ClusterPolicy | None) -> PublicApiTarget:
    spec = binding.spec.public_api
    assert spec is not None
    preferences = spec.preferences
    base = spec.base_url or public_api(spec.vendor.value).base_url
    assert base is not None  # the API requires baseURL for the vendors without a documented one
    return PublicApiTarget(
        binding=binding.metadata.name,
        vendor=spec.vendor.value,
        model=model,
        base_url=base.rstrip("/"),
        provider_preferences=preferences.to_openrouter() if preferences is not None else None,
        excluded_cidrs=excluded_cidrs(policy.cluster_cidrs if policy is not None else ()),
    )


def excluded_cidrs(cluster_cidrs: Iterable[str]) -> tuple[str, ...]:
    """:data:`ALWAYS_EXCLUDED` and the cluster's IPv4 ranges not inside them, sorted; IPv6 ranges are left out
    (no IPv6 egress is granted)."""
    always = [ipaddress.IPv4Network(c) for c in ALWAYS_EXCLUDED]
    extra = set()
    for cidr in cluster_cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        if isinstance(network, ipaddress.IPv4Network) and not any(network.subnet_of(a) for a in always):
            extra.add(network)
    return tuple(str(n) for n in sorted([*always, *extra]))


def litellm_params(target: PublicApiTarget) -> dict[str, Any]:
    """The entry's ``litellm_params`` (before the route's timeout and retries): the vendor's LiteLLM provider,
    the base URL, the key as an ``os.environ/`` reference, ``drop_params`` so a parameter LiteLLM knows the
    vendor lacks is dropped instead of failing the request, and ``additional_drop_params`` for those the
    vendor refuses although LiteLLM passes them on (Groq: logprobs, n)."""
    api = public_api(target.vendor)
    params: dict[str, Any] = {
        "model": f"{api.litellm_provider}/{target.model}",
        "api_base": target.base_url,
        "api_key": f"os.environ/{target.api_key_env}",
        "drop_params": True,
    }
    if api.refused_params:
        params["additional_drop_params"] = list(api.refused_params)
    if target.provider_preferences is not None:
        params["extra_body"] = {"provider": dict(target.provider_preferences)}
    return params


def public_egress(targets: Iterable[PublicApiTarget]) -> list[dict[str, Any]]:
    """One egress rule: HTTPS to every IPv4 address outside the excluded ranges, when any target is given."""
    excluded = sorted({cidr for t in targets for cidr in t.excluded_cidrs})
    if not excluded:
        return []
    return [
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": excluded}}],
            "ports": [{"protocol": "TCP", "port": HTTPS_PORT}],
        }
    ]
