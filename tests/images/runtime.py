"""Run a locally built image the way the real node's kubelet would, with no node: runc, as root.

The docker-archive `make images` wrote is converted with skopeo (to an OCI layout) and unpacked with umoci
into a root filesystem, cached next to the archive and keyed by its name (which carries the hash of the
image's inputs), so a session unpacks each image once and later sessions not at all. Each run gets its own
OCI runtime config, shaped like a pod's container: the image's entrypoint and command replaced by a
container's ``command``/``args`` the Kubernetes way, the container's env after the image's, its user,
capabilities, ``allowPrivilegeEscalation: false`` (no_new_privs), a read-only root filesystem, an emptyDir on
/tmp, files mounted read-only (ConfigMap volumes), and a network namespace of its own that has only a
loopback interface (so nothing outside is reachable: "offline" is real). Tests reach the container through
:meth:`Netns.call`, which runs a function on a thread that joined that network namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from modelyard_sandbox.images import BuiltImage

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
UNPACKED = "unpacked"
COMPLETE = ".complete"


def image_config(archive: Path) -> dict[str, Any]:
    """The image's config (Entrypoint, Cmd, Env, User, ...) from the docker-archive's manifest."""
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        config: dict[str, Any] = json.load(_member(tar, manifest[0]["Config"]))
    return config.get("config") or {}


def _member(tar: tarfile.TarFile, name: str) -> Any:
    handle = tar.extractfile(name)
    assert handle is not None, f"{name} is not a file in the archive"
    return handle


def unpacked_rootfs(image: BuiltImage) -> Path:
    """The image's root filesystem, unpacked once per archive (skopeo -> OCI layout -> umoci)."""
    base = image.archive.parent / UNPACKED
    target = base / image.archive.stem
    if (target / COMPLETE).is_file():
        return target / "bundle" / "rootfs"
    base.mkdir(exist_ok=True)
    for stale in base.glob(f"{image.role}-*"):  # earlier builds of the same role
        shutil.rmtree(stale, ignore_errors=True)
    partial = base / f".{image.archive.stem}.{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        _run(["skopeo", "copy", "--quiet", f"docker-archive:{image.archive}", f"oci:{partial}/oci:image"])
        _run(["umoci", "unpack", "--image", f"{partial}/oci:image", f"{partial}/bundle"])
        shutil.rmtree(partial / "oci")
        (partial / COMPLETE).touch()
        try:
            partial.rename(target)
        except OSError:  # another session unpacked the same archive first
            if not (target / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target / "bundle" / "rootfs"


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}"


class Netns:
    """A named network namespace with only ``lo``, up; removed on :meth:`close`."""

    def __init__(self) -> None:
        self.name = f"modelyard-images-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = Path("/run/netns") / self.name
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self._thread = ThreadPoolExecutor(1, initializer=self._join)

    def _join(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {self.path}")
        finally:
            os.close(fd)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a thread inside the namespace: sockets it opens live there."""
        return self._thread.submit(fn).result()

    def close(self) -> None:
        self._thread.shutdown()
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


@dataclass
class Container:
    """How to run one container: the pod spec's say over the image."""

    image: BuiltImage
    command: Sequence[str] | None = None
    args: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: tuple[int, int] | None = None  #: runAsUser, runAsGroup; None = the image's USER
    capabilities: Sequence[str] = ()  #: e.g. ("CAP_NET_BIND_SERVICE",); everything else is dropped
    read_only_root: bool = False
    tmpfs: Sequence[str] = ()  #: emptyDir mount paths
    files: Mapping[str, bytes] = field(default_factory=dict)  #: read-only files at these paths
    binds: Mapping[str, Path] = field(default_factory=dict)  #: host files bound read-only at these paths
    #: host directories standing in for volumes (a claim, a projected token): path -> (directory, read-only)
    volumes: Mapping[str, tuple[Path, bool]] = field(default_factory=dict)

    @classmethod
    def from_manifest(
        cls,
        image: BuiltImage,
        container: Mapping[str, Any],
        pod: Mapping[str, Any],
        *,
        config_maps: Mapping[str, Mapping[str, str]] | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        fields: Mapping[str, str] | None = None,
        host_dirs: Mapping[str, Path] | None = None,
    ) -> Container:
        """A rendered pod's container: command, args, env (values, Secret and field references), the user
        and security context (container over pod), emptyDir and ConfigMap volumes, and any other volume
        named in ``host_dirs`` as that host directory (read-only when the mount says so)."""
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom")
            if source is None:
                env[item["name"]] = item.get("value", "")
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[item["name"]] = (secrets or {})[ref["name"]][ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = (fields or {})[source["fieldRef"]["fieldPath"]]
            else:
                raise AssertionError(f"unsupported env source {source}")
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        user = None
        if "runAsUser" in context:
            user = (int(context["runAsUser"]), int(context.get("runAsGroup", context["runAsUser"])))
        caps = context.get("capabilities", {})
        assert caps.get("drop") == ["ALL"], f"the container keeps default capabilities: {caps}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmpfs: list[str] = []
        files: dict[str, bytes] = {}
        directories: dict[str, tuple[Path, bool]] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if mount["name"] in (host_dirs or {}):
                host_dir = (host_dirs or {})[mount["name"]]
                directories[mount["mountPath"]] = (host_dir, bool(mount.get("readOnly")))
            elif "emptyDir" in volume:
                tmpfs.append(mount["mountPath"])
            elif "configMap" in volume:
                data = (config_maps or {})[volume["configMap"]["name"]]
                files.update({f"{mount['mountPath']}/{key}": text.encode() for key, text in data.items()})
            else:
                raise AssertionError(f"unsupported volume {volume}")
        return cls(
            image=image,
            command=container.get("command"),
            args=container.get("args"),
            env=env,
            user=user,
            capabilities=[f"CAP_{name}" for name in caps.get("add", [])],
            read_only_root=bool(context.get("readOnlyRootFilesystem")),
            tmpfs=tmpfs,
            files=files,
            volumes=directories,
        )


class Running:
    def __init__(self, ident: str, state: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.ident, self.state, self.process, self.log = ident, state, process, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signal: str = "TERM", timeout_s: float = 30) -> int:
        """Send ``signal`` to the container's PID 1 and return its exit code."""
        if self.alive():
            subprocess.run(_runc(self.state, "kill", self.ident, signal), check=False, capture_output=True)
        return self.process.wait(timeout_s)

    def wait(self, timeout_s: float = 60) -> int:
        return self.process.wait(timeout_s)

    def pid(self) -> int:
        """The host PID of the container's PID 1."""
        state = subprocess.run(
            _runc(self.state, "state", self.ident), capture_output=True, text=True, check=True
        )
        pid: int = json.loads(state.stdout)["pid"]
        return pid

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the container (its namespaces, user and capabilities), as kubectl exec would."""
        return subprocess.run(
            _runc(self.state, "exec", self.ident, *argv),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _runc(state: Path, *args: str) -> list[str]:
    return ["runc", "--root", str(state), *args]


def runtime_config(container: Container, rootfs: Path, netns: Netns, scratch: Path) -> dict[str, Any]:
    """The OCI runtime config for ``container``, starting from umoci's (built from the image config)."""
    spec: dict[str, Any] = json.loads((rootfs.parent / "config.json").read_text())
    image = image_config(container.image.archive)
    entrypoint, cmd = image.get("Entrypoint") or [], image.get("Cmd") or []
    if container.command is not None:  # Kubernetes: command replaces ENTRYPOINT, and drops CMD
        argv = [*container.command, *(container.args or [])]
    elif container.args is not None:
        argv = [*entrypoint, *container.args]
    else:
        argv = [*entrypoint, *cmd]
    env = dict(item.split("=", 1) for item in spec["process"].get("env", []))
    env.update(container.env)
    process = spec["process"]
    process.update(
        args=argv,
        env=[f"{k}={v}" for k, v in env.items()],
        terminal=False,
        noNewPrivileges=True,
        # As containerd's CRI sets them: added capabilities go to the bounding, effective and permitted sets;
        # the ambient set is cleared, so a non-root process keeps a capability across exec only through
        # the file capabilities of its binary.
        capabilities={
            "bounding": list(container.capabilities),
            "effective": list(container.capabilities),
            "permitted": list(container.capabilities),
            "inheritable": [],
            "ambient": [],
        },
    )
    if container.user is not None:
        process["user"] = {"uid": container.user[0], "gid": container.user[1]}
    spec["root"] = {"path": str(rootfs), "readonly": container.read_only_root}
    mounts = spec.setdefault("mounts", [])
    for path in container.tmpfs:
        options = ["nosuid", "nodev", "mode=1777"]
        mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": options})
    for index, (destination, content) in enumerate(sorted(container.files.items())):
        source = scratch / "files" / str(index)
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(content)
        source.chmod(0o644)
        options = ["rbind", "ro"]
        mounts.append({"destination": destination, "type": "bind", "source": str(source), "options": options})
    for destination, host_path in sorted(container.binds.items()):
        mounts.append(
            {"destination": destination, "type": "bind", "source": str(host_path), "options": ["rbind", "ro"]}
        )
    for destination, (host_dir, read_only) in sorted(container.volumes.items()):
        options = ["rbind", "ro" if read_only else "rw"]
        mounts.append(
            {"destination": destination, "type": "bind", "source": str(host_dir), "options": options}
        )
    linux = spec.setdefault("linux", {})
    linux["namespaces"] = [
        {"type": "network", "path": str(netns.path)} if ns["type"] == "network" else ns
        for ns in linux.get("namespaces", [])
    ]
    if not any(ns["type"] == "network" for ns in linux["namespaces"]):
        linux["namespaces"].append({"type": "network", "path": str(netns.path)})
    return spec


@contextmanager
def running(container: Container, netns: Netns, scratch: Path) -> Iterator[Running]:
    """Run ``container`` in ``netns``; on exit, stop it (TERM, then KILL) and delete it."""
    rootfs = unpacked_rootfs(container.image)
    ident = f"{container.image.role}-{secrets.token_hex(4)}"
    bundle = scratch / ident
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(runtime_config(container, rootfs, netns, bundle)))
    state = scratch / "runc"
    log = bundle / "output.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            _runc(state, "run", "--bundle", str(bundle), ident),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    handle = Running(ident, state, process, log)
    try:
        yield handle
    finally:
        try:
            handle.stop(timeout_s=15)
        except subprocess.TimeoutExpired:
            handle.stop("KILL", timeout_s=15)
        subprocess.run(_runc(state, "delete", "--force", ident), check=False, capture_output=True)


def wait_until(check: Callable[[], bool], what: str, handle: Running, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        tail = handle.output()[-3000:]
        assert handle.alive(), f"{what}: the container exited ({handle.process.returncode}):\n{tail}"
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s:\n{handle.output()[-3000:]}"
        time.sleep(0.2)
