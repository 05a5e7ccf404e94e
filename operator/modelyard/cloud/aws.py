"""AWS: prove the gateway's web identity becomes the binding's role, and that Bedrock is reached privately.

Two identities are at work. The *gateway's*: a ServiceAccount token (audience ``sts.amazonaws.com``)
exchanged with ``AssumeRoleWithWebIdentity``, exactly as the SDK in the gateway pod will, then
``GetCallerIdentity`` with the exchanged credentials, which must name the binding's role. The *operator's
own*, from boto3's standard chain (its own IRSA role in a cluster), for read-only calls that need no grant on
the gateway's role: ``ec2:DescribeVpcEndpoints``, ``bedrock:GetModelInvocationLoggingConfiguration``,
``bedrock:ListFoundationModels``, ``bedrock:GetFoundationModel`` and ``bedrock:ListInferenceProfiles``.
Endpoints follow boto3's own
configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from modelyard.catalog.providers import account_resource, foundation_model_id, inference_profile_geography
from modelyard.render.web_identity import STS_AUDIENCE as STS_AUDIENCE  # noqa: PLC0414 (re-exported)

from . import Check, CloudUnavailable
from .network import Resolver, check_private
from .scrub import scrub

if TYPE_CHECKING:
    from botocore.config import Config

SESSION_NAME = "modelyard-verify"
SESSION_DURATION_S = 900  # the shortest STS allows: the credentials are used for one call
#: Error codes that mean "ask again later", not a verdict.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerException",
        "RequestTimeout",
        "IDPCommunicationError",
    }
)
_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/]+)/"
)
_ROLE = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[^/]+)$")
#: Page size of ``ListInferenceProfiles`` (the API's maximum).
PROFILES_PAGE = 1000
#: Error codes meaning the operator's role may not list inference profiles: model access is then judged from
#: the profile's foundation model, as before the account could be asked.
_NOT_PERMITTED = frozenset({"AccessDeniedException", "UnauthorizedOperation", "AccessDenied"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Temporary credentials from an STS exchange (held in memory only, for one verification)."""

    access_key_id: str
    secret_access_key: str
    session_token: str

    def secrets(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key, self.session_token)


#: ``clients(service, region, credentials)``: a boto3 client; credentials None = the operator's own chain.
ClientFactory = Callable[[str, str, Credentials | None], Any]


@functools.cache
def client_config() -> Config:
    """Bounded timeouts and retries for every boto3 client. boto3 and botocore (~25 MiB) are imported on
    first use, not with the module: an operator with no Bedrock binding never loads them."""
    from botocore.config import Config  # noqa: PLC0415

    return Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})


def boto3_client(service: str, region: str, credentials: Credentials | None = None) -> Any:
    """A boto3 client with bounded timeouts and retries."""
    import boto3  # noqa: PLC0415 - see client_config

    if credentials is None:
        return boto3.session.Session().client(service, region_name=region, config=client_config())
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    ).client(service, region_name=region, config=client_config())


class AwsRefused(Exception):
    """AWS answered with a definitive error (access denied, not found, invalid token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def call(what: str, fn: Callable[[], T], secrets: Sequence[str] = ()) -> T:
    """Run one boto3 call: transient failures raise CloudUnavailable, refusals AwsRefused; messages are
    scrubbed of ``secrets`` and anything shaped like a credential."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # noqa: PLC0415

    try:
        return fn()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = error.get("Message", "")
        if code in TRANSIENT_CODES or status == 429 or status >= 500:  # with the status, as AWS answered it
            raise CloudUnavailable(scrub(f"{what}: {status} {code}: {text}", secrets)) from None
        raise AwsRefused(code, scrub(f"{what}: {code or status}: {text}", secrets)) from None
    except NoCredentialsError:
        raise AwsRefused("NoCredentials", f"{what}: the operator has no AWS credentials") from None
    except BotoCoreError as exc:  # connection errors, timeouts
        raise CloudUnavailable(scrub(f"{what}: {exc}", secrets)) from None


class ModelAccess(Protocol):
    """Which of the binding's Bedrock models the account cannot use in the region."""

    def unavailable(self, region: str, models: Sequence[str]) -> list[str]: ...


class FoundationModelCatalog:
    """Model access from ``ListFoundationModels`` (one call), confirming ids it does not list with
    ``GetFoundationModel``. Cross-region inference profile ids (``eu.anthropic...``) must be among the
    region's ``ListInferenceProfiles`` (system-defined, ACTIVE; asked once, only when a binding lists one);
    when the operator may not list them, they count as their foundation model."""

    def __init__(self, clients: ClientFactory = boto3_client) -> None:
        self.clients = clients

    def unavailable(self, region: str, models: Sequence[str]) -> list[str]:
        bedrock = self.clients("bedrock", region, None)
        summaries = call("bedrock:ListFoundationModels", bedrock.list_foundation_models)["modelSummaries"]
        active = {
            s["modelId"]
            for s in summaries
            if (s.get("modelLifecycle") or {}).get("status", "ACTIVE") == "ACTIVE"
        }
        profiles: set[str] | None = None
        if any(inference_profile_geography(model) for model in models):
            profiles = self._profiles(bedrock)
        missing = []
        for model in models:
            if account_resource(model):
                continue  # provisioned, custom or imported models: not in these lists
            if profiles is not None and inference_profile_geography(model):
                if model not in profiles:
                    missing.append(model)
                continue
            base = foundation_model_id(model)
            if base in active or model in active:
                continue
            if not self._exists(bedrock, base):
                missing.append(model)
        return missing

    @staticmethod
    def _profiles(bedrock: Any) -> set[str] | None:
        """The region's ACTIVE system-defined inference profile ids, every page; None when not permitted."""
        found: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"typeEquals": "SYSTEM_DEFINED", "maxResults": PROFILES_PAGE}
            if token:
                kwargs["nextToken"] = token
            try:
                page = call(
                    "bedrock:ListInferenceProfiles",
                    functools.partial(bedrock.list_inference_profiles, **kwargs),
                )
            except AwsRefused as exc:
                if exc.code in _NOT_PERMITTED:
                    return None
                raise
            found.update(
                p["inferenceProfileId"]
                for p in page.get("inferenceProfileSummaries", [])
                if p.get("status", "ACTIVE") == "ACTIVE"
            )
            token = page.get("nextToken")
            if not token:
                return found

    @staticmethod
    def _exists(bedrock: Any, model: str) -> bool:
        try:
            found = call(
                "bedrock:GetFoundationModel", lambda: bedrock.get_foundation_model(modelIdentifier=model)
            )
        except AwsRefused as exc:
            if exc.code in ("ResourceNotFoundException", "ValidationException"):
                return False
            raise
        details = found.get("modelDetails") or {}
        return bool((details.get("modelLifecycle") or {}).get("status", "ACTIVE") == "ACTIVE")


@dataclass(frozen=True, slots=True)
class BedrockTarget:
    """What to verify for one Bedrock binding."""

    region: str
    models: tuple[str, ...]
    #: The role to assume and compare the caller with; None for static credentials.
    role_arn: str | None = None
    #: The gateway ServiceAccount's token to exchange; None when the operator cannot exchange it (podIdentity,
    #: static credentials): credentials are then not verified here.
    web_identity_token: str | None = None
    vpc_endpoint_id: str | None = None
    require_invocation_logging: bool = True


@dataclass(frozen=True, slots=True)
class BedrockReport:
    """The verdicts for one Bedrock binding."""

    credentials: Check | None  #: None when no exchange was possible (see BedrockTarget.web_identity_token)
    principal: str | None  #: the role the exchange proved
    connectivity: Check
    endpoint: str  #: https URL the gateway calls: the VPC endpoint's DNS name when known
    invocation_logging: Check | None  #: None when not required
    unavailable_models: tuple[str, ...]
    models_unverified: str | None  #: why model access could not be checked, else None


def public_endpoint(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def same_role(caller_arn: str, role_arn: str) -> bool:
    """Whether STS's caller ARN is a session of ``role_arn`` (partition, account and role name agree)."""
    caller, role = _ASSUMED_ROLE.match(caller_arn), _ROLE.match(role_arn)
    if caller is None or role is None:
        return False
    return all(caller[k] == role[k] for k in ("partition", "account", "name"))


def evaluate_vpc_endpoint(endpoint: dict[str, Any] | None, endpoint_id: str, region: str) -> Check:
    """A bedrock-runtime interface endpoint that is available with private DNS on."""
    if endpoint is None:
        return Check.failed("VpcEndpointNotFound", f"VPC endpoint {endpoint_id} does not exist in {region}")
    service = f"com.amazonaws.{region}.bedrock-runtime"
    if endpoint.get("ServiceName") != service:
        return Check.failed(
            "VpcEndpointWrongService",
            f"VPC endpoint {endpoint_id} serves {endpoint.get('ServiceName')}, not {service}",
        )
    state = str(endpoint.get("State", "")).lower()
    if state != "available":
        return Check.failed("VpcEndpointNotAvailable", f"VPC endpoint {endpoint_id} is {state or 'unknown'}")
    if not endpoint.get("PrivateDnsEnabled"):
        return Check.failed(
            "PrivateDnsDisabled",
            f"VPC endpoint {endpoint_id} has private DNS disabled: bedrock-runtime.{region}.amazonaws.com "
            "still resolves to public addresses",
        )
    return Check.ok("VpcEndpointAvailable", f"VPC endpoint {endpoint_id} is available with private DNS")


def endpoint_url(endpoint: dict[str, Any] | None, region: str) -> str:
    """The endpoint's regional DNS name (the shortest of its entries) as an https URL, else the public one."""
    names = sorted(
        (e["DnsName"] for e in (endpoint or {}).get("DnsEntries", []) if e.get("DnsName")), key=len
    )
    return f"https://{names[0].lstrip('*.')}" if names else public_endpoint(region)


def dns_hosts(endpoint: str, region: str) -> list[str]:
    """Hosts that must resolve privately: the endpoint the gateway calls, and the regional service name every
    SDK defaults to (private DNS makes it private inside the VPC)."""
    hosts = [endpoint.removeprefix("https://"), f"bedrock-runtime.{region}.amazonaws.com"]
    return list(dict.fromkeys(hosts))


def logging_configured(config: dict[str, Any]) -> bool:
    """Whether a Bedrock invocation logging configuration delivers somewhere (CloudWatch Logs or S3)."""
    logging = config.get("loggingConfig") or {}
    return bool(logging.get("cloudWatchConfig") or logging.get("s3Config"))


class BedrockVerifier:
    """Verifies Bedrock bindings; every blocking call runs in a worker thread."""

    def __init__(
        self,
        resolver: Resolver,
        clients: ClientFactory = boto3_client,
        models: ModelAccess | None = None,
    ) -> None:
        self.resolver = resolver
        self.clients = clients
        self.models = models if models is not None else FoundationModelCatalog(clients)

    async def verify(self, target: BedrockTarget) -> BedrockReport:
        """Every verdict for ``target``; raises CloudUnavailable when AWS gave none."""
        report = await asyncio.to_thread(self._verify_blocking, target)
        if not report.connectivity.passed:
            return report
        dns = await check_private(dns_hosts(report.endpoint, target.region), self.resolver)
        if dns.passed:
            dns = Check.ok(report.connectivity.reason, f"{report.connectivity.message}; {dns.message}")
        return replace(report, connectivity=dns)

    def _verify_blocking(self, target: BedrockTarget) -> BedrockReport:
        credentials, principal = self._credentials(target)
        connectivity, endpoint = self._vpc_endpoint(target)
        unavailable: tuple[str, ...] = ()
        unverified = None
        try:
            unavailable = tuple(self.models.unavailable(target.region, target.models))
        except (AwsRefused, CloudUnavailable) as exc:
            unverified = str(exc)
        return BedrockReport(
            credentials=credentials,
            principal=principal,
            connectivity=connectivity,
            endpoint=endpoint,
            invocation_logging=self._logging(target) if target.require_invocation_logging else None,
            unavailable_models=unavailable,
            models_unverified=unverified,
        )

    def _credentials(self, target: BedrockTarget) -> tuple[Check | None, str | None]:
        token, role = target.web_identity_token, target.role_arn
        if token is None or role is None:
            return None, None
        import boto3  # noqa: PLC0415 - see client_config
        from botocore import UNSIGNED  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        sts = boto3.session.Session().client(
            "sts", region_name=target.region, config=client_config().merge(Config(signature_version=UNSIGNED))
        )
        try:
            answer = call(
                "sts:AssumeRoleWithWebIdentity",
                lambda: sts.assume_role_with_web_identity(
                    RoleArn=role,
                    RoleSessionName=SESSION_NAME,
                    WebIdentityToken=token,
                    DurationSeconds=SESSION_DURATION_S,
                ),
                [token],
            )
        except AwsRefused as exc:
            reason = (
                "TrustPolicyRejected"
                if exc.code in ("AccessDenied", "InvalidIdentityToken")
                else "AssumeRoleFailed"
            )
            return Check.failed(reason, str(exc)), None
        raw = answer["Credentials"]
        creds = Credentials(raw["AccessKeyId"], raw["SecretAccessKey"], raw["SessionToken"])
        secrets = [token, *creds.secrets()]
        try:
            caller = call(
                "sts:GetCallerIdentity",
                self.clients("sts", target.region, creds).get_caller_identity,
                secrets,
            )["Arn"]
        except AwsRefused as exc:
            return Check.failed("CallerIdentityFailed", str(exc)), None
        if not same_role(caller, role):
            return Check.failed(
                "CallerIdentityMismatch",
                f"the exchanged credentials are {caller}, not a session of {role}: the gateway would call "
                "Bedrock as another identity",
            ), None
        return Check.ok("RoleAssumed", f"AssumeRoleWithWebIdentity succeeded; STS caller is {caller}"), role

    def _vpc_endpoint(self, target: BedrockTarget) -> tuple[Check, str]:
        if target.vpc_endpoint_id is None:
            return Check.failed(
                "NoVpcEndpoint", "no vpcEndpoint: requests reach Bedrock over its public endpoint"
            ), public_endpoint(target.region)
        endpoint_id = target.vpc_endpoint_id
        ec2 = self.clients("ec2", target.region, None)
        try:
            found = call(
                "ec2:DescribeVpcEndpoints", lambda: ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])
            )["VpcEndpoints"]
        except AwsRefused as exc:
            if exc.code == "InvalidVpcEndpointId.NotFound":
                found = []
            else:
                return Check.failed("VpcEndpointUnreadable", str(exc)), public_endpoint(target.region)
        endpoint = found[0] if found else None
        return evaluate_vpc_endpoint(endpoint, endpoint_id, target.region), endpoint_url(
            endpoint, target.region
        )

    def _logging(self, target: BedrockTarget) -> Check:
        bedrock = self.clients("bedrock", target.region, None)
        try:
            config = call(
                "bedrock:GetModelInvocationLoggingConfiguration",
                bedrock.get_model_invocation_logging_configuration,
            )
        except AwsRefused as exc:
            return Check.failed("InvocationLoggingUnverified", str(exc))
        if logging_configured(config):
            return Check.ok("InvocationLoggingConfigured", "model invocation logging is configured")
        return Check.failed(
            "InvocationLoggingNotConfigured",
            f"Bedrock model invocation logging is not configured in {target.region}; the binding requires it",
        )
