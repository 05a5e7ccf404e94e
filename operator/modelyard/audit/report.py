"""The audit report: every ModelDeployment, ProviderBinding and RoutePolicy, read from manifest files or the
live cluster, with what a security team asks of each backend and its findings.

One implementation of the findings serves the three places that show them, so they never disagree:

- ModelDeployment: :func:`~modelyard.audit.model_deployment.model_deployment_findings` of the spec.
- RoutePolicy: :func:`~modelyard.audit.route_policy.route_policy_findings` of the spec against the backends
  of its namespace.
- ProviderBinding: :func:`~modelyard.audit.findings.provider_binding_findings`, plus
  :func:`~modelyard.audit.route_policy.binding_region_findings` for codes it does not already report. In
  cluster mode, non-empty ``status.findings`` the operator wrote for the object's current generation
  (``status.observedGeneration == metadata.generation``) take the place of the first: they are the same
  function with what verification observed (e.g. PRIVATE_LINK_UNVERIFIED, LOCAL_AUTH_ENABLED), which files
  cannot show. Otherwise (no status yet, or a newer spec) they are computed from the spec, as for files.

Routes are evaluated as the operator does (:mod:`modelyard.render.routing`); from files, with every backend
taken as Ready and verified, as ``modelyard render`` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelyard.api import KINDS
from modelyard.api.common import DataClassification, Finding, Severity
from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import (
    DEFAULT_GATEWAY_SERVICE_ACCOUNT,
    IdentityMode,
    ProviderBinding,
    service_account_subject,
)
from modelyard.api.route_policy import RoutePolicy
from modelyard.errors import UserError
from modelyard.manifests import ApiObject, load, parse_object
from modelyard.render.common import GATEWAY_COMPONENT, selector_labels
from modelyard.render.gateway import GATEWAY_CLIENT_LABEL
from modelyard.render.model_deployment import SERVER
from modelyard.render.routing import condition_true, resolve_routes

from .findings import NO_INVOCATION_LOGGING, PUBLIC_ENDPOINT, provider_binding_findings
from .model_deployment import describe_peer, model_deployment_findings, revision_pinned
from .route_policy import binding_region, binding_region_findings, route_policy_findings

SCHEMA_VERSION = "modelyard.dev/audit/v1"
SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}


class Mode(StrEnum):
    FILES = "files"
    CLUSTER = "cluster"


class NetworkPath(StrEnum):
    """How requests reach the backend."""

    VERIFIED_PRIVATE = "verified-private"
    UNVERIFIED = "unverified"
    PUBLIC = "public"
    IN_CLUSTER = "in-cluster"


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object was written: a path relative to the report's base directory, and a 1-based line."""

    path: str
    line: int


@dataclass(frozen=True, slots=True)
class Source:
    """One object as read, and where from (None in the cluster)."""

    obj: ApiObject
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the backend is called as: ``keyless`` or ``static`` credentials of a provider, ``none`` for
    in-cluster servers (their NetworkPolicy decides who may call: see ``callers``)."""

    mode: str
    principal: str | None = None  #: role ARN, client id or Secret name the cloud sees
    subject: str | None = None  #: the Kubernetes subject that holds the identity


@dataclass(frozen=True, slots=True)
class RouteUse:
    """A route that lists the backend: which class of data it may send there."""

    route_policy: str
    route: str
    backend: str
    data_classification: DataClassification
    eligible: bool


@dataclass(slots=True)
class Entry:
    """The report on one object."""

    kind: str
    name: str
    namespace: str
    location: Location | None
    identity: Identity
    network: NetworkPath
    callers: list[str]
    region: str | None
    data_classification: DataClassification
    routes: list[RouteUse] = field(default_factory=list)
    revision_pinned: bool | None = None
    invocation_logging: bool | None = None
    network_policy: bool | None = None  #: in the cluster: the operator's NetworkPolicy exists
    findings: list[Finding] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Report:
    """Every audited object, in input order."""

    mode: Mode
    target: str | None
    base: Path  #: what locations are relative to (the repository root in files mode)
    policy: ClusterPolicy
    entries: list[Entry]
    skipped: list[str] = field(default_factory=list)  #: cluster objects that are not valid, and why

    def counts(self) -> dict[Severity, int]:
        """Findings per severity."""
        counts = dict.fromkeys(Severity, 0)
        for entry in self.entries:
            for finding in entry.findings:
                counts[finding.severity] += 1
        return counts

    def fails(self, level: Severity) -> bool:
        """True when a finding at or above ``level`` exists."""
        return any(
            SEVERITY_RANK[f.severity] >= SEVERITY_RANK[level] for e in self.entries for f in e.findings
        )


# --- collecting -----------------------------------------------------------------------------------------
def from_files(target: Path, policy: ClusterPolicy) -> Report:
    """The report on every modelyard object under ``target`` (a file or directory)."""
    base = repository_root(target)
    sources = [Source(m.obj, Location(relative_path(m.path, base), m.line)) for m in load(target)]
    return build_report(sources, policy, Mode.FILES, target=str(target), base=base)


def from_cluster(
    listed: Mapping[str, Iterable[Mapping[str, Any]]],
    network_policies: Iterable[Mapping[str, Any]],
    policy: ClusterPolicy,
) -> Report:
    """The report on every modelyard object a cluster listed (all namespaces; the bodies of each kind, keyed
    by kind) and the metadata (namespace, labels) of its NetworkPolicies. Reading them is the caller's:
    ``modelyard audit`` reads nothing else (no Secret, ever)."""
    sources, skipped = _parse_listed(listed)
    return build_report(sources, policy, Mode.CLUSTER, network_policies=network_policies, skipped=skipped)


def _parse_listed(listed: Mapping[str, Iterable[Mapping[str, Any]]]) -> tuple[list[Source], list[str]]:
    """Every valid object of the three kinds, and a reason for each invalid one (its controller reports it
    as InvalidSpec; the audit goes on with the rest)."""
    sources, skipped = [], []
    for kind in KINDS:
        for body in sorted(listed.get(kind, []), key=_sort_key):
            meta = body.get("metadata", {})
            try:
                sources.append(
                    Source(parse_object(dict(body), f"{meta.get('namespace')}/{kind}/{meta.get('name')}"))
                )
            except UserError as exc:
                skipped.append(str(exc))
    return sources, skipped


def _sort_key(body: Mapping[str, Any]) -> tuple[str, str]:
    """Namespace, then name."""
    meta = body.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def repository_root(target: Path) -> Path:
    """The nearest directory at or above ``target`` holding ``.git``, else the working directory."""
    start = target.resolve()
    for directory in [start, *start.parents]:
        if (directory / ".git").exists():
            return directory
    return Path.cwd()


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form, or absolute when outside it."""
    resolved = path.resolve()
    return (resolved.relative_to(base) if resolved.is_relative_to(base) else resolved).as_posix()


def build_report(
    sources: Sequence[Source],
    policy: ClusterPolicy,
    mode: Mode,
    *,
    target: str | None = None,
    base: Path | None = None,
    network_policies: Iterable[Mapping[str, Any]] | None = None,
    skipped: Sequence[str] = (),
) -> Report:
    """The report on ``sources``; ``network_policies`` (metadata of the cluster's NetworkPolicies, in
    cluster mode) decide whether each server's and gateway's NetworkPolicy is in place; ``skipped`` lists
    objects left out, with the reason."""
    context = _Context(
        sources, policy, mode, list(network_policies) if network_policies is not None else None
    )
    entries = [context.entry(source) for source in sources]
    return Report(mode, target, base or Path.cwd(), policy, entries, list(skipped))


class _Context:
    """The namespaces' objects and the route resolutions every entry is judged against."""

    def __init__(
        self,
        sources: Sequence[Source],
        policy: ClusterPolicy,
        mode: Mode,
        network_policies: list[Mapping[str, Any]] | None,
    ) -> None:
        self.policy, self.mode, self.network_policies = policy, mode, network_policies
        self.mds: dict[str, dict[str, ModelDeployment]] = defaultdict(dict)
        self.bindings: dict[str, dict[str, ProviderBinding]] = defaultdict(dict)
        self.policies: dict[str, list[RoutePolicy]] = defaultdict(list)
        for source in sources:
            obj, namespace = source.obj, _namespace(source.obj)
            if isinstance(obj, ModelDeployment):
                self.mds[namespace][obj.metadata.name] = obj
            elif isinstance(obj, ProviderBinding):
                self.bindings[namespace][obj.metadata.name] = obj
            else:
                self.policies[namespace].append(obj)
        self.uses = self._route_uses()

    def _route_uses(self) -> dict[tuple[str, str], list[RouteUse]]:
        """Route uses keyed by (namespace, backend key); a RoutePolicy's own routes under its name."""
        uses: dict[tuple[str, str], list[RouteUse]] = defaultdict(list)
        for namespace, policies in self.policies.items():
            for rp in policies:
                _, statuses = resolve_routes(
                    rp,
                    self.policy,
                    self.mds[namespace],
                    self.bindings[namespace],
                    namespace=namespace,
                    assume_verified=self.mode is Mode.FILES,
                )
                for route, status in zip(rp.spec.routes, statuses, strict=True):
                    for backend in route.backends:
                        use = RouteUse(
                            rp.metadata.name,
                            route.model,
                            backend.key,
                            route.data_classification,
                            backend.key in status.eligible,
                        )
                        uses[namespace, _backend_owner(backend.key)].append(use)
                        uses[namespace, f"RoutePolicy/{rp.metadata.name}"].append(use)
        return uses

    def entry(self, source: Source) -> Entry:
        obj = source.obj
        if isinstance(obj, ModelDeployment):
            entry = self._model_deployment(obj)
        elif isinstance(obj, ProviderBinding):
            entry = self._provider_binding(obj)
        else:
            entry = self._route_policy(obj)
        entry.location = source.location
        entry.routes = self.uses.get((entry.namespace, f"{entry.kind}/{entry.name}"), [])
        return entry

    def _model_deployment(self, md: ModelDeployment) -> Entry:
        namespace = _namespace(md)
        callers = [f"modelyard gateways in {namespace}", *map(describe_peer, md.spec.network.allow_from)]
        return Entry(
            kind=md.kind,
            name=md.metadata.name,
            namespace=namespace,
            location=None,
            identity=Identity(mode="none"),
            network=NetworkPath.IN_CLUSTER,
            callers=callers,
            region=None,
            data_classification=md.spec.data_classification,
            revision_pinned=revision_pinned(md.spec),
            network_policy=self._has_network_policy(
                namespace, selector_labels(md.kind, md.metadata.name, SERVER)
            ),
            findings=model_deployment_findings(md.spec),
        )

    def _provider_binding(self, binding: ProviderBinding) -> Entry:
        namespace, spec = _namespace(binding), binding.spec
        findings = self._binding_findings(binding)
        codes = {f.code for f in findings}
        return Entry(
            kind=binding.kind,
            name=binding.metadata.name,
            namespace=namespace,
            location=None,
            identity=_binding_identity(binding, namespace),
            network=_binding_network(binding, codes),
            callers=[f"modelyard gateways in {namespace} (ServiceAccount {spec.service_account_name})"],
            region=binding_region(binding),
            data_classification=(
                self.policy.public_api_class(spec.data_classification)
                if spec.public_api is not None
                else spec.data_classification
            ),
            invocation_logging=None if spec.bedrock is None else NO_INVOCATION_LOGGING not in codes,
            findings=findings,
        )

    def _binding_findings(self, binding: ProviderBinding) -> list[Finding]:
        status = binding.status
        current = status is not None and status.observed_generation == binding.metadata.generation
        if self.mode is Mode.CLUSTER and status is not None and current and status.findings:
            found = list(status.findings)
        else:
            found = provider_binding_findings(binding.spec, self.policy)
        codes = {f.code for f in found}
        found += [f for f in binding_region_findings(binding, self.policy) if f.code not in codes]
        return sorted(found, key=lambda f: -SEVERITY_RANK[f.severity])

    def _route_policy(self, rp: RoutePolicy) -> Entry:
        namespace = _namespace(rp)
        classes = [route.data_classification for route in rp.spec.routes]
        gateway_labels = selector_labels(rp.kind, rp.metadata.name, GATEWAY_COMPONENT)
        return Entry(
            kind=rp.kind,
            name=rp.metadata.name,
            namespace=namespace,
            location=None,
            identity=Identity(
                mode="none", subject=service_account_subject(namespace, DEFAULT_GATEWAY_SERVICE_ACCOUNT)
            ),
            network=NetworkPath.IN_CLUSTER,
            callers=[
                f"every pod of {namespace}",
                f"pods {{{GATEWAY_CLIENT_LABEL}: true}} in every namespace",
            ],
            region=None,
            data_classification=max(classes, key=lambda c: c.rank),
            network_policy=self._has_network_policy(namespace, gateway_labels),
            findings=route_policy_findings(
                rp.spec, self.policy, self.mds[namespace], self.bindings[namespace]
            ),
        )

    def _has_network_policy(self, namespace: str, labels: Mapping[str, str]) -> bool | None:
        if self.network_policies is None:
            return None
        return any(
            meta.get("namespace") == namespace and labels.items() <= (meta.get("labels") or {}).items()
            for meta in self.network_policies
        )


def _namespace(obj: ApiObject) -> str:
    """The object's namespace (``default`` when a manifest leaves it out)."""
    return obj.metadata.namespace or "default"


def _backend_owner(key: str) -> str:
    """``ProviderBinding/bedrock-eu/model`` -> ``ProviderBinding/bedrock-eu``."""
    return "/".join(key.split("/")[:2])


def _binding_identity(binding: ProviderBinding, namespace: str) -> Identity:
    """The principal verification saw, else the one the spec names (a Secret by name, never its value)."""
    spec, status = binding.spec, binding.status
    subject = service_account_subject(namespace, spec.service_account_name)
    if status is not None and status.identity is not None and status.identity.principal:
        return Identity(status.identity.mode.value, status.identity.principal, subject)
    if spec.public_api is not None:
        ref = spec.public_api.api_key_secret_ref
        return Identity(IdentityMode.STATIC.value, f"Secret {ref.name} key {ref.key}", subject)
    if spec.bedrock is not None:
        auth = spec.bedrock.auth
        secret, principal = auth.secret_ref, auth.role_arn
    else:
        assert spec.azure_open_ai is not None
        azure = spec.azure_open_ai.auth
        secret, principal = azure.secret_ref, azure.client_id
    if secret is not None:
        return Identity(IdentityMode.STATIC.value, f"Secret {secret.name}", subject)
    return Identity(IdentityMode.KEYLESS.value, principal, subject)


def _binding_network(binding: ProviderBinding, codes: set[str]) -> NetworkPath:
    """Public when a PUBLIC_ENDPOINT finding says so; verified-private on the current generation's
    PrivateConnectivityVerified condition; else unverified."""
    if PUBLIC_ENDPOINT in codes or binding.spec.public_api is not None:
        return NetworkPath.PUBLIC
    conditions = binding.status.conditions if binding.status else []
    if condition_true(conditions, "PrivateConnectivityVerified", binding.metadata.generation):
        return NetworkPath.VERIFIED_PRIVATE
    return NetworkPath.UNVERIFIED
