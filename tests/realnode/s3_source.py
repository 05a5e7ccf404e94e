"""moto's S3 and STS where the real node's pods reach them, in a process of its own, with IAM enforced.

Why a process of its own: moto keeps its accounts in the process, so a second server in the test process
would share the session's (``moto_url`` in tests/conftest.py); and IAM enforcement (``/moto-api/reset-auth``)
is process-wide. Here it is on, after seeding, so an S3 call succeeds only with credentials whose role's
policy allows it — the assumed-role credentials the download pod got from STS.

What this process adds to moto's server (``python s3_source.py HOST JWKS_FILE ISSUER``), and why:

- **AssumeRoleWithWebIdentity is unsigned**, as on AWS (the token is the credential): moto's enforcement would
  look for a SigV4 ``Authorization`` header on it and fail, so that one action skips the signature check.
- **The token is verified**: moto's STS does not look at it at all. Here it must be a JWT signed by a key of
  the cluster's service-account JWKS (the API server's ``/openid/v1/jwks``), with audience
  ``sts.amazonaws.com`` and the cluster's issuer, unexpired — what AWS checks against the IAM OIDC provider —
  or the answer is ``InvalidIdentityToken``.
- **The role's trust policy is enforced** (moto evaluates none): its statements must allow
  ``sts:AssumeRoleWithWebIdentity`` to the issuer's OIDC provider with the token's ``sub`` and ``aud``, as
  :func:`tests.fakes.bedrock.trust_refusal` evaluates them for the gateway tests; a role that does not trust
  the token's ServiceAccount, or no such role, gets STS's ``AccessDenied``. Then moto issues the credentials,
  and the role's permission policy decides on S3.
- **An access log** on stdout, one JSON object a line, in the spirit of CloudTrail: every request's method,
  path, status and the access key id it was signed with (never a signature or secret), and for every web
  identity exchange the token's verified claims (``sub``, ``aud``, ``iss``), the role and the access key id
  issued. Tests read it to show which identity made which S3 call.

The first line printed is ``{"port": N}``. Tests start it with :func:`s3_source`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend
from moto.sts.responses import TokenResponse
from werkzeug.serving import make_server

from modelyard.render.web_identity import STS_AUDIENCE
from tests.fakes.bedrock import trust_refusal

START_TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parents[2]
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_claims = threading.local()
_emitting = threading.Lock()


def emit(record: dict[str, Any]) -> None:
    """One record a line, written whole: the server answers requests in threads, and print() writes the
    object and its newline apart (two requests at once logged two objects on one line)."""
    line = json.dumps(record, sort_keys=True) + "\n"
    with _emitting:
        sys.stdout.write(line)
        sys.stdout.flush()


def main(host: str, jwks_file: str, issuer: str) -> None:
    with open(jwks_file) as handle:
        keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(json.load(handle)).keys}

    check_auth = TokenResponse._authenticate_and_authorize_normal_action
    exchange = TokenResponse.assume_role_with_web_identity
    assume = STSBackend.assume_role_with_web_identity

    def unsigned_web_identity(self: Any, resource: str = "*") -> None:
        if self._get_action() != "AssumeRoleWithWebIdentity":
            check_auth(self, resource)

    def verified_exchange(self: Any) -> Any:
        token = self._get_param("WebIdentityToken") or ""
        try:
            key = keys[jwt.get_unverified_header(token).get("kid")]
            claims = jwt.decode(
                token, key, algorithms=["RS256", "ES256"], audience=STS_AUDIENCE, issuer=issuer
            )
        except (KeyError, jwt.InvalidTokenError) as error:
            emit({"event": "AssumeRoleWithWebIdentity", "refused": f"{type(error).__name__}: {error}"})
            raise STSClientError("InvalidIdentityToken", "the token was not issued by the cluster") from None
        role_arn = self._get_param("RoleArn") or ""
        policy = trust_policy(role_arn)
        refusal = "no such role" if policy is None else trust_refusal(policy, claims)
        if refusal:
            emit(
                {
                    "event": "AssumeRoleWithWebIdentity",
                    "role": role_arn,
                    "sub": claims.get("sub"),
                    "refused": refusal,
                }
            )
            raise STSClientError("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        _claims.value = claims
        return exchange(self)

    def logged_assume(self: Any, **kwargs: Any) -> Any:
        role = assume(self, **kwargs)
        claims = getattr(_claims, "value", {})
        emit(
            {
                "event": "AssumeRoleWithWebIdentity",
                "role": role.role_arn,
                "accessKeyId": role.access_key_id,
                "sub": claims.get("sub"),
                "aud": claims.get("aud"),
                "iss": claims.get("iss"),
            }
        )
        return role

    TokenResponse._authenticate_and_authorize_normal_action = unsigned_web_identity  # type: ignore[method-assign]
    TokenResponse.assume_role_with_web_identity = verified_exchange  # type: ignore[method-assign]
    STSBackend.assume_role_with_web_identity = logged_assume  # type: ignore[method-assign]

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, 0, access_log(app), threaded=True, request_handler=MotoRequestHandler)
    emit({"port": server.server_address[1]})
    server.serve_forever()


def trust_policy(role_arn: str) -> dict[str, Any] | None:
    """The role's trust policy, from moto's IAM in this process (None: no such role)."""
    account, _, name = role_arn.removeprefix("arn:aws:iam::").partition(":role/")
    try:
        document = iam_backends[account]["aws"].get_role(name.rsplit("/", 1)[-1]).assume_role_policy_document
    except NotFoundException:
        return None
    policy: dict[str, Any] = json.loads(document) if isinstance(document, str) else dict(document)
    return policy


def access_log(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        record: dict[str, Any] = {
            "event": "request",
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING"),
        }
        credential = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        record["accessKeyId"] = credential.group(1) if credential else None

        def start(status: str, headers: Any, *args: Any) -> Any:
            record["status"] = int(status.split(maxsplit=1)[0])
            emit(record)
            return start_response(status, headers, *args)

        return app(environ, start)

    return logged


@dataclass(frozen=True)
class S3Source:
    """The running server: its URL and its access log."""

    url: str
    log: Path

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if event is None or r.get("event") == event]

    def enforce_iam(self) -> None:
        """From now on every signed call needs credentials whose IAM policies allow it (the seeding calls
        before were let through unchecked)."""
        response = httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0", timeout=10)
        response.raise_for_status()


@contextmanager
def s3_source(host: str, jwks: dict[str, Any], issuer: str, directory: Path) -> Iterator[S3Source]:
    """The server on ``host`` (a free port) until the block ends, trusting tokens signed by ``jwks``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "jwks.json").write_text(json.dumps(jwks))
    log = directory / "s3-source.jsonl"
    with log.open("w") as out, (directory / "s3-source.stderr").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, host, str(directory / "jwks.json"), issuer],
            stdout=out,
            stderr=err,
            cwd=ROOT,  # where ``tests`` is a package
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not log.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = (directory / "s3-source.stderr").read_text()
                raise AssertionError(f"s3 source did not start: {stderr}")
            time.sleep(0.1)
        port = json.loads(log.read_text().splitlines()[0])["port"]
        yield S3Source(f"http://{host}:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main(*sys.argv[1:4])
