"""Shared pytest fixtures.

Sandbox parts: one real control plane per test session (``sandbox``), an API client for it (``k8s``),
a fresh namespace per test (``namespace``) and, when a test that used the sandbox fails, a copy of the
control plane's logs under the test's tmp dir. ``--real-cluster`` uses the cluster named by KUBECONFIG
instead and starts nothing.

The ``sandbox`` has simulated nodes only (kwok): controller tests stay fast. Tests that need pods to really
run use ``real_sandbox`` (a second control plane with 2 kwok GPU nodes and the real node: kubelet,
containerd, kube-proxy, kube-router, CoreDNS), with ``real_k8s`` and ``real_namespace``; they live under
tests/realnode/ and are marked ``realnode``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from moto.server import ThreadedMotoServer

from modelyard_sandbox import Ports, Sandbox

NAMESPACE_READY_TIMEOUT_S = 30.0
#: The AWS region of the tests' clouds (moto's server and the fakes).
REGION = "eu-central-1"


@dataclass(frozen=True)
class Cluster:
    """The cluster the sandbox tests run against."""

    kubeconfig: Path
    api_url: str
    logs: Path | None  #: control-plane logs (None on a real cluster)


def pytest_configure(config: pytest.Config) -> None:
    """Put the virtualenv's bin directory (where ``make tools`` links kubectl and helm) first on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", "")])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-cluster",
        action="store_true",
        help="run sandbox tests against the cluster named by KUBECONFIG instead of starting a sandbox",
    )


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One control plane for the whole run (free ports, tmp dir), torn down at the end."""
    if request.config.getoption("--real-cluster"):
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        api = config.new_client_from_config(config_file=str(kubeconfig))
        yield Cluster(kubeconfig, api.configuration.host, None)
        return
    base = tmp_path_factory.mktemp("sandbox")
    _stop_orphaned_sandboxes(base.parent.parent)
    (base / "owner.pid").write_text(str(os.getpid()))
    env = Sandbox(base / "cluster", ports=Ports.free())
    try:
        # the LeaderWorkerSet controller and its webhooks: about 9 s and 51 MiB more (sandbox/lws.py)
        env.up(gpu_nodes=2, gpus_per_node=8, cpu_nodes=1, lws=True)
        yield Cluster(env.kubeconfig, env.api_url, env.directory / "logs")
    finally:
        env.down()


def _stop_orphaned_sandboxes(root: Path) -> None:
    """Stop sandboxes left running by earlier pytest runs that were killed before their teardown."""
    owners = {
        owner.resolve()  # pytest's *current symlinks name the same directories again
        for pattern in ("pytest-*/sandbox*/owner.pid", "pytest-*/real-sandbox*/owner.pid")
        for owner in root.glob(pattern)
    }
    for owner in sorted(owners):
        if not _pid_alive(int(owner.read_text() or 0)):
            Sandbox(owner.parent / "cluster").down()


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as dead)."""
    try:
        return pid > 0 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class RealSandbox(Cluster):
    """The sandbox with the real node, and the Sandbox object (tests of its lifecycle restart it)."""

    env: Sandbox | None = None  #: None on a real cluster


REAL_NODE_GPU_NODES = 2


@pytest.fixture(scope="session")
def real_sandbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealSandbox]:
    """A control plane with 2 kwok GPU nodes and the machine's real node, for the whole run."""
    if request.config.getoption("--real-cluster"):
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        api = config.new_client_from_config(config_file=str(kubeconfig))
        yield RealSandbox(kubeconfig, api.configuration.host, None)
        return
    base = tmp_path_factory.mktemp("real-sandbox")
    _stop_orphaned_sandboxes(base.parent.parent)  # a killed run's real node would refuse this one
    (base / "owner.pid").write_text(str(os.getpid()))
    env = Sandbox(base / "cluster", ports=Ports.free())
    try:
        start_real_sandbox(env)
        yield RealSandbox(env.kubeconfig, env.api_url, env.directory / "logs", env)
    finally:
        env.down()


def start_real_sandbox(env: Sandbox) -> None:
    """``env.up`` as the real_sandbox fixture starts it (also how lifecycle tests restart it)."""
    env.up(gpu_nodes=REAL_NODE_GPU_NODES, gpus_per_node=8, cpu_nodes=0, volumes=10, real_node=True)


@pytest.fixture(scope="session")
def real_k8s(real_sandbox: RealSandbox) -> client.ApiClient:
    """A ``kubernetes`` API client with the admin credentials of the real-node sandbox."""
    return config.new_client_from_config(config_file=str(real_sandbox.kubeconfig))


@pytest.fixture
def real_namespace(
    request: pytest.FixtureRequest, real_k8s: client.ApiClient, tmp_path: Path
) -> Iterator[str]:
    """A fresh namespace in the real-node sandbox, deleted after the test."""
    yield from _fresh_namespace(request, real_k8s)


@pytest.fixture(scope="session")
def k8s(sandbox: Cluster) -> client.ApiClient:
    """A ``kubernetes`` API client with the admin credentials."""
    return config.new_client_from_config(config_file=str(sandbox.kubeconfig))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s: client.ApiClient, tmp_path: Path) -> Iterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount), deleted after the test."""
    yield from _fresh_namespace(request, k8s)


def _fresh_namespace(request: pytest.FixtureRequest, k8s: client.ApiClient) -> Iterator[str]:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{stem}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _wait_for(
        lambda: _has_default_sa(core, name), NAMESPACE_READY_TIMEOUT_S, f"ServiceAccount default in {name}"
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """``wait_for(check, timeout_s, what)``: poll until ``check()`` is truthy and return it, or fail."""
    return _wait_for


def _wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test that used the sandbox fails, keep the control-plane logs and say where."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    cluster = funcargs.get("sandbox") or funcargs.get("real_sandbox")
    if report.failed and report.when == "call" and isinstance(cluster, Cluster) and cluster.logs:
        tmp = getattr(item, "funcargs", {}).get("tmp_path") or Path(tempfile.mkdtemp(prefix="modelyard-"))
        dest = Path(tmp) / "control-plane-logs"
        shutil.copytree(cluster.logs, dest, dirs_exist_ok=True)
        report.sections.append(("control-plane logs", f"copied to {dest}"))
    return report


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto in server mode on a free loopback port, with the gateway role: one per session, shared by the
    controller and gateway tests (moto keeps its accounts in the process: a second server shares them)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    iam = boto3.client(
        "iam", endpoint_url=url, region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s"
    )
    iam.create_role(RoleName="llm-gateway", AssumeRolePolicyDocument="{}")
    yield url
    server.stop()
