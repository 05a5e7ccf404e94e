"""The real node's lifecycle on this machine: one per machine; ``up`` recovers from a sandbox killed with
SIGKILL mid-run (pods running); ``down`` leaves no mounts, network namespaces, links, iptables chains,
nftables tables, ipsets, cgroups or shims behind. The session's real sandbox is restarted at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from modelyard.errors import UserError
from modelyard_sandbox import Ports, Sandbox
from modelyard_sandbox.nodeconfig import BRIDGE, CGROUP_ROOT, NODE_IP, RUN_DIR

from ..conftest import RealSandbox, start_real_sandbox
from .podlib import http_server, on_real_node, run_python

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout


@dataclass(frozen=True)
class MachineState:
    """What the machine shows of a real node, read with the host's own tools."""

    mounts: list[str]
    netns: list[str]
    links: list[str]
    iptables_chains: list[str]
    nft_tables: list[str]
    ipsets: list[str]
    cgroups: list[str]
    processes: list[str]

    @classmethod
    def read(cls, node_dir: Path) -> MachineState:
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith((str(node_dir), str(RUN_DIR)))
        ]
        chains = [
            f"{binary} {line}"
            for binary in ("iptables-save", "ip6tables-save")
            for line in _run(binary).splitlines()
            if line.startswith((":KUBE-", ":CNI-"))
        ]
        cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")]
        processes = [
            f"{pid} {exe}"
            for pid in os.listdir("/proc")
            if pid.isdigit()
            and (exe := _exe(int(pid))).endswith(
                ("/containerd", "/containerd-shim-runc-v2", "/kubelet", "/kube-proxy", "/kube-router")
            )
        ]
        return cls(
            mounts=mounts,
            netns=[n for n in _run("ip", "netns", "list").split() if n.startswith("cni-")],
            links=[line for line in _run("ip", "-o", "link", "show").splitlines() if BRIDGE in line],
            iptables_chains=chains,
            nft_tables=[t for t in _run("nft", "list", "tables").splitlines() if "kube-proxy" in t],
            ipsets=[s for s in _run("ipset", "list", "-n").split() if s.startswith(("KUBE-", "inet6:KUBE-"))],
            cgroups=cgroups,
            processes=processes,
        )

    def empty(self) -> bool:
        return not any(
            (
                self.mounts,
                self.netns,
                self.links,
                self.iptables_chains,
                self.nft_tables,
                self.ipsets,
                self.cgroups,
                self.processes,
            )
        )


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _kill_everything(env: Sandbox) -> list[int]:
    """SIGKILL every process of the sandbox and the shims of its containerd (as a crash would; the
    containers keep running, as they do when only their shim dies)."""
    pids = [int(p.read_text()) for p in (env.directory / "pids").glob("*.pid")]
    pids += [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit()
        and _exe(int(pid)).endswith("/containerd-shim-runc-v2")
        and str(RUN_DIR) in _cmdline(int(pid))
    ]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered, not awaited: a process with many threads takes a moment to die (longer on a busy
    # machine). A crashed sandbox's processes are gone, so wait for that (a zombie counts as gone).
    deadline = time.monotonic() + 30
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"still running 30 s after SIGKILL: {alive}"
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for_default_service_account(k8s: client.ApiClient, timeout_s: float = 30) -> None:
    core = client.CoreV1Api(k8s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if core.list_namespaced_service_account("default").items:
            return
        time.sleep(0.25)
    pytest.fail("no default ServiceAccount in namespace default")


def test_a_second_real_node_is_refused_with_the_first_ones_directory(
    real_sandbox: RealSandbox, tmp_path: Path
) -> None:
    if real_sandbox.env is None:
        pytest.skip("needs the local sandbox")
    other = Sandbox(tmp_path / "other", ports=Ports.free())

    with pytest.raises(UserError) as refused:
        other.up(gpu_nodes=0, cpu_nodes=0, volumes=0, real_node=True)

    message = str(refused.value)
    assert "\n" not in message
    owner = real_sandbox.env.directory
    assert f"a real node already runs on this machine for the sandbox in {owner}" in message
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_kill_9_then_up_recovers_and_down_leaves_nothing(real_sandbox: RealSandbox) -> None:
    """(Uses the namespace ``default``: the sandbox is started anew twice, namespaces do not survive.)"""
    env = real_sandbox.env
    if env is None:
        pytest.skip("needs the local sandbox")
    k8s = config.new_client_from_config(config_file=str(real_sandbox.kubeconfig))
    _wait_for_default_service_account(k8s)
    http_server(k8s, "default", "before-kill")  # a running pod: mounts, netns, veth, Service rules
    node_dir = env.directory / "node"
    assert not MachineState.read(node_dir).empty()

    killed = _kill_everything(env)
    assert killed
    left_by_kill = MachineState.read(node_dir)
    start_real_sandbox(env)  # the same directory: up must clean what the killed node left, then start
    k8s = config.new_client_from_config(config_file=str(real_sandbox.kubeconfig))
    _wait_for_default_service_account(k8s)
    after_recovery = run_python(k8s, "default", "after-recovery", "print(6 * 7)")
    leftovers = env.down()
    after_down = MachineState.read(node_dir)
    node_address_after_down = _run("ip", "-o", "addr", "show").count(NODE_IP)
    start_real_sandbox(env)  # give the rest of the session its sandbox back

    assert left_by_kill.mounts and left_by_kill.links, "the kill left nothing to recover from"
    on_real_node(after_recovery)
    assert after_recovery.log.strip() == "42"
    assert leftovers is not None
    assert after_down.empty(), after_down
    assert node_address_after_down == 0
