"""The Python half of ``make demo`` (hack/demo.sh runs it with the project's virtualenv).

    hack/demo.py cloud aws|azure DIR    one local cloud, seeded so that the examples' ProviderBindings verify,
                                        in the foreground until SIGTERM; demo.sh runs each in the background
                                        with its pid in DIR/moto.pid or DIR/azure-fake.pid (sandbox-down
                                        stops them). Ready once DIR/clouds/<cloud>.json exists.
    hack/demo.py env DIR                the operator's environment pointing it at both clouds: KEY=VALUE lines
    hack/demo.py vpc-endpoint DIR       the bedrock-runtime interface endpoint moto created: "ID DNS-NAME"
    hack/demo.py serve NAMESPACE        the test model server and a RoutePolicy on the sandbox's real node,
                                        then one chat completion through the gateway, printed (KUBECONFIG
                                        names the sandbox)
    hack/demo.py ollama NAMESPACE       the tiny GGUF model served by Ollama (CPU) on the real node and a
                                        RoutePolicy; one question answered through the gateway with its
                                        token counts, and how to point another client at it

AWS is moto's server; Azure is the tests' HTTPS fake of Entra ID and Resource Manager (no Azure emulator
exists). Both are seeded with the tests' own helpers from what the example files say (role, region, resource
id, client id), and the names the operator must find private map to private addresses in DIR/clouds/hosts
(MODELYARD_HOSTS_FILE), as a VPC's private DNS zone would answer. The model server and the gateway are set up
with tests/realnode/serving.py's functions, as the real-node tests set them up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from modelyard.api.provider_binding import ProviderBinding
from modelyard.cloud.aws import STS_AUDIENCE
from modelyard.render.gateway import gateway_name, master_key_secret
from modelyard_sandbox.components import ISSUER
from modelyard_sandbox.nodes import KWOK_ANNOTATION

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the clouds' seeding helpers and the real-node helpers live with the tests

#: The namespace demo.sh applies examples/ in: the subject the clouds trust is its gateway ServiceAccount.
EXAMPLES_NAMESPACE = "default"
BEDROCK_EXAMPLE = ROOT / "examples" / "bedrock-irsa.yaml"
AZURE_EXAMPLE = ROOT / "examples" / "azure-openai.yaml"
#: The private addresses the endpoints' names resolve to (a VPC's private zone would answer these).
BEDROCK_SUBNET = 1  # 10.0.1.x
AZURE_PRIVATE_ADDRESS = "10.1.0.5"
#: The real-node part: names of the ModelDeployment, RoutePolicy and route the answer comes through.
MODEL, POLICY, ROUTE = "tiny", "tiny-gateway", "chat"
PROMPT = "Which network did this answer cross?"
FIRST_ANSWER_TIMEOUT_S = 120.0
#: engine: ollama on the real node (hack/demo.py ollama): the lifecycle's prototype gateway and route.
OLLAMA_MODEL, LIFECYCLE_POLICY = "tiny-ollama", "llm-gateway"
OLLAMA_PROMPT = "What runs this model?"
OLLAMA_DEMO_RESOURCES = {"cpu": "10m", "memory": "1536Mi"}
#: Context managers this process enters and never leaves (see serve).
_HELD: list[Any] = []


def binding(path: Path) -> ProviderBinding:
    return ProviderBinding.model_validate(yaml.safe_load(path.read_text()))


def subject(example: ProviderBinding) -> str:
    return f"system:serviceaccount:{EXAMPLES_NAMESPACE}:{example.spec.service_account_name}"


class Clouds:
    """The files a cloud process leaves in DIR/clouds: its address (``<cloud>.json``, written last, when it
    is seeded) and the private DNS answers (``hosts``, shared by both)."""

    def __init__(self, sandbox_dir: Path) -> None:
        self.dir = sandbox_dir.resolve() / "clouds"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hosts = self.dir / "hosts"

    def private(self, host: str, address: str) -> None:
        """``host`` resolves to ``address`` only (the tests' ``clouds(host, address)``)."""
        with self.hosts.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # both cloud processes append
            handle.write(f"{address} {host}\n")

    def publish(self, cloud: str, facts: dict[str, Any]) -> None:
        partial = self.dir / f".{cloud}.json"
        partial.write_text(json.dumps(facts, indent=2))
        partial.rename(self.dir / f"{cloud}.json")

    def read(self, cloud: str) -> dict[str, Any]:
        facts: dict[str, Any] = json.loads((self.dir / f"{cloud}.json").read_text())
        return facts


# --- the clouds --------------------------------------------------------------------------------------------
def trust_policy(role_account: str) -> str:
    """The IRSA trust policy: the sandbox's ServiceAccount issuer, the examples' gateway ServiceAccount as
    subject, STS as audience. (moto stores it but does not evaluate it: it accepts any web identity token.)"""
    issuer = ISSUER.removeprefix("https://")
    example = binding(BEDROCK_EXAMPLE)
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{role_account}:oidc-provider/{issuer}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{issuer}:sub": subject(example), f"{issuer}:aud": STS_AUDIENCE}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def serve_aws(clouds: Clouds) -> contextlib.AbstractContextManager[None]:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415
    from tests.conftest import REGION  # noqa: PLC0415
    from tests.controllers.test_provider_binding import ACCOUNT, aws, private_bedrock  # noqa: PLC0415

    example = binding(BEDROCK_EXAMPLE)
    bedrock = example.spec.bedrock
    assert bedrock is not None and bedrock.auth.role_arn is not None
    account, role_name = bedrock.auth.role_arn.split(":")[4], bedrock.auth.role_arn.rsplit("/", 1)[1]
    if bedrock.region != REGION or account != ACCOUNT:
        raise SystemExit(
            f"{BEDROCK_EXAMPLE.name}: region {bedrock.region}, account {account}; the seeding helpers "
            f"create endpoints in {REGION} of moto's account {ACCOUNT}"
        )
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # moto's request log, and its 500s for the
    # Bedrock calls it does not implement (ListFoundationModels: the binding notes its models unverified)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    iam = aws(url, "iam")
    iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=[STS_AUDIENCE], ThumbprintList=["0" * 40])
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=trust_policy(account))
    endpoint_id, dns = private_bedrock(url, clouds.private, subnet=BEDROCK_SUBNET)
    aws(url, "bedrock").put_model_invocation_logging_configuration(
        loggingConfig={"cloudWatchConfig": {"logGroupName": "bedrock", "roleArn": bedrock.auth.role_arn}}
    )
    clouds.publish("aws", {"url": url, "vpcEndpoint": {"id": endpoint_id, "dnsName": dns}})
    print(
        f"moto {url}: role {bedrock.auth.role_arn} trusting {subject(example)} from {ISSUER}, "
        f"{REGION} bedrock-runtime endpoint {endpoint_id} (private DNS), invocation logging to CloudWatch",
        flush=True,
    )
    return _stopping(server.stop)


def serve_azure(clouds: Clouds) -> contextlib.AbstractContextManager[None]:
    from tests.fakes.azure import AzureFake  # noqa: PLC0415

    example = binding(AZURE_EXAMPLE)
    azure = example.spec.azure_open_ai
    assert azure is not None and azure.auth.client_id is not None
    fake = AzureFake(clouds.dir)
    fake.state.federated[azure.auth.client_id] = subject(example)
    fake.add_private_account(azure.resource_id, f"{azure.endpoint}/", {d.name for d in azure.deployments})
    clouds.private(azure.endpoint.removeprefix("https://"), AZURE_PRIVATE_ADDRESS)
    clouds.publish("azure", {"url": fake.url, "caFile": str(fake.ca_file)})
    print(
        f"Azure fake {fake.url}: client {azure.auth.client_id} federated with {subject(example)}; account "
        f"{azure.resource_id.rsplit('/', 1)[1]} with public network access Disabled, local auth disabled, an "
        "Approved private endpoint connection",
        flush=True,
    )
    return _stopping(fake.stop)


@contextlib.contextmanager
def _stopping(stop: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        stop()


def run_cloud(cloud: str, sandbox_dir: Path) -> int:
    clouds = Clouds(sandbox_dir)
    stop = False

    def terminate(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    serving = serve_aws(clouds) if cloud == "aws" else serve_azure(clouds)
    with serving:
        while not stop:
            time.sleep(0.5)
    return 0


def operator_env(sandbox_dir: Path) -> dict[str, str]:
    """What the controller tests set for the operator (tests/controllers/conftest.py's ``clouds``)."""
    clouds = Clouds(sandbox_dir)
    aws, azure = clouds.read("aws"), clouds.read("azure")
    return {
        "AWS_ENDPOINT_URL": aws["url"],
        "AWS_ACCESS_KEY_ID": "testing",  # the operator's own identity, as moto wants one
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AZURE_AUTHORITY_HOST": azure["url"],
        "REQUESTS_CA_BUNDLE": azure["caFile"],  # azure-identity (requests)
        "SSL_CERT_FILE": azure["caFile"],  # httpx
        "MODELYARD_AZURE_RESOURCE_MANAGER_URL": azure["url"],
        "MODELYARD_HOSTS_FILE": str(clouds.hosts),
    }


# --- the real node --------------------------------------------------------------------------------------
def serve(namespace: str) -> int:
    """The test model server and a gateway in front of it, both on the real node; one answer through the
    gateway Service's ClusterIP with the master key from its Secret (never printed)."""
    import httpx  # noqa: PLC0415
    import openai  # noqa: PLC0415
    from kubernetes import client, config  # noqa: PLC0415
    from tests.realnode import serving  # noqa: PLC0415

    config.load_kube_config()
    k8s = client.ApiClient()
    core, custom = client.CoreV1Api(k8s), client.CustomObjectsApi(k8s)
    with contextlib.suppress(client.ApiException):  # exists already: a second `make demo`
        core.create_namespace({"metadata": {"name": namespace}})
    # The GPU stays advertised after the demo (real_gpu's exit would withdraw it): the context is held in
    # _HELD and this process ends with os._exit, so it is never left; `make sandbox-down` removes the node.
    _HELD.append(serving.real_gpu(k8s))
    product = _HELD[-1].__enter__()
    print(f"the real node advertises 1 x {product} (nvidia.com/gpu: 1, an extended resource; no driver)")
    started = time.monotonic()
    deployments = custom.list_namespaced_custom_object(
        serving.GROUP, serving.VERSION, namespace, "modeldeployments"
    )["items"]
    if any(d["metadata"]["name"] == MODEL for d in deployments):
        serving.fit_to_node(k8s, namespace, MODEL)
        pod = serving.ready_server_pod(k8s, namespace, MODEL)
    else:
        pod = serving.serve_on_real_node(k8s, namespace, MODEL, classification="confidential")
    print(
        f"ModelDeployment {namespace}/{MODEL}: pod {pod.metadata.name} Ready on node {pod.spec.node_name} "
        f"after {time.monotonic() - started:.0f}s (image {pod.spec.containers[0].image})"
    )
    route = {
        "model": ROUTE,
        "dataClassification": "confidential",
        "backends": [{"modelDeploymentRef": MODEL}],
    }
    policies = custom.list_namespaced_custom_object(
        serving.GROUP, serving.VERSION, namespace, "routepolicies"
    )
    if not any(p["metadata"]["name"] == POLICY for p in policies["items"]):
        serving.create(k8s, namespace, serving.route_policy(POLICY, [route]))
    started = time.monotonic()
    gateway = serving.ready_gateway_pod(k8s, namespace, POLICY)
    print(
        f"RoutePolicy {namespace}/{POLICY}: LiteLLM gateway pod {gateway.metadata.name} Ready on node "
        f"{gateway.spec.node_name} after {time.monotonic() - started:.0f}s"
    )
    node = core.read_node(gateway.spec.node_name)
    if (node.metadata.annotations or {}).get(KWOK_ANNOTATION[0]) == KWOK_ANNOTATION[1]:
        # no kubelet, no kube-proxy: the ClusterIP is served nowhere on this machine (the host would send
        # the request out of its default route)
        raise SystemExit(f"the gateway pod is on {node.metadata.name}, a kwok node: it does not really run")
    url, key = serving.gateway_url(k8s, namespace, POLICY), serving.master_key(k8s, namespace, POLICY)
    sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)
    deadline = time.monotonic() + FIRST_ANSWER_TIMEOUT_S
    while True:  # Ready means LiteLLM started; its first routed answer can lag it by a moment
        try:
            answer = sdk.chat.completions.create(model=ROUTE, messages=[{"role": "user", "content": PROMPT}])
            break
        except (openai.APIConnectionError, openai.InternalServerError, openai.NotFoundError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"no answer from the gateway at {url} after {FIRST_ANSWER_TIMEOUT_S:.0f}s: {exc}"
                ) from None
            time.sleep(1)
    body = {"model": ROUTE, "messages": [{"role": "user", "content": PROMPT}]}
    anonymous = httpx.post(f"{url}/chat/completions", json=body, timeout=30).status_code
    print(
        f"\nthe OpenAI SDK -> {url} (gateway Service, master key from Secret "
        f"{master_key_secret(POLICY)}, not shown), model {ROUTE!r}:"
    )
    print(f"  user:      {PROMPT}")
    print(f"  assistant: {answer.choices[0].message.content}")
    print(f"  (the same request without the master key: HTTP {anonymous})")
    return 0


def serve_ollama(namespace: str) -> int:
    """engine: ollama on the real node: the project's tiny GGUF on a claim, served by Ollama (the image make
    images built from Ollama's Go module), a RoutePolicy in front; one question answered through the gateway
    with its token counts, and how to point another client at it."""
    import openai  # noqa: PLC0415
    from kubernetes import client, config  # noqa: PLC0415
    from tests.realnode import ollama, serving  # noqa: PLC0415

    config.load_kube_config()
    k8s = client.ApiClient()
    core, custom = client.CoreV1Api(k8s), client.CustomObjectsApi(k8s)
    with contextlib.suppress(client.ApiException):  # exists already: a second `make demo`
        core.create_namespace({"metadata": {"name": namespace}})
    started = time.monotonic()
    deployments = custom.list_namespaced_custom_object(
        serving.GROUP, serving.VERSION, namespace, "modeldeployments"
    )["items"]
    if not any(d["metadata"]["name"] == OLLAMA_MODEL for d in deployments):
        body = ollama.tiny_ollama_model(OLLAMA_MODEL, ollama.gguf_claim(k8s, namespace))
        # what is left of the node's 2 CPUs and 24 GiB after the examples' gateways and the test model
        # server: the plan's need (1.01 GiB) fits 1536Mi; a CPU request of 10m still uses idle CPUs
        body["spec"]["resources"] = OLLAMA_DEMO_RESOURCES
        serving.create(k8s, namespace, body)
    pod = ollama.ready_ollama_pod(k8s, namespace, OLLAMA_MODEL)
    print(
        f"ModelDeployment {namespace}/{OLLAMA_MODEL} (engine ollama, CPU): pod {pod.metadata.name} Ready on "
        f"node {pod.spec.node_name} after {time.monotonic() - started:.0f}s: model {ollama.SERVED!r} created "
        f"from the tiny GGUF on its claim and loaded (image {pod.spec.containers[0].image})"
    )
    policies = custom.list_namespaced_custom_object(
        serving.GROUP, serving.VERSION, namespace, "routepolicies"
    )
    if not any(p["metadata"]["name"] == LIFECYCLE_POLICY for p in policies["items"]):
        route = {
            "model": ROUTE,
            "dataClassification": "public",
            "backends": [{"modelDeploymentRef": OLLAMA_MODEL}],
        }
        serving.create(k8s, namespace, serving.route_policy(LIFECYCLE_POLICY, [route]))
    gateway = serving.ready_gateway_pod(k8s, namespace, LIFECYCLE_POLICY)
    url = serving.gateway_url(k8s, namespace, LIFECYCLE_POLICY)
    key = serving.master_key(k8s, namespace, LIFECYCLE_POLICY)
    sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
    deadline = time.monotonic() + FIRST_ANSWER_TIMEOUT_S
    while True:
        try:
            answer = sdk.chat.completions.create(
                model=ROUTE, messages=[{"role": "user", "content": OLLAMA_PROMPT}], max_tokens=16
            )
            break
        except openai.APIError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"no answer from the gateway at {url}: {exc}") from None
            time.sleep(1)
    usage = answer.usage
    print(
        f"\nthe OpenAI SDK -> {url} (RoutePolicy {namespace}/{LIFECYCLE_POLICY}, gateway pod "
        f"{gateway.metadata.name}), model {ROUTE!r}, answered by Ollama from the tiny random-weight model:"
    )
    print(f"  user:      {OLLAMA_PROMPT}")
    print(f"  assistant: {answer.choices[0].message.content!r}")
    if usage is not None:
        print(
            f"  tokens:    {usage.prompt_tokens} prompt + {usage.completion_tokens} completion = "
            f"{usage.total_tokens} (counted by Ollama's tokenizer)"
        )
    secret = master_key_secret(LIFECYCLE_POLICY)
    service = gateway_name(LIFECYCLE_POLICY)
    print(
        "\npoint your own client at it (the OpenAI SDK, LangChain and LangGraph read these two variables):\n"
        f"  export KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')}\n"
        f"  export OPENAI_BASE_URL=http://$(kubectl -n {namespace} get svc {service} "
        "-o jsonpath='{.spec.clusterIP}'):4000/v1\n"
        f"  export OPENAI_API_KEY=$(kubectl -n {namespace} get secret {secret} "
        "-o jsonpath='{.data.masterKey}' | base64 -d)\n"
        f'  python -c \'import openai; print(openai.OpenAI().chat.completions.create(model="{ROUTE}", '
        'messages=[{"role": "user", "content": "hi"}], max_tokens=8))\'\n'
        "(the gateway's ClusterIP answers on this machine, which is the real node; on a cluster, "
        f"kubectl -n {namespace} port-forward svc/{service} 4000:4000 and OPENAI_BASE_URL=http://127.0.0.1:4000/v1)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cloud = commands.add_parser("cloud")
    cloud.add_argument("cloud", choices=("aws", "azure"))
    cloud.add_argument("dir", type=Path)
    for name in ("env", "vpc-endpoint"):
        commands.add_parser(name).add_argument("dir", type=Path)
    commands.add_parser("serve").add_argument("namespace")
    commands.add_parser("ollama").add_argument("namespace")
    args = parser.parse_args()
    if args.command == "cloud":
        return run_cloud(args.cloud, args.dir)
    if args.command == "env":
        print("\n".join(f"{k}={v}" for k, v in operator_env(args.dir).items()))
        return 0
    if args.command == "vpc-endpoint":
        endpoint = Clouds(args.dir).read("aws")["vpcEndpoint"]
        print(endpoint["id"], endpoint["dnsName"])
        return 0
    code = 1
    try:
        code = serve_ollama(args.namespace) if args.command == "ollama" else serve(args.namespace)
    except BaseException as exc:  # serving.py's waits end with pytest.fail (a BaseException)
        print(f"demo: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # leave real_gpu's context unexited: the node keeps its GPU (see serve)


if __name__ == "__main__":
    sys.exit(main())
