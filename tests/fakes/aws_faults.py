"""A small HTTP proxy in front of moto's server that breaks AWS on purpose, and records what AWS issued.

Every request is passed through to moto unchanged, except:

- faults: the next ``times`` requests of a Query-protocol operation (the form's ``Action``, as STS and EC2
  send it) are answered with an HTTP status and STS's documented ``ErrorResponse`` XML (``Throttling``,
  ``ServiceUnavailable``, ...), as AWS answers when it throttles or fails;
- trust: with ``trust_policy`` set, ``AssumeRoleWithWebIdentity`` is refused with ``AccessDenied`` unless the
  role's trust policy allows the token (tests.fakes.bedrock.trust_refusal: moto evaluates none).

It records the web identity tokens presented to ``AssumeRoleWithWebIdentity`` and the session credentials
moto answered with, for the leak tests to search for.
"""

from __future__ import annotations

import http.client
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from .bedrock import WEB_IDENTITY, claims, trust_refusal

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
#: the fault's ErrorResponse Type: the caller's (Sender) or AWS's (Receiver)
FAULT_TYPE = {"Throttling": "Sender", "AccessDenied": "Sender"}
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})


def error_response(code: str, message: str) -> bytes:
    """STS's error body (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html)."""
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>{FAULT_TYPE.get(code, "Receiver")}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


@dataclass
class Fault:
    """The next ``remaining`` requests of ``action`` (every one when None) get this answer."""

    action: str
    status: int
    code: str
    message: str
    remaining: int | None = None
    served: int = 0


@dataclass(frozen=True)
class SessionCredentials:
    """What moto's STS issued to one AssumeRoleWithWebIdentity."""

    access_key_id: str
    secret_access_key: str
    session_token: str

    def values(self) -> tuple[str, str, str]:
        return (self.access_key_id, self.secret_access_key, self.session_token)


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    #: requests seen, by Action ("" for other protocols)
    actions: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    credentials: list[SessionCredentials] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        form = parse_qs(body.decode(errors="replace")) if body else {}
        action = form.get("Action", [""])[0]
        with proxy.state.lock:
            proxy.state.actions.append(action)
            fault = next((f for f in proxy.state.faults if f.action == action and _take(f)), None)
            if action == "AssumeRoleWithWebIdentity":
                proxy.state.tokens.append(form.get("WebIdentityToken", [""])[0])
        if fault is not None:
            self._send(fault.status, error_response(fault.code, fault.message), {"Content-Type": "text/xml"})
            return
        if action == "AssumeRoleWithWebIdentity" and proxy.trust_policy is not None:
            refused = self._trust(form, proxy.trust_policy)
            if refused is not None:
                with proxy.state.lock:
                    proxy.state.refusals.append(refused)
                message = f"Not authorized to perform {WEB_IDENTITY}"
                self._send(403, error_response("AccessDenied", message), {"Content-Type": "text/xml"})
                return
        status, data, headers = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
        if action == "AssumeRoleWithWebIdentity" and status == 200:
            issued = _session_credentials(data)
            with proxy.state.lock:
                proxy.state.credentials.append(issued)
        self._send(status, data, headers)

    @staticmethod
    def _trust(form: dict[str, list[str]], policies: Callable[[str], dict[str, Any] | None]) -> str | None:
        try:
            token_claims = claims(form.get("WebIdentityToken", [""])[0])
        except (ValueError, IndexError):
            return "unparsable token"
        policy = policies(form.get("RoleArn", [""])[0])
        return "role not found" if policy is None else trust_refusal(policy, token_claims)

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _take(fault: Fault) -> bool:
    if fault.remaining is not None:
        if fault.remaining <= 0:
            return False
        fault.remaining -= 1
    fault.served += 1
    return True


def _session_credentials(xml: bytes) -> SessionCredentials:
    found = ET.fromstring(xml).find(f".//{{{STS_NAMESPACE}}}Credentials")
    assert found is not None, xml

    def text(name: str) -> str:
        return str(found.findtext(f"{{{STS_NAMESPACE}}}{name}"))

    return SessionCredentials(text("AccessKeyId"), text("SecretAccessKey"), text("SessionToken"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: AwsFaults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class AwsFaults:
    """The proxy, serving plain HTTP on a free loopback port until ``stop()``; point AWS_ENDPOINT_URL at
    ``url``."""

    def __init__(
        self, upstream: str, trust_policy: Callable[[str], dict[str, Any] | None] | None = None
    ) -> None:
        split = urlsplit(upstream)
        self.upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self.trust_policy = trust_policy
        self.state = _State()
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, action: str, status: int, code: str, message: str, times: int | None = None) -> Fault:
        """Answer the next ``times`` requests of ``action`` (all until ``clear()`` when None) with a fault."""
        fault = Fault(action, status, code, message, times)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def count(self, action: str) -> int:
        """Requests of ``action`` seen so far (faulted or passed)."""
        with self.state.lock:
            return self.state.actions.count(action)

    def tokens(self) -> list[str]:
        with self.state.lock:
            return list(self.state.tokens)

    def credentials(self) -> list[SessionCredentials]:
        with self.state.lock:
            return list(self.state.credentials)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            passed = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body or None, headers=passed)
            answer = connection.getresponse()
            return answer.status, answer.read(), dict(answer.getheaders())
        finally:
            connection.close()
