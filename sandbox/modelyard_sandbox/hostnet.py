"""What a real node changes on this machine, and how to take every bit of it back.

Setting up: sysctls (forwarding, bridged traffic through netfilter), the sandbox's bridge holding the node
address and the pods' gateway, and routes (the pods' range on the bridge with the node address as source,
kwok's simulated pod range unreachable, the Service range on the bridge so a host connection to a ClusterIP
passes the route lookup before kube-proxy rewrites it).

Cleaning up (:func:`clean`, idempotent, also what ``sandbox up`` runs first after a killed sandbox):
processes in the node's cgroups and containerd shims of the node's socket are killed; mounts under the
node's directories are detached; veths on the bridge, the bridge and the routes removed; kube-proxy's
nftables tables dropped; every iptables chain named ``KUBE-*`` (kube-proxy, kubelet, kube-router) and every
``CNI-*`` chain of the node's CNI network removed with the rules jumping to them; kube-router's ipsets
destroyed; the node's cgroups removed; sysctls and default directories put back as recorded before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import UserError
from modelyard_sandbox.components import POD_CIDR, SERVICE_CIDR
from modelyard_sandbox.nodeconfig import (
    BRIDGE,
    BRIDGE_MAC,
    CGROUP_ROOT,
    CNI_NETWORK,
    NODE_IP,
    NODE_POD_CIDR,
    POD_GATEWAY,
    RUN_DIR,
)

#: sysctls the node needs, and their values while it runs (the originals are restored by :func:`clean`).
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
#: sysctls the kubelet or kube-proxy may change on their own: recorded so that clean() restores them.
WATCHED_SYSCTLS = (
    *SYSCTLS,
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/conf/all/route_localnet",
)
#: Default paths the kubelet, containerd or the CNI plugins create whatever they are told; removed again if
#: they did not exist before the node started.
DEFAULT_PATHS = (
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/netns",
    "/var/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/nri",
    "/etc/kubernetes",
    "/var/lib/kube-router",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
KUBE_PROXY_NFT_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
MACHINE_FILE = RUN_DIR / "machine.json"
KILL_TIMEOUT_S = 10.0
MNT_DETACH = 2


@dataclass
class Leftovers:
    """What :func:`clean` found and removed (for the report ``sandbox down`` and the tests print)."""

    processes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    iptables_chains: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    ipsets: list[str] = field(default_factory=list)
    cgroups: int = 0
    paths: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.processes)} processes",
            f"{len(self.mounts)} mounts",
            f"{len(self.links)} links",
            f"{len(self.iptables_chains)} iptables chains",
            f"{len(self.nft_tables)} nftables tables",
            f"{len(self.ipsets)} ipsets",
            f"{self.cgroups} cgroups",
        ]
        return ", ".join(parts)


def run(argv: list[str], check: bool = True, input_text: str | None = None, timeout_s: float = 60.0) -> str:
    """Run a host tool; a UserError with its stderr when it fails and ``check`` is set."""
    try:
        result = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise UserError(f"{argv[0]} not found; run `make sandbox-bin` (hack/sandbox/node-deps.sh)") from None
    if check and result.returncode != 0:
        raise UserError(f"{' '.join(argv)} failed: {result.stderr.strip()[:300]}")
    return result.stdout


# -- the machine's state before the node -------------------------------------------------------------


def record_machine() -> None:
    """Remember the sysctls and default paths as they are now (only if no earlier record is pending: a
    killed node's record still holds the machine's original values)."""
    if MACHINE_FILE.exists():
        return
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    state = {
        "sysctls": {name: _read_sysctl(name) for name in WATCHED_SYSCTLS},
        "absent_paths": [p for p in DEFAULT_PATHS if not os.path.lexists(p)],
        "nft_tables": _nft_tables(),
    }
    MACHINE_FILE.write_text(json.dumps(state, indent=2))


def setup() -> None:
    """Sysctls, the bridge with the node address and the pods' gateway, and the routes."""
    for name, value in SYSCTLS.items():
        _write_sysctl(name, value)
    ensure_bridge(BRIDGE, BRIDGE_MAC)
    for address in (f"{NODE_IP}/32", f"{POD_GATEWAY}/32"):
        run(["ip", "addr", "replace", address, "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    run(["ip", "route", "replace", NODE_POD_CIDR, "dev", BRIDGE, "src", NODE_IP])
    kwok_range = _network(POD_CIDR)
    run(["ip", "route", "replace", "unreachable", kwok_range])
    run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
    _create_cgroup_root()


def ensure_bridge(name: str, mac: str) -> None:
    """The bridge ``name`` with its own address ``mac``, set also on a bridge that already exists: the
    kernel then keeps it whichever ports join or leave (see nodeconfig.BRIDGE_MAC)."""
    if not _link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "link", "set", name, "address", mac])


def _create_cgroup_root() -> None:
    """The kubelet's cgroup root in every cgroup v1 hierarchy (the kubelet refuses to start without it);
    the cpuset one gets its parent's CPUs and memory nodes, as a new cpuset cgroup starts with none."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
            continue
        root = hierarchy / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (root / name).exists() and not (root / name).read_text().strip():
                (root / name).write_text((hierarchy / name).read_text())


# -- cleaning up ---------------------------------------------------------------------------------------


def clean(node_dirs: Iterable[Path], shim: Path | None, socket: Path) -> Leftovers:
    """Take back everything a real node (running, stopped or killed) left on this machine; see the module
    docstring. ``node_dirs`` are the directories whose mounts go; ``shim`` the containerd shim binary whose
    processes serve ``socket``."""
    found = Leftovers()
    found.processes += _kill_cgroup_processes()
    found.processes += _kill_shims(shim, socket)
    prefixes = [str(d) for d in (*node_dirs, RUN_DIR)]
    found.mounts += _unmount_under(prefixes)
    found.links += _remove_links()
    found.nft_tables += _remove_nft_tables()
    for binary in ("iptables", "ip6tables"):
        found.iptables_chains += _remove_chains(binary)
    found.ipsets += _destroy_ipsets()
    found.cgroups += _remove_cgroups()
    found.paths += _restore_machine()
    return found


def _kill_cgroup_processes() -> list[str]:
    """SIGKILL every process in the node's cgroups (containers and their children), until none is left."""
    killed: list[str] = []
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        pids = sorted(_cgroup_pids())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                killed.append(f"{pid} {_comm(pid)}")
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return sorted(set(killed))


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for root in _node_cgroups():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _node_cgroups() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    candidates = [base / CGROUP_ROOT, *(d / CGROUP_ROOT for d in base.iterdir() if d.is_dir())]
    return [c for c in candidates if c.is_dir()]


def _kill_shims(shim: Path | None, socket: Path) -> list[str]:
    """SIGKILL containerd shims that serve ``socket`` (found by their executable and their -address)."""
    killed = []
    for pid, argv in _processes():
        exe = _exe(pid)
        if not exe.endswith("containerd-shim-runc-v2") or (shim is not None and exe != str(shim)):
            continue
        if str(socket) not in argv:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid} containerd-shim-runc-v2")
    return killed


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        yield int(entry.name), argv


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def mounts_under(prefixes: Iterable[str]) -> list[str]:
    """Mount points (from /proc/self/mountinfo) at or under any of ``prefixes``, deepest first."""
    prefixes = [p.rstrip("/") for p in prefixes]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _unescape(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def _unmount_under(prefixes: list[str]) -> list[str]:
    libc = ctypes.CDLL(None, use_errno=True)
    removed = []
    for _ in range(5):  # a detached parent can reveal mounts stacked below it
        points = mounts_under(prefixes)
        if not points:
            break
        for point in points:
            if libc.umount2(point.encode(), MNT_DETACH) == 0:
                removed.append(point)
    return removed


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _remove_links() -> list[str]:
    removed = []
    if _link_exists(BRIDGE):
        for port in sorted(p.name for p in Path(f"/sys/class/net/{BRIDGE}/brif").iterdir()):
            run(["ip", "link", "del", port], check=False)
            removed.append(port)
        run(["ip", "link", "del", BRIDGE], check=False)
        removed.append(BRIDGE)
    routes = run(["ip", "route", "show", "type", "unreachable"], check=False)
    if _network(POD_CIDR) in routes:
        run(["ip", "route", "del", "unreachable", _network(POD_CIDR)], check=False)
        removed.append(f"route unreachable {_network(POD_CIDR)}")
    return removed


def _nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    out = run(["nft", "list", "tables"], check=False)
    return [line.removeprefix("table ").strip() for line in out.splitlines() if line.startswith("table ")]


def _remove_nft_tables() -> list[str]:
    removed = []
    existing = set(_nft_tables())
    for family, name in KUBE_PROXY_NFT_TABLES:
        if f"{family} {name}" in existing:
            run(["nft", "delete", "table", family, name], check=False)
            removed.append(f"{family} {name}")
    return removed


def chains_to_remove(save_output: str) -> set[str]:
    """The chains of one ``iptables-save -t TABLE`` output that a real node created: every ``KUBE-*`` chain
    (kube-proxy, kubelet and kube-router prefix theirs so; one real node per machine), every ``CNI-*``
    chain a rule carrying the node's CNI network name jumps to (portmap's per-pod chains), and portmap's
    shared ``CNI-HOSTPORT-*`` chains when no other CNI network still has a port mapping in them."""
    chains = {line[1:].split()[0] for line in save_output.splitlines() if line.startswith(":")}
    ours = {c for c in chains if c.startswith("KUBE-")}
    marker = f'name: \\"{CNI_NETWORK}\\"'
    others_map_ports = False
    for line in save_output.splitlines():
        if not line.startswith("-A "):
            continue
        target = re.search(r" -[jg] (\S+)", line)
        if target is None or not target.group(1).startswith("CNI-"):
            continue
        if marker in line:
            ours.add(target.group(1))
        elif line.startswith("-A CNI-HOSTPORT-DNAT "):
            others_map_ports = True
    if not others_map_ports:
        ours |= {c for c in chains if c.startswith("CNI-HOSTPORT-")}
    return ours


def removal_script(table: str, save_output: str, chains: set[str]) -> str:
    """An ``iptables-restore --noflush`` script deleting the rules that jump to ``chains`` from the other
    chains, then flushing and deleting ``chains``."""
    lines = [f"*{table}"]
    for line in save_output.splitlines():
        if not line.startswith("-A "):
            continue
        chain = line.split()[1]
        target = re.search(r" -[jg] (\S+)", line)
        if chain not in chains and target and target.group(1) in chains:
            lines.append("-D " + line[3:])
    lines += [f"-F {c}" for c in sorted(chains)]
    lines += [f"-X {c}" for c in sorted(chains)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _remove_chains(binary: str) -> list[str]:
    if shutil.which(f"{binary}-save") is None:
        return []
    removed = []
    for table in IPTABLES_TABLES:
        save = run([f"{binary}-save", "-t", table], check=False)
        chains = chains_to_remove(save)
        if not chains:
            continue
        run([f"{binary}-restore", "--noflush"], input_text=removal_script(table, save, chains), check=False)
        left = chains_to_remove(run([f"{binary}-save", "-t", table], check=False))
        removed += [f"{binary} {table} {c}" for c in sorted(chains - left)]
    return removed


def _destroy_ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    names = [n for n in run(["ipset", "list", "-n"], check=False).split() if n.startswith(IPSET_PREFIXES)]
    for name in names:
        run(["ipset", "destroy", name], check=False)
    return names


def _remove_cgroups() -> int:
    removed = 0
    for root in _node_cgroups():
        for directory in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
                removed += 1
        with contextlib.suppress(OSError):
            root.rmdir()
            removed += 1
    return removed


def _restore_machine() -> list[str]:
    """Put back the recorded sysctls; remove default paths that did not exist before; forget the record."""
    try:
        state = json.loads(MACHINE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return []
    for name, value in state.get("sysctls", {}).items():
        if value is not None:
            with contextlib.suppress(OSError):
                _write_sysctl(name, value)
    removed = []
    for path in state.get("absent_paths", []):
        if os.path.lexists(path):
            if os.path.islink(path) or not os.path.isdir(path):
                os.unlink(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    before = set(state.get("nft_tables", []))
    for table in _nft_tables():
        family, _, name = table.partition(" ")
        # tables iptables-nft created for the node's rules: drop them once nothing is left in them
        if table not in before and not _nft_table_has_rules(family, name):
            run(["nft", "delete", "table", family, name], check=False)
            removed.append(f"nft table {table}")
    MACHINE_FILE.unlink(missing_ok=True)
    return removed


def _nft_table_has_rules(family: str, name: str) -> bool:
    listing = run(["nft", "list", "table", family, name], check=False)
    return any(
        line.strip() and not line.strip().startswith(("table ", "chain ", "type ", "}", "policy"))
        for line in listing.splitlines()
    )


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value)


def _network(cidr: str) -> str:
    """``10.244.0.1/16`` -> ``10.244.0.0/16``."""
    return str(ipaddress.ip_network(cidr, strict=False))
