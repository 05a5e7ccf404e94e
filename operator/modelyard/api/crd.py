"""CustomResourceDefinitions generated from the pydantic models: the models are the single source.

pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema. The conversion
inlines ``$ref``s, turns ``Optional[X]`` into an optional ``X`` (the API server prunes explicit nulls of
non-nullable fields, so ``count: null`` still means "unset"), keeps scalar defaults so ``kubectl get -o yaml``
shows effective values, and drops keywords the API server does not accept (``title``,
``additionalProperties: false``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .common import GROUP, VERSION
from .model_deployment import ModelDeployment
from .provider_binding import ProviderBinding
from .route_policy import RoutePolicy

CATEGORY = "modelyard"
CRD_KINDS = (ModelDeployment, ProviderBinding, RoutePolicy)
Kind = type[ModelDeployment] | type[ProviderBinding] | type[RoutePolicy]

_DROPPED = {"title", "$defs"}
_KEY_ORDER = [
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
    "additionalProperties",
]
_KOPF_STATE = {
    "type": "object",
    "description": "Handler progress of the operator (kopf), kept in status so manifests never drift.",
    "x-kubernetes-preserve-unknown-fields": True,
}


def _structural(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "patternProperties" in node or "propertyNames" in node:
        # a map whose keys pydantic checks: not structural; the CRD checks them with a CEL rule (LABEL_KEYS)
        node.pop("propertyNames", None)
        if "patternProperties" in node:
            (values,) = node.pop("patternProperties").values()
            node["additionalProperties"] = values
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types in a structural schema")
        node = {**options[0], **node}
        if "$ref" in node:
            return _structural(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "additionalProperties" and value is False):
            continue
        if key == "default" and (value is None or isinstance(value, dict | list)):
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    return dict(sorted(out.items(), key=_key_rank))


def _key_rank(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (_KEY_ORDER.index(key), "") if key in _KEY_ORDER else (len(_KEY_ORDER), key)


def _set_enum(schema: dict[str, Any], path: str, values: Sequence[str]) -> None:
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    node["enum"] = list(values)


def openapi_schema(kind: Kind, extra_enums: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The structural openAPIV3Schema of one kind.

    ``extra_enums`` maps a dotted path that starts with the kind (``ModelDeployment.spec.gpu.type``) to
    allowed values that live outside the API package (the GPU catalog belongs to planning, which the API
    must not import).
    """
    fields = kind.model_fields
    spec_cls = fields["spec"].annotation
    status_cls = fields["status"].annotation.__args__[0]  # type: ignore[union-attr]
    spec = spec_cls.model_json_schema(by_alias=True)  # type: ignore[union-attr]
    status = status_cls.model_json_schema(by_alias=True)
    status_schema = _structural(status, status.get("$defs", {}))
    status_schema["properties"]["kopf"] = _KOPF_STATE
    conditions = status_schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema: dict[str, Any] = {
        "type": "object",
        "description": " ".join((kind.__doc__ or "").split()),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modelyard.dev/v1alpha1"},
            "kind": {"type": "string", "description": kind.KIND},
            "metadata": {"type": "object", "properties": {"name": kind.name_schema()}},
            "spec": _structural(spec, spec.get("$defs", {})),
            "status": status_schema,
        },
    }
    for path, values in (extra_enums or {}).items():
        owner, _, field_path = path.partition(".")
        if owner == kind.KIND:
            _set_enum(schema, field_path, values)
    return schema


def crd(kind: Kind, extra_enums: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "modelyard", "app.kubernetes.io/part-of": "modelyard"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.KIND,
                "listKind": f"{kind.KIND}List",
                "plural": kind.PLURAL,
                "singular": kind.KIND.lower(),
                "shortNames": kind.SHORT_NAMES,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema(kind, extra_enums)},
                }
            ],
        },
    }


def all_crds(extra_enums: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Every modelyard CRD, in a stable order."""
    return [crd(kind, extra_enums) for kind in CRD_KINDS]
