"""A real Kubernetes control plane on loopback with simulated GPU nodes.

``Sandbox.up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as detached
processes (they outlive the CLI call), writes an admin kubeconfig to ``<dir>/kubeconfig`` and creates
nodes that kwok keeps Ready. ``down`` stops exactly the processes recorded under ``<dir>/pids`` and
removes the directory. ``<dir>/sandbox.json`` remembers the ports and binaries between CLI calls.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import NotRequired, TypedDict

import httpx

from modelyard.errors import UserError
from modelyard.render.model_deployment import PERMANENT_FAILURE
from modelyard_sandbox import hostnet, nodes, process, storage
from modelyard_sandbox import lws as lws_controller
from modelyard_sandbox.binaries import find_bin_dir, find_stages
from modelyard_sandbox.components import AUDIT_POLICY, COMMANDS, FAILING_DOWNLOAD_STAGE, SERVICE_IP, Layout
from modelyard_sandbox.kube import api_client, is_ready, wait_until, write_kubeconfig
from modelyard_sandbox.nodeconfig import NODE_IP
from modelyard_sandbox.pki import CLIENTS, Pki
from modelyard_sandbox.realnode import NODE_PROCESSES, RealNode, find_node_bin_dir

STATE_FILE = "sandbox.json"
ETCD_TIMEOUT_S = 30.0
API_TIMEOUT_S = 120.0


class _State(TypedDict):
    """The contents of ``<dir>/sandbox.json``."""

    ports: dict[str, int]
    bin_dir: str
    api_url: str
    node_bin_dir: NotRequired[str]  #: set when the sandbox runs a real node


@dataclass(frozen=True, slots=True)
class Ports:
    """Loopback ports the sandbox listens on (the controller manager, scheduler and kwok need none)."""

    apiserver: int = 36443
    etcd_client: int = 32379
    etcd_peer: int = 32380

    @classmethod
    def free(cls) -> Ports:
        """Ports the kernel reports free right now (for tests running next to other sandboxes)."""
        sockets = [socket.socket() for _ in range(3)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            api, client, peer = (s.getsockname()[1] for s in sockets)
        finally:
            for s in sockets:
                s.close()
        return cls(apiserver=api, etcd_client=client, etcd_peer=peer)

    def needed_by(self) -> dict[int, str]:
        return {self.apiserver: "kube-apiserver", self.etcd_client: "etcd", self.etcd_peer: "etcd"}


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One control-plane process."""

    name: str
    pid: int | None
    running: bool
    rss_kib: int


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """What runs in one sandbox directory."""

    directory: Path
    api_url: str
    components: list[ComponentStatus] = field(default_factory=list)
    nodes_total: int | None = None  #: None when the API server does not answer
    nodes_ready: int | None = None

    @property
    def rss_mib(self) -> float:
        """Total resident memory of the running components."""
        return sum(c.rss_kib for c in self.components if c.running) / 1024

    def render(self) -> str:
        """Human-readable lines for ``modelyard sandbox status``."""
        lines = [f"sandbox {self.directory}  API {self.api_url}  kubeconfig {self.directory / 'kubeconfig'}"]
        for c in self.components:
            state = "alive" if c.running else "dead"
            lines.append(f"  {c.name:<24} pid {c.pid or '-':<8} {state:<6} rss {c.rss_kib / 1024:7.1f} MiB")
        counts = (
            f"{self.nodes_ready}/{self.nodes_total} Ready" if self.nodes_total is not None else "API down"
        )
        lines.append(f"  nodes: {counts}   total RSS {self.rss_mib:.0f} MiB")
        return "\n".join(lines)


class Sandbox:
    """One control plane whose files (certificates, etcd data, logs, pids) live under ``directory``."""

    def __init__(
        self,
        directory: Path = Path(".sandbox"),
        ports: Ports | None = None,
        bin_dir: Path | None = None,
        node_bin_dir: Path | None = None,
    ) -> None:
        self.directory = directory.resolve()  # symlinks resolved: the real node's mounts name real paths
        state = self._load_state()
        self.ports = ports or (Ports(**state["ports"]) if state else Ports())
        self._bin_dir = bin_dir or (Path(state["bin_dir"]) if state else None)
        recorded = state.get("node_bin_dir") if state else None
        self._node_bin_dir = node_bin_dir or (Path(recorded) if recorded else None)
        self._real_node = recorded is not None
        #: what ``up`` cleaned up after a real node that was killed (None if there was nothing)
        self.recovered: hostnet.Leftovers | None = None
        #: seconds ``up`` took to start the LeaderWorkerSet controller and see its webhooks answer
        self.lws_start_seconds: float | None = None

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (cluster-admin through the ``system:masters`` group)."""
        return self.directory / "kubeconfig"

    @property
    def api_host(self) -> str:
        """Where the API server listens: loopback, or the real node's address (so pods reach it)."""
        return NODE_IP if self._real_node else "127.0.0.1"

    @property
    def api_url(self) -> str:
        return f"https://{self.api_host}:{self.ports.apiserver}"

    @property
    def real_node(self) -> RealNode | None:
        """The sandbox's real node, if it runs one."""
        if not self._real_node or self._node_bin_dir is None:
            return None
        return RealNode(self.directory, self._node_bin_dir)

    def up(
        self,
        gpu_nodes: int = 2,
        gpu_type: str = "nvidia-h100-80gb",
        gpus_per_node: int = 8,
        cpu_nodes: int | None = None,
        volumes: int = 50,
        *,
        real_node: bool = False,
        lws: bool = False,
    ) -> None:
        """Start the control plane, create the nodes and a pool of ``volumes`` PersistentVolumes; return
        once every node is Ready. With ``real_node``, a real kubelet node (realnode.py) joins the kwok nodes
        and the API server listens on its address instead of loopback. ``cpu_nodes`` (simulated, without
        GPUs) defaults to 1, or to 0 with the real node, where pods that need no GPU then run. With ``lws``,
        the LeaderWorkerSet controller (lws.py) runs next to the control plane, its webhooks registered."""
        gpu = nodes.gpu_type(gpu_type)
        if cpu_nodes is None:
            cpu_nodes = 0 if real_node else 1
        running = self.running_pid()
        if running is not None:
            raise UserError(
                f"sandbox already running in {self.directory} (pid {running}); "
                "run `modelyard sandbox down` first"
            )
        bin_dir = find_bin_dir(self._bin_dir)
        node: RealNode | None = None
        if real_node:
            node = RealNode(self.directory, find_node_bin_dir(self._node_bin_dir))
            self._node_bin_dir, self._real_node = node.bin_dir, True
            self.recovered = node.claim()  # before _prepare: a killed node's mounts go before its directory
        else:
            self._real_node = False
        try:
            layout = self._prepare(bin_dir)
            if node is not None:
                node.prepare(layout.pki, self.api_url, layout.kubeconfig)
            self._start_control_plane(layout)
            with self._client() as client:
                manifests = nodes.sandbox_nodes(gpu_nodes, gpu, gpus_per_node, cpu_nodes)
                nodes.create_nodes(client, list(manifests))
                storage.create_volumes(client, volumes)
                if node is not None:
                    node.start(client, layout.kubeconfig, partial(self._alive, layout))
                if lws:
                    self.lws_start_seconds = lws_controller.start(
                        self.directory, self.api_url, layout.pki, client
                    )
                total = gpu_nodes + cpu_nodes + (node is not None)
                self._wait(
                    layout,
                    lambda: nodes.count_ready(client)[1] >= total,
                    60 + total / 2,
                    f"{total} nodes to become Ready",
                )
        except (TimeoutError, httpx.HTTPError) as exc:
            self._stop_processes()
            raise UserError(f"sandbox failed to start: {exc}; logs in {self.directory / 'logs'}") from None
        except BaseException:  # UserError from a component that exited, Ctrl-C: leave nothing running
            self._stop_processes()
            raise

    def down(self) -> hostnet.Leftovers | None:
        """Stop every process this sandbox started (the real node's containers included, and whatever the
        node changed on the machine) and remove its directory. Returns what the real node left to clean."""
        leftovers = self._stop_processes()
        if self._is_sandbox_dir():
            _remove_directory(self.directory)
        return leftovers

    def status(self) -> SandboxStatus:
        """Each component's pid and liveness, and the node counts if the API server answers."""
        components = self._components()
        status = SandboxStatus(self.directory, self.api_url, components)
        if not any(c.running for c in components if c.name == "kube-apiserver"):
            return status
        try:
            with self._client() as client:
                total, ready = nodes.count_ready(client)
        except (httpx.HTTPError, OSError):
            return status
        return SandboxStatus(self.directory, self.api_url, components, total, ready)

    def running_pid(self) -> int | None:
        """The pid of the first component still running from this directory, if any."""
        return next((c.pid for c in self._components() if c.running), None)

    def _processes(self) -> dict[str, Path]:
        """Each host process of the sandbox and its binary, in start order."""
        bin_dir = self._bin_dir or Path()
        binaries = {name: bin_dir / name for name in COMMANDS}
        if (lws_binary := lws_controller.binary_path(self.directory)) is not None:
            binaries[lws_controller.PROCESS] = lws_binary
        node = self.real_node
        if node is not None:
            binaries |= {name: node.binary(name) for name in NODE_PROCESSES}
        return binaries

    def _components(self) -> list[ComponentStatus]:
        components = []
        for name, binary in self._processes().items():
            pid = process.read_pid(self.directory, name)
            alive = pid is not None and process.is_running(pid, binary)
            components.append(ComponentStatus(name, pid, alive, process.rss_kib(pid) if pid and alive else 0))
        return components

    def _prepare(self, bin_dir: Path) -> Layout:
        """Check ports, clear a stale directory, write certificates, kubeconfigs and the state file."""
        for port, owner in self.ports.needed_by().items():
            _check_port_free(port, owner, self.api_host if owner == "kube-apiserver" else "127.0.0.1")
        if self.directory.exists() and any(self.directory.iterdir()):
            if not self._is_sandbox_dir():
                raise UserError(f"{self.directory} exists and is not a sandbox; choose another --dir")
            _remove_directory(self.directory)
        layout = self._layout(bin_dir)
        self._bin_dir = bin_dir
        self.directory.mkdir(parents=True, exist_ok=True)
        state = _State(ports=asdict(self.ports), bin_dir=str(bin_dir), api_url=self.api_url)
        if self._real_node and self._node_bin_dir is not None:
            state["node_bin_dir"] = str(self._node_bin_dir)
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2))
        layout.pki.create(SERVICE_IP, extra_ips=(NODE_IP,) if self._real_node else ())
        layout.audit_policy.write_text(AUDIT_POLICY)
        layout.extra_stages.write_text(FAILING_DOWNLOAD_STAGE.replace("{exit_code}", str(PERMANENT_FAILURE)))
        layout.kubeconfig("kwok").parent.mkdir()
        for name in CLIENTS:
            write_kubeconfig(
                layout.kubeconfig(name), self.api_url, layout.pki.ca.cert, layout.pki.client(name), name
            )
        return layout

    def _layout(self, bin_dir: Path) -> Layout:
        return Layout(
            self.directory,
            bin_dir,
            find_stages(bin_dir),
            self.ports.apiserver,
            self.ports.etcd_client,
            self.ports.etcd_peer,
            api_host=self.api_host,
            real_node=self._real_node,
        )

    def restart(self, name: str, down_for: float = 0.0) -> None:
        """Stop one control-plane component (``etcd``, ``kube-apiserver``, ...) by its recorded pid, leave it
        down for ``down_for`` seconds and start it again with the same command line, waiting until it is
        healthy (for fault tests: what clients see while the API server or etcd is away)."""
        if name not in COMMANDS:
            raise UserError(f"no sandbox component {name!r} (components: {', '.join(COMMANDS)})")
        bin_dir = self._bin_dir or find_bin_dir(None)
        layout = self._layout(bin_dir)
        pid = process.read_pid(self.directory, name)
        if pid is None or not process.is_running(pid, layout.binary(name)):
            raise UserError(f"{name} is not running in {self.directory}")
        process.stop(pid, layout.binary(name))
        time.sleep(down_for)
        self._start(layout, name)

    def _start_control_plane(self, layout: Layout) -> None:
        """Start each component in order, waiting for etcd and the API server to be healthy."""
        for name in COMMANDS:
            self._start(layout, name)

    def _start(self, layout: Layout, name: str) -> None:
        """Start one component; for etcd and the API server, wait until they are healthy."""
        process.start(name, COMMANDS[name](layout), self.directory)
        if name == "etcd":
            self._wait(layout, _etcd_healthy(self.ports.etcd_client), ETCD_TIMEOUT_S, "etcd /health")
        elif name == "kube-apiserver":
            with self._client() as client:
                self._wait(layout, partial(is_ready, client), API_TIMEOUT_S, "kube-apiserver /readyz")

    def _wait(self, layout: Layout, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        wait_until(lambda: self._alive(layout) and check(), timeout_s, what)

    def _alive(self, layout: Layout) -> bool:
        """True while every started component runs; a UserError naming the first that exited otherwise."""
        del layout  # the binaries come from _processes (the real node's from its own directory)
        for name, binary in self._processes().items():
            pid = process.read_pid(self.directory, name)
            if pid is not None and not process.is_running(pid, binary):
                log = self.directory / "logs" / f"{name}.log"
                raise UserError(f"{name} exited during start-up: {_last_line(log)} (log: {log})")
        return True

    def _client(self) -> httpx.Client:
        pki = Pki(self.directory / "pki")
        return api_client(self.api_url, pki.ca.cert, pki.client("admin"))

    def _stop_processes(self) -> hostnet.Leftovers | None:
        """Stop the real node first (its cleanup needs nothing from the control plane), then the control
        plane in reverse start order."""
        node = self.real_node
        leftovers = node.stop() if node is not None else None
        lws_binary = lws_controller.binary_path(self.directory)
        lws_pid = process.read_pid(self.directory, lws_controller.PROCESS)
        if lws_binary is not None and lws_pid is not None:
            process.stop(lws_pid, lws_binary)
        bin_dir = self._bin_dir or Path()
        for name in reversed(COMMANDS):
            pid = process.read_pid(self.directory, name)
            if pid is not None:
                process.stop(pid, bin_dir / name)
        return leftovers

    def _is_sandbox_dir(self) -> bool:
        return (self.directory / STATE_FILE).is_file() or (self.directory / "pids").is_dir()

    def _load_state(self) -> _State | None:
        try:
            state: _State = json.loads((self.directory / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state


def _check_port_free(port: int, owner: str, host: str = "127.0.0.1") -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise UserError(f"port {port} on {host} is in use (needed by {owner})") from None


def _remove_directory(directory: Path) -> None:
    """rmtree that refuses to descend into mounts (a pod's hostPath volume would lose its files)."""
    mounted = hostnet.mounts_under([str(directory.resolve())])
    if mounted:
        raise UserError(f"{directory} still has {len(mounted)} mounts (first: {mounted[0]}); not removing it")
    shutil.rmtree(directory)


def _etcd_healthy(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            return bool(health.get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    return check


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"
