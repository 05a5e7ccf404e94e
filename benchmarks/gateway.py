"""Gateway compile: a RoutePolicy with 200 routes over 50 backends (30 ModelDeployments and 20 models of
ProviderBindings, Bedrock and Azure), fallback and weighted routes of 1 to 4 backends, every data class.

Offline: the whole pure path the RoutePolicy controller runs per reconcile (parse the policy and the
namespace's backends, findings, route resolution, identity wiring, the LiteLLM config, its YAML and the
gateway's manifests), per compile, and the config's size.

On the sandbox, the operator in a subprocess, Bedrock served by moto and Azure by the local fake: the time
from applying the routes to gateway ConfigMaps carrying all of them, and the binding flip: an Azure
account opened to the public internet (the binding then loses PrivateConnectivityVerified and Ready) —
from the moment the binding's status shows it to the moment no gateway config serves the binding any more,
and back. The API caps a RoutePolicy at 64 routes, so on the sandbox the 200 routes are 4 RoutePolicies of
50 over the same 50 backends (one, when the cap allows 200).

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from benchlib import ROOT, AuditLog, Figures, Operator, install_crds, standalone, wait
from kubernetes import client, config, watch
from moto.server import ThreadedMotoServer

from modelyard.api import ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.route_policy import RoutePolicySpec
from modelyard.audit.route_policy import route_policy_findings
from modelyard.config import Settings
from modelyard.controllers.gateway_account import merge_in_order
from modelyard.render.gateway import CONFIG_KEY, render_gateway
from modelyard.render.identity import identity_wiring, merge_wiring
from modelyard.render.litellm import compile_litellm_config, config_yaml
from modelyard.render.routing import resolve_routes
from modelyard_sandbox import Ports, Sandbox

SECTION = "Gateway compile"
GROUP, VERSION, NAMESPACE = "modelyard.dev", "v1alpha1", "bench"
ROUTES, MODEL_DEPLOYMENTS, BEDROCK_BINDINGS, AZURE_BINDINGS, MODELS_PER_BINDING = 200, 30, 5, 5, 2
RUNS = 20
#: The most routes one RoutePolicy may have (the CRD's maxItems, from the API model).
API_MAX_ROUTES: int = RoutePolicySpec.model_json_schema()["properties"]["routes"]["maxItems"]
REGION = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
AZURE_CLIENT = "11111111-2222-3333-4444-555555555555"
AZURE_TENANT = "66666666-7777-8888-9999-000000000000"
AZURE_ACCOUNTS = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/llm"
    "/providers/Microsoft.CognitiveServices/accounts"
)
BEDROCK_MODELS = ("anthropic.claude-3-5-sonnet-20240620-v1:0", "meta.llama3-1-70b-instruct-v1:0")
#: The binding that loses eligibility on the sandbox; it alone is re-verified often (the others every 10 m,
#: the default, so that their re-verifications do not queue reconciles in front of the flip).
FLIPPED, FLIPPED_VERIFY_EVERY = "azure-0", "5s"
CLASSES = ("public", "internal", "internal", "confidential", "confidential", "restricted")
OFFLINE_VPC_ENDPOINT = "vpce-0123456789abcdef0"


# --- the fixture: 50 backends and 200 routes ------------------------------------------------------------
def model_deployment(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": f"md-{i:02d}", "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": f"llama-3.1-8b-instruct-{i:02d}",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            },
            "gpu": {"type": "nvidia-h100-80gb"},
            "dataClassification": ("restricted", "confidential", "internal")[i % 3],
        },
    }


def bedrock_binding(j: int, vpc_endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProviderBinding",
        "metadata": {"name": f"bedrock-{j}", "namespace": NAMESPACE},
        "spec": {
            "provider": "bedrock",
            "bedrock": {
                "region": REGION,
                "models": list(BEDROCK_MODELS[:MODELS_PER_BINDING]),
                "auth": {"type": "irsa", "roleArn": ROLE},
                "vpcEndpoint": {"id": vpc_endpoint},
            },
            "dataClassification": "confidential",
            "verifyEvery": "10m",
        },
    }


def azure_account(j: int) -> str:
    return f"bench-llm-{j}"


def azure_deployments(j: int) -> list[str]:
    return [f"gpt-4o-{j}-{k}" for k in range(MODELS_PER_BINDING)]


def azure_binding(j: int) -> dict[str, Any]:
    name, account = f"azure-{j}", azure_account(j)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProviderBinding",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "provider": "azureOpenAI",
            "azureOpenAI": {
                "endpoint": f"https://{account}.openai.azure.com",
                "resourceId": f"{AZURE_ACCOUNTS}/{account}",
                "deployments": [{"name": d, "model": "gpt-4o"} for d in azure_deployments(j)],
                "auth": {"type": "workloadIdentity", "clientId": AZURE_CLIENT, "tenantId": AZURE_TENANT},
            },
            "dataClassification": "confidential",
            "verifyEvery": FLIPPED_VERIFY_EVERY if name == FLIPPED else "10m",
        },
    }


def backends() -> list[dict[str, Any]]:
    """The 50 backends routes may name, as route backends."""
    found: list[dict[str, Any]] = [{"modelDeploymentRef": f"md-{i:02d}"} for i in range(MODEL_DEPLOYMENTS)]
    for j in range(BEDROCK_BINDINGS):
        found += [
            {"providerBindingRef": f"bedrock-{j}", "model": m} for m in BEDROCK_MODELS[:MODELS_PER_BINDING]
        ]
    for j in range(AZURE_BINDINGS):
        found += [{"providerBindingRef": f"azure-{j}", "model": d} for d in azure_deployments(j)]
    return found


def routes(count: int = ROUTES) -> list[dict[str, Any]]:
    """``count`` routes: route i puts backend i mod 50 first, so every 50 consecutive routes use every
    backend; 1 to 4 backends, every third route weighted, the others fallback chains."""
    rng, pool = random.Random(9), backends()
    made = []
    for i in range(count):
        first = pool[i % len(pool)]
        chosen = [first, *rng.sample([b for b in pool if b is not first], i % 4)]
        route: dict[str, Any] = {
            "model": f"model-{i:03d}",
            "dataClassification": CLASSES[rng.randrange(len(CLASSES))],
            "backends": [dict(b) for b in chosen],
            "retries": rng.randint(0, 2),
            "timeoutSeconds": rng.choice((30, 60, 120)),
        }
        if i % 3 == 2:
            route["strategy"] = "weighted"
            for backend in route["backends"]:
                backend["weight"] = rng.randint(1, 100)
        made.append(route)
    return made


def route_policy(name: str, route_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutePolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "routes": route_list,
            "limits": {"requestsPerMinute": 600},
            "gateway": {"replicas": 1},
        },
    }


def split_routes(route_list: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The routes in as few RoutePolicies as the API's cap allows, evenly."""
    parts = math.ceil(len(route_list) / API_MAX_ROUTES)
    size = math.ceil(len(route_list) / parts)
    return [route_list[i : i + size] for i in range(0, len(route_list), size)]


# --- offline: the controller's pure path ----------------------------------------------------------------
def verified(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the operator's index holds it once its controller made it Ready."""
    conditions = ["Ready"]
    status: dict[str, Any] = {"observedGeneration": 1}
    if body["kind"] == "ProviderBinding":
        conditions = ["IdentityConfigured", "CredentialsVerified", "PrivateConnectivityVerified", "Ready"]
        if "bedrock" in body["spec"]:
            status["endpoint"] = f"https://{OFFLINE_VPC_ENDPOINT}-abcdefgh.bedrock-runtime.{REGION}.vpce.aws"
            status["region"] = REGION
        else:
            status["endpoint"] = body["spec"]["azureOpenAI"]["endpoint"]
            status["region"] = "westeurope"
    status["conditions"] = [
        {
            "type": kind,
            "status": "True",
            "reason": "Ready",
            "message": "",
            "observedGeneration": 1,
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
        for kind in conditions
    ]
    meta = {**body["metadata"], "generation": 1, "uid": f"uid-{body['metadata']['name']}"}
    meta["creationTimestamp"] = "2025-01-01T00:00:00Z"
    return {**body, "metadata": meta, "status": status}


def namespace_backends() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The namespace's ModelDeployments and ProviderBindings, Ready, as the operator's indexes hold them."""
    mds = [verified(model_deployment(i)) for i in range(MODEL_DEPLOYMENTS)]
    bindings = [verified(bedrock_binding(j, OFFLINE_VPC_ENDPOINT)) for j in range(BEDROCK_BINDINGS)]
    bindings += [verified(azure_binding(j)) for j in range(AZURE_BINDINGS)]
    return mds, bindings


def parse_policy(body: dict[str, Any]) -> RoutePolicy:
    """``RoutePolicy.model_validate``; past the API's route cap, the routes are validated in chunks the cap
    allows and joined (the cost is the same per route)."""
    route_list = body["spec"]["routes"]
    if len(route_list) <= API_MAX_ROUTES:
        return RoutePolicy.model_validate(body)
    chunks = [
        RoutePolicy.model_validate({**body, "spec": {**body["spec"], "routes": part}})
        for part in (route_list[i : i + API_MAX_ROUTES] for i in range(0, len(route_list), API_MAX_ROUTES))
    ]
    policy = chunks[0]
    policy.spec.routes = [route for chunk in chunks for route in chunk.spec.routes]
    return policy


class ControllerPass:
    """What ``controllers.route_policy._Reconcile.run`` computes before it talks to the API server, step
    by step, so each step can be timed on its own."""

    def __init__(self, policy: dict[str, Any], mds: list[dict[str, Any]], bindings: list[dict[str, Any]]):
        self.policy_body, self.md_bodies, self.binding_bodies = policy, mds, bindings
        self.settings = Settings()
        self.parse()
        self.resolve()
        self.wire()

    def parse(self) -> None:
        self.policy = parse_policy(self.policy_body)
        self.mds = {b["metadata"]["name"]: ModelDeployment.model_validate(b) for b in self.md_bodies}
        self.bindings = {
            b["metadata"]["name"]: ProviderBinding.model_validate(b) for b in self.binding_bodies
        }

    def findings(self) -> list[dict[str, Any]]:
        found = route_policy_findings(self.policy.spec, self.settings.policy, self.mds, self.bindings)
        return [f.to_wire() for f in found]

    def resolve(self) -> None:
        self.routes, self.statuses = resolve_routes(
            self.policy, self.settings.policy, self.mds, self.bindings, namespace=NAMESPACE
        )

    def wire(self) -> None:
        accepted, _ = merge_in_order(self.binding_bodies)
        self.wiring = merge_wiring(identity_wiring(b) for b in accepted)

    def render(self) -> list[dict[str, Any]]:
        return render_gateway(
            self.policy, self.routes, self.wiring, namespace=NAMESPACE, image=self.settings.litellm_image
        )

    def route_status(self) -> list[dict[str, Any]]:
        return [s.to_wire() for s in self.statuses]

    def whole(self) -> list[dict[str, Any]]:
        self.parse()
        self.findings()
        self.resolve()
        self.wire()
        objects = self.render()
        self.route_status()
        return objects


def median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def offline(figures: Figures) -> None:
    mds, bindings = namespace_backends()
    all_routes = routes()
    whole = ControllerPass(route_policy("gw", all_routes), mds, bindings)
    compiled = compile_litellm_config(whole.policy, whole.routes)
    text = config_yaml(compiled)
    served = sum(1 for r in whole.routes if r.backends)
    what = f"{ROUTES} routes over {len(backends())} backends"
    if ROUTES > API_MAX_ROUTES:
        what += f", past the API's cap of {API_MAX_ROUTES}"
    figures.add(SECTION, f"offline controller pass, {what}", median_ms(whole.whole), "ms")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("parse the policy and the 50 backends", whole.parse),
        ("findings (audit)", whole.findings),
        ("route resolution (resolve_routes)", whole.resolve),
        ("identity wiring of the bindings", whole.wire),
        ("compile_litellm_config", lambda: compile_litellm_config(whole.policy, whole.routes)),
        ("config YAML", lambda: config_yaml(compiled)),
        ("render_gateway (compile + YAML + manifests)", whole.render),
    ]
    for label, step in steps:
        figures.add(SECTION, f"  of which {label}", median_ms(step), "ms")
    figures.add(SECTION, "gateway config size", len(text.encode()) / 1024, "KiB")
    figures.add(SECTION, "routes served (the others fail closed)", served, "routes")
    figures.add(SECTION, "model_list entries", len(compiled["model_list"]), "entries")
    capped = ControllerPass(route_policy("gw", all_routes[:API_MAX_ROUTES]), mds, bindings)
    figures.add(
        SECTION,
        f"offline controller pass, {API_MAX_ROUTES} routes (the API's cap)",
        median_ms(capped.whole),
        "ms",
    )


# --- on the sandbox ---------------------------------------------------------------------------------------
class Clouds:
    """AWS as moto's server (the gateway role, a bedrock-runtime VPC endpoint, invocation logging), Azure as
    the local fake (one compliant account per binding), and the hosts file the operator resolves the
    endpoints' names from: what the ProviderBindings are verified against."""

    def __init__(self, workdir: Path) -> None:
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # moto's request log, and its 500s for
        # the Bedrock calls it does not implement (ListFoundationModels: the binding notes models unverified)
        sys.path.insert(0, str(ROOT))  # the Azure fake lives with the tests
        from tests.fakes.azure import AzureFake  # noqa: PLC0415

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.azure = AzureFake(workdir)
        self.hosts = workdir / "hosts"
        self.hosts.write_text("")
        self.env = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",  # the operator's own identity, as moto wants one
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AZURE_AUTHORITY_HOST": self.azure.url,
            "REQUESTS_CA_BUNDLE": str(self.azure.ca_file),  # azure-identity (requests)
            "SSL_CERT_FILE": str(self.azure.ca_file),  # httpx
            "MODELYARD_AZURE_RESOURCE_MANAGER_URL": self.azure.url,
            "MODELYARD_HOSTS_FILE": str(self.hosts),
        }
        self.vpc_endpoint = self._aws()
        self.azure.state.federated[AZURE_CLIENT] = f"system:serviceaccount:{NAMESPACE}:modelyard-gateway"
        for j in range(AZURE_BINDINGS):
            account = azure_account(j)
            endpoint = f"https://{account}.openai.azure.com/"
            self.azure.add_private_account(f"{AZURE_ACCOUNTS}/{account}", endpoint, set(azure_deployments(j)))
            self._private(f"{account}.openai.azure.com", f"10.1.0.{10 + j}")

    def _aws(self) -> str:
        from tests.controllers.test_provider_binding import aws, vpc_endpoint  # noqa: PLC0415

        aws(self.moto_url, "iam").create_role(RoleName="llm-gateway", AssumeRolePolicyDocument="{}")
        endpoint_id, dns = vpc_endpoint(self.moto_url)
        self._private(dns, "10.0.1.10")
        self._private(f"bedrock-runtime.{REGION}.amazonaws.com", "10.0.1.11")
        aws(self.moto_url, "bedrock").put_model_invocation_logging_configuration(
            loggingConfig={"cloudWatchConfig": {"logGroupName": "bedrock", "roleArn": ROLE}}
        )
        return endpoint_id

    def _private(self, host: str, address: str) -> None:
        with self.hosts.open("a") as handle:
            handle.write(f"{address} {host}\n")

    def public_network_access(self, binding: str, enabled: bool) -> None:
        """Open the Azure account behind ``binding`` (azure-J) to the internet, or close it again."""
        account = azure_account(int(binding.rsplit("-", 1)[1]))
        properties = self.azure.state.accounts[f"{AZURE_ACCOUNTS}/{account}"]["properties"]
        properties["publicNetworkAccess"] = "Enabled" if enabled else "Disabled"

    def stop(self) -> None:
        self.azure.stop()
        self.moto.stop()


@contextmanager
def clouds(workdir: Path) -> Iterator[Clouds]:
    started = Clouds(workdir)
    try:
        yield started
    finally:
        started.stop()


class Watcher:
    """Every event of one watch, stamped with the time it arrived here (a thread per watch, so a stamp is
    not late by a poll interval)."""

    def __init__(
        self, kubeconfig: Path, list_call: Callable[[client.ApiClient], Any], *args: Any, **kwargs: Any
    ):
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._api = config.new_client_from_config(config_file=str(kubeconfig))
        self._watch = watch.Watch()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, args=(list_call(self._api), args, kwargs), daemon=True
        )
        self._thread.start()

    def _run(self, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in self._watch.stream(call, *args, deserialize=False, **kwargs):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self.events.append((time.perf_counter(), event["object"]))
        except Exception:
            if not self._stopped:
                raise

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()

    def first(self, since: float, check: Callable[[dict[str, Any]], bool]) -> float | None:
        """When the first object that passes ``check`` arrived after ``since``."""
        return next((t for t, obj in list(self.events) if t >= since and check(obj)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@functools.lru_cache(maxsize=512)
def served_ids(config_text: str) -> frozenset[str]:
    """The model_info ids of a gateway config: ``<route>:<backend key>`` for every backend it serves."""
    loaded = yaml.load(config_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return frozenset(entry["model_info"]["id"] for entry in loaded.get("model_list") or [])


def serves(name: str, ids: frozenset[str]) -> Callable[[dict[str, Any]], bool]:
    """Whether a watched object is ConfigMap ``name`` serving exactly ``ids``."""

    def check(obj: dict[str, Any]) -> bool:
        text = (obj.get("data") or {}).get(CONFIG_KEY)
        return obj["metadata"]["name"] == name and text is not None and served_ids(text) == ids

    return check


def ready_is(status: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == status for c in conditions)

    return check


def expected_ids(policy: dict[str, Any]) -> frozenset[str]:
    """What the policy's gateway serves with every backend Ready (the offline compile)."""
    mds, bindings = namespace_backends()
    compiled = ControllerPass(policy, mds, bindings)
    return frozenset(
        e["model_info"]["id"] for e in compile_litellm_config(compiled.policy, compiled.routes)["model_list"]
    )


class OnSandbox:
    """The in-cluster part: the backends, the RoutePolicies and the flips, measured from watches."""

    def __init__(self, figures: Figures, sandbox: Sandbox, cloud: Clouds, workdir: Path) -> None:
        self.figures, self.sandbox, self.cloud = figures, sandbox, cloud
        self.policies = [route_policy(f"gw-{p}", part) for p, part in enumerate(split_routes(routes()))]
        self.names = [f"{p['metadata']['name']}-gateway-config" for p in self.policies]
        self.expected = {name: expected_ids(p) for name, p in zip(self.names, self.policies, strict=True)}
        key = f":ProviderBinding/{FLIPPED}/"
        self.without = {
            name: frozenset(i for i in ids if key not in i) for name, ids in self.expected.items()
        }
        if any(self.without[n] == self.expected[n] for n in self.names):
            raise SystemExit(f"fixture: {FLIPPED} is not served by every RoutePolicy")
        api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        self.custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        self.operator = Operator(sandbox, api, workdir)
        self.audit = AuditLog(sandbox)
        self.watchers: list[Watcher] = []
        self.metrics_port = free_port()

    def run(self) -> None:
        self.operator.start(env={**self.cloud.env, "MODELYARD_METRICS_PORT": str(self.metrics_port)})
        try:
            self.backends()
            self.watch()
            self.apply()
            time.sleep(3)  # the gateway Deployments roll out; the operator settles
            self.flip(True, self.without, "False", f"Azure binding {FLIPPED} opened to the internet")
            self.flip(False, self.expected, "True", f"Azure binding {FLIPPED} private again")
            self.figures.add(SECTION, "sandbox: operator RSS at the end", self.operator.rss_mib(), "MiB")
        finally:
            for watcher in self.watchers:
                watcher.stop()
            self.operator.stop()

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)

    def ready(self, plural: str) -> int:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)["items"]
        return sum(ready_is("True")(item) for item in items)

    def backends(self) -> None:
        started = time.perf_counter()
        for i in range(MODEL_DEPLOYMENTS):
            self.create("modeldeployments", model_deployment(i))
        for j in range(BEDROCK_BINDINGS):
            self.create("providerbindings", bedrock_binding(j, self.cloud.vpc_endpoint))
        for j in range(AZURE_BINDINGS):
            self.create("providerbindings", azure_binding(j))
        bindings = BEDROCK_BINDINGS + AZURE_BINDINGS
        wait(
            lambda: (
                self.ready("modeldeployments") == MODEL_DEPLOYMENTS
                and self.ready("providerbindings") == bindings
            ),
            150,
            "every backend Ready",
            interval_s=1.0,
        )
        what = f"{MODEL_DEPLOYMENTS} ModelDeployments and {bindings} ProviderBindings created to Ready"
        self.figures.add(SECTION, f"sandbox: {what}", time.perf_counter() - started, "s")

    def watch(self) -> None:
        kubeconfig = self.sandbox.kubeconfig
        self.gateways = Watcher(
            kubeconfig,
            lambda api: client.CoreV1Api(api).list_namespaced_config_map,
            NAMESPACE,
            label_selector="modelyard.dev/routepolicy",
        )
        self.binding = Watcher(
            kubeconfig,
            lambda api: client.CustomObjectsApi(api).list_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            "providerbindings",
            field_selector=f"metadata.name={FLIPPED}",
        )
        self.watchers += [self.gateways, self.binding]
        time.sleep(1)  # the watches are open

    def serving(self, since: float, wanted: dict[str, frozenset[str]]) -> list[float] | None:
        """When each gateway config first served exactly ``wanted`` after ``since``; None until all did."""
        times = [self.gateways.first(since, serves(name, wanted[name])) for name in self.names]
        return [t for t in times if t is not None] if None not in times else None

    def wait_serving(self, since: float, wanted: dict[str, frozenset[str]], what: str) -> list[float]:
        try:
            wait(lambda: self.serving(since, wanted) is not None, 90, what)
        except SystemExit:
            self.explain(wanted)
            raise
        return self.serving(since, wanted) or []

    def apply(self) -> None:
        count = len(self.policies)
        layout = f"{ROUTES} routes in {count} RoutePolicies" if count > 1 else f"{ROUTES} routes"
        applied = time.perf_counter()
        for policy in self.policies:
            self.create("routepolicies", policy)
        done = self.wait_serving(applied, self.expected, "the gateway configs carrying every route")
        self.figures.add(
            SECTION, f"sandbox: {layout} applied to every gateway config", max(done) - applied, "s"
        )
        if count > 1:
            self.figures.add(
                SECTION, "sandbox:   of which to the first gateway config", min(done) - applied, "s"
            )

    def flip(self, public: bool, wanted: dict[str, frozenset[str]], ready: str, label: str) -> None:
        """Open or close the account, then time: cloud to the binding's Ready condition, that to every
        gateway config; and count the operator's writes and RoutePolicy reconciles meanwhile."""
        self.audit.mark()
        before = self.reconciles()
        flipped = time.perf_counter()
        self.cloud.public_network_access(FLIPPED, public)
        wait(lambda: self.binding.first(flipped, ready_is(ready)) is not None, 60, f"{FLIPPED} Ready={ready}")
        shown = self.binding.first(flipped, ready_is(ready)) or flipped
        done = self.wait_serving(flipped, wanted, f"the gateway configs after: {label}")
        self.figures.add(
            SECTION,
            f"{label}: cloud change to binding Ready={ready} (verifyEvery {FLIPPED_VERIFY_EVERY})",
            shown - flipped,
            "s",
        )
        self.figures.add(SECTION, f"{label}: binding status to every gateway config", max(done) - shown, "s")
        if len(done) > 1:
            self.figures.add(SECTION, f"{label}:   of which to the first", min(done) - shown, "s")
        time.sleep(1)
        count, seconds = (a - b for a, b in zip(self.reconciles(), before, strict=True))
        window = time.perf_counter() - flipped
        self.figures.add(
            SECTION, f"{label}: RoutePolicy reconciles in those {window:.0f} s", count, "reconciles"
        )
        self.figures.add(
            SECTION,
            f"{label}:   their mean duration (lock waits included)",
            seconds / max(count, 1) * 1000,
            "ms",
        )
        writes = self.audit.writes(NAMESPACE)
        self.figures.add(
            SECTION, f"{label}: operator API writes in those {window:.0f} s", sum(writes.values()), "writes"
        )
        for key, number in sorted(writes.items(), key=lambda kv: -kv[1]):
            self.figures.add(SECTION, f"    {key}", number, "writes")

    def reconciles(self) -> tuple[float, float]:
        """The operator's RoutePolicy reconciles so far, and the seconds they took (from its metrics)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        found = {"count": 0.0, "sum": 0.0}
        for line in text.splitlines():
            for key in found:
                if line.startswith(f'modelyard_reconcile_duration_seconds_{key}{{kind="RoutePolicy"}}'):
                    found[key] = float(line.rsplit(" ", 1)[1])
        return found["count"], found["sum"]

    def explain(self, wanted: dict[str, frozenset[str]]) -> None:
        """What the last config of each gateway differs in from what was waited for."""
        for name in self.names:
            seen = [obj for _, obj in self.gateways.events if obj["metadata"]["name"] == name]
            if not seen:
                print(f"  {name}: no ConfigMap seen")
                continue
            have = served_ids(seen[-1]["data"][CONFIG_KEY])
            missing, extra = sorted(wanted[name] - have), sorted(have - wanted[name])
            print(f"  {name}: missing {missing[:4]}, extra {extra[:4]}")


def in_cluster(figures: Figures) -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp, clouds(Path(tmp)) as cloud:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        try:
            sandbox.up(
                gpu_nodes=math.ceil(MODEL_DEPLOYMENTS / 8),
                gpus_per_node=8,
                cpu_nodes=2,
                volumes=MODEL_DEPLOYMENTS + 5,
            )
            install_crds(sandbox)
            OnSandbox(figures, sandbox, cloud, Path(tmp)).run()
        finally:
            sandbox.down()


def run(figures: Figures) -> None:
    offline(figures)
    in_cluster(figures)


if __name__ == "__main__":
    standalone(run)
