"""The CRDs generated from the models: structural, with the rules and columns users rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.api import KINDS
from modelyard.cli.offline import crd_documents
from modelyard.planning.catalog import GPU_TYPES
from modelyard.render.common import to_yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = {doc["spec"]["names"]["kind"]: doc for doc in crd_documents()}


def schema(kind: str) -> dict[str, Any]:
    version = CRDS[kind]["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(schema(kind)):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for forbidden in ("$ref", "anyOf", "title", "$defs", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert node.get("additionalProperties") is not False, path


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_spec_field_is_described(kind: str) -> None:
    fields = walk(schema(kind)["properties"]["spec"], "spec")
    scalar_items = {p for p, node in fields if p.endswith(("[]", "{}")) and node.get("type") != "object"}
    undocumented = [p for p, node in fields if not node.get("description") and p not in scalar_items]
    assert undocumented == []


def test_names_category_status_subresource() -> None:
    for kind, doc in CRDS.items():
        names = doc["spec"]["names"]
        assert names["categories"] == ["modelyard"] and names["shortNames"], kind
        version = doc["spec"]["versions"][0]
        assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
        assert doc["metadata"]["name"] == f"{names['plural']}.modelyard.dev"


def rules(kind: str) -> list[str]:
    return [v["rule"] for _, node in walk(schema(kind)) for v in node.get("x-kubernetes-validations", [])]


def test_cel_rules_present() -> None:
    md, pb, rp = rules("ModelDeployment"), rules("ProviderBinding"), rules("RoutePolicy")
    assert "!(has(self.replicas) && has(self.autoscaling))" in md
    assert any("self.minReplicas <= self.maxReplicas" in r for r in md)
    assert any("(self.provider == 'publicAPI') == has(self.publicAPI)" in r for r in pb)
    assert any("has(self.baseURL)" in r for r in pb)
    assert "has(self.modelDeploymentRef) != has(self.providerBindingRef)" in rp
    assert any("self.strategy == 'weighted'" in r for r in rp)


def test_gpu_type_enum_is_the_catalog() -> None:
    gpu_type = schema("ModelDeployment")["properties"]["spec"]["properties"]["gpu"]["properties"]["type"]
    assert gpu_type["enum"] == list(GPU_TYPES)


def test_status_keeps_kopf_state_and_condition_map() -> None:
    for kind in KINDS:
        status = schema(kind)["properties"]["status"]["properties"]
        assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
        assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_printer_columns() -> None:
    columns = {
        k: [c["name"] for c in d["spec"]["versions"][0]["additionalPrinterColumns"]] for k, d in CRDS.items()
    }
    assert columns["ModelDeployment"][:4] == ["Engine", "Model", "GPU", "GPUs"]
    assert {"Ready", "Age"} <= set(columns["ModelDeployment"])
    assert {"Provider", "Region", "Auth", "Private", "Ready"} <= set(columns["ProviderBinding"])
    assert {"Served", "Endpoint", "Ready"} <= set(columns["RoutePolicy"])


def test_checked_in_crds_match_the_models() -> None:
    for doc in crd_documents():
        path = ROOT / "crds" / f"{doc['metadata']['name']}.yaml"
        assert path.read_text() == to_yaml([doc]), f"{path} drifted: run `make crds`"
        assert yaml.safe_load(path.read_text()) == doc
