"""``modelyard audit`` as a user and a CI gate run it: exact findings of a fixture GitOps tree, exit codes,
the JSON schema, SARIF 2.1.0 with the right lines, the table; and the same findings from a live cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelyard.api.common import Finding, Severity
from modelyard.api.model_deployment import ModelDeploymentSpec
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBinding
from modelyard.audit.model_deployment import model_deployment_findings
from modelyard.audit.output import to_sarif
from modelyard.audit.report import Mode, NetworkPath, Source, build_report
from tests.controllers import conftest as controller_fixtures
from tests.controllers.conftest import kubectl

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "audit" / "fixtures"
VIOLATIONS = FIXTURES / "violations"
CLEAN = FIXTURES / "clean"
AUDIT_SCHEMA = ROOT / "operator" / "modelyard" / "audit" / "schema" / "audit-v1.json"
SARIF_SCHEMA = ROOT / "tests" / "audit" / "sarif-schema-2.1.0.json"
POLICY_ENV = {"MODELYARD_ALLOWED_REGIONS": "eu-central-1,eu-west-1"}
PLANTED = ("AKIAPLANTEDAUDITKEY01", "planted-secret-value-9c1e4b7d")
V = "tests/audit/fixtures/violations"
crds = controller_fixtures.crds  # modelyard's CRDs in the sandbox, for the cluster test

#: (file, line of the document, object, code, severity) of every finding the violations tree must give.
EXPECTED = Counter(
    [
        (f"{V}/backends/bedrock-eu.yaml", 2, "ProviderBinding/bedrock-eu", "NO_INVOCATION_LOGGING", "low"),
        (f"{V}/backends/bedrock-public.yaml", 2, "ProviderBinding/bedrock-us", "STATIC_CREDENTIALS", "high"),
        (f"{V}/backends/bedrock-public.yaml", 2, "ProviderBinding/bedrock-us", "PUBLIC_ENDPOINT", "high"),
        (f"{V}/backends/bedrock-public.yaml", 2, "ProviderBinding/bedrock-us", "REGION_NOT_ALLOWED", "high"),
        (
            f"{V}/backends/bedrock-public.yaml",
            2,
            "ProviderBinding/bedrock-us",
            "UNKNOWN_PROVIDER_MODEL",
            "medium",
        ),
        (
            f"{V}/backends/bedrock-public.yaml",
            2,
            "ProviderBinding/bedrock-us",
            "NO_INVOCATION_LOGGING",
            "low",
        ),
        (f"{V}/backends/models.yaml", 2, "ModelDeployment/llama-open", "BROAD_NETWORK_ACCESS", "high"),
        (f"{V}/backends/models.yaml", 2, "ModelDeployment/llama-open", "BROAD_NETWORK_ACCESS", "medium"),
        (f"{V}/backends/models.yaml", 2, "ModelDeployment/llama-open", "UNPINNED_MODEL_REVISION", "medium"),
        (f"{V}/backends/nim.yaml", 2, "ModelDeployment/nim-floating", "UNPINNED_MODEL_REVISION", "medium"),
        (f"{V}/backends/s3.yaml", 1, "ModelDeployment/llama-minio", "PLAINTEXT_MODEL_SOURCE", "high"),
        (f"{V}/routes.yaml", 10, "RoutePolicy/llm-gateway", "CLASSIFICATION_ESCALATION", "high"),
        (f"{V}/routes.yaml", 10, "RoutePolicy/llm-gateway", "CLASSIFICATION_ESCALATION", "high"),
        (f"{V}/routes.yaml", 10, "RoutePolicy/llm-gateway", "REGION_NOT_ALLOWED", "high"),
    ]
)


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "audit", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, **POLICY_ENV, **(env or {})},
        timeout=120,
    )


def audit_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = audit(*args, "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def found(document: dict[str, Any]) -> Counter[tuple[str, int, str, str, str]]:
    return Counter(
        (f["location"]["path"], f["location"]["line"], f"{o['kind']}/{o['name']}", f["code"], f["severity"])
        for o in document["objects"]
        for f in o["findings"]
    )


def unlocated(findings: Counter[tuple[str, int, str, str, str]]) -> Counter[tuple[str, str, str]]:
    """The findings without file and line: (object, code, severity)."""
    return Counter({(ref, code, severity): n for (_, _, ref, code, severity), n in findings.items()})


def test_violations_tree_gives_exactly_the_expected_findings() -> None:
    document = audit_json("-f", str(VIOLATIONS))
    assert found(document) == EXPECTED
    assert document["summary"]["findings"] == {"low": 2, "medium": 4, "high": 8}
    kinds = {o["kind"] for o in document["objects"]}
    assert kinds == {
        "ModelDeployment",
        "ProviderBinding",
        "RoutePolicy",
    }  # Namespace, Secret, ConfigMap skipped


def test_violations_report_answers_the_security_questions() -> None:
    objects = {f"{o['kind']}/{o['name']}": o for o in audit_json("-f", str(VIOLATIONS))["objects"]}
    public = objects["ProviderBinding/bedrock-us"]
    assert public["identity"] == {
        "mode": "static",
        "principal": "Secret bedrock-keys",
        "subject": "system:serviceaccount:default:modelyard-gateway",
    }
    assert (public["network"]["path"], public["region"], public["invocationLogging"]) == (
        "public",
        "us-east-1",
        False,
    )
    assert public["routes"] == [
        {
            "routePolicy": "llm-gateway",
            "route": "chat",
            "backend": "ProviderBinding/bedrock-us/anthropic.claude-sonnet-4-5",
            "dataClassification": "restricted",
            "eligible": False,
        }
    ]
    private = objects["ProviderBinding/bedrock-eu"]
    assert private["network"]["path"] == "unverified"  # files cannot verify a private link
    assert [r["eligible"] for r in private["routes"]] == [True]
    assert objects["ModelDeployment/llama-open"]["revisionPinned"] is False
    assert objects["ModelDeployment/llama-open"]["network"]["callers"][1] == "every pod in every namespace"


def test_clean_tree_has_no_findings_and_exits_0() -> None:
    result = audit("-f", str(CLEAN), "--fail-on", "low", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [o["findings"] for o in document["objects"]] == [[], [], []]
    assert [o["revisionPinned"] for o in document["objects"]] == [True, None, None]


@pytest.mark.parametrize(
    ("target", "fail_on", "code"),
    [
        (VIOLATIONS, "high", 1),
        (VIOLATIONS, None, 0),
        (VIOLATIONS / "backends" / "nim.yaml", "high", 0),  # medium only
        (VIOLATIONS / "backends" / "nim.yaml", "medium", 1),
        (VIOLATIONS / "backends" / "nim.yaml", "low", 1),
        (VIOLATIONS / "backends" / "bedrock-eu.yaml", "high", 0),  # low only
        (VIOLATIONS / "backends" / "bedrock-eu.yaml", "medium", 0),
        (VIOLATIONS / "backends" / "bedrock-eu.yaml", "low", 1),
        (CLEAN, "low", 0),
    ],
)
def test_fail_on_exits_1_at_or_above_the_level(target: Path, fail_on: str | None, code: int) -> None:
    result = audit("-f", str(target), *(["--fail-on", fail_on] if fail_on else []))
    assert result.returncode == code, result.stdout + result.stderr


@pytest.mark.parametrize("tree", [VIOLATIONS, CLEAN])
def test_json_validates_against_the_published_schema(tree: Path) -> None:
    schema = json.loads(AUDIT_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = audit_json("-f", str(tree))
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["schemaVersion"] == "modelyard.dev/audit/v1"


def test_sarif_is_valid_2_1_0_and_points_at_the_manifest_lines() -> None:
    result = audit("-f", str(VIOLATIONS), "-o", "sarif")
    assert result.returncode == 0, result.stderr
    log = json.loads(result.stdout)
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(log)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-schema-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "modelyard"
    rules = {r["id"]: r["defaultConfiguration"]["level"] for r in driver["rules"]}
    assert {code: rules[code] for _, _, _, code, _ in EXPECTED} == {
        "NO_INVOCATION_LOGGING": "warning",
        "STATIC_CREDENTIALS": "error",
        "PUBLIC_ENDPOINT": "error",
        "REGION_NOT_ALLOWED": "error",
        "BROAD_NETWORK_ACCESS": "error",
        "UNPINNED_MODEL_REVISION": "warning",
        "CLASSIFICATION_ESCALATION": "error",
        "UNKNOWN_PROVIDER_MODEL": "warning",
        "PLAINTEXT_MODEL_SOURCE": "error",
    }
    level = {"high": "error", "medium": "warning", "low": "note"}
    located: Counter[tuple[str, int, str, str]] = Counter()
    for result_ in run["results"]:
        assert driver["rules"][result_["ruleIndex"]]["id"] == result_["ruleId"]
        physical = result_["locations"][0]["physicalLocation"]
        uri, line = physical["artifactLocation"]["uri"], physical["region"]["startLine"]
        assert (ROOT / uri).read_text().splitlines()[line - 1].startswith("apiVersion: modelyard.dev/")
        located[uri, line, result_["ruleId"], result_["level"]] += 1
    assert located == Counter({(p, n, c, level[s]): k for (p, n, _, c, s), k in EXPECTED.items()})


def test_table_is_readable() -> None:
    result = audit("-f", str(VIOLATIONS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "KIND", "OBJECT", "IDENTITY", "NETWORK", "REGION", "CLASS", "ROUTES", "PINNED", "LOGGING", "NETPOL",
        "FINDINGS",
    ]  # fmt: skip
    row = next(line for line in lines if "default/bedrock-us" in line and line.startswith("ProviderBinding"))
    assert row.split()[:7] == [
        "ProviderBinding", "default/bedrock-us", "static", "(Secret", "bedrock-keys)", "public", "us-east-1",
    ]  # fmt: skip
    assert "llm-gateway/chat:restricted (rejected)" in row
    assert any(line.split()[:2] == ["SEVERITY", "CODE"] for line in lines)
    assert lines[-1] == "6 objects, 8 high, 4 medium, 2 low"


@pytest.mark.parametrize("output", ["table", "json", "sarif"])
def test_secret_values_never_appear(output: str) -> None:
    result = audit("-f", str(VIOLATIONS), "-o", output)
    assert result.returncode == 0, result.stderr
    assert not [value for value in PLANTED if value in result.stdout + result.stderr]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert one_line_error(audit("-f", str(tmp_path / "missing"))).endswith(
        "missing: no such file or directory"
    )
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: modelyard.dev/v1alpha1\nkind: RoutePolicy\nmetadata: {name: x\n"
    )
    assert "bad.yaml:4: malformed YAML" in one_line_error(audit("-f", str(tmp_path / "bad.yaml")))
    no_kubeconfig = audit(env={"KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    assert one_line_error(no_kubeconfig).startswith("modelyard audit: no usable kubeconfig")
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    unreachable = audit(env={"KUBECONFIG": str(tmp_path / "kubeconfig")})
    assert one_line_error(unreachable).startswith("modelyard audit: cannot reach the cluster")


# --- the report's rules, without the command --------------------------------------------------------------
def test_peer_breadth_and_pinning_rules() -> None:
    def spec(revision: str | None, *peers: dict[str, Any]) -> ModelDeploymentSpec:
        body = {
            "model": {"name": "m", "source": "hf://org/m", "revision": revision},
            "gpu": {"type": "nvidia-l4"},
            "network": {"allowFrom": list(peers)},
        }
        return ModelDeploymentSpec.model_validate(body)

    def codes(findings: list[Finding]) -> list[tuple[str, Severity]]:
        return [(f.code, f.severity) for f in findings]

    commit = "0e9e39f249a16976918f6564b8830bc894c89659"
    one_namespace = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a"}}}
    assert codes(model_deployment_findings(spec(commit, one_namespace, {"podSelector": {}}))) == []
    assert codes(model_deployment_findings(spec(None))) == [("UNPINNED_MODEL_REVISION", Severity.MEDIUM)]
    everyone: dict[str, Any] = {"namespaceSelector": {}, "podSelector": {}}
    labelled = {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
    assert codes(model_deployment_findings(spec(commit, labelled, everyone))) == [
        ("BROAD_NETWORK_ACCESS", Severity.HIGH),
        ("BROAD_NETWORK_ACCESS", Severity.MEDIUM),
    ]


def test_an_ollama_library_tag_is_never_pinned_and_a_gguf_at_a_commit_is() -> None:
    def ollama(source: str, revision: str | None = None) -> ModelDeploymentSpec:
        model = {"name": "qwen2.5:7b", "source": source, "revision": revision}
        return ModelDeploymentSpec.model_validate({"engine": "ollama", "model": model})

    for tag in ("ollama://qwen2.5:7b", "ollama://qwen2.5", "ollama://qwen2.5:latest"):
        (found,) = model_deployment_findings(ollama(tag))
        assert (found.code, found.severity) == ("UNPINNED_MODEL_REVISION", Severity.MEDIUM)
        assert tag in found.message and "cannot pull by digest" in found.message
    gguf = "hf://Qwen/Qwen2.5-7B-Instruct-GGUF/qwen2.5-7b-instruct-q4_k_m.gguf"
    assert model_deployment_findings(ollama(gguf, "0e9e39f249a16976918f6564b8830bc894c89659")) == []
    assert [f.code for f in model_deployment_findings(ollama(gguf, "main"))] == ["UNPINNED_MODEL_REVISION"]


def test_an_s3_store_over_plain_http_is_a_high_finding() -> None:
    def s3(endpoint: str | None) -> ModelDeploymentSpec:
        model = {"name": "m", "source": "s3://weights/m", "roleArn": "arn:aws:iam::123456789012:role/r"}
        if endpoint:
            model["endpointURL"] = endpoint
        return ModelDeploymentSpec.model_validate({"model": model, "gpu": {"type": "nvidia-l4"}})

    (plain,) = model_deployment_findings(s3("http://minio.storage.svc:9000"))
    assert (plain.code, plain.severity) == ("PLAINTEXT_MODEL_SOURCE", Severity.HIGH)
    assert "http://minio.storage.svc:9000" in plain.message
    assert model_deployment_findings(s3("https://minio.storage.svc:9000")) == []
    assert model_deployment_findings(s3(None)) == []  # AWS S3 itself, over HTTPS


def binding(generation: int, status: dict[str, Any]) -> ProviderBinding:
    body = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ProviderBinding",
        "metadata": {"name": "b", "namespace": "ns", "generation": generation},
        "spec": {
            "provider": "bedrock",
            "bedrock": {
                "region": "eu-central-1",
                "models": ["meta.llama3-1-70b-instruct-v1:0"],
                "auth": {"type": "irsa", "roleArn": "arn:aws:iam::123456789012:role/r"},
                "vpcEndpoint": {"id": "vpce-0abc1234def567890"},
            },
        },
        "status": status,
    }
    return ProviderBinding.model_validate(body)


def test_cluster_mode_takes_binding_findings_from_status_of_the_current_generation() -> None:
    unverified = {
        "code": "PRIVATE_LINK_UNVERIFIED",
        "severity": "medium",
        "message": "endpoint not available",
    }
    verified = {
        "type": "PrivateConnectivityVerified",
        "status": "True",
        "reason": "Verified",
        "observedGeneration": 2,
    }
    status = {
        "observedGeneration": 2,
        "findings": [unverified],
        "conditions": [verified],
        "identity": {"mode": "keyless", "principal": "arn:aws:sts::123456789012:assumed-role/r/s"},
    }
    policy = ClusterPolicy(allowed_regions=("us-east-1",))
    current = build_report([Source(binding(2, status))], policy, Mode.CLUSTER).entries[0]
    assert [(f.code, f.severity) for f in current.findings] == [
        ("REGION_NOT_ALLOWED", Severity.HIGH),
        ("PRIVATE_LINK_UNVERIFIED", Severity.MEDIUM),
    ]
    assert current.network is NetworkPath.VERIFIED_PRIVATE
    assert current.identity.principal == "arn:aws:sts::123456789012:assumed-role/r/s"
    stale = build_report([Source(binding(3, status))], policy, Mode.CLUSTER).entries[0]
    assert [f.code for f in stale.findings] == ["REGION_NOT_ALLOWED"]  # recomputed from the newer spec
    assert stale.network is NetworkPath.UNVERIFIED
    files = build_report([Source(binding(2, status))], policy, Mode.FILES).entries[0]
    assert [f.code for f in files.findings] == ["REGION_NOT_ALLOWED"]


def test_cluster_sarif_locates_results_by_object() -> None:
    status = {"observedGeneration": 1, "findings": [{"code": "NEW_CODE", "severity": "low", "message": "m"}]}
    log = to_sarif(build_report([Source(binding(1, status))], ClusterPolicy(), Mode.CLUSTER))
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(log)
    (result,) = log["runs"][0]["results"]
    assert result["locations"] == [
        {"logicalLocations": [{"fullyQualifiedName": "ns/ProviderBinding/b", "kind": "resource"}]}
    ]
    rule = log["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert (rule["id"], rule["defaultConfiguration"]["level"]) == (
        "NEW_CODE",
        "note",
    )  # a code not catalogued yet


# --- the live cluster ---------------------------------------------------------------------------------------
@pytest.mark.sandbox
@pytest.mark.usefixtures("crds")
def test_cluster_audit_reports_what_the_file_audit_reports(sandbox: Any, namespace: str) -> None:
    kubectl(sandbox, "apply", "-n", namespace, "-R", "-f", str(VIOLATIONS))
    try:
        document = audit_json(env={"KUBECONFIG": str(sandbox.kubeconfig)})
    finally:
        kubectl(sandbox, "delete", "namespace", "audit-fixture-other", "--wait=false")
    assert document["source"] == {"mode": "cluster", "target": None}
    ours = [o for o in document["objects"] if o["namespace"] == namespace]
    in_cluster = Counter(
        (f"{o['kind']}/{o['name']}", f["code"], f["severity"]) for o in ours for f in o["findings"]
    )
    from_files = unlocated(found(audit_json("-f", str(VIOLATIONS))))
    assert in_cluster == from_files == unlocated(EXPECTED)
    assert all(f["location"] is None for o in ours for f in o["findings"])
    assert {o["name"]: o["networkPolicy"] for o in ours if o["kind"] != "ProviderBinding"} == {
        "llama-open": False,  # no operator runs here: nothing created the server's NetworkPolicy
        "nim-floating": False,
        "llama-minio": False,
        "llm-gateway": False,
    }
    assert not [value for value in PLANTED if value in json.dumps(document)]
