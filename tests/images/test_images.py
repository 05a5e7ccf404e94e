"""The images `make images` built, run as the real node would run them (runc, one network namespace with
only loopback, the security context of the manifests modelyard and its chart render), with no node.

Each test fails if the entrypoint did not really run: exit codes, output and answers over a real socket.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import yaml
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

from modelyard.api import ModelDeployment, RoutePolicy
from modelyard.planning.spec import plan_deployment
from modelyard.render.gateway import (
    LITELLM_IMAGE,
    MASTER_KEY_SECRET_KEY,
    master_key_secret,
    render_gateway,
)
from modelyard.render.identity import IdentityWiring
from modelyard.render.model_deployment import (
    AWS_CLI_IMAGE,
    COMPLETE_MARKER,
    DOWNLOADER,
    RUN_AS_USER,
    Images,
    render_model_deployment,
)
from modelyard.render.targets import ResolvedBackend, ResolvedRoute
from modelyard.render.web_identity import STS_AUDIENCE
from modelyard_sandbox.images import (
    AWS_CLI,
    COREDNS,
    GATEWAY,
    OPERATOR,
    PAUSE,
    TEST_MODEL_SERVER,
    BuiltImage,
)
from tests.realnode.serving import ARCHITECTURE as TINY_ARCHITECTURE  # Qwen2.5-0.5B, not in the catalog

from .runtime import Container, Netns, image_config, running, wait_until

pytestmark = pytest.mark.images

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "team"
SERVED = "echo-model"


def send(
    netns: Netns, port: int, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:port inside ``netns``: (status, body)."""

    def call() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(
                method, path, body=payload, headers={"Content-Type": "application/json", **headers}
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    return netns.call(call)


def answers(netns: Netns, port: int, path: str) -> bool:
    try:
        return send(netns, port, "GET", path)[0] == 200
    except OSError:
        return False


def sse_content(raw: bytes) -> str:
    """The assistant text of a streamed chat completion; asserts it ended with [DONE]."""
    events = [line[len(b"data: ") :] for line in raw.splitlines() if line.startswith(b"data: ")]
    assert events and events[-1] == b"[DONE]", raw[-500:]
    chunks = [json.loads(event) for event in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_each_archive_names_its_reference(images: dict[str, BuiltImage]) -> None:
    """`ctr images import` names an image after its archive's RepoTags: the reference the cluster asks for."""
    for image in images.values():
        with tarfile.open(image.archive) as tar:
            handle = tar.extractfile("manifest.json")
            assert handle is not None
            (manifest,) = json.load(handle)
        assert manifest["RepoTags"] == [image.reference], image


# --- pause -------------------------------------------------------------------------------------------


def test_pause_holds_the_pod_and_exits_0_on_sigterm(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    pause = images[PAUSE]
    assert pause.reference.startswith("registry.k8s.io/pause:")
    with running(Container(pause, read_only_root=True), netns, tmp_path) as container:
        wait_until(lambda: "pause" in _processes_in(netns), "pause running", container, timeout_s=10)
        assert container.alive()
        assert container.stop("TERM") == 0, container.output()
    assert "shutting down" in container.output()


ORPHAN_C = r"""
#include <unistd.h>
#include <stdio.h>
/* Leaves a child behind: it outlives its parent, is re-parented to PID 1 (pause), and exits 1 s later. */
int main(void) {
    pid_t child = fork();
    if (child == 0) { close(0); close(1); close(2); sleep(1); return 0; }  /* runc exec waits for stdio */
    printf("%d\n", (int)child);
    return 0;
}
"""


def test_pause_reaps_the_orphans_it_inherits(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    orphan = tmp_path / "orphan"
    (tmp_path / "orphan.c").write_text(ORPHAN_C)
    subprocess.run(["gcc", "-static", "-o", str(orphan), str(tmp_path / "orphan.c")], check=True)
    container = Container(images[PAUSE], read_only_root=True, binds={"/orphan": orphan})
    with running(container, netns, tmp_path) as handle:
        wait_until(lambda: "pause" in _processes_in(netns), "pause running", handle, timeout_s=10)
        pause_pid = handle.pid()
        result = handle.exec("/orphan")
        assert result.returncode == 0, result.stderr
        # The child, now the pause process's: alive (sleeping) at first, then gone, not a zombie.
        assert _children(pause_pid), "the orphan was not re-parented to the pause process"
        wait_until(lambda: not _children(pause_pid), "the orphan reaped", handle, timeout_s=10)
        assert handle.alive()


def _children(pid: int) -> list[str]:
    """States (R, S, Z, ...) of the processes whose parent is ``pid``."""
    states = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if int(fields["PPid"]) == pid:
                states.append(fields["State"].split()[0])
    return states


def _processes_in(netns: Netns) -> str:
    """Command names of the processes in ``netns`` (the container's PID 1 among them)."""
    pids = subprocess.run(["ip", "netns", "pids", netns.name], capture_output=True, text=True, check=True)
    names = []
    for pid in pids.stdout.split():
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return " ".join(names)


# --- CoreDNS -----------------------------------------------------------------------------------------

COREFILE = """.:53 {
    errors
    hosts {
        10.96.7.7 probe.modelyard.test
    }
    health :8080
}
"""


def _coredns(image: BuiltImage, capabilities: tuple[str, ...]) -> Container:
    # As kubeadm's CoreDNS Deployment: the image's non-root user, drop ALL, add NET_BIND_SERVICE.
    return Container(
        image,
        args=["-conf", "/etc/coredns/Corefile"],
        capabilities=capabilities,
        read_only_root=True,
        files={"/etc/coredns/Corefile": COREFILE.encode()},
    )


def dns_a(netns: Netns, name: str) -> list[str]:
    """A records for ``name`` from 127.0.0.1:53 over UDP inside ``netns`` (a hand-built query)."""
    query = struct.pack(">HHHHHH", 0x4D59, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)

    def ask() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query, ("127.0.0.1", 53))
            return sock.recv(512)

    reply = netns.call(ask)
    assert reply[:2] == query[:2] and reply[3] & 0x0F == 0, reply  # our id, rcode NOERROR
    answers_count = struct.unpack(">H", reply[6:8])[0]
    # Answers follow the echoed question: a name (labels, or a 2-byte pointer), type, class, ttl, rdlength.
    offset, found = len(query), []
    for _ in range(answers_count):
        offset = _skip_name(reply, offset)
        rtype, _class, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        if rtype == 1:
            found.append(socket.inet_ntoa(reply[offset + 10 : offset + 10 + length]))
        offset += 10 + length
    return found


def _skip_name(message: bytes, offset: int) -> int:
    while message[offset] != 0:
        if message[offset] & 0xC0 == 0xC0:  # compression pointer: the name ends here
            return offset + 2
        offset += 1 + message[offset]
    return offset + 1


def test_coredns_answers_on_port_53_as_non_root(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    """Capabilities are set as containerd sets them (no ambient set), so binding :53 as user 65532 works only
    through the binary's file capability: an image without it fails here with "bind: permission denied"."""
    coredns = images[COREDNS]
    user = image_config(coredns.archive).get("User", "")
    assert user and not user.startswith("0"), f"the CoreDNS image runs as {user!r}"
    with running(_coredns(coredns, ("CAP_NET_BIND_SERVICE",)), netns, tmp_path) as container:
        wait_until(lambda: answers(netns, 8080, "/health"), "CoreDNS healthy", container, timeout_s=30)
        assert dns_a(netns, "probe.modelyard.test") == ["10.96.7.7"]


def test_coredns_needs_net_bind_service(images: dict[str, BuiltImage], netns: Netns, tmp_path: Path) -> None:
    """Its binary carries cap_net_bind_service=+ep: with every capability dropped the kernel refuses to start
    it (so the Deployment must add NET_BIND_SERVICE, as kubeadm's does)."""
    with running(_coredns(images[COREDNS], ()), netns, tmp_path) as container:
        code = container.wait(30)
    assert code != 0
    assert "operation not permitted" in container.output().lower(), container.output()


# --- operator ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_pod() -> dict[str, Any]:
    """The operator pod as `helm template charts/modelyard` renders it with default values."""
    helm = shutil.which("helm")
    assert helm, "helm is installed by `make tools`"
    rendered = subprocess.run(
        [helm, "template", "modelyard", str(ROOT / "charts" / "modelyard")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "run the operator against the current cluster"),
        (["render", "-f", "/examples/vllm-llama-8b.yaml"], "kind: Deployment"),
        (["plan", "-f", "/examples/vllm-llama-8b.yaml"], "tensor"),
    ],
    ids=["help", "render", "plan"],
)
def test_operator_runs_under_the_chart_security_context(
    images: dict[str, BuiltImage],
    chart_pod: dict[str, Any],
    netns: Netns,
    tmp_path: Path,
    args: list[str],
    expected: str,
) -> None:
    (manifest,) = chart_pod["containers"]
    assert manifest["image"] == images[OPERATOR].reference  # the chart names the image `make images` built
    container = Container.from_manifest(
        images[OPERATOR], {**manifest, "args": args}, chart_pod, fields={"metadata.name": "modelyard-0"}
    )
    assert container.read_only_root and container.user == (10001, 10001) and not container.capabilities
    container.files = {
        "/examples/vllm-llama-8b.yaml": (ROOT / "examples" / "vllm-llama-8b.yaml").read_bytes()
    }
    with running(container, netns, tmp_path) as handle:
        code = handle.wait(60)
    assert code == 0, handle.output()
    assert expected in handle.output()


def test_operator_image_has_the_sdks_it_loads_lazily(
    images: dict[str, BuiltImage], chart_pod: dict[str, Any], netns: Netns, tmp_path: Path
) -> None:
    """...and nothing of the development tooling: no sandbox, no official kubernetes client (the tests')."""
    (manifest,) = chart_pod["containers"]
    absent = (
        "import importlib.util as u; "
        "print('absent', [m for m in ('kubernetes', 'modelyard_sandbox') if u.find_spec(m)])"
    )
    command = ["python", "-c", f"import kopf, boto3, azure.identity, httpx; print('imported'); {absent}"]
    container = Container.from_manifest(
        images[OPERATOR], {**manifest, "command": command}, chart_pod, fields={"metadata.name": "modelyard-0"}
    )
    with running(container, netns, tmp_path) as handle:
        assert handle.wait(60) == 0, handle.output()
    assert "imported" in handle.output()
    assert "absent []" in handle.output()


# --- the test model server and the gateway, as modelyard renders them ----------------------------------


def echo_model() -> ModelDeployment:
    spec = {
        # A catalog model, so the planner knows its shape; the test model server loads no weights.
        "model": {"name": SERVED, "source": "hf://Qwen/Qwen2.5-7B-Instruct", "revision": "a09a354"},
        "gpu": {"type": "nvidia-l4"},
    }
    return ModelDeployment.model_validate(
        {"metadata": {"name": "echo", "namespace": NAMESPACE}, "spec": spec}
    )


def echo_policy() -> RoutePolicy:
    spec = {"routes": [{"model": "chat", "backends": [{"modelDeploymentRef": "echo"}]}]}
    return RoutePolicy.model_validate({"metadata": {"name": "llm", "namespace": NAMESPACE}, "spec": spec})


@pytest.fixture(scope="module")
def serving(
    images: dict[str, BuiltImage], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The echo ModelDeployment's server and the llm RoutePolicy's gateway, both as rendered, in one network
    namespace; the gateway reaches the server by its Service name through /etc/hosts (kubelet manages that
    file in every container too)."""
    scratch = tmp_path_factory.mktemp("serving")
    md = echo_model()
    children = render_model_deployment(md, plan_deployment(md.spec))
    (deployment,) = [c for c in children.all() if c["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (server_manifest,) = pod["containers"]
    pod = {**pod, "volumes": [_as_empty_dir(v) for v in pod["volumes"]]}
    server = Container.from_manifest(images[TEST_MODEL_SERVER], server_manifest, pod)
    server.read_only_root = True  # vLLM's pods have a writable root; the test model server needs none

    policy = echo_policy()
    (route,) = policy.spec.routes
    resolved = [
        ResolvedRoute(route, (ResolvedBackend.from_model_deployment(route.backends[0], md, NAMESPACE),))
    ]
    objects = {o["kind"]: o for o in render_gateway(policy, resolved, IdentityWiring(), namespace=NAMESPACE)}
    gateway_pod = objects["Deployment"]["spec"]["template"]["spec"]
    (gateway_manifest,) = gateway_pod["containers"]
    assert gateway_manifest["image"] == LITELLM_IMAGE == images[GATEWAY].reference
    master_key = f"sk-{secrets.token_hex(16)}"
    config_map = objects["ConfigMap"]
    gateway = Container.from_manifest(
        images[GATEWAY],
        gateway_manifest,
        gateway_pod,
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
        secrets={master_key_secret(policy.metadata.name): {MASTER_KEY_SECRET_KEY: master_key}},
    )
    assert gateway.read_only_root and gateway.user == (65534, 65534)
    gateway.files = {**gateway.files, "/etc/hosts": f"127.0.0.1 localhost echo.{NAMESPACE}.svc\n".encode()}
    namespace = Netns()
    try:
        with (
            running(server, namespace, scratch) as server_handle,
            running(gateway, namespace, scratch) as handle,
        ):
            yield {
                "netns": namespace,
                "server": server_handle,
                "server_manifest": server_manifest,
                "gateway": handle,
                "gateway_manifest": gateway_manifest,
                "master_key": master_key,
            }
    finally:
        namespace.close()


def _as_empty_dir(volume: dict[str, Any]) -> dict[str, Any]:
    """The weights claim (unused by the test model server) and /dev/shm as emptyDirs."""
    return volume if "emptyDir" in volume else {"name": volume["name"], "emptyDir": {}}


def _probe_port(manifest: dict[str, Any], probe: str) -> tuple[int, str]:
    get = manifest[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in manifest["ports"] if p["name"] == port)
    return int(port), get["path"]


def test_model_server_runs_the_rendered_vllm_command(serving: dict[str, Any]) -> None:
    netns, handle, manifest = serving["netns"], serving["server"], serving["server_manifest"]
    assert manifest["command"] == ["vllm", "serve"]
    port, path = _probe_port(manifest, "readinessProbe")
    wait_until(lambda: answers(netns, port, path), "model server ready", handle, timeout_s=30)
    status, body = send(netns, port, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == [SERVED]
    request = {"model": SERVED, "messages": [{"role": "user", "content": "hello from the test"}]}
    status, body = send(netns, port, "POST", "/v1/chat/completions", request)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == f"{SERVED} echoes: hello from the test"
    status, body = send(netns, port, "POST", "/v1/chat/completions", {**request, "stream": True})
    assert status == 200 and sse_content(body) == f"{SERVED} echoes: hello from the test"
    idle = f'vllm:num_requests_running{{model_name="{SERVED}"}} 0'

    def metrics_idle() -> bool:
        # the server counts a streamed request done just after its last chunk is on the wire
        status, body = send(netns, port, "GET", "/metrics")
        return status == 200 and idle in body.decode()

    wait_until(metrics_idle, "/metrics showing no request running", handle, timeout_s=10)


def test_gateway_starts_offline_with_the_rendered_config(serving: dict[str, Any]) -> None:
    netns, handle, manifest = serving["netns"], serving["gateway"], serving["gateway_manifest"]
    port, path = _probe_port(manifest, "startupProbe")
    wait_until(lambda: answers(netns, port, path), "gateway started", handle, timeout_s=180)
    live_port, live_path = _probe_port(manifest, "livenessProbe")
    assert send(netns, live_port, "GET", live_path)[0] == 200
    assert send(netns, port, "GET", "/health/liveliness")[0] == 200


def test_gateway_answers_through_the_model_server(serving: dict[str, Any]) -> None:
    netns, handle, manifest = serving["netns"], serving["gateway"], serving["gateway_manifest"]
    port, path = _probe_port(manifest, "startupProbe")
    wait_until(lambda: answers(netns, port, path), "gateway started", handle, timeout_s=180)
    auth = {"Authorization": f"Bearer {serving['master_key']}"}
    request = {"model": "chat", "messages": [{"role": "user", "content": "through the gateway"}]}
    status, body = send(netns, port, "POST", "/v1/chat/completions", request, **auth)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == f"{SERVED} echoes: through the gateway"
    status, body = send(netns, port, "POST", "/v1/chat/completions", {**request, "stream": True}, **auth)
    assert status == 200 and sse_content(body) == f"{SERVED} echoes: through the gateway"
    served_before = _served_requests(serving)
    status, body = send(netns, port, "POST", "/v1/chat/completions", request)
    assert status == 401, body
    # A key that is not the master key is looked up as a virtual key, which needs LiteLLM's database: 400.
    wrong = {"Authorization": "Bearer sk-not-the-master-key"}
    status, body = send(netns, port, "POST", "/v1/chat/completions", request, **wrong)
    assert status in (400, 401), body
    assert _served_requests(serving) == served_before  # neither reached the model server


def _served_requests(serving: dict[str, Any]) -> int:
    port, _ = _probe_port(serving["server_manifest"], "readinessProbe")
    status, body = send(serving["netns"], port, "GET", "/metrics")
    assert status == 200
    (line,) = [line for line in body.decode().splitlines() if line.startswith("vllm:request_success_total")]
    return int(line.rsplit(" ", 1)[1])


# --- the s3:// download (aws-cli) --------------------------------------------------------------------

WEIGHTS = {
    "config.json": json.dumps({"architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 24}).encode(),
    "model.safetensors": secrets.token_bytes(256 * 1024),
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
}


def test_aws_cli_downloads_as_rendered_with_the_web_identity_token(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    """The s3:// download Job's container as modelyard renders it (its command, env, user 1000, read-only
    root, no capabilities) from the aws-cli image, against moto's server in the same network namespace: the
    CLI reads the projected token file, exchanges it at moto's STS for the role (AssumeRoleWithWebIdentity),
    syncs the prefix and writes the completion marker. moto's STS checks no signature, so the token here is a
    well-formed JWT with a throwaway key; the real-node test presents a real ServiceAccount token."""
    image = images[AWS_CLI]
    assert image.reference.startswith("localhost/modelyard/aws-cli:")
    assert AWS_CLI_IMAGE.startswith("amazon/aws-cli:")  # modelyard's default; this image stands in for it
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    netns.call(server.start)  # the server's socket lives in the namespace, reachable only from there
    try:
        _, port = server.get_host_and_port()
        endpoint = f"http://127.0.0.1:{port}"
        bucket = f"weights-{secrets.token_hex(4)}"
        role = f"arn:aws:iam::123456789012:role/dl-{secrets.token_hex(4)}"
        netns.call(lambda: _seed_bucket(endpoint, bucket, "tiny/"))
        md = ModelDeployment.model_validate(
            {
                "metadata": {"name": "tiny", "namespace": NAMESPACE},
                "spec": {
                    "model": {
                        "name": "tiny",
                        "source": f"s3://{bucket}/tiny/",
                        "architecture": TINY_ARCHITECTURE,
                        "roleArn": role,
                        "endpointURL": endpoint,
                        "region": "eu-central-1",
                    },
                    "gpu": {"type": "nvidia-l4", "count": 1},
                },
            }
        )
        children = render_model_deployment(md, plan_deployment(md.spec), Images(aws_cli=image.reference))
        (job,) = [c for c in children.cache if c["kind"] == "Job"]
        pod = job["spec"]["template"]["spec"]
        (manifest,) = pod["containers"]
        assert manifest["image"] == image.reference
        weights, token = tmp_path / "claim", tmp_path / "token"
        weights.mkdir()
        token.mkdir()
        os.chown(weights, RUN_AS_USER, RUN_AS_USER)  # a provisioner's volume honours the pod's fsGroup
        claims = {
            "iss": "https://kubernetes.default.svc",
            "sub": f"system:serviceaccount:{NAMESPACE}:tiny",
            "aud": [STS_AUDIENCE],
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
        }
        (token / "token").write_text(jwt.encode(claims, secrets.token_hex(32), algorithm="HS256"))
        container = Container.from_manifest(
            image, manifest, pod, host_dirs={"weights": weights, "aws-iam-token": token}
        )
        assert container.read_only_root and container.user == (RUN_AS_USER, RUN_AS_USER)
        assert not container.capabilities
        assert not any(name.startswith("AWS_ACCESS_KEY") for name in container.env)  # the token is all it has
        with running(container, netns, tmp_path / "run") as handle:
            code = handle.wait(120)
        assert code == 0, handle.output()
        assert f"downloaded s3://{bucket}/tiny/ to /models/s3/{bucket}/tiny" in handle.output()
    finally:
        server.stop()

    target = weights / "s3" / bucket / "tiny"
    files = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert files == {*WEIGHTS, COMPLETE_MARKER}
    for name, data in WEIGHTS.items():
        assert (target / name).read_bytes() == data
    assert (target / "config.json").stat().st_uid == RUN_AS_USER
    # moto's STS issued credentials for the role: the CLI got them only by presenting the token file
    sessions = [r for r in sts_backends["123456789012"]["aws"].assumed_roles if r.role_arn == role]
    assert len(sessions) == 1, "the CLI never called AssumeRoleWithWebIdentity"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == DOWNLOADER


def _seed_bucket(endpoint: str, bucket: str, prefix: str) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-central-1",
        aws_access_key_id="seed",
        aws_secret_access_key="seed",
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    for name, data in WEIGHTS.items():
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=data)


def test_aws_cli_image_has_the_tools_the_download_script_uses(
    images: dict[str, BuiltImage], netns: Netns, tmp_path: Path
) -> None:
    """/bin/sh, curl and sha256sum (tokenizer encodings of gpt-oss), as uid 1000 under a read-only root."""
    script = "curl --version | head -n 1 && printf abc | sha256sum && aws --version"
    container = Container(
        images[AWS_CLI],
        command=["/bin/sh", "-c", script],
        user=(RUN_AS_USER, RUN_AS_USER),
        read_only_root=True,
        tmpfs=["/tmp"],
    )
    with running(container, netns, tmp_path) as handle:
        code = handle.wait(60)
    output = handle.output()
    assert code == 0, output
    assert output.startswith("curl ")
    assert "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" in output  # sha256("abc")
    assert "aws-cli/1." in output
