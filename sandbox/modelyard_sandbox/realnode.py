"""The sandbox's real node: containerd, kubelet, kube-proxy and kube-router as host processes, CoreDNS as a
pod, images imported from ``make images`` (there is no registry).

One real node per machine (kube-proxy's and kube-router's rules are global): :meth:`RealNode.claim` records
the owning sandbox in :data:`~modelyard_sandbox.nodeconfig.RUN_DIR` and refuses a second one while the
first runs; a node whose processes are gone (a killed sandbox) is cleaned up first. :meth:`RealNode.stop`
stops the processes and hands the machine back (see ``hostnet.clean``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelyard.errors import UserError
from modelyard_sandbox import hostnet, images, process
from modelyard_sandbox.binaries import cache_dir
from modelyard_sandbox.components import SERVICE_CIDR
from modelyard_sandbox.kube import wait_until, write_kubeconfig
from modelyard_sandbox.nodeconfig import (
    NODE_IP,
    NODE_NAME,
    RUN_DIR,
    NodePaths,
    cni_config,
    containerd_config,
    coredns_manifests,
    kube_proxy_args,
    kube_proxy_config,
    kube_router_args,
    kube_router_manifests,
    kubelet_args,
    kubelet_config,
)
from modelyard_sandbox.pki import Pki

NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "kube-router",
    "cni/bridge",
    "cni/host-local",
    "cni/loopback",
    "cni/portmap",
)
#: host processes of the node, in start order (stopped in reverse)
NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy", "kube-router")
OWNER_FILE = RUN_DIR / "owner.json"
LOCK_FILE = RUN_DIR / "lock"
CONTAINERD_TIMEOUT_S = 30.0
IMPORT_TIMEOUT_S = 600.0
NODE_READY_TIMEOUT_S = 90.0
COREDNS_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 2.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_node_bin_dir(explicit: Path | None = None) -> Path:
    """``explicit``, else MODELYARD_NODE_BIN, else the newest complete ``make node-bin`` build."""
    env = os.environ.get("MODELYARD_NODE_BIN")
    if explicit is not None:
        directory = explicit
    elif env:
        directory = Path(env)
    else:
        builds = sorted(
            (d for d in (cache_dir() / "node-bin").glob("v*") if (d / ".complete").is_file()),
            key=lambda d: d.stat().st_mtime,
        )
        directory = builds[-1] if builds else cache_dir() / "node-bin"
    for name in NODE_BINARIES:
        if not (directory / name).is_file():
            raise UserError(f"{name} not found in {directory}; run `make node-bin` or use --no-real-node")
    return directory.resolve()


@dataclass(frozen=True, slots=True)
class Owner:
    """Which sandbox runs this machine's real node, and the process that claimed it."""

    directory: Path
    bin_dir: Path
    claimer: int = 0  #: pid of the process that ran `up` (the node's processes outlive it)
    claimer_start: str = ""  #: its start time (/proc/<pid>/stat), so a recycled pid does not count

    def alive(self) -> bool:
        """Whether the owner is still starting (its claimer runs) or any of its node processes runs."""
        if self.claimer and _start_time(self.claimer) == self.claimer_start:
            return True
        for name in NODE_PROCESSES:
            pid = process.read_pid(self.directory, name)
            if pid is not None and process.is_running(pid, self.bin_dir / name):
                return True
        return False

    def record(self) -> None:
        OWNER_FILE.write_text(
            json.dumps(
                {
                    "directory": str(self.directory),
                    "bin_dir": str(self.bin_dir),
                    "claimer": self.claimer,
                    "claimer_start": self.claimer_start,
                }
            )
        )


def read_owner() -> Owner | None:
    try:
        data = json.loads(OWNER_FILE.read_text())
        return Owner(
            Path(data["directory"]),
            Path(data["bin_dir"]),
            int(data.get("claimer", 0)),
            str(data.get("claimer_start", "")),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _start_time(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ('' if it does not run)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Serialize claiming and releasing the machine's real node between processes."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _clean(owner: Owner | None) -> hostnet.Leftovers:
    node_dirs = [owner.directory / "node"] if owner else []
    shim = owner.bin_dir / "containerd-shim-runc-v2" if owner else None
    if owner is not None:
        _stop_processes(owner)
    paths = NodePaths(Path("/nonexistent"), Path("/nonexistent"))
    leftovers = hostnet.clean(node_dirs, shim, paths.containerd_socket)
    for child in (paths.containerd_state, paths.runc_root):
        _remove_tree(child)
    if owner is not None:
        _remove_tree(owner.directory / "node")
    OWNER_FILE.unlink(missing_ok=True)
    return leftovers


def _remove_run_dir() -> None:
    """Remove RUN_DIR once nothing but the lock is left in it (no node claimed it meanwhile)."""
    with contextlib.suppress(OSError):
        if {p.name for p in RUN_DIR.iterdir()} <= {LOCK_FILE.name}:
            LOCK_FILE.unlink(missing_ok=True)
            RUN_DIR.rmdir()


def _stop_processes(owner: Owner) -> None:
    """SIGTERM the node's processes, SIGKILL after a moment: their state goes anyway (hostnet.clean)."""
    for name in reversed(NODE_PROCESSES):
        pid = process.read_pid(owner.directory, name)
        if pid is not None:
            process.stop(pid, owner.bin_dir / name, timeout_s=STOP_TIMEOUT_S)


def _remove_tree(path: Path) -> None:
    if path.exists():
        if hostnet.mounts_under([str(path)]):
            raise UserError(f"{path} still has mounts after cleanup; see /proc/self/mountinfo")
        shutil.rmtree(path, ignore_errors=True)


class RealNode:
    """The real node of the sandbox in ``sandbox_dir``, run from the binaries in ``bin_dir``."""

    def __init__(self, sandbox_dir: Path, bin_dir: Path) -> None:
        self.sandbox_dir = sandbox_dir
        self.bin_dir = bin_dir
        self.paths = NodePaths(sandbox_dir / "node", bin_dir)

    def binary(self, name: str) -> Path:
        return self.paths.binary(name)

    def claim(self) -> hostnet.Leftovers | None:
        """Make this sandbox the machine's real node: refuse if another live sandbox has it, clean up what
        a killed one left, record the machine's state, set up the bridge and routes. Returns what was
        cleaned up (None when nothing was recorded)."""
        if os.geteuid() != 0:
            raise UserError("the real node needs root (kubelet, containerd, iptables); use --no-real-node")
        with machine_lock():
            owner = read_owner()
            if owner is not None and owner.directory != self.sandbox_dir and owner.alive():
                raise UserError(
                    f"a real node already runs on this machine for the sandbox in {owner.directory}; "
                    f"stop it (`modelyard sandbox down --dir {owner.directory}`) or use --no-real-node"
                )
            leftovers = _clean(owner) if owner is not None or hostnet.MACHINE_FILE.exists() else None
            hostnet.record_machine()
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            me = os.getpid()
            Owner(self.sandbox_dir, self.bin_dir, me, _start_time(me)).record()
            try:
                hostnet.setup()
            except BaseException:
                _clean(Owner(self.sandbox_dir, self.bin_dir))
                raise
        return leftovers

    def prepare(self, pki: Pki, api_url: str, kubeconfig: Callable[[str], Path]) -> None:
        """Certificates, kubeconfigs and configuration files of the node's components."""
        pki.create_node(NODE_NAME, NODE_IP)
        for name, user in (
            ("kubelet", f"system:node:{NODE_NAME}"),
            ("kube-proxy", "system:kube-proxy"),
            ("kube-router", "system:kube-router"),
        ):
            write_kubeconfig(kubeconfig(name), api_url, pki.ca.cert, pki.client(name), user)
        p = self.paths
        for directory in (p.directory, p.cni_conf_dir, p.cni_ipam_dir, p.pod_logs, p.kubelet_root):
            directory.mkdir(parents=True, exist_ok=True)
        (p.cni_conf_dir / "10-modelyard.conflist").write_text(json.dumps(cni_config(p), indent=2))
        serving = pki.kubelet_serving()
        _write_yaml(p.kubelet_config, kubelet_config(p, pki.ca.cert, serving.cert, serving.key))
        _write_yaml(p.kube_proxy_config, kube_proxy_config(kubeconfig("kube-proxy")))

    def start(
        self, client: httpx.Client, kubeconfig: Callable[[str], Path], alive: Callable[[], bool]
    ) -> None:
        """Start containerd, import the images, start the kubelet, kube-proxy and kube-router, create
        CoreDNS; return once the node is Ready and CoreDNS answers (``alive`` raises if a component died)."""
        built = images.built_images()
        p = self.paths
        p.containerd_config.write_text(containerd_config(p, built[images.PAUSE].reference))
        for manifest in [*kube_router_manifests(), *coredns_manifests(built[images.COREDNS].reference)]:
            create(client, manifest)
        env = {"PATH": f"{self.bin_dir}:{PATH}", "HOME": str(p.directory)}
        process.start(
            "containerd",
            [str(self.binary("containerd")), f"--config={p.containerd_config}"],
            self.sandbox_dir,
            env=env,
        )
        wait_until(lambda: alive() and self._containerd_ready(), CONTAINERD_TIMEOUT_S, "containerd")
        # what the node itself runs first, unpacked now; the rest imported while the node starts (their
        # layers are unpacked when a pod first uses them)
        first = [built[images.PAUSE].archive, built[images.COREDNS].archive]
        self.import_images(first)
        with ThreadPoolExecutor(1) as background:
            rest = background.submit(
                self.import_images, [i.archive for i in built.values() if i.archive not in first], False
            )
            process.start("kubelet", kubelet_args(p, kubeconfig("kubelet")), self.sandbox_dir, env=env)
            process.start("kube-proxy", kube_proxy_args(p), self.sandbox_dir, env=env)
            wait_until(
                lambda: alive() and node_ready(client), NODE_READY_TIMEOUT_S, f"node {NODE_NAME} Ready"
            )
            # kube-router's firewall reads its own Node at start: only once the kubelet registered it
            process.start(
                "kube-router",
                kube_router_args(p, kubeconfig("kube-router"), SERVICE_CIDR),
                self.sandbox_dir,
                env=env,
            )
            wait_until(lambda: alive() and _coredns_ready(client), COREDNS_TIMEOUT_S, "CoreDNS to be ready")
            rest.result(timeout=IMPORT_TIMEOUT_S)

    def ctr(self, *args: str, check: bool = True, timeout_s: float = 60.0) -> str:
        """Run ``ctr`` against the node's containerd in the CRI namespace."""
        socket = str(self.paths.containerd_socket)
        argv = [str(self.binary("ctr")), "--address", socket, "-n", "k8s.io", *args]
        return hostnet.run(argv, check=check, timeout_s=timeout_s)

    def _containerd_ready(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        try:
            self.ctr("version")
        except UserError:
            return False
        return True

    def import_images(self, archives: list[Path], unpack: bool = True) -> list[Path]:
        """Import docker-archive tarballs into the node's containerd (unpacked into overlayfs snapshots
        now, or when a container first needs them), skipping images it already has; return the archives
        imported."""
        present = set(self.ctr("images", "ls", "-q").split())
        imported = []
        for archive in archives:
            if set(_archive_tags(archive)) <= present:
                continue
            # The gateway's archive is ~1 GiB: on a busy machine its import takes minutes, not seconds.
            options = () if unpack else ("--no-unpack",)
            self.ctr("images", "import", *options, str(archive), timeout_s=IMPORT_TIMEOUT_S)
            imported.append(archive)
        return imported

    def stop(self) -> hostnet.Leftovers:
        """Stop the node's processes and containers and hand the machine back (only the processes, if the
        machine's node is another sandbox's)."""
        with machine_lock():
            owner = read_owner()
            if owner is not None and owner.directory != self.sandbox_dir:
                _stop_processes(Owner(self.sandbox_dir, self.bin_dir))
                return hostnet.Leftovers()
            leftovers = _clean(Owner(self.sandbox_dir, self.bin_dir))
        _remove_run_dir()
        return leftovers


def _archive_tags(archive: Path) -> list[str]:
    """The RepoTags of a docker-archive (its manifest.json), normalized as containerd names them."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return []
        manifest = json.load(member)
    tags = [t for entry in manifest for t in entry.get("RepoTags") or []]
    return [_normalize(t) for t in tags]


def _normalize(reference: str) -> str:
    name = reference
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


#: API paths of the kinds the node creates
_PATHS = {
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
    ): "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def create(client: httpx.Client, manifest: dict[str, Any]) -> None:
    """Create ``manifest``; one that exists is left as it is."""
    path = _PATHS[(manifest["apiVersion"], manifest["kind"])].format(
        ns=manifest["metadata"].get("namespace", "")
    )
    response = client.post(path, json=manifest)
    if response.status_code not in (201, 409):
        response.raise_for_status()


def node_ready(client: httpx.Client) -> bool:
    response = client.get(f"/api/v1/nodes/{NODE_NAME}")
    if response.status_code == 404:
        return False
    conditions = response.raise_for_status().json().get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _coredns_ready(client: httpx.Client) -> bool:
    response = client.get("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    if response.status_code == 404:
        return False
    return bool(response.raise_for_status().json().get("status", {}).get("readyReplicas"))
