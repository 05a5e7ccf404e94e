"""Azure: prove the gateway's federated identity gets a token, and that the account is reached privately.

The ServiceAccount token (audience ``api://AzureADTokenExchange``) is exchanged for an Entra ID token with
azure-identity's ``WorkloadIdentityCredential`` — the same exchange the gateway pod performs — for the Azure
Resource Manager scope. With that token, a GET of the Cognitive Services account (api-version 2024-10-01)
shows ``properties.publicNetworkAccess``, ``properties.privateEndpointConnections`` and
``properties.disableLocalAuth``, and a GET of each deployment shows it exists: the gateway's identity needs
the Reader role on the account. ``AZURE_AUTHORITY_HOST`` selects the Entra ID host, as everywhere in
azure-identity; the ARM URL and scope are operator settings.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from . import Check, CloudUnavailable
from .network import Resolver, check_private
from .scrub import scrub

TOKEN_AUDIENCE = "api://AzureADTokenExchange"
ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
ACCOUNT_API_VERSION = "2024-10-01"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class AzureRefused(Exception):
    """Azure answered with a definitive error (authorization failed, token exchange refused)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenSource(Protocol):
    """Exchanges a federated ServiceAccount token for an Entra ID access token (blocking)."""

    def token(self, tenant_id: str, client_id: str, assertion: str, scope: str) -> str: ...


class WorkloadIdentityTokens:
    """``WorkloadIdentityCredential``, fed the assertion through a file only this process can read, removed
    right after the exchange. Timeouts and retries are bounded."""

    def token(self, tenant_id: str, client_id: str, assertion: str, scope: str) -> str:
        # Imported here, not with the module: azure-identity costs ~30 MiB, which an operator with no Azure
        # binding should not pay.
        from azure.core.exceptions import AzureError, ClientAuthenticationError  # noqa: PLC0415
        from azure.identity import WorkloadIdentityCredential  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="modelyard-token-") as directory:  # mode 0700
            path = Path(directory) / "token"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(assertion)
            credential = WorkloadIdentityCredential(
                tenant_id=tenant_id,
                client_id=client_id,
                token_file_path=str(path),
                connection_timeout=5,
                read_timeout=10,
                retry_total=2,
            )
            try:
                return str(credential.get_token(scope).token)
            except ClientAuthenticationError as exc:
                status = (exc.response.status_code if exc.response is not None else 0) or 0
                what = f"token exchange for client {client_id}"
                if status == 429 or status >= 500:  # no verdict: with the status, as Entra ID answered it
                    raise CloudUnavailable(scrub(f"{what}: {status} {exc.message}", [assertion])) from None
                refused = scrub(f"{what}: {exc.message}", [assertion])
                raise AzureRefused("TokenExchangeFailed", refused) from None
            except AzureError as exc:  # unreachable authority, timeouts
                raise CloudUnavailable(scrub(f"token exchange: {exc.message}", [assertion])) from None
            finally:
                credential.close()


@dataclass(frozen=True, slots=True)
class AzureTarget:
    """What to verify for one Azure OpenAI binding."""

    resource_id: str
    endpoint: str
    deployments: tuple[str, ...]
    tenant_id: str | None = None
    client_id: str | None = None
    #: The gateway ServiceAccount's token; None for static keys (no identity to read the account with).
    federated_token: str | None = None


@dataclass(frozen=True, slots=True)
class AzureReport:
    """The verdicts for one Azure OpenAI binding."""

    credentials: Check | None  #: None when there was no identity to exchange
    principal: str | None
    connectivity: Check
    region: str | None
    public_network_access: bool | None
    local_auth_enabled: bool | None
    missing_deployments: tuple[str, ...] = ()
    deployments_unverified: str | None = None


def evaluate_account(account: dict[str, Any], endpoint: str) -> Check:
    """Public network access disabled, an Approved private endpoint connection, and ``endpoint`` served by
    this account."""
    props = account.get("properties") or {}
    name = account.get("name", "the account")
    access = props.get("publicNetworkAccess") or "Enabled"
    if access != "Disabled":
        return Check.failed(
            "PublicNetworkAccessEnabled", f"{name}: properties.publicNetworkAccess is {access}, not Disabled"
        )
    states = [
        str(((c.get("properties") or {}).get("privateLinkServiceConnectionState") or {}).get("status"))
        for c in props.get("privateEndpointConnections") or []
    ]
    if "Approved" not in states:
        return Check.failed(
            "PrivateEndpointNotApproved",
            f"{name}: no Approved private endpoint connection (found: {', '.join(states) or 'none'})",
        )
    hosts = sorted(str(urlsplit(url).hostname) for url in _account_endpoints(props))
    host = urlsplit(endpoint).hostname
    if hosts and host not in hosts:
        return Check.failed(
            "EndpointNotOfAccount",
            f"{host} is not an endpoint of {name} ({', '.join(hosts)})",
        )
    return Check.ok(
        "PrivateEndpointApproved", f"{name}: public network access disabled, private endpoint approved"
    )


def _account_endpoints(props: dict[str, Any]) -> list[str]:
    urls = [props["endpoint"]] if props.get("endpoint") else []
    return urls + [str(url) for url in (props.get("endpoints") or {}).values()]


class AzureVerifier:
    """Verifies Azure OpenAI bindings: the token exchange in a worker thread, ARM reads with httpx."""

    def __init__(
        self,
        resolver: Resolver,
        arm_url: str = ARM_URL,
        scope: str = ARM_SCOPE,
        tokens: TokenSource | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self.resolver = resolver
        self.arm_url = arm_url.rstrip("/")
        self.scope = scope
        self.tokens = tokens if tokens is not None else WorkloadIdentityTokens()
        self.timeout = timeout

    async def verify(self, target: AzureTarget) -> AzureReport:
        """Every verdict for ``target``; raises CloudUnavailable when Azure gave none."""
        if target.federated_token is None or target.client_id is None or target.tenant_id is None:
            return AzureReport(
                credentials=None,
                principal=None,
                connectivity=Check.failed(
                    "AccountUnreadable",
                    "static keys give no Resource Manager access: network unverified",
                ),
                region=None,
                public_network_access=None,
                local_auth_enabled=None,
            )
        try:
            token = await asyncio.to_thread(
                self.tokens.token, target.tenant_id, target.client_id, target.federated_token, self.scope
            )
        except AzureRefused as exc:
            failed = Check.failed(exc.code, str(exc))
            unverified = Check.failed("AccountUnreadable", "no token to read the account with")
            return AzureReport(failed, None, unverified, None, None, None)
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            return await self._read(http, target, token)

    async def _read(self, http: httpx.AsyncClient, target: AzureTarget, token: str) -> AzureReport:
        try:
            account = await self._get(http, target.resource_id, token)
        except AzureRefused as exc:
            return AzureReport(
                Check.ok("TokenIssued", f"Entra ID issued a token to client {target.client_id}"),
                target.client_id,
                Check.failed("AccountUnreadable", str(exc)),
                None,
                None,
                None,
            )
        if account is None:
            return AzureReport(
                Check.ok("TokenIssued", f"Entra ID issued a token to client {target.client_id}"),
                target.client_id,
                Check.failed("AccountNotFound", f"{target.resource_id} does not exist"),
                None,
                None,
                None,
            )
        props = account.get("properties") or {}
        local_auth = props.get("disableLocalAuth") is not True
        credentials = (
            Check.failed(
                "LocalAuthEnabled",
                "the account accepts API keys (properties.disableLocalAuth is not true): keyless identity is "
                "not enforced",
            )
            if local_auth
            else Check.ok(
                "TokenIssued",
                f"Entra ID issued a token to client {target.client_id}; the account refuses API keys",
            )
        )
        connectivity = evaluate_account(account, target.endpoint)
        if connectivity.passed:
            dns = await check_private([str(urlsplit(target.endpoint).hostname)], self.resolver)
            connectivity = (
                dns
                if not dns.passed
                else replace(connectivity, message=f"{connectivity.message}; {dns.message}")
            )
        missing, unverified = await self._deployments(http, target, token)
        return AzureReport(
            credentials=credentials,
            principal=target.client_id,
            connectivity=connectivity,
            region=account.get("location"),
            public_network_access=(props.get("publicNetworkAccess") or "Enabled") != "Disabled",
            local_auth_enabled=local_auth,
            missing_deployments=missing,
            deployments_unverified=unverified,
        )

    async def _deployments(
        self, http: httpx.AsyncClient, target: AzureTarget, token: str
    ) -> tuple[tuple[str, ...], str | None]:
        missing: list[str] = []
        try:
            for name in target.deployments:
                if await self._get(http, f"{target.resource_id}/deployments/{quote(name)}", token) is None:
                    missing.append(name)
        except (AzureRefused, CloudUnavailable) as exc:
            return (), str(exc)
        return tuple(missing), None

    async def _get(self, http: httpx.AsyncClient, path: str, token: str) -> dict[str, Any] | None:
        """GET an ARM resource: its JSON, None when it does not exist."""
        url = f"{self.arm_url}{path}"
        try:
            response = await http.get(
                url,
                params={"api-version": ACCOUNT_API_VERSION},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise CloudUnavailable(scrub(f"GET {path}: {type(exc).__name__}: {exc}", [token])) from None
        if response.status_code == 404:
            return None
        if response.is_success:
            body: dict[str, Any] = response.json()
            return body
        error = _arm_error(response)
        message = scrub(f"GET {path}: {response.status_code} {error[0]}: {error[1]}", [token])
        if response.status_code == 429 or response.status_code >= 500:
            raise CloudUnavailable(message)
        raise AzureRefused(error[0] or str(response.status_code), message)


def _arm_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an ARM error body ``{"error": {"code", "message"}}``."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return "", response.text[:200]
    return str(error.get("code", "")), str(error.get("message", ""))
