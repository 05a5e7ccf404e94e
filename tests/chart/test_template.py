"""The chart through the real ``helm lint`` and ``helm template`` over a matrix of values; every rendered
manifest validated against the Kubernetes 1.35 schemas; the values schema rejecting a misspelled key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import CHART, ROOT, helm, set_args, template

K8S_VERSION = "1.35.0"
#: Kinds with no schema in kubernetes_validate (CRD-defined): checked structurally instead.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kopf.dev/v1", "ClusterKopfPeering"),
    ("kopf.dev/v1", "KopfPeering"),
}

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace-scoped": {"watchNamespaces": ["team-a", "team-b"]},
    "replicas-2": {"replicaCount": 2},
    "replicas-2-namespace-scoped": {"replicaCount": 2, "watchNamespaces": ["team-a"]},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "no-rbac": {"rbac": {"create": False}},
    "custom-service-account": {
        "serviceAccount": {
            "create": True,
            "name": "llm-operator",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/modelyard"},
        }
    },
    "existing-service-account": {"serviceAccount": {"create": False, "name": "preexisting"}},
    "policy": {
        "policy": {
            "allowStaticCredentials": True,
            "requirePrivateConnectivityFrom": "internal",
            "allowedRegions": ["eu-central-1", "westeurope"],
            "publicAPIMaxClassification": "internal",
            "clusterCIDRs": ["198.18.0.0/15"],
        },
        "workloadImages": {"litellm": "registry.example/litellm:1"},
    },
}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return result


def env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(docs)["env"]}


@pytest.mark.parametrize("case", MATRIX)
def test_lint_and_every_manifest_validates(case: str) -> None:
    values = MATRIX[case]
    helm("lint", "--strict", str(CHART), *set_args(values))
    docs = template(values)
    assert docs
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, what
            assert doc["metadata"]["name"] and doc["metadata"]["labels"], what
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{what} does not validate against Kubernetes {K8S_VERSION}: {exc}")


def test_defaults_cluster_mode_least_privilege_and_pod_security() -> None:
    docs = template({})
    role = one(docs, "ClusterRole")
    assert not by_kind(docs, "Role")
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert verbs[("", "secrets")] == {"get", "create"}  # never list/watch/update Secrets
    assert verbs[("", "events")] == {"create"}
    assert verbs[("modelyard.dev", "modeldeployments")] == {"get", "list", "watch"}
    assert verbs[("modelyard.dev", "modeldeployments/status")] == {"patch"}
    assert not any("*" in v for v in verbs.values()) and ("*", "*") not in verbs
    assert ("kopf.dev", "clusterkopfpeerings") not in verbs  # one replica: standalone, no peering
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelyard", "namespace": "modelyard-system"}
    ]

    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two standalone operators at once
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["args"] == [
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=json",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 8081}
    assert c["image"] == "ghcr.io/modelyard/modelyard:0.1.0"
    assert env(docs)["MODELYARD_METRICS_PORT"] == "8081"
    assert env(docs)["MODELYARD_REQUIRE_PRIVATE_CONNECTIVITY_FROM"] == "confidential"
    assert env(docs)["MODELYARD_ALLOW_STATIC_CREDENTIALS"] == "false"
    assert not by_kind(docs, "PodDisruptionBudget") and not by_kind(docs, "ServiceMonitor")
    assert {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")} == {
        "modeldeployments.modelyard.dev",
        "providerbindings.modelyard.dev",
        "routepolicies.modelyard.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            labels = doc["metadata"]["labels"]
            assert (
                labels["app.kubernetes.io/managed-by"] == "Helm"
                and labels["helm.sh/chart"] == "modelyard-0.1.0"
            )


def test_namespace_scoped_mode_has_roles_only() -> None:
    docs = template({"watchNamespaces": ["team-a", "team-b"]})
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert {r["metadata"]["namespace"] for r in by_kind(docs, "Role")} == {"team-a", "team-b"}
    assert {b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")} == {"team-a", "team-b"}
    assert container(docs)["args"][:3] == ["run", "--namespace=team-a", "--namespace=team-b"]


def test_replicas_use_kopf_peering_and_a_pdb() -> None:
    docs = template({"replicaCount": 2})
    assert container(docs)["args"][-1] == "--peering=modelyard"
    assert "strategy" not in one(docs, "Deployment")["spec"]
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "modelyard"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    rules = one(docs, "ClusterRole")["rules"]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    } in rules
    assert "POD_ID" in env(docs)  # kopf's peer identity is the pod name

    scoped = template({"replicaCount": 2, "watchNamespaces": ["team-a", "team-b"]})
    assert {p["metadata"]["namespace"] for p in by_kind(scoped, "KopfPeering")} == {"team-a", "team-b"}
    assert not by_kind(scoped, "ClusterKopfPeering")


def test_service_account_and_rbac_are_separate_switches() -> None:
    docs = template({"rbac": {"create": False}})
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == "modelyard"

    annotated = template(MATRIX["custom-service-account"])
    account = one(annotated, "ServiceAccount")
    assert account["metadata"]["name"] == "llm-operator"
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/modelyard"
    }
    assert one(annotated, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "llm-operator"
    assert one(annotated, "ClusterRoleBinding")["subjects"][0]["name"] == "llm-operator"

    existing = template(MATRIX["existing-service-account"])
    assert not by_kind(existing, "ServiceAccount")
    assert one(existing, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "preexisting"


def test_cluster_policy_values_reach_the_operator() -> None:
    docs = template(MATRIX["policy"])
    assert (
        env(docs).items()
        >= {
            "MODELYARD_ALLOW_STATIC_CREDENTIALS": "true",
            "MODELYARD_REQUIRE_PRIVATE_CONNECTIVITY_FROM": "internal",
            "MODELYARD_ALLOWED_REGIONS": "eu-central-1,westeurope",
            "MODELYARD_PUBLIC_API_MAX_CLASSIFICATION": "internal",
            "MODELYARD_CLUSTER_CIDRS": "198.18.0.0/15",
            "MODELYARD_LITELLM_IMAGE": "registry.example/litellm:1",
        }.items()
    )


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = template({"serviceMonitor": {"enabled": True}})
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCont": 2}, "additional properties 'replicaCont' not allowed"),
        ({"serviceAccount": {"anotations": {}}}, "additional properties 'anotations' not allowed"),
        ({"policy": {"requirePrivateConnectivityFrom": "secret"}}, "requirePrivateConnectivityFrom"),
        ({"policy": {"publicAPIMaxClassification": "secret"}}, "publicAPIMaxClassification"),
        ({"policy": {"clusterCIDRs": ["fd00::/108"]}}, "clusterCIDRs"),
        ({"replicaCount": "2"}, "replicaCount"),
    ],
)
def test_values_schema_rejects_typos_and_bad_values(values: dict[str, Any], message: str) -> None:
    for command in (["template", "modelyard"], ["install", "modelyard", "--dry-run=client"]):
        out = helm(*command, str(CHART), *set_args(values), check=False)
        assert "values don't meet the specifications of the schema" in out, out
        assert message in out, out


def test_every_values_key_is_commented() -> None:
    """Each key in values.yaml has a comment right above it, or sits inside a commented value (e.g. the
    fields of ``resources``, documented as a whole)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    commented: list[tuple[int, bool]] = []  # (indent, has comment) of the enclosing keys
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while commented and commented[-1][0] >= indent:
            commented.pop()
        has_comment = number > 0 and lines[number - 1].strip().startswith("#")
        inside_commented_value = any(documented for _, documented in commented)
        assert has_comment or inside_commented_value, (
            f"values.yaml:{number + 1}: key without a comment: {stripped}"
        )
        commented.append((indent, has_comment))


def test_schema_covers_every_value_and_forbids_unknown_keys() -> None:
    import json  # noqa: PLC0415

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("type") != "object" or "properties" not in node:
            return
        assert node.get("additionalProperties") is False, f"{path or '.'}: additionalProperties must be false"
        for key, sub in value.items():
            assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
            if isinstance(sub, dict):
                walk(node["properties"][key], sub, f"{path}.{key}")

    walk(schema, values, "")


def test_default_image_is_what_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert f'dev.modelyard.image.repository="{values["image"]["repository"]}"' in dockerfile
    assert f"ARG VERSION={chart['appVersion']}" in dockerfile
    assert 'ENTRYPOINT ["modelyard"]' in dockerfile and "\nUSER 10001:10001\n" in dockerfile
    assert values["podSecurityContext"]["runAsUser"] == 10001


def test_chart_crds_are_the_generated_ones(tmp_path: Path) -> None:
    """charts/modelyard/crds/ holds what ``modelyard crds`` generates (plus kopf's peering CRDs)."""
    subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "crds", "--output-dir", str(tmp_path)], check=True
    )
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    in_chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.modelyard.dev.yaml")}
    assert in_chart == generated, "charts/modelyard/crds/ is out of date: run make crds"
