"""Types shared by every modelyard kind: the base model, classifications, conditions, references."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.alias_generators import to_camel

GROUP = "modelyard.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A name a Service may carry (RFC 1035 label): children named after the object need it.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: A label key as Kubernetes validates it: an optional DNS-subdomain prefix and "/", then a name of up to 63.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_KEY_MAX = 253 + 1 + 63
#: A label value as Kubernetes validates it (up to 63, may be empty).
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
#: An IAM role ARN. Role names are ASCII: \w would match any letter in Python, only ASCII in RE2 (the API
#: server's), so the characters are spelt out.
ROLE_ARN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
LabelKey = Annotated[str, Field(max_length=LABEL_KEY_MAX, pattern=LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in a manifest: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class DataClassification(StrEnum):
    """Classes of data, lowest to highest."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _CLASS_ORDER.index(self)

    def allows(self, data: DataClassification) -> bool:
        """True when a backend cleared for ``self`` may receive data of class ``data``."""
        return self.rank >= data.rank


_CLASS_ORDER: list[DataClassification] = list(DataClassification)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """The state of one aspect of the object, following the Kubernetes API conventions."""

    type: str = Field(description="Type of the condition, CamelCase, e.g. Ready.", max_length=64)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="Machine-readable CamelCase reason for the last transition.", max_length=128
    )
    message: str = Field(default="", description="Human-readable details.", max_length=4096)
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the condition was computed for.", ge=0
    )
    last_transition_time: str | None = Field(
        default=None,
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the object's namespace. The value is read where it is used, never copied."""

    name: str = Field(description="Name of the Secret.", max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(description="Key inside the Secret.", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class SecretRef(ApiModel):
    """A Secret in the object's namespace, read where it is used, never copied."""

    name: str = Field(description="Name of the Secret.", max_length=253, pattern=DNS_SUBDOMAIN)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Finding(ApiModel):
    """A security finding about the object (the same findings `modelyard audit` reports)."""

    code: str = Field(description="Stable finding code, e.g. STATIC_CREDENTIALS.", max_length=64)
    severity: Severity = Field(description="low, medium or high.")
    message: str = Field(description="What was found and why it matters.", max_length=1024)


class ObjectMeta(BaseModel):
    """The parts of metadata modelyard reads; everything else is kept as it is."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(ApiModel):
    """The envelope every modelyard kind shares; subclasses add ``kind``, ``spec`` and ``status``."""

    #: longest metadata.name whose children's names (name + suffix) and owner label still fit; None: any
    NAME_MAX_LENGTH: ClassVar[int | None] = None
    #: what metadata.name must match (the CRD's schema says the same), e.g. DNS_1035_LABEL for a Service
    NAME_PATTERN: ClassVar[str | None] = None

    api_version: str = Field(default=API_VERSION)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _name_fits_children(self) -> Resource:
        name = self.metadata.name
        if name and self.NAME_MAX_LENGTH is not None and len(name) > self.NAME_MAX_LENGTH:
            raise ValueError(
                f"metadata.name: at most {self.NAME_MAX_LENGTH} characters (the names of the objects "
                f"modelyard creates for it add a suffix), got {len(name)}"
            )
        if name and self.NAME_PATTERN is not None and not re.match(self.NAME_PATTERN, name):
            raise ValueError(f"metadata.name: {name!r} must match {self.NAME_PATTERN}")
        return self

    @classmethod
    def name_schema(cls) -> dict[str, Any]:
        """The CRD's schema of metadata.name (the only part of metadata a CRD may restrict)."""
        schema: dict[str, Any] = {"type": "string"}
        if cls.NAME_PATTERN is not None:
            schema["pattern"] = cls.NAME_PATTERN
        if cls.NAME_MAX_LENGTH is not None:
            schema["maxLength"] = cls.NAME_MAX_LENGTH
        return schema


def condition_column(name: str, condition: str, priority: int = 0) -> dict[str, Any]:
    """A printer column showing the status of one condition."""
    column: dict[str, Any] = {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
        "description": f"Status of the {condition} condition.",
    }
    if priority:
        column["priority"] = priority
    return column


AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


class Rule:
    """A cross-field rule, enforced twice from one definition: by the API server as a CEL
    ``x-kubernetes-validations`` entry in the CRD, and by the pydantic model offline."""

    def __init__(self, cel: str, message: str, field_path: str | None = None) -> None:
        self.cel = cel
        self.message = message
        self.field_path = field_path

    def to_schema(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def cel_string(pattern: str) -> str:
    """``pattern`` as a CEL single-quoted string literal."""
    return "'" + pattern.replace("\\", "\\\\").replace("'", "\\'") + "'"


LABEL_KEYS = Rule(
    f"self.all(k, k.size() <= {LABEL_KEY_MAX} && k.matches({cel_string(LABEL_KEY)}))",
    "keys must be label keys: an optional DNS-subdomain prefix and '/', then up to 63 characters of "
    "A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
)


def label_map(description: str) -> Any:
    """A field holding Kubernetes labels (keys checked by CEL, values by pattern; at most 64)."""
    return Field(
        default_factory=dict,
        description=description,
        max_length=64,
        json_schema_extra={"x-kubernetes-validations": [dict(LABEL_KEYS.to_schema())]},
    )


def cel_rules(*rules: Rule) -> ConfigDict:
    """Model config that puts ``rules`` into the model's JSON schema as x-kubernetes-validations."""
    validations: list[JsonValue] = [dict(r.to_schema()) for r in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})
