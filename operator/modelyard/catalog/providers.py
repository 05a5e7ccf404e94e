"""Model ids the managed providers accept, known offline: Bedrock foundation model ids, the geographic
inference-profile prefixes and the regions each serves, and Azure OpenAI model names.

Pure data and string checks (no SDK): ``modelyard audit`` and the ProviderBinding controller report an id
that is neither a catalog entry nor a well-formed inference profile of one (``UNKNOWN_PROVIDER_MODEL``), so a
typo or a shortened name (``anthropic.claude-sonnet-4-5``) is caught before the gateway sends requests the
provider refuses. Online verification (:mod:`modelyard.cloud.aws`) then asks the account itself.

Bedrock ids as the Bedrock API lists them (``ListFoundationModels``: ``<vendor>.<model>[-v<n>[:<m>]]``);
inference profile ids are a geography prefix and such an id (``eu.`` +
``anthropic.claude-sonnet-4-5-20250929-v1:0``), usable from the regions of that geography
(``ListInferenceProfiles``). ARNs of provisioned throughput, custom, imported and application-profile
models, prompt routers and Marketplace endpoints belong to one account and cannot be known offline; they
are accepted when well formed. The tests check every catalog entry against the pinned LiteLLM's model map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Bedrock foundation model ids for text generation and embeddings.
BEDROCK_MODELS: frozenset[str] = frozenset(
    {
        # AI21 Labs
        "ai21.jamba-1-5-large-v1:0",
        "ai21.jamba-1-5-mini-v1:0",
        # Amazon
        "amazon.nova-2-lite-v1:0",
        "amazon.nova-lite-v1:0",
        "amazon.nova-micro-v1:0",
        "amazon.nova-premier-v1:0",
        "amazon.nova-pro-v1:0",
        "amazon.titan-embed-text-v1",
        "amazon.titan-embed-text-v2:0",
        "amazon.titan-text-express-v1",
        "amazon.titan-text-lite-v1",
        "amazon.titan-text-premier-v1:0",
        # Anthropic
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "anthropic.claude-3-opus-20240229-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-opus-4-20250514-v1:0",
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-opus-4-6-v1",
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-sonnet-4-6",
        # Cohere
        "cohere.embed-english-v3",
        "cohere.embed-multilingual-v3",
        "cohere.embed-v4:0",
        # DeepSeek
        "deepseek.r1-v1:0",
        "deepseek.v3-v1:0",
        # Meta
        "meta.llama3-1-405b-instruct-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "meta.llama3-2-11b-instruct-v1:0",
        "meta.llama3-2-1b-instruct-v1:0",
        "meta.llama3-2-3b-instruct-v1:0",
        "meta.llama3-2-90b-instruct-v1:0",
        "meta.llama3-3-70b-instruct-v1:0",
        "meta.llama3-70b-instruct-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "meta.llama4-maverick-17b-instruct-v1:0",
        "meta.llama4-scout-17b-instruct-v1:0",
        # Mistral AI
        "mistral.mistral-7b-instruct-v0:2",
        "mistral.mistral-large-2402-v1:0",
        "mistral.mistral-large-2407-v1:0",
        "mistral.mistral-small-2402-v1:0",
        "mistral.mixtral-8x7b-instruct-v0:1",
        "mistral.pixtral-large-2502-v1:0",
        # OpenAI open-weight models
        "openai.gpt-oss-120b-1:0",
        "openai.gpt-oss-20b-1:0",
        # Qwen
        "qwen.qwen3-235b-a22b-2507-v1:0",
        "qwen.qwen3-32b-v1:0",
        "qwen.qwen3-coder-30b-a3b-v1:0",
        "qwen.qwen3-coder-480b-a35b-v1:0",
        # Writer
        "writer.palmyra-x4-v1:0",
        "writer.palmyra-x5-v1:0",
    }
)

#: Inference profile prefix -> the region name prefixes it serves (``global`` serves every commercial region).
INFERENCE_PROFILE_GEOGRAPHIES: dict[str, tuple[str, ...]] = {
    "us": ("us-east-", "us-west-", "ca-"),
    "us-gov": ("us-gov-",),
    "ca": ("ca-",),
    "eu": ("eu-",),
    "apac": ("ap-",),
    "jp": ("ap-northeast-1", "ap-northeast-3"),
    "au": ("ap-southeast-2", "ap-southeast-4"),
    "in": ("ap-south-",),
    "global": ("",),
}
#: Matches an inference profile id's geography prefix (longest first: ``us-gov.`` before ``us.``).
INFERENCE_PROFILE_PREFIX = re.compile(
    r"^(?P<geo>"
    + "|".join(sorted(map(re.escape, INFERENCE_PROFILE_GEOGRAPHIES), key=len, reverse=True))
    + r")\."
)
_BEDROCK_ARN = re.compile(
    r"^arn:aws[a-z-]*:(?P<service>bedrock|sagemaker):(?P<region>[a-z0-9-]*):(?P<account>\d{12})?:"
    r"(?P<kind>[a-z-]+)/(?P<id>.+)$"
)
#: ARN resource types whose id is a catalog id; every other well-formed Bedrock or SageMaker (Marketplace
#: endpoint) ARN names one account's resource: provisioned throughput, custom, imported, application
#: inference profile, prompt router.
_CATALOG_ARN_KINDS = ("foundation-model", "inference-profile")

#: Azure OpenAI / AI Foundry model names (``properties.model.name`` of a deployment).
AZURE_OPENAI_MODELS: frozenset[str] = frozenset(
    {
        "gpt-35-turbo",
        "gpt-35-turbo-16k",
        "gpt-4",
        "gpt-4-32k",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-5-chat",
        "gpt-5-codex",
        "gpt-5-pro",
        "gpt-5.1",
        "gpt-5.1-chat",
        "gpt-5.1-codex",
        "gpt-5.1-codex-mini",
        "gpt-5.2",
        "gpt-5.2-chat",
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o3-pro",
        "o4-mini",
        "codex-mini",
        "text-embedding-ada-002",
        "text-embedding-3-small",
        "text-embedding-3-large",
    }
)


@dataclass(frozen=True, slots=True)
class ModelIdCheck:
    """The verdict on one id: ``known`` False with the reason when the provider would refuse it."""

    model: str
    known: bool
    reason: str = ""
    #: The foundation model id behind an inference profile or ARN, when there is one.
    base: str | None = None


def inference_profile_geography(model_id: str) -> str | None:
    """The geography prefix of an inference profile id (``eu`` for ``eu.anthropic...``), else None."""
    match = INFERENCE_PROFILE_PREFIX.match(model_id)
    return match["geo"] if match else None


def foundation_model_id(model_id: str) -> str:
    """The foundation model id behind a model id: an inference profile's prefix removed."""
    match = INFERENCE_PROFILE_PREFIX.match(model_id)
    return model_id[match.end() :] if match else model_id


def profile_serves(geography: str, region: str) -> bool:
    """Whether an inference profile of ``geography`` can be called from ``region``."""
    if geography == "global":
        return not region.startswith("us-gov-")
    return region.startswith(INFERENCE_PROFILE_GEOGRAPHIES[geography])


def account_resource(model_id: str) -> bool:
    """Whether ``model_id`` is the ARN of one account's resource (provisioned throughput, custom or imported
    model, application inference profile, prompt router, Marketplace endpoint), not a catalog id."""
    arn = _BEDROCK_ARN.match(model_id)
    return arn is not None and (arn["service"] != "bedrock" or arn["kind"] not in _CATALOG_ARN_KINDS)


def check_bedrock_model(model_id: str, region: str) -> ModelIdCheck:
    """Whether Bedrock in ``region`` would accept ``model_id``, judged offline from the catalog."""
    arn = _BEDROCK_ARN.match(model_id)
    if arn is not None:
        if account_resource(model_id):
            return ModelIdCheck(model_id, True)  # only the account can tell
        if arn["region"] and arn["region"] != region:
            return ModelIdCheck(model_id, False, f"{model_id} is in {arn['region']}, the binding in {region}")
        inner = check_bedrock_model(arn["id"], region)
        return ModelIdCheck(model_id, inner.known, inner.reason, inner.base)
    geography = inference_profile_geography(model_id)
    base = foundation_model_id(model_id)
    if base not in BEDROCK_MODELS:
        hint = _closest(base)
        suggestion = f" (did you mean {hint}?)" if hint else ""
        return ModelIdCheck(model_id, False, f"{model_id} is not a Bedrock model id{suggestion}", base)
    if geography is not None and not profile_serves(geography, region):
        return ModelIdCheck(
            model_id,
            False,
            f"{model_id} is an inference profile for the {geography} geography, not callable from {region}",
            base,
        )
    return ModelIdCheck(model_id, True, base=base)


def check_azure_model(model: str) -> ModelIdCheck:
    """Whether ``model`` is an Azure OpenAI model name (a deployment's ``model``)."""
    if model in AZURE_OPENAI_MODELS:
        return ModelIdCheck(model, True)
    return ModelIdCheck(model, False, f"{model} is not an Azure OpenAI model name")


def _closest(partial: str) -> str | None:
    """A catalog id that ``partial`` is the start of (``anthropic.claude-sonnet-4-5`` -> its dated id), when
    exactly one is."""
    found = [m for m in BEDROCK_MODELS if m.startswith(partial + "-") or m.startswith(partial + ":")]
    return found[0] if len(found) == 1 else None
