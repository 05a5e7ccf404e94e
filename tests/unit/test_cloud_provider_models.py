"""The offline provider model catalog, judged by the pinned LiteLLM's own model map (the ids its bedrock and
azure providers know), and the examples held to it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.api import ProviderBinding
from modelyard.api.policy import ClusterPolicy
from modelyard.audit.findings import UNKNOWN_PROVIDER_MODEL, provider_binding_findings
from modelyard.catalog.providers import (
    AZURE_OPENAI_MODELS,
    BEDROCK_MODELS,
    INFERENCE_PROFILE_GEOGRAPHIES,
    check_bedrock_model,
)

ROOT = Path(__file__).resolve().parents[2]
#: A region of each inference profile geography.
REGION_OF = {
    "us": "us-east-1",
    "us-gov": "us-gov-west-1",
    "ca": "ca-central-1",
    "eu": "eu-central-1",
    "apac": "ap-southeast-1",
    "jp": "ap-northeast-1",
    "au": "ap-southeast-2",
    "in": "ap-south-1",
    "global": "eu-west-1",
}


@pytest.fixture(scope="module")
def litellm_models() -> dict[str, Any]:
    """``model_prices_and_context_window_backup.json`` of the LiteLLM `make tools` installed."""
    command = shutil.which("litellm")
    assert command, "the litellm command is installed by `make tools`"
    found = list(Path(command).resolve().parent.parent.glob("lib/python*/site-packages/litellm"))
    assert found, command
    data: dict[str, Any] = json.loads((found[0] / "model_prices_and_context_window_backup.json").read_text())
    return data


def provider_ids(models: dict[str, Any], prefix: str) -> set[str]:
    return {
        key.rsplit("/", 1)[-1]
        for key, value in models.items()
        if isinstance(value, dict) and str(value.get("litellm_provider", "")).startswith(prefix)
    }


def test_every_bedrock_id_is_one_litellm_knows(litellm_models: dict[str, Any]) -> None:
    assert sorted(BEDROCK_MODELS - provider_ids(litellm_models, "bedrock")) == []


def test_every_inference_profile_litellm_knows_is_accepted_in_its_geography(
    litellm_models: dict[str, Any],
) -> None:
    """Profiles of catalog models (``<geo>.<model id>``): their prefix is a geography of the catalog, and the
    catalog accepts them from a region of it."""
    profiles = [
        (geo, model)
        for geo, _, model in (i.partition(".") for i in provider_ids(litellm_models, "bedrock"))
        if model in BEDROCK_MODELS
    ]
    assert len(profiles) > 30
    for geo, model in profiles:
        assert geo in INFERENCE_PROFILE_GEOGRAPHIES, f"{geo}.{model}"
        assert check_bedrock_model(f"{geo}.{model}", REGION_OF[geo]).known, f"{geo}.{model}"


def test_every_azure_model_is_one_litellm_knows(litellm_models: dict[str, Any]) -> None:
    assert sorted(AZURE_OPENAI_MODELS - provider_ids(litellm_models, "azure")) == []


def test_examples_use_ids_the_providers_accept() -> None:
    bindings = [
        ProviderBinding.model_validate(doc)
        for path in sorted((ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ProviderBinding"
    ]
    assert len(bindings) >= 2
    for binding in bindings:
        codes = [f.code for f in provider_binding_findings(binding.spec, ClusterPolicy())]
        assert UNKNOWN_PROVIDER_MODEL not in codes, binding.metadata.name
