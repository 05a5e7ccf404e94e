"""The chart installed with the real ``helm`` into the sandbox, and the operator run as the chart's
ServiceAccount (a TokenRequest token, not the admin): every example reaches its expected state with exactly
the RBAC the chart grants, in cluster mode and in namespace-scoped mode; upgrade rolls the operator;
uninstall keeps the CRDs and custom resources and removes the rest; two replicas with kopf peering never
both handle an object, and the standby takes over.

The operator runs as a local subprocess (the sandbox has no container runtime: the chart's own Deployment
is scheduled on a kwok node that runs nothing), started with the args and environment the chart renders
into that Deployment.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from modelyard_sandbox.kube import write_kubeconfig
from modelyard_sandbox.pki import Pki

from .conftest import CHART, ROOT, helm, set_args

pytestmark = pytest.mark.sandbox

GROUP, VERSION = "modelyard.dev", "v1alpha1"
PLURALS = {
    "ModelDeployment": "modeldeployments",
    "ProviderBinding": "providerbindings",
    "RoutePolicy": "routepolicies",
}
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
READY_TIMEOUT_S = 90.0
FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
#: A namespace being deleted answers writes with 403 Forbidden (NamespaceTerminating): not a permission.
TERMINATING = "because it is being terminated"
#: kopf's own notices when it may not list namespaces or watch CRDs cluster-wide: expected (and only then)
#: in namespace-scoped mode, where the chart grants nothing cluster-wide.
RESTRICTED_MODE_NOTICES = (
    "Not enough permissions to list namespaces",
    "Not enough permissions to watch for namespaces",
    "Not enough permissions to watch for resources",
)


# --- helpers ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Release:
    """A helm release of the chart in the sandbox, and how to run the operator as its ServiceAccount."""

    sandbox: Any
    k8s: client.ApiClient
    name: str
    namespace: str
    values: dict[str, Any]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def helm(self, command: str, *extra: str) -> str:
        return helm(
            command,
            self.name,
            str(CHART),
            "--namespace",
            self.namespace,
            *set_args(self.values),
            *extra,
            kubeconfig=self.sandbox.kubeconfig,
        )

    def manifest(self) -> list[dict[str, Any]]:
        out = helm("get", "manifest", self.name, "-n", self.namespace, kubeconfig=self.sandbox.kubeconfig)
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def deployment(self) -> dict[str, Any]:
        return next(d for d in self.manifest() if d["kind"] == "Deployment")

    @property
    def service_account(self) -> str:
        name: str = self.deployment()["spec"]["template"]["spec"]["serviceAccountName"]
        return name

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def token_kubeconfig(self) -> Path:
        """A kubeconfig with a TokenRequest token of the chart's ServiceAccount: the operator's own rights."""
        token = (
            client.CoreV1Api(self.k8s)
            .create_namespaced_service_account_token(
                self.service_account,
                self.namespace,
                client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
                ),
            )
            .status.token
        )
        path = self.workdir / f"{self.name}-token.kubeconfig"
        ca = Pki(self.sandbox.logs.parent / "pki").ca.cert
        write_kubeconfig(path, self.sandbox.api_url, ca, token, self.service_account)
        return path

    def start_operator(self, identity: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
        """``modelyard`` with the chart's container args and env, as the chart's ServiceAccount. Returns the
        process and its metrics port."""
        container = self.deployment()["spec"]["template"]["spec"]["containers"][0]
        metrics_port, health_port = free_port(), free_port()
        args = [re.sub(r":\d+/healthz$", f":{health_port}/healthz", a) for a in container["args"]]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "MODELYARD_", "AWS_"))}
        env |= {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env |= {
            "KUBECONFIG": str(self.token_kubeconfig()),
            "POD_ID": identity,  # what the chart sets from metadata.name
            "MODELYARD_METRICS_PORT": str(metrics_port),
            # No cloud here: fail fast and locally instead of waiting for the real endpoints.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "MODELYARD_AZURE_RESOURCE_MANAGER_URL": "https://127.0.0.1:9",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "modelyard.cli.main", *args],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process, metrics_port

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            self.stop(process)


@contextmanager
def operator(release: Release, identity: str = "operator-0") -> Iterator[tuple[Path, int]]:
    """One operator process for the block; yields its log path and metrics port."""
    log = release.workdir / f"{identity}.log"
    process, port = release.start_operator(identity, log)
    try:
        yield log, port
    finally:
        release.stop(process)
    assert process.returncode == 0, f"operator exited with {process.returncode}:\n{log.read_text()[-3000:]}"


#: Examples sized for a real cluster (a frontier model on whole 8-GPU nodes): the sandbox's 16 GPUs do not
#: hold them next to the others, so they are applied with no replicas. The operator still plans them and
#: applies their server as the chart's ServiceAccount (a LeaderWorkerSet for a multi-node plan).
UNSCHEDULED_EXAMPLES = {"deepseek-r1", "llama-405b", "qwen3-235b"}


def example_objects() -> list[dict[str, Any]]:
    objects = []
    for path in EXAMPLES:
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for obj in objects:
        if obj["kind"] == "ModelDeployment" and obj["metadata"]["name"] in UNSCHEDULED_EXAMPLES:
            obj["spec"]["replicas"] = 0
    return objects


def apply_examples(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    objects = example_objects()
    for obj in objects:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[obj["kind"]], obj)
    return objects


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def get(custom: client.CustomObjectsApi, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], name
    )
    return result


def expected_state(
    custom: client.CustomObjectsApi, apps: client.AppsV1Api, namespace: str, obj: dict[str, Any]
) -> bool:
    """ModelDeployments Ready; the RoutePolicy with its gateway Deployment and status; ProviderBindings
    reconciled (IdentityConfigured=True; their cloud checks cannot pass without a cloud)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    current = get(custom, namespace, kind, name)
    status = current.get("status") or {}
    if kind == "ModelDeployment" and name in UNSCHEDULED_EXAMPLES:
        plan = status.get("plan") or {}
        if not plan:
            return False
        try:
            if (plan.get("nodesPerReplica") or 1) > 1:
                custom.get_namespaced_custom_object(
                    "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", name
                )
            else:
                apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
    if kind == "ModelDeployment":
        return status.get("phase") == "Ready"
    if kind == "ProviderBinding":
        identity = condition(current, "IdentityConfigured")
        checked = condition(current, "CredentialsVerified")
        return bool(identity and identity["status"] == "True" and checked and checked.get("reason"))
    try:
        apps.read_namespaced_deployment(f"{name}-gateway", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool(status.get("routes")) and condition(current, "GatewayReady") is not None


def forbidden_evidence(
    release: Release, logs: list[Path], namespaces: list[str], *, restricted: bool
) -> list[str]:
    """Every trace of a 403: operator log lines, the audit log's refused writes, and conditions or Events
    in the test namespaces that quote a refusal (the controllers turn a refused apply into a condition)."""
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if TERMINATING in line:
                continue
            if FORBIDDEN.search(line) or (not restricted and "Not enough permissions" in line):
                found.append(f"{log.name}: {line}")
    user = release.user
    for line in (release.sandbox.logs / "audit.log").read_text().splitlines():
        entry = json.loads(line)
        # RBAC refusals only (a namespace being deleted refuses writes with 403 too: not a permission).
        if (
            entry.get("user", {}).get("username") == user
            and entry.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid"
        ):
            ref = entry.get("objectRef", {})
            found.append(
                f"audit: {entry['verb']} {ref.get('resource')}/{ref.get('subresource', '')}"
                f" in {ref.get('namespace')}"
            )
    custom, core = client.CustomObjectsApi(release.k8s), client.CoreV1Api(release.k8s)
    for namespace in namespaces:
        for plural in PLURALS.values():
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
                for cond in (item.get("status") or {}).get("conditions", []):
                    if FORBIDDEN.search(cond.get("message", "")):
                        found.append(
                            f"{item['kind']}/{item['metadata']['name']} {cond['type']}: {cond['message']}"
                        )
        for event in core.list_namespaced_event(namespace).items:
            if FORBIDDEN.search(event.message or ""):
                found.append(f"Event {event.reason}: {event.message}")
    return found


def reconcile_examples(
    release: Release, namespaces: list[str], wait_for: Callable[..., Any], *, restricted: bool = False
) -> Path:
    """Run the operator as the chart's ServiceAccount, apply every example into each namespace, wait for
    each to reach its expected state and fail on any 403. Returns the operator log."""
    custom, apps = client.CustomObjectsApi(release.k8s), client.AppsV1Api(release.k8s)
    with operator(release) as (log, metrics_port):
        for namespace in namespaces:
            apply_examples(custom, namespace)
        for namespace in namespaces:
            for obj in example_objects():
                what = f"{obj['kind']}/{obj['metadata']['name']} in {namespace} in its expected state"

                def reached(obj: dict[str, Any] = obj, namespace: str = namespace) -> bool:
                    refused = [
                        line
                        for line in log.read_text(errors="replace").splitlines()
                        if FORBIDDEN.search(line) and TERMINATING not in line
                    ]
                    if refused:
                        pytest.fail("the operator was refused (403): " + "\n".join(refused))
                    return expected_state(custom, apps, namespace, obj)

                wait_for(reached, READY_TIMEOUT_S, what)
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        )
    evidence = forbidden_evidence(release, [log], namespaces, restricted=restricted)
    assert not evidence, "the chart's RBAC is missing a permission:\n" + "\n".join(evidence)
    assert re.search(
        r'modelyard_reconciles_total\{kind="ModelDeployment",result="success"\} [1-9]', metrics
    ), metrics
    assert 'modelyard_reconcile_duration_seconds_count{kind="RoutePolicy"}' in metrics
    return log


def create_namespace(k8s: client.ApiClient, name: str) -> str:
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def delete_namespaces(k8s: client.ApiClient, *names: str) -> None:
    for name in names:
        try:
            client.CoreV1Api(k8s).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "llama-3.1-8b-instruct",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            },
            "gpu": {"type": "nvidia-h100-80gb", "count": 1},
        },
    }


def handled_objects(log: Path, namespace: str) -> set[str]:
    """Names of the objects in ``namespace`` that kopf logged handler activity for (its JSON log lines
    carry the object they are about)."""
    names = set()
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        ref = entry.get("object") or {}
        if ref.get("namespace") == namespace and ref.get("kind") == "ModelDeployment":
            names.add(ref["name"])
    return names


def peering_state(log: Path) -> str:
    """``active`` or ``paused``, from kopf's last peering notice in ``log`` (a replica starts paused)."""
    state = "paused"
    for line in log.read_text(errors="replace").splitlines():
        if "Resuming operations after the pause" in line:
            state = "active"
        elif "Pausing operations in favour of" in line or "Pausing all operators" in line:
            state = "paused"
    return state


def phase_is(custom: client.CustomObjectsApi, namespace: str, name: str, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        return bool(
            (get(custom, namespace, "ModelDeployment", name).get("status") or {}).get("phase") == phase
        )

    return check


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_release(
    sandbox: Any, k8s: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart installed in all-namespaces mode into modelyard-system (its CRDs installed by Helm)."""
    release = Release(
        sandbox, k8s, "modelyard", "modelyard-system", {}, tmp_path_factory.mktemp("cluster-release")
    )
    release.helm("install", "--create-namespace", "--wait", "--timeout=90s")
    yield release
    release.stop_all()
    helm(
        "uninstall",
        release.name,
        "-n",
        release.namespace,
        "--ignore-not-found",
        kubeconfig=sandbox.kubeconfig,
    )


# --- tests ------------------------------------------------------------------------------------------------
def test_cluster_mode_reconciles_every_example_as_the_charts_service_account(
    cluster_release: Release, k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    crds = client.ApiextensionsV1Api(k8s).list_custom_resource_definition().items
    assert {"modeldeployments.modelyard.dev", "clusterkopfpeerings.kopf.dev"} <= {
        c.metadata.name for c in crds
    }
    reconcile_examples(cluster_release, [namespace], wait_for)


def test_namespace_scoped_mode_uses_roles_only(
    sandbox: Any,
    k8s: client.ApiClient,
    cluster_release: Release,
    wait_for: Callable[..., Any],
    tmp_path: Path,
) -> None:
    suffix = os.urandom(3).hex()
    team_a, team_b, outside = (
        create_namespace(k8s, f"{n}-{suffix}") for n in ("team-a", "team-b", "outside")
    )
    release = Release(
        sandbox, k8s, "scoped", f"scoped-system-{suffix}", {"watchNamespaces": [team_a, team_b]}, tmp_path
    )
    try:
        release.helm("install", "--create-namespace")
        kinds = {(d["kind"], d["metadata"].get("namespace")) for d in release.manifest()}
        assert not {k for k, _ in kinds} & {"ClusterRole", "ClusterRoleBinding"}
        assert {ns for k, ns in kinds if k == "Role"} == {team_a, team_b}

        reconcile_examples(release, [team_a, team_b], wait_for, restricted=True)

        # Its token is refused outside the watched namespaces.
        as_operator = config.new_client_from_config(config_file=str(release.token_kubeconfig()))
        custom = client.CustomObjectsApi(as_operator)
        for call in (
            lambda: custom.list_namespaced_custom_object(GROUP, VERSION, outside, "modeldeployments"),
            lambda: client.AppsV1Api(as_operator).list_namespaced_deployment(outside),
            lambda: custom.list_cluster_custom_object(GROUP, VERSION, "modeldeployments"),
        ):
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 403
        assert custom.list_namespaced_custom_object(GROUP, VERSION, team_a, "modeldeployments")["items"]
    finally:
        release.stop_all()
        helm(
            "uninstall",
            release.name,
            "-n",
            release.namespace,
            "--ignore-not-found",
            kubeconfig=sandbox.kubeconfig,
        )
        delete_namespaces(k8s, team_a, team_b, outside, release.namespace)


def test_upgrade_with_a_changed_value_rolls_the_operator(
    cluster_release: Release, k8s: client.ApiClient, wait_for: Callable[..., Any]
) -> None:
    apps = client.AppsV1Api(k8s)
    selector = "app.kubernetes.io/instance=modelyard,app.kubernetes.io/component=operator"

    def replica_sets() -> list[Any]:
        return list(
            apps.list_namespaced_replica_set(cluster_release.namespace, label_selector=selector).items
        )

    before = {rs.metadata.name for rs in wait_for(replica_sets, 30, "the operator's ReplicaSet")}
    cluster_release.values = {"policy": {"allowedRegions": ["eu-central-1"], "allowStaticCredentials": True}}
    cluster_release.helm("upgrade", "--reuse-values")

    def new_replica_set() -> Any:
        return next((rs for rs in replica_sets() if rs.metadata.name not in before), None)

    rs = wait_for(new_replica_set, 30, "a new ReplicaSet after the upgrade")
    env = {e.name: e.value for e in rs.spec.template.spec.containers[0].env}
    assert env["MODELYARD_ALLOWED_REGIONS"] == "eu-central-1"
    assert env["MODELYARD_ALLOW_STATIC_CREDENTIALS"] == "true"
    deployment = apps.read_namespaced_deployment("modelyard", cluster_release.namespace)
    assert deployment.metadata.generation == 2
    assert (
        json.loads(
            helm(
                "history",
                "modelyard",
                "-n",
                cluster_release.namespace,
                "-o",
                "json",
                kubeconfig=cluster_release.sandbox.kubeconfig,
            )
        )[-1]["revision"]
        == 2
    )


def test_two_replicas_with_peering_never_handle_one_object_twice(
    cluster_release: Release, k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    cluster_release.values = {"replicaCount": 2}
    cluster_release.helm("upgrade", "--reuse-values")
    peering = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", "modelyard"
    )
    assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == "modelyard"
    assert (
        "--peering=modelyard"
        in cluster_release.deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    )

    custom = client.CustomObjectsApi(k8s)
    logs = [cluster_release.workdir / f"replica-{i}.log" for i in range(2)]
    replicas = [cluster_release.start_operator(f"replica-{i}", logs[i])[0] for i in range(2)]
    try:

        def settled() -> Path | None:
            """The active replica, once both keep-alives are in the ClusterKopfPeering and exactly one
            replica is active: kopf pauses a replica by closing its watch streams, so objects are created
            only after the lower-priority one has paused."""
            peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "modelyard")
            if not {"replica-0", "replica-1"} <= set(peering.get("status") or {}):
                return None
            active = [log for log in logs if peering_state(log) == "active"]
            return active[0] if len(active) == 1 else None

        active = logs.index(wait_for(settled, 30, "exactly one active replica"))
        standby = 1 - active
        names = [f"md-{i}" for i in range(4)]
        for name in names:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "modeldeployments", model_deployment(name)
            )
        for name in names:
            wait_for(phase_is(custom, namespace, name, "Ready"), READY_TIMEOUT_S, f"{name} Ready")

        handled = [handled_objects(log, namespace) for log in logs]
        assert handled[active] == set(names), f"the active replica-{active} handled {handled[active]}"
        assert not handled[standby], f"the standby replica-{standby} also handled {handled[standby]}"

        cluster_release.stop(replicas[active])  # SIGTERM, as when its pod is deleted: it leaves the peering
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", model_deployment("md-after")
        )
        wait_for(
            phase_is(custom, namespace, "md-after", "Ready"), READY_TIMEOUT_S, "md-after Ready (standby)"
        )
        assert "md-after" in handled_objects(logs[standby], namespace)
        assert peering_state(logs[standby]) == "active"
    finally:
        for replica in replicas:
            cluster_release.stop(replica)
    for replica in replicas:
        assert replica.returncode == 0
    evidence = forbidden_evidence(cluster_release, logs, [namespace], restricted=False)
    assert not evidence, "\n".join(evidence)


def test_uninstall_keeps_crds_and_custom_resources_and_removes_the_rest(
    cluster_release: Release, k8s: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", model_deployment("kept")
    )
    helm(
        "uninstall",
        "modelyard",
        "-n",
        cluster_release.namespace,
        "--wait",
        kubeconfig=cluster_release.sandbox.kubeconfig,
    )

    crds = {c.metadata.name for c in client.ApiextensionsV1Api(k8s).list_custom_resource_definition().items}
    assert {
        "modeldeployments.modelyard.dev",
        "providerbindings.modelyard.dev",
        "routepolicies.modelyard.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    } <= crds
    assert get(custom, namespace, "ModelDeployment", "kept")["metadata"]["name"] == "kept"

    rbac, core, apps = client.RbacAuthorizationV1Api(k8s), client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    selector = "app.kubernetes.io/instance=modelyard,app.kubernetes.io/managed-by=Helm"
    left = [
        *rbac.list_cluster_role(label_selector=selector).items,
        *rbac.list_cluster_role_binding(label_selector=selector).items,
        *core.list_namespaced_service_account(cluster_release.namespace, label_selector=selector).items,
        *core.list_namespaced_service(cluster_release.namespace, label_selector=selector).items,
        *apps.list_namespaced_deployment(cluster_release.namespace, label_selector=selector).items,
        *custom.list_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", label_selector=selector)[
            "items"
        ],
    ]
    assert not left, [o["metadata"]["name"] if isinstance(o, dict) else o.metadata.name for o in left]
    for read in (
        lambda: rbac.read_cluster_role("modelyard"),
        lambda: rbac.read_cluster_role_binding("modelyard"),
        lambda: core.read_namespaced_service_account("modelyard", cluster_release.namespace),
        lambda: apps.read_namespaced_deployment("modelyard", cluster_release.namespace),
    ):
        with pytest.raises(ApiException) as gone:
            read()
        assert gone.value.status == 404
