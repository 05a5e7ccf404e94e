"""ProviderBinding: a managed provider (AWS Bedrock, Azure OpenAI) bound with keyless identity and verified
private connectivity."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from .common import (
    AGE_COLUMN,
    DNS_LABEL,
    ROLE_ARN,
    ApiModel,
    Condition,
    DataClassification,
    Finding,
    Resource,
    Rule,
    SecretRef,
    cel_rules,
    condition_column,
)
from .public_api import PublicAPISpec

DEFAULT_GATEWAY_SERVICE_ACCOUNT = "modelyard-gateway"
AWS_REGION = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DURATION = r"^([0-9]+(s|m|h))+$"


def service_account_subject(namespace: str, name: str) -> str:
    """The subject a ServiceAccount's tokens carry, the one cloud trust policies name."""
    return f"system:serviceaccount:{namespace}:{name}"


ONE_PROVIDER_BLOCK = Rule(
    "(self.provider == 'bedrock') == has(self.bedrock)"
    " && (self.provider == 'azureOpenAI') == has(self.azureOpenAI)"
    " && (self.provider == 'publicAPI') == has(self.publicAPI)",
    "set exactly the block that matches provider: bedrock for bedrock, azureOpenAI for azureOpenAI, "
    "publicAPI for publicAPI",
)
IRSA_NEEDS_ROLE = Rule(
    "self.type != 'irsa' || has(self.roleArn)", "roleArn: required when type is irsa", ".roleArn"
)
STATIC_NEEDS_SECRET = Rule(
    "(self.type == 'staticSecret') == has(self.secretRef)",
    "secretRef: required when type is staticSecret, and only then",
    ".secretRef",
)
WORKLOAD_IDENTITY_NEEDS_IDS = Rule(
    "self.type != 'workloadIdentity' || (has(self.clientId) && has(self.tenantId))",
    "clientId and tenantId: required when type is workloadIdentity",
)


class Provider(StrEnum):
    BEDROCK = "bedrock"
    AZURE_OPENAI = "azureOpenAI"
    PUBLIC_API = "publicAPI"


class AwsAuthType(StrEnum):
    IRSA = "irsa"
    POD_IDENTITY = "podIdentity"
    STATIC_SECRET = "staticSecret"


class AzureAuthType(StrEnum):
    WORKLOAD_IDENTITY = "workloadIdentity"
    STATIC_SECRET = "staticSecret"


class IdentityMode(StrEnum):
    KEYLESS = "keyless"
    STATIC = "static"


class AwsAuth(ApiModel):
    """How the gateway authenticates to AWS."""

    model_config = cel_rules(IRSA_NEEDS_ROLE, STATIC_NEEDS_SECRET)

    type: AwsAuthType = Field(
        description="irsa (IAM Roles for Service Accounts), podIdentity (EKS Pod Identity association) or "
        "staticSecret (access keys in a Secret; refused unless the cluster policy allows it)."
    )
    role_arn: str | None = Field(
        default=None,
        description="IAM role the gateway assumes. Required for irsa; for podIdentity, the role of the "
        "association, checked against the caller identity.",
        max_length=2048,
        pattern=ROLE_ARN,
    )
    secret_ref: SecretRef | None = Field(
        default=None,
        description="For staticSecret: a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )

    @model_validator(mode="after")
    def _fields_for_type(self) -> AwsAuth:
        if self.type is AwsAuthType.IRSA and self.role_arn is None:
            raise ValueError(IRSA_NEEDS_ROLE.message)
        if (self.type is AwsAuthType.STATIC_SECRET) != (self.secret_ref is not None):
            raise ValueError(STATIC_NEEDS_SECRET.message)
        return self


class VpcEndpoint(ApiModel):
    """The bedrock-runtime VPC interface endpoint requests go through."""

    id: str = Field(description="VPC endpoint id, e.g. vpce-0abc123.", pattern=r"^vpce-[0-9a-f]{8,17}$")


class BedrockSpec(ApiModel):
    """AWS Bedrock."""

    region: str = Field(description="AWS region, e.g. eu-central-1.", pattern=AWS_REGION)
    models: list[str] = Field(
        description="Bedrock model ids routes may use: foundation model ids "
        "(meta.llama3-1-70b-instruct-v1:0) or cross-region inference profiles callable from the region "
        "(eu.anthropic.claude-sonnet-4-5-20250929-v1:0). An id Bedrock would refuse is reported as "
        "UNKNOWN_PROVIDER_MODEL.",
        min_length=1,
        max_length=64,
    )
    auth: AwsAuth = Field(description="Identity the gateway uses.")
    vpc_endpoint: VpcEndpoint | None = Field(
        default=None, description="bedrock-runtime interface endpoint; without it traffic is public."
    )
    require_invocation_logging: bool = Field(
        default=True, description="Require Bedrock model invocation logging to be configured."
    )


class AzureAuth(ApiModel):
    """How the gateway authenticates to Azure."""

    model_config = cel_rules(WORKLOAD_IDENTITY_NEEDS_IDS, STATIC_NEEDS_SECRET)

    type: AzureAuthType = Field(
        description="workloadIdentity (Entra ID federated credential) or staticSecret (an API key in a "
        "Secret; refused unless the cluster policy allows it)."
    )
    client_id: str | None = Field(
        default=None, description="Client id of the managed identity or app registration.", pattern=UUID
    )
    tenant_id: str | None = Field(default=None, description="Entra ID tenant id.", pattern=UUID)
    secret_ref: SecretRef | None = Field(
        default=None, description="For staticSecret: a Secret with the key AZURE_API_KEY."
    )

    @model_validator(mode="after")
    def _fields_for_type(self) -> AzureAuth:
        if self.type is AzureAuthType.WORKLOAD_IDENTITY and (
            self.client_id is None or self.tenant_id is None
        ):
            raise ValueError(WORKLOAD_IDENTITY_NEEDS_IDS.message)
        if (self.type is AzureAuthType.STATIC_SECRET) != (self.secret_ref is not None):
            raise ValueError(STATIC_NEEDS_SECRET.message)
        return self


class AzureDeployment(ApiModel):
    """A model deployment in the Azure OpenAI account."""

    name: str = Field(description="Deployment name, as routes reference it.", max_length=64)
    model: str = Field(
        description="Model behind the deployment, e.g. gpt-4o; a name Azure OpenAI does not serve is "
        "reported as UNKNOWN_PROVIDER_MODEL.",
        max_length=128,
    )


class AzureOpenAISpec(ApiModel):
    """Azure OpenAI / AI Foundry."""

    endpoint: str = Field(
        description="Account endpoint, e.g. https://contoso-llm.openai.azure.com.",
        max_length=512,
        pattern=r"^https://[a-z0-9.-]+(:[0-9]+)?/?$",
    )
    resource_id: str = Field(
        description="ARM id of the account: "
        "/subscriptions/.../providers/Microsoft.CognitiveServices/accounts/NAME.",
        max_length=1024,
        pattern=r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    )
    api_version: str = Field(
        default="2024-10-21",
        description="Azure OpenAI data-plane API version.",
        pattern=r"^\d{4}-\d{2}-\d{2}",
    )
    deployments: list[AzureDeployment] = Field(
        description="Deployments routes may use.", min_length=1, max_length=64
    )
    auth: AzureAuth = Field(description="Identity the gateway uses.")


class ProviderBindingSpec(ApiModel):
    """A managed provider and how the gateway reaches it."""

    model_config = cel_rules(ONE_PROVIDER_BLOCK)

    provider: Provider = Field(
        description="bedrock, azureOpenAI or publicAPI (a public model API such as OpenRouter, Groq or "
        "Anthropic's, reached with an API key); the matching block must be set."
    )
    bedrock: BedrockSpec | None = Field(default=None, description="Set when provider is bedrock.")
    azure_open_ai: AzureOpenAISpec | None = Field(
        default=None, alias="azureOpenAI", description="Set when provider is azureOpenAI."
    )
    public_api: PublicAPISpec | None = Field(
        default=None,
        alias="publicAPI",
        description="Set when provider is publicAPI. Its data is capped by the cluster policy's "
        "publicAPIMaxClassification (default public), whatever dataClassification says.",
    )
    data_classification: DataClassification = Field(
        default=DataClassification.INTERNAL,
        description="The highest class of data this provider may receive.",
    )
    service_account_name: str = Field(
        default=DEFAULT_GATEWAY_SERVICE_ACCOUNT,
        description="The namespace's gateway ServiceAccount: the one subject cloud trust policies name "
        "(system:serviceaccount:NAMESPACE:NAME).",
        max_length=63,
        pattern=DNS_LABEL,
    )
    verify_every: str = Field(
        default="10m", description="How often identity and connectivity are verified again.", pattern=DURATION
    )

    @model_validator(mode="after")
    def _one_provider_block(self) -> ProviderBindingSpec:
        blocks = {
            Provider.BEDROCK: self.bedrock,
            Provider.AZURE_OPENAI: self.azure_open_ai,
            Provider.PUBLIC_API: self.public_api,
        }
        if [p for p, block in blocks.items() if block is not None] != [self.provider]:
            raise ValueError(ONE_PROVIDER_BLOCK.message)
        return self

    @property
    def static_credentials(self) -> bool:
        """An API key or access keys from a Secret. Public APIs take nothing else: not gated by
        allowStaticCredentials (there is no keyless option to push teams to), flagged all the same."""
        if self.public_api is not None:
            return True
        if self.bedrock is not None:
            return self.bedrock.auth.type is AwsAuthType.STATIC_SECRET
        assert self.azure_open_ai is not None
        return self.azure_open_ai.auth.type is AzureAuthType.STATIC_SECRET

    @property
    def region(self) -> str | None:
        return self.bedrock.region if self.bedrock is not None else None


class IdentityStatus(ApiModel):
    """The identity the gateway calls the provider with."""

    mode: IdentityMode = Field(description="keyless or static.")
    principal: str | None = Field(
        default=None, description="Role ARN or client id the cloud sees, as verified."
    )
    subject: str | None = Field(default=None, description="The Kubernetes subject trust policies must name.")


class ProviderBindingStatus(ApiModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="ignore")  # status.kopf holds the operator framework's own state

    observed_generation: int | None = Field(default=None, description="Generation this status is for.")
    identity: IdentityStatus | None = Field(default=None, description="Identity in use.")
    region: str | None = Field(default=None, description="Region of the provider.")
    endpoint: str | None = Field(default=None, description="Endpoint requests go to.")
    last_verified_time: str | None = Field(
        default=None,
        description="When verification last ran (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    findings: list[Finding] = Field(default_factory=list, description="Security findings.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="IdentityConfigured, CredentialsVerified, PrivateConnectivityVerified and Ready.",
    )


class ProviderBinding(Resource):
    """A managed LLM provider bound with keyless identity and verified private connectivity."""

    KIND: ClassVar[str] = "ProviderBinding"
    PLURAL: ClassVar[str] = "providerbindings"
    SHORT_NAMES: ClassVar[list[str]] = ["pb"]
    PRINTER_COLUMNS: ClassVar[list[dict[str, Any]]] = [
        {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
        {"name": "Region", "type": "string", "jsonPath": ".status.region"},
        {
            "name": "Auth",
            "type": "string",
            "jsonPath": ".status.identity.mode",
            "description": "keyless or static.",
        },
        condition_column("Private", "PrivateConnectivityVerified"),
        condition_column("Ready", "Ready"),
        {"name": "Vendor", "type": "string", "jsonPath": ".spec.publicAPI.vendor", "priority": 1},
        {"name": "Class", "type": "string", "jsonPath": ".spec.dataClassification", "priority": 1},
        AGE_COLUMN,
    ]

    kind: str = Field(default="ProviderBinding")
    spec: ProviderBindingSpec
    status: ProviderBindingStatus | None = None
