"""Renderings of an audit :class:`~modelyard.audit.report.Report`: a readable table, JSON of the versioned
schema ``modelyard.dev/audit/v1`` (``schema/audit-v1.json``) and SARIF 2.1.0 for code-scanning tools.

Nothing here reads a Secret or copies a value from one: the report holds Secret names at most.
"""

from __future__ import annotations

from typing import Any

from modelyard import __version__
from modelyard.api.common import Finding, Severity

from .adapters import ADAPTER_CLASSIFICATION_ABOVE_BASE, UNPINNED_ADAPTER_REVISION
from .findings import (
    LOCAL_AUTH_ENABLED,
    MODEL_ACCESS_UNVERIFIED,
    MODEL_UNAVAILABLE,
    NO_INVOCATION_LOGGING,
    PRIVATE_LINK_UNVERIFIED,
    PUBLIC_ENDPOINT,
    STATIC_CREDENTIALS,
    UNKNOWN_PROVIDER_MODEL,
)
from .model_deployment import BROAD_NETWORK_ACCESS, PLAINTEXT_MODEL_SOURCE, UNPINNED_MODEL_REVISION
from .report import SCHEMA_VERSION, Entry, Location, Mode, Report
from .route_policy import CLASSIFICATION_ESCALATION, REGION_NOT_ALLOWED

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://modelyard.dev/docs/audit"
SRCROOT = "%SRCROOT%"
SARIF_LEVEL = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note"}
#: Every finding code: its highest severity (the SARIF rule's default level) and what it means.
RULES: dict[str, tuple[Severity, str]] = {
    STATIC_CREDENTIALS: (Severity.HIGH, "A provider is called with long-lived static credentials"),
    PUBLIC_ENDPOINT: (Severity.HIGH, "Requests can reach the provider over the public internet"),
    PRIVATE_LINK_UNVERIFIED: (Severity.MEDIUM, "The private network path to the provider is not verified"),
    NO_INVOCATION_LOGGING: (Severity.MEDIUM, "Model invocation logging is not required or not configured"),
    LOCAL_AUTH_ENABLED: (Severity.MEDIUM, "The Azure account accepts API keys"),
    MODEL_UNAVAILABLE: (Severity.MEDIUM, "Listed models are not available to the account"),
    MODEL_ACCESS_UNVERIFIED: (Severity.LOW, "Access to the listed models is not verified"),
    UNKNOWN_PROVIDER_MODEL: (Severity.MEDIUM, "A listed model id is not one the provider accepts"),
    CLASSIFICATION_ESCALATION: (Severity.HIGH, "A route lists a backend not cleared for its data"),
    REGION_NOT_ALLOWED: (Severity.HIGH, "A provider is outside the allowed regions"),
    UNPINNED_MODEL_REVISION: (Severity.MEDIUM, "The model weights are not pinned to an immutable revision"),
    BROAD_NETWORK_ACCESS: (Severity.HIGH, "The model server admits pods beyond one namespace"),
    PLAINTEXT_MODEL_SOURCE: (Severity.HIGH, "The weights and the download's credentials travel unencrypted"),
    ADAPTER_CLASSIFICATION_ABOVE_BASE: (Severity.HIGH, "A LoRA adapter is cleared above its base model"),
    UNPINNED_ADAPTER_REVISION: (Severity.MEDIUM, "A LoRA adapter is not pinned to an immutable revision"),
}


# --- JSON ------------------------------------------------------------------------------------------------
def to_json(report: Report) -> dict[str, Any]:
    """The report as a ``modelyard.dev/audit/v1`` document."""
    counts = report.counts()
    policy = report.policy
    return {
        "schemaVersion": SCHEMA_VERSION,
        "source": {"mode": report.mode.value, "target": report.target},
        "policy": {
            "allowStaticCredentials": policy.allow_static_credentials,
            "requirePrivateConnectivityFrom": policy.require_private_connectivity_from.value,
            "allowedRegions": list(policy.allowed_regions),
            "publicAPIMaxClassification": policy.public_api_max_classification.value,
        },
        "summary": {
            "objects": len(report.entries),
            "findings": {severity.value: counts[severity] for severity in Severity},
        },
        "objects": [_entry_json(entry) for entry in report.entries],
        "skipped": report.skipped,
    }


def _entry_json(entry: Entry) -> dict[str, Any]:
    location = _location_json(entry.location)
    return {
        "kind": entry.kind,
        "name": entry.name,
        "namespace": entry.namespace,
        "location": location,
        "identity": {
            "mode": entry.identity.mode,
            "principal": entry.identity.principal,
            "subject": entry.identity.subject,
        },
        "network": {"path": entry.network.value, "callers": entry.callers},
        "region": entry.region,
        "dataClassification": entry.data_classification.value,
        "routes": [
            {
                "routePolicy": use.route_policy,
                "route": use.route,
                "backend": use.backend,
                "dataClassification": use.data_classification.value,
                "eligible": use.eligible,
            }
            for use in entry.routes
        ],
        "revisionPinned": entry.revision_pinned,
        "invocationLogging": entry.invocation_logging,
        "networkPolicy": entry.network_policy,
        "findings": [{**f.to_wire(), "location": location} for f in entry.findings],
    }


def _location_json(location: Location | None) -> dict[str, Any] | None:
    return None if location is None else {"path": location.path, "line": location.line}


# --- SARIF -----------------------------------------------------------------------------------------------
def to_sarif(report: Report) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log with one run: a rule per finding code, a result per finding."""
    codes = list(RULES)
    codes += sorted({f.code for e in report.entries for f in e.findings} - set(RULES))
    rules = [_rule(code, report) for code in codes]
    results = [_result(entry, finding, codes) for entry in report.entries for finding in entry.findings]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "modelyard",
                "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "results": results,
    }
    if report.mode is Mode.FILES:
        run["originalUriBaseIds"] = {SRCROOT: {"uri": report.base.resolve().as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _rule(code: str, report: Report) -> dict[str, Any]:
    severity, description = RULES.get(code) or (_highest(code, report), code.replace("_", " ").capitalize())
    return {
        "id": code,
        "name": "".join(part.capitalize() for part in code.split("_")),
        "shortDescription": {"text": description},
        "helpUri": f"{INFORMATION_URI}#{code.lower()}",
        "defaultConfiguration": {"level": SARIF_LEVEL[severity]},
        "properties": {"security-severity": _security_severity(severity), "tags": ["security"]},
    }


def _highest(code: str, report: Report) -> Severity:
    """The highest severity reported for a code without a catalog entry."""
    order = [Severity.LOW, Severity.MEDIUM, Severity.HIGH]
    return max((f.severity for e in report.entries for f in e.findings if f.code == code), key=order.index)


def _security_severity(severity: Severity) -> str:
    """GitHub code scanning's numeric severity (critical >= 9, high >= 7, medium >= 4)."""
    return {Severity.HIGH: "8.0", Severity.MEDIUM: "5.0", Severity.LOW: "2.0"}[severity]


def _result(entry: Entry, finding: Finding, codes: list[str]) -> dict[str, Any]:
    location: dict[str, Any] = {
        "logicalLocations": [{"fullyQualifiedName": entry.ref, "kind": "resource"}],
    }
    if entry.location is not None:
        location["physicalLocation"] = {
            "artifactLocation": {"uri": entry.location.path, "uriBaseId": SRCROOT},
            "region": {"startLine": entry.location.line},
        }
    return {
        "ruleId": finding.code,
        "ruleIndex": codes.index(finding.code),
        "level": SARIF_LEVEL[finding.severity],
        "message": {"text": f"{entry.kind}/{entry.name}: {finding.message}"},
        "locations": [location],
    }


# --- table -----------------------------------------------------------------------------------------------
OBJECT_COLUMNS = (
    "KIND",
    "OBJECT",
    "IDENTITY",
    "NETWORK",
    "REGION",
    "CLASS",
    "ROUTES",
    "PINNED",
    "LOGGING",
    "NETPOL",
    "FINDINGS",
)
FINDING_COLUMNS = ("SEVERITY", "CODE", "OBJECT", "LOCATION", "MESSAGE")


def to_table(report: Report) -> str:
    """One row per object, then one row per finding, then a summary line."""
    objects = [OBJECT_COLUMNS, *(_object_row(e) for e in report.entries)]
    findings = [
        (f.severity.value, f.code, f"{e.namespace}/{e.kind}/{e.name}", _where(e.location), f.message)
        for e in report.entries
        for f in e.findings
    ]
    counts = report.counts()
    summary = f"{len(report.entries)} objects, " + ", ".join(
        f"{counts[s]} {s.value}" for s in (Severity.HIGH, Severity.MEDIUM, Severity.LOW)
    )
    parts = [_columns(objects)]
    if findings:
        parts.append(_columns([FINDING_COLUMNS, *findings]))
    skipped = [f"skipped, not valid: {reason}" for reason in report.skipped]
    return "\n\n".join([*parts, "\n".join([summary, *skipped])]) + "\n"


def _object_row(entry: Entry) -> tuple[str, ...]:
    identity = entry.identity.mode + (f" ({entry.identity.principal})" if entry.identity.principal else "")
    backend = entry.kind != "RoutePolicy"  # a policy lists its own routes, once each
    uses = (
        f"{u.route_policy}/{u.route}:{u.data_classification.value}"
        + (" (rejected)" if backend and not u.eligible else "")
        for u in entry.routes
    )
    routes = ", ".join(dict.fromkeys(uses))
    severities = [f.severity.value for f in entry.findings]
    found = ", ".join(f"{severities.count(s.value)} {s.value}" for s in Severity if s.value in severities)
    return (
        entry.kind,
        f"{entry.namespace}/{entry.name}",
        identity,
        entry.network.value,
        entry.region or "-",
        entry.data_classification.value,
        routes or "-",
        _flag(entry.revision_pinned),
        _flag(entry.invocation_logging),
        _flag(entry.network_policy),
        found or "none",
    )


def _flag(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _where(location: Location | None) -> str:
    return "-" if location is None else f"{location.path}:{location.line}"


def _columns(rows: list[tuple[str, ...]]) -> str:
    """Rows padded into columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows
    )
