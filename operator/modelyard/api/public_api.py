"""ProviderBinding's ``spec.publicAPI``: a public model API (OpenRouter, Together, Groq, the model makers' own
APIs, or any OpenAI-compatible endpoint) reached with an API key from a Secret.

Public APIs take only keys, over the public internet: a binding is flagged (PUBLIC_API_BINDING, and
STATIC_CREDENTIALS) rather than refused, and the data it may receive is capped by the cluster policy's
``publicAPIMaxClassification``. The vendors' documented facts (base URL, auth header, models endpoint) are
:mod:`modelyard.catalog.public_apis`'s table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from .common import ApiModel, Rule, SecretKeyRef, cel_rules

#: https only, a host name (no user info), an optional port and path, no query or fragment
HTTPS_BASE_URL = r"^https://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[^\s?#]*)?$"
#: provider slugs as OpenRouter lists them (e.g. deepinfra, google-vertex/us, Together)
PROVIDER_SLUG = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
ProviderSlug = Annotated[str, Field(max_length=64, pattern=PROVIDER_SLUG)]
ModelId = Annotated[str, Field(min_length=1, max_length=256)]


class Vendor(StrEnum):
    OPENROUTER = "openrouter"
    TOGETHER = "together"
    GROQ = "groq"
    PERPLEXITY = "perplexity"
    CLOUDFLARE = "cloudflare"
    FIREWORKS = "fireworks"
    DEEPSEEK = "deepseek"
    MISTRAL = "mistral"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    CUSTOM = "custom"


#: vendors whose base URL names the customer's account or is the customer's own: baseURL is required
NEEDS_BASE_URL = (Vendor.CUSTOM, Vendor.CLOUDFLARE)


class DataCollection(StrEnum):
    DENY = "deny"
    ALLOW = "allow"


BASE_URL_REQUIRED = Rule(
    "!(self.vendor in [" + ", ".join(f"'{v.value}'" for v in NEEDS_BASE_URL) + "]) || has(self.baseURL)",
    "baseURL: required for vendor custom and cloudflare (the account id is part of Cloudflare's URL)",
    ".baseURL",
)
PREFERENCES_ONLY_OPENROUTER = Rule(
    "self.vendor == 'openrouter' || !has(self.providerPreferences)",
    "providerPreferences: only for vendor openrouter",
    ".providerPreferences",
)


class ProviderPreferences(ApiModel):
    """OpenRouter's provider routing preferences, sent as the ``provider`` object of every request body
    (https://openrouter.ai/docs/features/provider-routing)."""

    data_collection: DataCollection = Field(
        default=DataCollection.DENY,
        description="deny (the default here; OpenRouter's own default is allow): only providers that do not "
        "store prompts or train on them may serve the requests. allow: any provider.",
    )
    zero_data_retention: bool = Field(
        default=False,
        description="Only zero-data-retention endpoints may serve the requests (OpenRouter's zdr).",
    )
    order: list[ProviderSlug] = Field(
        default_factory=list,
        description="Provider slugs to try first, in this order (e.g. deepinfra, together).",
        max_length=32,
    )
    only: list[ProviderSlug] = Field(
        default_factory=list,
        description="Provider slugs allowed to serve the requests; empty allows every provider.",
        max_length=32,
    )
    ignore: list[ProviderSlug] = Field(
        default_factory=list,
        description="Provider slugs never to use.",
        max_length=32,
    )
    allow_fallbacks: bool | None = Field(
        default=None,
        description="Whether OpenRouter may fall back to providers outside order when they are unavailable; "
        "unset leaves OpenRouter's default (true).",
    )

    def to_openrouter(self) -> dict[str, object]:
        """The ``provider`` object of the request body, in OpenRouter's field names."""
        body: dict[str, object] = {"data_collection": self.data_collection.value}
        if self.zero_data_retention:
            body["zdr"] = True
        for name in ("order", "only", "ignore"):
            if getattr(self, name):
                body[name] = list(getattr(self, name))
        if self.allow_fallbacks is not None:
            body["allow_fallbacks"] = self.allow_fallbacks
        return body


class PublicAPISpec(ApiModel):
    """A public model API, called with an API key over the public internet."""

    model_config = cel_rules(BASE_URL_REQUIRED, PREFERENCES_ONLY_OPENROUTER)

    vendor: Vendor = Field(
        description="openrouter, together, groq, perplexity, cloudflare, fireworks, deepseek, mistral, "
        "openai, anthropic, gemini, or custom (any OpenAI-compatible API at baseURL)."
    )
    base_url: str | None = Field(
        default=None,
        alias="baseURL",
        description="The API's base URL, https only. Defaults to the vendor's documented one (see the "
        "README's vendor table); required for custom and for cloudflare "
        "(https://api.cloudflare.com/client/v4/accounts/ACCOUNT_ID/ai/v1).",
        max_length=512,
        pattern=HTTPS_BASE_URL,
    )
    api_key_secret_ref: SecretKeyRef = Field(
        description="The Secret key holding the API key. The gateway reads it as an environment variable "
        "(secretKeyRef); the operator reads it only to verify it and never copies it."
    )
    models: list[ModelId] = Field(
        description="Model ids routes may use, as the vendor names them (openrouter: "
        "meta-llama/llama-3.1-8b-instruct; anthropic: claude-sonnet-4-5). A model the vendor's models "
        "endpoint does not list is reported as UNKNOWN_PROVIDER_MODEL.",
        min_length=1,
        max_length=64,
    )
    provider_preferences: ProviderPreferences | None = Field(
        default=None,
        description="OpenRouter only: which upstream providers may serve the requests. Unset sends "
        "data_collection: deny.",
    )

    @model_validator(mode="after")
    def _rules(self) -> PublicAPISpec:
        if self.vendor in NEEDS_BASE_URL and self.base_url is None:
            raise ValueError(BASE_URL_REQUIRED.message)
        if self.vendor is not Vendor.OPENROUTER and self.provider_preferences is not None:
            raise ValueError(PREFERENCES_ONLY_OPENROUTER.message)
        return self

    @property
    def preferences(self) -> ProviderPreferences | None:
        """OpenRouter's preferences, with the defaults when unset; None for other vendors."""
        if self.vendor is not Vendor.OPENROUTER:
            return None
        return self.provider_preferences or ProviderPreferences()
