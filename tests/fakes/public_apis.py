"""A local HTTPS fake of the public model APIs, one server for every vendor, speaking each one's documented
wire format: the models endpoint with its JSON shape and paging, the auth header each takes, and the chat
endpoint LiteLLM's provider calls. Written from the vendors' API references, independently of modelyard's
table (catalog/public_apis.py), so a wrong row there fails the tests:

Per vendor (host, base path; key; models endpoint and its JSON):

- openrouter: openrouter.ai /api/v1; Authorization: Bearer; GET /models {data: [{id}]} needs no key, GET /key
  proves it.
- together: api.together.xyz /v1; Bearer; GET /models answers a bare list [{id}].
- groq: api.groq.com /openai/v1; Bearer; GET /models {data: [{id}]}.
- perplexity: api.perplexity.ai; Bearer; no models endpoint.
- cloudflare: api.cloudflare.com /client/v4/accounts/{a}/ai/v1; Bearer; GET /client/v4/accounts/{a}/ai/models/
  search {result: [{name}]}.
- fireworks: api.fireworks.ai /inference/v1; Bearer; GET /models {data: [{id}]}.
- deepseek: api.deepseek.com (chat also under /beta and /v1); Bearer; GET /models {data: [{id}]}.
- mistral: api.mistral.ai /v1; openai: api.openai.com /v1; custom: llm.example.com /v1; Bearer; GET /models
  {data: [{id}]}.
- anthropic: api.anthropic.com; x-api-key and anthropic-version; GET /v1/models {data, has_more, last_id},
  paged with after_id.
- gemini: generativelanguage.googleapis.com /v1beta; x-goog-api-key (or ?key=); GET /v1beta/models
  {models: [{name: models/...}]}, paged with pageToken.

Chat: OpenAI's ``POST {base}/chat/completions`` for all but Anthropic (``POST /v1/messages``) and Gemini
(``POST /v1beta/models/{model}:generateContent``). Groq refuses ``logprobs``, ``logit_bias``,
``top_logprobs`` and ``n`` other than 1 with 400, as its OpenAI-compatibility page documents.

A request reaches a vendor by its real host name (clients mapped to the fake as DNS would) or, for clients
given a base URL, under ``https://127.0.0.1:PORT/<vendor><base path>``. Every request is recorded.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.azure import self_signed

CLOUDFLARE_ACCOUNT = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Vendor:
    host: str
    base: str  #: the base path chat and (most) models calls start with
    auth: str  #: bearer | x-api-key | x-goog-api-key
    models: str | None  #: the models endpoint's path, None when none is documented
    shape: str  #: openai | list | anthropic | gemini | cloudflare
    headers: tuple[tuple[str, str], ...] = ()  #: headers every call must carry besides the key
    chat_bases: tuple[str, ...] = ()  #: other documented bases the chat endpoint answers under


VENDORS: dict[str, Vendor] = {
    "openrouter": Vendor("openrouter.ai", "/api/v1", "bearer", "/api/v1/models", "openai"),
    "together": Vendor("api.together.xyz", "/v1", "bearer", "/v1/models", "list"),
    "groq": Vendor("api.groq.com", "/openai/v1", "bearer", "/openai/v1/models", "openai"),
    "perplexity": Vendor("api.perplexity.ai", "", "bearer", None, "openai"),
    "cloudflare": Vendor(
        "api.cloudflare.com",
        f"/client/v4/accounts/{CLOUDFLARE_ACCOUNT}/ai/v1",
        "bearer",
        f"/client/v4/accounts/{CLOUDFLARE_ACCOUNT}/ai/models/search",
        "cloudflare",
    ),
    "fireworks": Vendor("api.fireworks.ai", "/inference/v1", "bearer", "/inference/v1/models", "openai"),
    "deepseek": Vendor("api.deepseek.com", "", "bearer", "/models", "openai", chat_bases=("/beta", "/v1")),
    "mistral": Vendor("api.mistral.ai", "/v1", "bearer", "/v1/models", "openai"),
    "openai": Vendor("api.openai.com", "/v1", "bearer", "/v1/models", "openai"),
    "anthropic": Vendor(
        "api.anthropic.com",
        "",
        "x-api-key",
        "/v1/models",
        "anthropic",
        (("anthropic-version", "2023-06-01"),),
    ),
    "gemini": Vendor(
        "generativelanguage.googleapis.com", "/v1beta", "x-goog-api-key", "/v1beta/models", "gemini"
    ),
    "custom": Vendor("llm.example.com", "/v1", "bearer", "/v1/models", "openai"),
}
HOSTS = tuple(v.host for v in VENDORS.values())
GROQ_REFUSED = ("logprobs", "logit_bias", "top_logprobs")


@dataclass
class Request:
    vendor: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  #: lower-case names
    body: Any


@dataclass
class State:
    #: vendor -> the one key it accepts
    keys: dict[str, str] = field(default_factory=dict)
    #: vendor -> the model ids its list holds
    models: dict[str, list[str]] = field(default_factory=dict)
    #: vendor -> a status every call answers with (429, 500, 503: an outage)
    faults: dict[str, int] = field(default_factory=dict)
    #: models per page of the paged lists (Anthropic, Gemini)
    page_size: int = 2
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def base_url(fake_url: str, vendor: str) -> str:
    """The base URL under which ``vendor`` is reached on the fake by address (a binding's baseURL)."""
    return f"{fake_url}/{vendor}{VENDORS[vendor].base}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    # --- plumbing ---------------------------------------------------------------------------------------
    def _vendor_and_path(self) -> tuple[str | None, str]:
        host = (self.headers.get("Host") or "").split(":")[0]
        path = urlsplit(self.path).path
        for name, vendor in VENDORS.items():
            if vendor.host == host:
                return name, path
        first, _, rest = path.lstrip("/").partition("/")
        return (first, "/" + rest) if first in VENDORS else (None, path)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, vendor: str, path: str, body: Any) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(
                Request(
                    vendor,
                    self.command,
                    path,
                    parse_qs(urlsplit(self.path).query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )

    def _authorized(self, name: str) -> bool:
        """The key in the vendor's header (Gemini also takes ?key=), and the headers it requires."""
        vendor, state = VENDORS[name], self.server.state
        expected = state.keys.get(name)
        if vendor.auth == "bearer":
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            ok = self.headers.get("Authorization", "").startswith("Bearer ")
        else:
            given = self.headers.get(vendor.auth) or ""
            if name == "gemini" and not given:
                given = (parse_qs(urlsplit(self.path).query).get("key") or [""])[0]
            ok = True
        required = all(self.headers.get(h) == v for h, v in vendor.headers)
        return ok and required and expected is not None and given == expected

    def _refuse(self, name: str) -> None:
        if name == "anthropic":
            error = {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
            self._send(401, error)
        elif name == "gemini":
            self._send(
                400 if not self.headers.get("x-goog-api-key") else 403,
                {"error": {"code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"}},
            )
        elif (
            name == "openai"
        ):  # OpenAI names the key it refused (masked there; whole here, to test scrubbing)
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {given}. You can find your API key at https://platform.openai.com"
            self._send(
                401,
                {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}},
            )
        else:
            self._send(401, {"error": {"message": "Invalid API key provided", "code": 401}})

    # --- GET: the models endpoints ------------------------------------------------------------------------
    def do_GET(self) -> None:
        name, path = self._vendor_and_path()
        if name is None:
            self._send(404, {"error": "no such vendor"})
            return
        self._record(name, path, None)
        vendor, state = VENDORS[name], self.server.state
        if name in state.faults:
            self._send(state.faults[name], {"error": {"message": "overloaded, try again later"}})
            return
        if name == "openrouter" and path == "/api/v1/key":
            if not self._authorized(name):
                self._refuse(name)
                return
            self._send(
                200, {"data": {"label": "sk-or-v1-...", "usage": 0, "limit": None, "is_free_tier": False}}
            )
            return
        if vendor.models is None or path.rstrip("/") != vendor.models:
            self._send(404, {"error": {"message": f"no route {path}"}})
            return
        if name != "openrouter" and not self._authorized(name):  # OpenRouter lists its models to anyone
            self._refuse(name)
            return
        self._send(200, self._models(name))

    def _models(self, name: str) -> Any:
        state = self.server.state
        ids = state.models.get(name, [])
        shape = VENDORS[name].shape
        query = parse_qs(urlsplit(self.path).query)
        if shape == "list":
            return [{"id": i, "object": "model", "type": "chat"} for i in ids]
        if shape == "cloudflare":
            return {"success": True, "errors": [], "messages": [], "result": [{"name": i} for i in ids]}
        if shape == "anthropic":
            after = (query.get("after_id") or [""])[0]
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start : start + state.page_size]
            return {
                "data": [{"id": i, "type": "model", "display_name": i} for i in page],
                "has_more": start + state.page_size < len(ids),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        if shape == "gemini":
            start = int((query.get("pageToken") or ["0"])[0])
            page = ids[start : start + state.page_size]
            body: dict[str, Any] = {"models": [{"name": f"models/{i}"} for i in page]}
            if start + state.page_size < len(ids):
                body["nextPageToken"] = str(start + state.page_size)
            return body
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "x"} for i in ids]}

    # --- POST: chat ---------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        name, path = self._vendor_and_path()
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) if length else b""
        body: Any = json.loads(raw) if raw else {}
        if name is None:
            self._send(404, {"error": "no such vendor"})
            return
        self._record(name, path, body)
        state = self.server.state
        if name in state.faults:
            self._send(state.faults[name], {"error": {"message": "overloaded, try again later"}})
            return
        if not self._authorized(name):
            self._refuse(name)
            return
        vendor = VENDORS[name]
        if name == "anthropic" and path == "/v1/messages":
            self._send(200, _anthropic_answer(body["model"]))
            return
        gemini = re.fullmatch(r"/v1beta/models/([^:]+):generateContent", path)
        if name == "gemini" and gemini:
            self._send(200, _gemini_answer(gemini.group(1)))
            return
        bases = (vendor.base, *vendor.chat_bases)
        if name not in ("anthropic", "gemini") and path in {f"{b}/chat/completions" for b in bases}:
            if name == "groq":
                refused = [p for p in GROQ_REFUSED if p in body] + (["n"] if body.get("n", 1) != 1 else [])
                if refused:
                    message = f"'{refused[0]}' : property '{refused[0]}' is unsupported"
                    self._send(400, {"error": {"message": message, "type": "invalid_request_error"}})
                    return
            self._send(200, _openai_answer(name, body["model"]))
            return
        self._send(404, {"error": {"message": f"no route {path}"}})


def _openai_answer(vendor: str, model: str) -> dict[str, Any]:
    answer = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"from {vendor} {model}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    if (
        vendor == "groq"
    ):  # Groq's answers carry these (https://console.groq.com/docs/api-reference#chat-create)
        answer.update(system_fingerprint="fp_fake", x_groq={"id": "req_fake"}, service_tier="on_demand")
    return answer


def _anthropic_answer(model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": f"from anthropic {model}"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }


def _gemini_answer(model: str) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": f"from gemini {model}"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3},
        "modelVersion": model,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class PublicApisFake:
    """The fake, serving HTTPS on a free loopback port until ``stop()``; its certificate holds every vendor's
    host name, 127.0.0.1 and localhost."""

    def __init__(self, directory: Path) -> None:
        self.state = State()
        self.ca_file = directory / "public-apis-fake.crt"
        key_file = directory / "public-apis-fake.key"
        self_signed(self.ca_file, key_file, HOSTS)
        self._server = _Server(self.state)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self, vendor: str | None = None) -> list[Request]:
        with self.state.lock:
            return [r for r in self.state.requests if vendor is None or r.vendor == vendor]
