"""Public model APIs a ProviderBinding of ``provider: publicAPI`` may bind: one row per vendor, the one place
their facts live. The verifier (:mod:`modelyard.cloud.public_api`), the gateway compiler
(:mod:`modelyard.render.litellm`), the gateway's identity wiring, the audit and the README table all read
:data:`PUBLIC_APIS`.

Per vendor: the documented base URL (what the pinned LiteLLM provider uses as its default ``api_base``; a
test checks each against LiteLLM's own), the LiteLLM provider prefix, how the key is sent, the documented
models endpoint and the shape of its JSON, and what verification can prove with the key. Pure data: no SDK,
no HTTP.

Sources (each vendor's API reference):

- OpenRouter: https://openrouter.ai/docs/api/api-reference/models/get-models (``GET /api/v1/models``,
  ``{"data": [{"id": ...}]}``, answered without a key) and https://openrouter.ai/docs/api/api-reference/
  api-keys/get-current-key (``GET /api/v1/key``: 401 for a bad key); provider preferences:
  https://openrouter.ai/docs/features/provider-routing (``provider`` object of the request body).
- Together: https://docs.together.ai/reference/models-1 (``GET /v1/models`` answers a bare JSON list).
- Groq: https://console.groq.com/docs/models and https://console.groq.com/docs/openai (base
  ``https://api.groq.com/openai/v1``; ``logprobs``, ``logit_bias``, ``top_logprobs`` are refused with 400 and
  ``n`` must be 1).
- Perplexity: https://docs.perplexity.ai/api-reference/chat-completions-post (no list-models endpoint is
  documented: only the key's presence in its Secret is checked, model names are not).
- Cloudflare Workers AI: https://developers.cloudflare.com/workers-ai/configuration/open-ai-compatibility/
  (``https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1``: the account is part of the URL, so
  ``baseURL`` is required) and https://developers.cloudflare.com/api/resources/ai/subresources/models/
  methods/list/ (``GET .../ai/models/search``, ``{"result": [{"name": ...}]}``).
- Fireworks: https://docs.fireworks.ai/tools-sdks/openai-compatibility (``/inference/v1``, OpenAI's
  ``GET /models``).
- DeepSeek: https://api-docs.deepseek.com/api/list-models (``GET https://api.deepseek.com/models``).
- Mistral: https://docs.mistral.ai/api/#tag/models (``GET /v1/models``).
- OpenAI: https://platform.openai.com/docs/api-reference/models/list.
- Anthropic: https://docs.anthropic.com/en/api/models-list (``GET /v1/models`` with ``x-api-key`` and
  ``anthropic-version``; pages with ``has_more`` / ``last_id`` -> ``after_id``).
- Gemini: https://ai.google.dev/api/models#method:-models.list (``GET /v1beta/models`` with
  ``x-goog-api-key``; ``{"models": [{"name": "models/..."}]}``, pages with ``nextPageToken``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urljoin


class Auth(StrEnum):
    """How a vendor takes the API key."""

    BEARER = "Authorization: Bearer"
    X_API_KEY = "x-api-key"
    X_GOOG_API_KEY = "x-goog-api-key"


class ModelsShape(StrEnum):
    """The JSON a vendor's models endpoint answers with."""

    OPENAI = "data[].id"  #: {"object": "list", "data": [{"id": ...}]}
    BARE_LIST = "[].id"  #: [{"id": ...}]
    ANTHROPIC = "data[].id, has_more/last_id"  #: paged with after_id
    GEMINI = "models[].name"  #: "models/<id>", paged with nextPageToken
    CLOUDFLARE = "result[].name"  #: {"success": true, "result": [{"name": "@cf/..."}]}


@dataclass(frozen=True, slots=True)
class PublicApi:
    """One vendor's documented facts."""

    vendor: str  #: spec.publicAPI.vendor
    title: str
    #: the documented base URL, as LiteLLM's provider takes it as ``api_base``; None when it names the
    #: customer's account (Cloudflare) or is the customer's own (custom): then spec.publicAPI.baseURL is
    #: required
    base_url: str | None
    litellm_provider: str
    auth: Auth
    #: the models endpoint, relative to the base URL (urljoin); None when the vendor documents none
    models_path: str | None
    models_shape: ModelsShape = ModelsShape.OPENAI
    #: an endpoint that proves the key when the models endpoint answers without one (OpenRouter)
    key_path: str | None = None
    #: headers every call needs besides the key
    headers: tuple[tuple[str, str], ...] = ()
    #: OpenAI parameters the vendor refuses although LiteLLM passes them on: dropped by the gateway
    refused_params: tuple[str, ...] = ()
    #: what baseURL looks like when the vendor has no default (documentation only)
    example_base_url: str | None = None

    def url(self, base_url: str, path: str) -> str:
        return urljoin(base_url.rstrip("/") + "/", path)

    @property
    def verifies(self) -> str:
        """What modelyard proves with the key, for status messages and the README table."""
        if self.models_path is None:
            return "the key's presence in its Secret only (no models endpoint documented)"
        if self.key_path is not None:
            key_url = self.url(self.base_url or "", self.key_path)
            return f"the key (`GET {key_url}`: the models list needs none), spec models against the list"
        return "the key and spec models against the models list"


OPENAI_COMPATIBLE = "openai"

PUBLIC_APIS: dict[str, PublicApi] = {
    api.vendor: api
    for api in (
        PublicApi(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            "openrouter",
            Auth.BEARER,
            "models",
            key_path="key",
        ),
        PublicApi(
            "together",
            "Together AI",
            "https://api.together.xyz/v1",
            "together_ai",
            Auth.BEARER,
            "models",
            ModelsShape.BARE_LIST,
        ),
        PublicApi(
            "groq",
            "Groq",
            "https://api.groq.com/openai/v1",
            "groq",
            Auth.BEARER,
            "models",
            refused_params=("logprobs", "top_logprobs", "logit_bias", "n"),
        ),
        PublicApi("perplexity", "Perplexity", "https://api.perplexity.ai", "perplexity", Auth.BEARER, None),
        PublicApi(
            "cloudflare",
            "Cloudflare Workers AI",
            None,
            "cloudflare",
            Auth.BEARER,
            "../models/search",
            ModelsShape.CLOUDFLARE,
            example_base_url="https://api.cloudflare.com/client/v4/accounts/ACCOUNT_ID/ai/v1",
        ),
        PublicApi(
            "fireworks",
            "Fireworks AI",
            "https://api.fireworks.ai/inference/v1",
            "fireworks_ai",
            Auth.BEARER,
            "models",
        ),
        PublicApi("deepseek", "DeepSeek", "https://api.deepseek.com", "deepseek", Auth.BEARER, "models"),
        PublicApi("mistral", "Mistral AI", "https://api.mistral.ai/v1", "mistral", Auth.BEARER, "models"),
        PublicApi("openai", "OpenAI", "https://api.openai.com/v1", "openai", Auth.BEARER, "models"),
        PublicApi(
            "anthropic",
            "Anthropic",
            "https://api.anthropic.com",
            "anthropic",
            Auth.X_API_KEY,
            "v1/models",
            ModelsShape.ANTHROPIC,
            headers=(("anthropic-version", "2023-06-01"),),
        ),
        PublicApi(
            "gemini",
            "Google Gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            "gemini",
            Auth.X_GOOG_API_KEY,
            "models",
            ModelsShape.GEMINI,
        ),
        PublicApi("custom", "any OpenAI-compatible API", None, OPENAI_COMPATIBLE, Auth.BEARER, "models"),
    )
}


def public_api(vendor: str) -> PublicApi:
    """The row of ``vendor`` (a value of spec.publicAPI.vendor)."""
    return PUBLIC_APIS[vendor]


def auth_headers(api: PublicApi, key: str) -> dict[str, str]:
    """The headers a call with ``key`` carries."""
    headers = dict(api.headers)
    if api.auth is Auth.BEARER:
        headers["Authorization"] = f"Bearer {key}"
    else:
        headers[api.auth.value] = key
    return headers


def model_ids(api: PublicApi, body: object) -> list[str]:
    """The model ids in one page of ``api``'s models answer; ValueError when it is not the documented
    shape."""
    shape = api.models_shape
    if shape is ModelsShape.BARE_LIST:
        items = body
    elif isinstance(body, dict):
        items = body.get({ModelsShape.GEMINI: "models", ModelsShape.CLOUDFLARE: "result"}.get(shape, "data"))
    else:
        items = None
    if not isinstance(items, list):
        raise ValueError(f"not the documented {shape.value} shape")
    field = "name" if shape in (ModelsShape.GEMINI, ModelsShape.CLOUDFLARE) else "id"
    ids = [str(item[field]) for item in items if isinstance(item, dict) and field in item]
    return [i.removeprefix("models/") for i in ids] if shape is ModelsShape.GEMINI else ids


def markdown_table() -> str:
    """The README's vendor table."""
    rows = [
        "| vendor | LiteLLM provider | auth header | models endpoint | what modelyard verifies |",
        "|---|---|---|---|---|",
    ]
    for api in PUBLIC_APIS.values():
        base = api.base_url or api.example_base_url or "https://BASE_URL"
        models = f"`GET {api.url(base, api.models_path)}`" if api.models_path else "none documented"
        models = models.replace("https://BASE_URL/", "<baseURL>/")
        extra = "".join(f" + `{name}: {value}`" for name, value in api.headers)
        rows.append(
            f"| `{api.vendor}` ({api.title}) | `{api.litellm_provider}/` | `{api.auth.value}`{extra} "
            f"| {models} "
            f"| {api.verifies} |"
        )
    return "\n".join(rows)
