"""A local HTTPS fake of the AWS endpoints a Bedrock gateway and modelyard's verification call, speaking their
documented wire formats, next to moto's server (which serves STS but not Bedrock):

- STS (``POST /`` with ``Action=AssumeRoleWithWebIdentity``): the role's trust policy, read from moto's IAM,
  is enforced as AWS does (``Federated`` OIDC provider of the token's issuer, ``StringEquals`` /
  ``StringLike`` conditions on ``<issuer>:sub`` and ``<issuer>:aud``); a trusted exchange is forwarded to
  moto unchanged, which issues the credentials; any other is refused with STS's ``AccessDenied`` XML, as
  moto itself never refuses.
- Bedrock Runtime: ``POST /model/{modelId}/converse`` and ``POST /model/{modelId}/invoke`` (Anthropic Messages
  and Meta Llama bodies). Every request's SigV4 signature is recomputed from the documented algorithm with
  the secret key of the access key id it names (looked up in moto's STS) and must match, with the session
  token in ``X-Amz-Security-Token``; otherwise ``InvalidSignatureException`` (403).
- Bedrock control plane: ``GET /foundation-models``, ``GET /foundation-models/{id}`` and
  ``GET /inference-profiles`` (paginated with ``maxResults`` / ``nextToken``).

Every request is recorded with the Host it was sent to, for the tests to assert on.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .azure import self_signed

WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
MAX_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Session:
    """Temporary credentials STS issued (the fake asks moto for them by access key id)."""

    secret_access_key: str
    session_token: str
    role_arn: str


@dataclass
class RuntimeCall:
    """One Bedrock Runtime request and the fake's verdict on its signature."""

    host: str
    model_id: str
    api: str  #: converse | invoke
    access_key_id: str | None
    role_arn: str | None
    signature_error: str | None  #: None when the signature and session token were right
    body: dict[str, Any]


@dataclass
class StsCall:
    role_arn: str
    subject: str | None
    token: str
    refused: str | None  #: why the trust policy refused the token, None when it was forwarded to moto


@dataclass
class BedrockState:
    runtime: list[RuntimeCall] = field(default_factory=list)
    sts: list[StsCall] = field(default_factory=list)
    #: control plane: foundation model summaries and inference profile summaries, as the API returns them
    foundation_models: list[dict[str, Any]] = field(default_factory=list)
    #: models GetFoundationModel finds though ListFoundationModels leaves them out
    unlisted_models: list[dict[str, Any]] = field(default_factory=list)
    inference_profiles: list[dict[str, Any]] = field(default_factory=list)
    #: at most this many profiles per ListInferenceProfiles page
    page_size: int = 1000
    #: when set, ListInferenceProfiles is refused with AccessDeniedException
    profiles_denied: bool = False
    control_requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html) -------------------
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/"
    r"aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    match = _AUTH.match(value)
    if match is None:
        return None
    return Authorization(
        match["akid"],
        match["date"],
        match["region"],
        match["service"],
        tuple(match["signed"].split(";")),
        match["signature"],
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = sorted(
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for k, _, v in (part.partition("=") for part in query.split("&") if part)
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def sigv4_error(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    secret_access_key: str,
    *,
    service: str,
    region: str,
    now: datetime.datetime | None = None,
) -> str | None:
    """Why the request's SigV4 signature is wrong, or None when it is right: the canonical request (the path
    URI-encoded once more, as for every service but S3), the string to sign and the HMAC key chain derived
    from ``secret_access_key``, computed here from the documented algorithm."""
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = parse_authorization(lowered.get("authorization", ""))
    if auth is None:
        return "no AWS4-HMAC-SHA256 Authorization header"
    if (auth.service, auth.region) != (service, region):
        return f"credential scope {auth.region}/{auth.service}, expected {region}/{service}"
    if not {"host", "x-amz-date"} <= set(auth.signed_headers):
        return f"host and x-amz-date must be signed, signed: {auth.signed_headers}"
    amz_date = lowered.get("x-amz-date", "")
    stamp = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    if abs((now or datetime.datetime.now(datetime.UTC)) - stamp) > MAX_SKEW or amz_date[:8] != auth.date:
        return f"request time {amz_date} is outside the allowed skew"
    url = urlsplit(target)
    canonical_headers = "".join(
        f"{name}:{' '.join(lowered.get(name, '').split())}\n" for name in auth.signed_headers
    )
    canonical_request = "\n".join(
        [
            method,
            quote(url.path or "/", safe="/~"),
            _canonical_query(url.query),
            canonical_headers,
            ";".join(auth.signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{auth.date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_access_key}".encode(), auth.date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        return "The request signature we calculated does not match the signature you provided"
    return None


# --- web identity trust -------------------------------------------------------------------------------------
def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def trust_refusal(policy: dict[str, Any], token_claims: dict[str, Any]) -> str | None:
    """Why a role's trust policy refuses a web identity token, or None when a statement allows it."""
    issuer = str(token_claims.get("iss", "")).removeprefix("https://")
    if int(token_claims.get("exp", 0)) < datetime.datetime.now(datetime.UTC).timestamp():
        return "token expired"
    values = {f"{issuer}:sub": token_claims.get("sub"), f"{issuer}:aud": token_claims.get("aud")}
    for statement in _listed_statements(policy):
        if statement.get("Effect") != "Allow" or WEB_IDENTITY not in _listed(statement.get("Action")):
            continue
        federated = _listed((statement.get("Principal") or {}).get("Federated"))
        if not any(f.endswith(f":oidc-provider/{issuer}") for f in federated):
            continue
        if all(
            _condition(operator, values.get(key), _listed(expected))
            for operator, block in (statement.get("Condition") or {}).items()
            for key, expected in block.items()
        ):
            return None
    return f"no statement trusts subject {token_claims.get('sub')} of {issuer}"


def _listed_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy.get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def _condition(operator: str, actual: Any, expected: list[str]) -> bool:
    got = _listed(actual)
    if operator == "StringEquals":
        return any(value in expected for value in got)
    if operator == "StringLike":
        return any(fnmatch.fnmatchcase(value, pattern) for value in got for pattern in expected)
    return False  # an operator this fake does not evaluate never allows


# --- responses ----------------------------------------------------------------------------------------------
def converse_response(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
        "metrics": {"latencyMs": 1},
    }


def invoke_response(model_id: str, text: str) -> dict[str, Any]:
    if "anthropic." in model_id:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 2},
        }
    return {"generation": text, "prompt_token_count": 1, "generation_token_count": 2, "stop_reason": "stop"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any], error_type: str | None = None) -> None:
        headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/"} if error_type else {}
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/model/"):
            self._runtime(body)
        else:
            self._sts(body)

    # --- STS ---
    def _sts(self, body: bytes) -> None:
        fake = self.server.fake
        form = parse_qs(body.decode())
        if form.get("Action") != ["AssumeRoleWithWebIdentity"]:
            self._forward(body)  # everything else is moto's
            return
        role = form.get("RoleArn", [""])[0]
        token = form.get("WebIdentityToken", [""])[0]
        try:
            token_claims = claims(token)
        except (ValueError, IndexError):
            self._sts_error(400, "InvalidIdentityToken", "Couldn't parse the web identity token")
            return
        policy = fake.trust_policy(role)
        refused = "role not found" if policy is None else trust_refusal(policy, token_claims)
        with fake.state.lock:
            fake.state.sts.append(StsCall(role, token_claims.get("sub"), token, refused))
        if refused is not None:
            self._sts_error(403, "AccessDenied", f"Not authorized to perform {WEB_IDENTITY}")
            return
        self._forward(body)

    def _sts_error(self, status: int, code: str, message: str) -> None:
        xml = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        self._send(status, xml.encode(), "text/xml")

    def _forward(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.server.fake.sts_upstream + "/",
            data=body,
            headers={"Content-Type": self.headers.get("Content-Type", "application/x-www-form-urlencoded")},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # moto on loopback
                status, data, kind = (
                    answer.status,
                    answer.read(),
                    answer.headers.get("Content-Type", "text/xml"),
                )
        except urllib.error.HTTPError as exc:
            status, data, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "text/xml")
        self._send(status, data, kind)

    # --- Bedrock Runtime ---
    def _runtime(self, body: bytes) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path).path.split("/")  # ['', 'model', '<id>', 'converse']
        model_id, api = unquote(parts[2]), parts[3] if len(parts) > 3 else ""
        headers = dict(self.headers.items())
        auth = parse_authorization(self.headers.get("Authorization", ""))
        session = fake.credentials(auth.access_key_id) if auth else None
        if auth is None or session is None:
            error: str | None = "unknown access key id"
        else:
            error = sigv4_error(
                "POST",
                self.path,
                headers,
                body,
                session.secret_access_key,
                service="bedrock",
                region=fake.region,
            )
            if error is None and self.headers.get("X-Amz-Security-Token") != session.session_token:
                error = "X-Amz-Security-Token is not the session token of the access key"
            elif error is None and "x-amz-security-token" not in auth.signed_headers:
                error = "X-Amz-Security-Token is not signed"
        call = RuntimeCall(
            host=self.headers.get("Host", ""),
            model_id=model_id,
            api=api,
            access_key_id=auth.access_key_id if auth else None,
            role_arn=session.role_arn if session else None,
            signature_error=error,
            body=json.loads(body or b"{}"),
        )
        with fake.state.lock:
            fake.state.runtime.append(call)
        if error is not None:
            self._json(403, {"message": error}, "InvalidSignatureException")
        elif api == "converse":
            self._json(200, converse_response(f"from bedrock {model_id}"))
        elif api == "invoke":
            self._json(200, invoke_response(model_id, f"from bedrock {model_id}"))
        else:
            self._json(404, {"message": f"unknown operation {api}"}, "UnknownOperationException")

    # --- Bedrock control plane ---
    def do_GET(self) -> None:
        state = self.server.fake.state
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        with state.lock:
            state.control_requests.append(self.path)
        if url.path == "/foundation-models":
            self._json(200, {"modelSummaries": state.foundation_models})
        elif url.path.startswith("/foundation-models/"):
            wanted = unquote(url.path.removeprefix("/foundation-models/"))
            found = [m for m in state.foundation_models + state.unlisted_models if m["modelId"] == wanted]
            if found:
                self._json(200, {"modelDetails": found[0]})
            else:
                self._json(
                    404,
                    {"message": f"Could not resolve the foundation model from {wanted}"},
                    "ResourceNotFoundException",
                )
        elif url.path == "/inference-profiles":
            self._profiles(query)
        else:
            self._json(404, {"message": "not found"}, "ResourceNotFoundException")

    def _profiles(self, query: dict[str, list[str]]) -> None:
        state = self.server.fake.state
        if state.profiles_denied:
            message = "not authorized to perform: bedrock:ListInferenceProfiles"
            self._json(403, {"message": message}, "AccessDeniedException")
            return
        profiles = state.inference_profiles
        kind = query.get("type", ["SYSTEM_DEFINED"])[0]
        profiles = [p for p in profiles if p.get("type", "SYSTEM_DEFINED") == kind]
        start = int(query.get("nextToken", ["0"])[0])
        size = min(int(query.get("maxResults", ["1000"])[0]), state.page_size)
        page: dict[str, Any] = {"inferenceProfileSummaries": profiles[start : start + size]}
        if start + size < len(profiles):
            page["nextToken"] = str(start + size)
        self._json(200, page)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: BedrockFake) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class BedrockFake:
    """The fake, serving HTTPS on a free loopback port until ``stop()``. ``hosts``: names its certificate
    holds (the STS and VPC endpoint names clients are pointed at through DNS)."""

    def __init__(
        self,
        directory: Path,
        *,
        region: str,
        hosts: tuple[str, ...] = (),
        sts_upstream: str = "",
        trust_policy: Callable[[str], dict[str, Any] | None] = lambda _: None,
        credentials: Callable[[str], Session | None] = lambda _: None,
    ) -> None:
        self.region = region
        self.sts_upstream = sts_upstream.rstrip("/")
        self.trust_policy = trust_policy
        self.credentials = credentials
        self.state = BedrockState()
        self.ca_file = directory / "bedrock-fake.crt"
        key_file = directory / "bedrock-fake.key"
        self_signed(self.ca_file, key_file, hosts)
        self._server = _Server(self)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def runtime_calls(self) -> list[RuntimeCall]:
        with self.state.lock:
            return list(self.state.runtime)

    def sts_calls(self) -> list[StsCall]:
        with self.state.lock:
            return list(self.state.sts)
