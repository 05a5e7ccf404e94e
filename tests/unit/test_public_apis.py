"""Public model APIs, offline: the API model's rules, the vendor table, the policy cap on routes and
bindings, the findings, the compiled LiteLLM entries and the gateway's egress while (and only while) a
public-API backend is eligible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelyard.api import ProviderBinding, RoutePolicy
from modelyard.api.common import DataClassification, Severity
from modelyard.api.policy import ClusterPolicy
from modelyard.api.public_api import Vendor
from modelyard.audit.findings import (
    CLASSIFICATION_ABOVE_POLICY,
    PUBLIC_API_BINDING,
    STATIC_CREDENTIALS,
    UNKNOWN_PROVIDER_MODEL,
    Observed,
    provider_binding_findings,
)
from modelyard.catalog.public_apis import PUBLIC_APIS, markdown_table, model_ids, public_api
from modelyard.config import Settings
from modelyard.render.gateway import render_gateway
from modelyard.render.identity import identity_wiring, merge_wiring
from modelyard.render.public_api import ALWAYS_EXCLUDED, excluded_cidrs
from modelyard.render.routing import resolve_routes

NAMESPACE = "ml"
ROOT = Path(__file__).resolve().parents[2]
MODEL = "meta-llama/llama-3.1-8b-instruct"
READY = {
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready"},
        {"type": "PrivateConnectivityVerified", "status": "False", "reason": "PublicEndpoint"},
    ]
}


def public_binding(classification: str = "public", **public: Any) -> ProviderBinding:
    spec = {
        "vendor": "openrouter",
        "apiKeySecretRef": {"name": "openrouter-key", "key": "apiKey"},
        "models": [MODEL],
        **public,
    }
    return ProviderBinding.model_validate(
        {
            "metadata": {"name": "openrouter", "namespace": NAMESPACE, "generation": 1},
            "spec": {"provider": "publicAPI", "publicAPI": spec, "dataClassification": classification},
            "status": READY,
        }
    )


def policy(*classes: str) -> RoutePolicy:
    return RoutePolicy.model_validate(
        {
            "metadata": {"name": "gw", "namespace": NAMESPACE},
            "spec": {
                "routes": [
                    {
                        "model": f"route-{c}",
                        "dataClassification": c,
                        "backends": [{"providerBindingRef": "openrouter", "model": MODEL}],
                    }
                    for c in classes
                ]
            },
        }
    )


# --- API --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("public", "message"),
    [
        ({"vendor": "custom"}, "baseURL: required"),
        ({"vendor": "cloudflare"}, "baseURL: required"),
        ({"baseURL": "http://openrouter.ai/api/v1"}, "should match pattern"),
        ({"baseURL": "https://user@evil.example/v1"}, "should match pattern"),
        ({"vendor": "groq", "providerPreferences": {"dataCollection": "deny"}}, "only for vendor openrouter"),
        ({"models": []}, "at least 1 item"),
        ({"providerPreferences": {"dataCollection": "maybe"}}, "'deny' or 'allow'"),
    ],
)
def test_the_api_refuses(public: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        public_binding(**public)
    assert message in str(info.value)


def test_a_public_api_binding_sets_exactly_its_block() -> None:
    body = public_binding().model_dump(by_alias=True, exclude_none=True)
    body["spec"]["bedrock"] = {"region": "eu-central-1", "models": ["x"], "auth": {"type": "podIdentity"}}
    with pytest.raises(ValidationError, match="set exactly the block"):
        ProviderBinding.model_validate(body)


def test_openrouter_preferences_default_to_no_data_collection() -> None:
    spec = public_binding().spec.public_api
    assert spec is not None and spec.preferences is not None
    assert spec.preferences.to_openrouter() == {"data_collection": "deny"}


# --- the vendor table -------------------------------------------------------------------------------------
def test_the_table_has_a_row_for_every_vendor_of_the_api() -> None:
    assert set(PUBLIC_APIS) == {v.value for v in Vendor}
    for vendor in ("custom", "cloudflare"):  # the API requires baseURL exactly where the table has none
        assert public_api(vendor).base_url is None
    assert all(
        api.base_url and api.base_url.startswith("https://")
        for v, api in PUBLIC_APIS.items()
        if v not in ("custom", "cloudflare")
    )


def test_the_readme_table_names_every_vendor_and_what_is_verified() -> None:
    table = markdown_table()
    assert len(table.splitlines()) == 2 + len(PUBLIC_APIS)
    assert "`GET https://api.together.xyz/v1/models`" in table
    assert "`x-api-key` + `anthropic-version: 2023-06-01`" in table
    perplexity = next(line for line in table.splitlines() if line.startswith("| `perplexity`"))
    assert "none documented" in perplexity and "presence in its Secret only" in perplexity
    assert "/ai/models/search" in table


@pytest.mark.parametrize(
    ("vendor", "body", "ids"),
    [
        ("together", [{"id": "a"}, {"id": "b"}], ["a", "b"]),
        ("openai", {"object": "list", "data": [{"id": "gpt-4o"}]}, ["gpt-4o"]),
        ("gemini", {"models": [{"name": "models/gemini-2.0-flash"}]}, ["gemini-2.0-flash"]),
        ("cloudflare", {"success": True, "result": [{"name": "@cf/meta/x"}]}, ["@cf/meta/x"]),
    ],
)
def test_model_ids_read_each_documented_shape(vendor: str, body: Any, ids: list[str]) -> None:
    assert model_ids(public_api(vendor), body) == ids


def test_a_shape_other_than_the_documented_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="documented"):
        model_ids(public_api("together"), {"data": [{"id": "a"}]})  # Together answers a bare list


# --- policy cap -------------------------------------------------------------------------------------------
def test_routes_above_the_cap_reject_the_public_api_with_that_reason() -> None:
    bindings = {"openrouter": public_binding("restricted")}
    routes, statuses = resolve_routes(
        policy("public", "internal", "confidential"), ClusterPolicy(), {}, bindings, namespace=NAMESPACE
    )
    assert [bool(r.backends) for r in routes] == [True, False, False]
    reasons = [s.rejected[0].reason for s in statuses[1:]]
    assert all("public model API: cluster policy publicAPIMaxClassification is public" in r for r in reasons)


def test_raising_the_cap_admits_internal_but_never_past_private_connectivity() -> None:
    bindings = {"openrouter": public_binding("restricted")}
    cluster = ClusterPolicy(public_api_max_classification=DataClassification.CONFIDENTIAL)
    routes, statuses = resolve_routes(
        policy("internal", "confidential"), cluster, {}, bindings, namespace=NAMESPACE
    )
    assert [bool(r.backends) for r in routes] == [True, False]
    assert "private connectivity not verified" in statuses[1].rejected[0].reason


def test_the_key_is_not_gated_by_allow_static_credentials() -> None:
    bindings = {"openrouter": public_binding()}
    cluster = ClusterPolicy(allow_static_credentials=False)
    routes, statuses = resolve_routes(policy("public"), cluster, {}, bindings, namespace=NAMESPACE)
    assert routes[0].backends and not statuses[0].rejected


# --- findings ---------------------------------------------------------------------------------------------
def test_every_public_api_binding_is_flagged() -> None:
    found = provider_binding_findings(public_binding().spec, ClusterPolicy())
    codes = {f.code: f.severity for f in found}
    assert codes == {STATIC_CREDENTIALS: Severity.HIGH, PUBLIC_API_BINDING: Severity.LOW}
    assert "OpenRouter" in next(f.message for f in found if f.code == PUBLIC_API_BINDING)


def test_a_class_above_the_cap_is_a_high_finding() -> None:
    found = provider_binding_findings(public_binding("confidential").spec, ClusterPolicy())
    above = [f for f in found if f.code == CLASSIFICATION_ABOVE_POLICY]
    assert above and above[0].severity is Severity.HIGH and "capped" in above[0].message
    raised = ClusterPolicy(public_api_max_classification=DataClassification.CONFIDENTIAL)
    assert CLASSIFICATION_ABOVE_POLICY not in {
        f.code for f in provider_binding_findings(public_binding("confidential").spec, raised)
    }


def test_models_the_vendor_does_not_list_are_named() -> None:
    found = provider_binding_findings(
        public_binding().spec, ClusterPolicy(), Observed(unlisted_models=("meta-llama/llama-9",))
    )
    unknown = [f for f in found if f.code == UNKNOWN_PROVIDER_MODEL]
    assert unknown and "meta-llama/llama-9" in unknown[0].message


# --- compiled gateway -------------------------------------------------------------------------------------
def gateway(classes: tuple[str, ...], cluster: ClusterPolicy | None = None) -> dict[str, Any]:
    binding = public_binding(providerPreferences={"zeroDataRetention": True, "ignore": ["azure"]})
    cluster = cluster or ClusterPolicy()
    rp = policy(*classes)
    routes, _ = resolve_routes(rp, cluster, {}, {"openrouter": binding}, namespace=NAMESPACE)
    wiring = merge_wiring([identity_wiring(binding)])
    return {m["kind"]: m for m in render_gateway(rp, routes, wiring, namespace=NAMESPACE)}


def test_the_entry_names_the_vendor_the_key_variable_and_the_preferences() -> None:
    manifests = gateway(("public",))
    config = yaml.safe_load(manifests["ConfigMap"]["data"]["config.yaml"])
    params = config["model_list"][0]["litellm_params"]
    assert params["model"] == f"openrouter/{MODEL}"
    assert params["api_base"] == "https://openrouter.ai/api/v1"
    assert params["api_key"] == "os.environ/MODELYARD_OPENROUTER_API_KEY"
    assert params["drop_params"] is True
    assert params["extra_body"] == {"provider": {"data_collection": "deny", "zdr": True, "ignore": ["azure"]}}
    env = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    key_env = [e for e in env if e["name"] == "MODELYARD_OPENROUTER_API_KEY"]
    assert key_env == [
        {
            "name": "MODELYARD_OPENROUTER_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "openrouter-key", "key": "apiKey", "optional": True}},
        }
    ]


def public_rules(manifests: dict[str, Any]) -> list[dict[str, Any]]:
    egress = manifests["NetworkPolicy"]["spec"]["egress"]
    return [
        r for r in egress if any(p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for p in r.get("to", []))
    ]


def test_https_to_public_addresses_only_while_a_public_api_is_eligible() -> None:
    rules = public_rules(gateway(("public",)))
    assert len(rules) == 1
    block = rules[0]["to"][0]["ipBlock"]
    assert rules[0]["ports"] == [{"protocol": "TCP", "port": 443}]
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert private in block["except"]
    assert public_rules(gateway(("confidential",))) == []  # not eligible: no way out at all
    egress = gateway(("confidential",))["NetworkPolicy"]["spec"]["egress"]
    assert all(r.get("ports", [{}])[0].get("port") != 443 for r in egress), egress


def test_the_cluster_ranges_are_excluded_too() -> None:
    cluster = ClusterPolicy(cluster_cidrs=("198.18.0.0/15", "10.96.0.0/12", "fd00:10::/108"))
    block = public_rules(gateway(("public",), cluster))[0]["to"][0]["ipBlock"]
    assert "198.18.0.0/15" in block["except"]
    assert "10.96.0.0/12" not in block["except"]  # inside 10.0.0.0/8 already
    assert not any(":" in cidr for cidr in block["except"])  # no IPv6 egress at all, nothing to except
    assert excluded_cidrs(()) == tuple(
        sorted(ALWAYS_EXCLUDED, key=lambda c: tuple(map(int, c.split("/")[0].split("."))))
    )


def test_settings_read_the_cap_and_the_cluster_ranges() -> None:
    settings = Settings.from_env(
        {
            "MODELYARD_PUBLIC_API_MAX_CLASSIFICATION": "internal",
            "MODELYARD_CLUSTER_CIDRS": "198.18.0.0/15, 10.96.0.0/12",
        }
    )
    assert settings.policy.public_api_max_classification is DataClassification.INTERNAL
    assert settings.policy.cluster_cidrs == ("198.18.0.0/15", "10.96.0.0/12")
    assert Settings.from_env({}).policy.public_api_max_classification is DataClassification.PUBLIC


def test_the_audit_of_the_examples_lists_the_openrouter_binding() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "audit", "-f", "examples", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["policy"]["publicAPIMaxClassification"] == "public"
    openrouter = next(o for o in report["objects"] if o["name"] == "openrouter")
    assert openrouter["network"]["path"] == "public"
    assert openrouter["identity"]["principal"] == "Secret openrouter-key key apiKey"
    assert {"PUBLIC_API_BINDING", "STATIC_CREDENTIALS"} <= {f["code"] for f in openrouter["findings"]}
    assert [r["route"] for r in openrouter["routes"]] == ["prototype"]


def test_the_docs_table_is_the_generated_one() -> None:
    docs = (ROOT / "docs" / "public-apis.md").read_text()
    assert markdown_table() in docs, "regenerate the table in docs/public-apis.md from markdown_table()"


def test_a_region_restricted_cluster_rejects_public_apis_whose_region_is_unknown() -> None:
    cluster = ClusterPolicy(allowed_regions=("eu-central-1",))
    routes, statuses = resolve_routes(
        policy("public"), cluster, {}, {"openrouter": public_binding()}, namespace=NAMESPACE
    )
    assert not routes[0].backends
    assert "region unknown not in allowedRegions [eu-central-1]" in statuses[0].rejected[0].reason
