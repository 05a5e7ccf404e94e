"""Public model APIs: prove a binding's API key with the vendor's documented models endpoint, and find the
models of spec the vendor does not list.

What each vendor documents (base URL, auth header, models endpoint and its JSON) is
:mod:`modelyard.catalog.public_apis`'s table; this module only calls it, with httpx:

- 200 with the documented JSON: the key is accepted (CredentialsVerified=True), and every model of spec the
  list does not hold is reported (UNKNOWN_PROVIDER_MODEL). Paged lists (Anthropic, Gemini) are followed.
- 401 or 403: the key is refused (CredentialsVerified=False, CredentialsRejected): a verdict.
- 429, 5xx, a timeout or an unreachable host: no verdict (:class:`~modelyard.cloud.CloudUnavailable`); the
  controller keeps the last one.
- any other answer (404 from a wrong baseURL, JSON of another shape): a verdict that names it.

OpenRouter answers its models list without a key, so its key is proven with ``GET /api/v1/key`` first.
Perplexity documents no models endpoint: only the key's presence in its Secret is checked, and the models are
reported as not verified. The key is sent only in the vendor's auth header and scrubbed from every message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from modelyard.catalog.public_apis import ModelsShape, PublicApi, auth_headers, model_ids, public_api

from . import Check, CloudUnavailable
from .scrub import scrub

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_PAGES = 20
PAGE_SIZE = 1000  # the largest page Anthropic's and Gemini's lists serve
ACCEPTED, REJECTED, KEY_PRESENT = "KeyAccepted", "CredentialsRejected", "KeyPresent"


@dataclass(frozen=True, slots=True)
class PublicApiTarget:
    """What to verify for one public-API binding. ``api_key`` is the Secret's value: it is sent in the auth
    header and nowhere else."""

    vendor: str
    base_url: str
    api_key: str
    models: tuple[str, ...]

    def __repr__(self) -> str:  # never the key, should a target be logged
        return f"PublicApiTarget(vendor={self.vendor!r}, base_url={self.base_url!r}, models={self.models!r})"


@dataclass(frozen=True, slots=True)
class PublicApiReport:
    """The verdict for one public-API binding."""

    credentials: Check
    #: models of spec the vendor's list does not hold
    unlisted_models: tuple[str, ...] = ()
    #: why the models were not checked against the vendor's list, when they were not
    models_unverified: str | None = None


class _Refused(Exception):
    def __init__(self, check: Check) -> None:
        super().__init__(check.message)
        self.check = check


class PublicApiVerifier:
    """Verifies public-API bindings with their keys."""

    def __init__(self, timeout: httpx.Timeout = TIMEOUT, transport: httpx.AsyncBaseTransport | None = None):
        self.timeout = timeout
        self.transport = transport

    async def verify(self, target: PublicApiTarget) -> PublicApiReport:
        api = public_api(target.vendor)
        if api.models_path is None:
            return PublicApiReport(
                Check.ok(
                    KEY_PRESENT,
                    f"the Secret holds the key; {api.title} documents no models endpoint to prove it with, "
                    "so only its presence is checked",
                ),
                models_unverified=f"{api.title} documents no models endpoint",
            )
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
            call = _Call(http, api, target)
            try:
                if api.key_path is not None:
                    await call.get(api.url(target.base_url, api.key_path), {})
                listed = await call.models()
            except _Refused as refused:
                return PublicApiReport(refused.check, models_unverified="the key was not accepted")
        unlisted = tuple(m for m in target.models if m not in listed)
        held = len(target.models) - len(unlisted)
        return PublicApiReport(
            Check.ok(
                ACCEPTED,
                f"{api.title} accepted the key; its models list holds {len(listed)} models, "
                f"{held} of the {len(target.models)} listed here",
            ),
            unlisted_models=unlisted,
        )


class _Call:
    def __init__(self, http: httpx.AsyncClient, api: PublicApi, target: PublicApiTarget) -> None:
        self.http, self.api, self.target = http, api, target

    async def models(self) -> set[str]:
        assert self.api.models_path is not None
        url = self.api.url(self.target.base_url, self.api.models_path)
        shape = self.api.models_shape
        listed: set[str] = set()
        params: dict[str, str] = {}
        if shape is ModelsShape.ANTHROPIC:
            params["limit"] = str(PAGE_SIZE)
        elif shape is ModelsShape.GEMINI:
            params["pageSize"] = str(PAGE_SIZE)
        for _ in range(MAX_PAGES):
            body = await self.get(url, params)
            try:
                listed.update(model_ids(self.api, body))
            except ValueError as exc:
                raise _Refused(
                    Check.failed("UnexpectedAnswer", f"{self._what(url)} answered JSON that is {exc}")
                ) from None
            following = _next_page(shape, body)
            if following is None:
                break
            params.update(following)
        return listed

    async def get(self, url: str, params: dict[str, str]) -> Any:
        what = self._what(url)
        headers = {**auth_headers(self.api, self.target.api_key), "Accept": "application/json"}
        try:
            response = await self.http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:  # unreachable, timed out, TLS refused
            raise CloudUnavailable(self._scrub(f"{what}: {type(exc).__name__} {exc}")) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise CloudUnavailable(self._scrub(f"{what}: {status} {_error_text(response)}"))
        if status in (401, 403):
            message = f"{self.api.title} refused the key: {what} answered {status} {_error_text(response)}"
            raise _Refused(Check.failed(REJECTED, self._scrub(message)))
        if status != 200:
            message = f"{what} answered {status} {_error_text(response)} (is baseURL right?)"
            raise _Refused(Check.failed("EndpointRefused", self._scrub(message)))
        try:
            return response.json()
        except ValueError:
            raise _Refused(Check.failed("UnexpectedAnswer", f"{what} did not answer JSON")) from None

    def _what(self, url: str) -> str:
        return f"GET {url}"

    def _scrub(self, text: str) -> str:
        return scrub(text, [self.target.api_key])


def _next_page(shape: ModelsShape, body: Any) -> dict[str, str] | None:
    """The query of the next page, None on the last one."""
    if not isinstance(body, dict):
        return None
    if shape is ModelsShape.ANTHROPIC and body.get("has_more") and body.get("last_id"):
        return {"after_id": str(body["last_id"])}
    if shape is ModelsShape.GEMINI and body.get("nextPageToken"):
        return {"pageToken": str(body["nextPageToken"])}
    return None


def _error_text(response: httpx.Response) -> str:
    """The vendor's error message (OpenAI-style ``error.message``, Google's ``error.status``), or the start
    of the body."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or error)[:300]
    if isinstance(error, str):
        return error[:300]
    return json.dumps(body)[:200]
