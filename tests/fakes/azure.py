"""A local HTTPS fake of the Azure endpoints modelyard and its gateway call, speaking their documented JSON:
the Entra ID token endpoint (``POST /{tenant}/oauth2/v2.0/token``, client-credentials grant with a federated
``client_assertion``), Azure Resource Manager reads of a Cognitive Services account and its deployments
(``GET {resourceId}[/deployments/{name}]?api-version=2024-10-01``), and the Azure OpenAI data plane
(``POST /openai/deployments/{deployment}/chat/completions?api-version=...``, Entra bearer token only).

Federated credentials are enforced as Entra ID does: the assertion's ``sub`` and ``aud`` claims must match
the credential registered for the client id. The data plane accepts only a token this fake issued for the
Cognitive Services scope. Every request is recorded for the tests to assert on.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_VERSION = "2024-10-01"
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUDIENCE = "api://AzureADTokenExchange"
#: every access token the fake issues starts so: a planted value the leak tests search for
PLANTED_TOKEN_PREFIX = "planted-entra-token-"


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class AzureState:
    """What the fake cloud holds: federated credentials, accounts and their deployments."""

    #: client id -> the subject its federated credential trusts
    federated: dict[str, str] = field(default_factory=dict)
    #: resource id -> account JSON
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: resource id -> deployment names
    deployments: dict[str, set[str]] = field(default_factory=dict)
    #: when set, Resource Manager answers every GET with this status (an outage, or throttling with 429)
    arm_outage: int | None = None
    #: when set, the token endpoint answers with this fault (throttling, an outage) instead of a token
    token_fault: TokenFault | None = None
    #: access tokens issued -> client id
    issued: dict[str, str] = field(default_factory=dict)
    #: access tokens issued -> the scope asked for
    scopes: dict[str, str] = field(default_factory=dict)
    #: Azure OpenAI deployments the data plane serves (any account host)
    chat_deployments: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Entra ID's documented error bodies for the faults the token endpoint can answer with (RFC 6749 error codes,
#: with the AADSTS code in error_codes and at the start of error_description)
TOKEN_FAULTS = {
    429: ("temporarily_unavailable", 90055, "The number of requests has exceeded the throttling threshold"),
    500: ("server_error", 90033, "A transient error has occurred. Please try again."),
    503: ("temporarily_unavailable", 90033, "A transient error has occurred. Please try again."),
}


@dataclass
class TokenFault:
    """The token endpoint's next ``remaining`` answers (every one when None) are this fault."""

    status: int
    remaining: int | None = None
    #: seconds, in a Retry-After header (sent with 429 and 503, as Entra ID does)
    retry_after: int = 1
    #: faults answered so far
    served: int = 0

    def take(self) -> bool:
        """Whether this request gets the fault (counting it)."""
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        self.served += 1
        return True


def account(resource_id: str, location: str, endpoint: str, **properties: Any) -> dict[str, Any]:
    """A Cognitive Services account as ARM returns it (kind OpenAI)."""
    name = resource_id.rsplit("/", 1)[-1]
    return {
        "id": resource_id,
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts",
        "kind": "OpenAI",
        "location": location,
        "sku": {"name": "S0"},
        "properties": {
            "endpoint": endpoint,
            "endpoints": {"OpenAI Language Model Instance API": endpoint},
            "provisioningState": "Succeeded",
            "customSubDomainName": name,
            **properties,
        },
    }


def private_endpoint_connection(resource_id: str, status: str) -> dict[str, Any]:
    """An entry of properties.privateEndpointConnections."""
    return {
        "id": f"{resource_id}/privateEndpointConnections/pe-{status.lower()}",
        "name": f"pe-{status.lower()}",
        "properties": {
            "privateEndpoint": {"id": "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/x"},
            "privateLinkServiceConnectionState": {
                "status": status,
                "description": "",
                "actionsRequired": "None",
            },
            "provisioningState": "Succeeded",
        },
    }


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _record(self, form: dict[str, list[str]]) -> Request:
        url = urlsplit(self.path)
        request = Request(self.command, url.path, parse_qs(url.query), form, dict(self.headers.items()))
        with self.server.state.lock:
            self.server.state.requests.append(request)
        return request

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).decode()
        form = {} if self.path.startswith("/openai/") else parse_qs(body)
        request = self._record(form)
        if request.path.startswith("/openai/deployments/"):
            self._chat(request)
            return
        if not request.path.endswith("/oauth2/v2.0/token"):
            self._send(404, {"error": "not_found"})
            return
        self._token(form)

    def _chat(self, request: Request) -> None:
        """Azure OpenAI chat completions: Entra ID bearer tokens only (the accounts have local auth off)."""
        state = self.server.state
        headers = {name.lower(): value for name, value in request.headers.items()}
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in state.issued or state.scopes.get(bearer) != COGNITIVE_SERVICES_SCOPE:
            self._send(
                401, {"error": {"code": "PermissionDenied", "message": "Principal does not have access"}}
            )
            return
        deployment = request.path.removeprefix("/openai/deployments/").split("/")[0]
        if deployment not in state.chat_deployments or not request.query.get("api-version"):
            self._send(404, {"error": {"code": "DeploymentNotFound", "message": f"{deployment} not found"}})
            return
        self._send(
            200,
            {
                "id": "chatcmpl-azure",
                "object": "chat.completion",
                "created": 0,
                "model": deployment,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"from azure {deployment}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            },
        )

    def _token(self, form: dict[str, list[str]]) -> None:
        state = self.server.state
        with state.lock:
            fault = state.token_fault if state.token_fault is not None and state.token_fault.take() else None
        if fault is not None:
            self._token_fault(fault)
            return
        client_id = form.get("client_id", [""])[0]
        assertion = form.get("client_assertion", [""])[0]
        if form.get("client_assertion_type", [""])[0] != ASSERTION_TYPE or not assertion:
            self._send(
                400, {"error": "invalid_request", "error_description": "AADSTS90014: missing assertion"}
            )
            return
        claims = _claims(assertion)
        trusted = state.federated.get(client_id)
        if trusted is None or claims.get("sub") != trusted or AUDIENCE not in _audiences(claims):
            self._send(
                400,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS700213: No matching federated identity record found for "
                    f"presented assertion subject '{claims.get('sub')}'. Trace ID: 0000",
                    "error_codes": [700213],
                },
            )
            return
        token = PLANTED_TOKEN_PREFIX + secrets.token_hex(16)
        with state.lock:
            state.issued[token] = client_id
            state.scopes[token] = form.get("scope", [""])[0]
        self._send(
            200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    def _token_fault(self, fault: TokenFault) -> None:
        error, code, text = TOKEN_FAULTS[fault.status]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace = "00000000-0000-0000-0000-000000000000"
        self._send(
            fault.status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {trace} "
                f"Timestamp: {now}",
                "error_codes": [code],
                "timestamp": now,
                "trace_id": trace,
                "correlation_id": trace,
            },
            {"Retry-After": str(fault.retry_after)} if fault.status in (429, 503) else None,
        )

    def do_GET(self) -> None:
        request = self._record({})
        state = self.server.state
        if state.arm_outage is not None:
            self._send(
                state.arm_outage, {"error": {"code": "ServiceUnavailable", "message": "try again later"}}
            )
            return
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in state.issued:
            self._send(401, {"error": {"code": "InvalidAuthenticationToken", "message": "invalid token"}})
            return
        if request.query.get("api-version") != [API_VERSION]:
            self._send(400, {"error": {"code": "InvalidApiVersionParameter", "message": "bad api-version"}})
            return
        path = request.path
        if path in state.accounts:
            self._send(200, state.accounts[path])
            return
        parent, _, name = path.rpartition("/deployments/")
        if parent in state.accounts and name in state.deployments.get(parent, set()):
            self._send(200, {"id": path, "name": name, "properties": {"provisioningState": "Succeeded"}})
            return
        self._send(404, {"error": {"code": "ResourceNotFound", "message": f"{path} was not found"}})


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else list(aud)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: AzureState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class AzureFake:
    """The fake, serving HTTPS on a free loopback port until ``stop()``."""

    def __init__(self, directory: Path, hosts: tuple[str, ...] = ()) -> None:
        """``hosts``: names its certificate holds besides 127.0.0.1 and localhost, for clients that reach it
        under a real name (mapped to it as private DNS would)."""
        self.state = AzureState()
        self.ca_file = directory / "azure-fake.crt"
        key_file = directory / "azure-fake.key"
        self_signed(self.ca_file, key_file, hosts)
        self._server = _Server(self.state)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    def add_private_account(self, resource_id: str, endpoint: str, deployments: set[str]) -> None:
        """A compliant account: public access disabled, local auth disabled, an approved private endpoint."""
        self.state.accounts[resource_id] = account(
            resource_id,
            "westeurope",
            endpoint,
            publicNetworkAccess="Disabled",
            disableLocalAuth=True,
            privateEndpointConnections=[private_endpoint_connection(resource_id, "Approved")],
        )
        self.state.deployments[resource_id] = set(deployments)


def self_signed(cert_file: Path, key_file: Path, hosts: tuple[str, ...] = ()) -> None:
    """A certificate for 127.0.0.1, localhost and ``hosts``, valid for a day; its own trust anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"modelyard {cert_file.stem}")]
    )  # unique per bundle
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(host) for host in hosts),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
