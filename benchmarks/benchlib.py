"""What the benchmarks share: a table of figures (printed, and written as JSON by ``run.py``), the sandbox
with modelyard's CRDs, the operator run as its own ServiceAccount in a subprocess (so the API server's audit
log tells its writes apart, and its RSS is its own), and waiting.

Benchmarks print numbers and assert nothing: speed is measured here, not in tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from modelyard_sandbox import Sandbox
from modelyard_sandbox.kube import write_kubeconfig
from modelyard_sandbox.pki import Pki

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_NS, OPERATOR_SA = "modelyard-system", "modelyard"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    low: float | None = None  #: the spread over repeats (``value`` is then their median)
    high: float | None = None


@dataclass
class Figures:
    """The figures of one run, in the order measured."""

    items: list[Figure] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        section: str,
        name: str,
        value: float,
        unit: str,
        *,
        target: str = "",
        met: bool | None = None,
        spread: tuple[float, float] | None = None,
    ) -> float:
        low, high = spread if spread is not None else (None, None)
        self.items.append(Figure(section, name, value, unit, target, met, low, high))
        mark = "" if met is None else ("  (target met)" if met else "  (TARGET MISSED)")
        print(f"  {section}: {name} = {_number(value)} {unit}{_spread(low, high)}{mark}", flush=True)
        return value

    def table(self) -> str:
        widths: dict[str, int] = {}
        for f in self.items:
            widths[f.section] = max(widths.get(f.section, 0), len(f.name))
        lines, section = [], None
        for f in self.items:
            if f.section != section:
                section = f.section
                lines.append(f"\n{section}")
            width = widths[f.section]
            verdict = "" if f.met is None else ("met" if f.met else "MISSED")
            target = f"  target {f.target} {verdict}".rstrip() if f.target else ""
            spread = _spread(f.low, f.high)
            line = f"  {f.name:<{width}}  {_number(f.value):>12} {f.unit:<10}{spread:<18}{target}"
            lines.append(line.rstrip())
        return "\n".join(lines).lstrip("\n")

    def to_json(self) -> str:
        return json.dumps(
            {"context": self.context, "figures": [asdict(f) for f in self.items]}, indent=2, sort_keys=False
        )


def standalone(run: Callable[[Figures], None]) -> None:
    """Run one benchmark on its own (``python benchmarks/X.py``) and print its table."""
    figures = Figures()
    run(figures)
    print(figures.table())


def _spread(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{_number(low)}-{_number(high)}]"


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def wait(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> float:
    """Seconds until ``check()`` holds; SystemExit after ``timeout_s``."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
    return time.perf_counter() - started


def install_crds(sandbox: Sandbox) -> None:
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    for args in (
        ["apply", "--server-side", "-f", str(ROOT / "crds")],
        ["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
    ):
        subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True)


class AuditLog:
    """Write requests from the operator's ServiceAccount since the last mark, from the API server's audit
    log (kopf's own writes included), counted by verb and resource (``patch modeldeployments/status``).

    The API server rotates the log at 200 MB (``audit-<time>.log`` beside it, one backup kept): a count
    across a rotation reads the rest of the rotated file, found by its inode, then the new one."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.path = sandbox.directory / "logs" / "audit.log"
        self.inode = 0
        self.offset = 0

    def mark(self) -> None:
        stat = self.path.stat()
        self.inode, self.offset = stat.st_ino, stat.st_size

    def writes(self, namespace: str | None = None) -> Counter[str]:
        counts: Counter[str] = Counter()
        if self.path.stat().st_ino == self.inode:
            self._count(self.path, self.offset, namespace, counts)
            return counts
        rotated = [p for p in self.path.parent.glob("audit-*.log") if p.stat().st_ino == self.inode]
        if not rotated:
            print("  (audit log rotated twice since the mark: writes before the last rotation are lost)")
        for path in rotated:
            self._count(path, self.offset, namespace, counts)
        self._count(self.path, 0, namespace, counts)
        return counts

    @staticmethod
    def _count(path: Path, offset: int, namespace: str | None, counts: Counter[str]) -> None:
        with path.open() as log:
            log.seek(offset)
            for line in log:
                if not line.endswith("\n"):  # the API server is still writing it
                    break
                entry = json.loads(line)
                if entry.get("user", {}).get("username") != OPERATOR_USER:
                    continue
                ref = entry.get("objectRef", {})
                if namespace is not None and ref.get("namespace") != namespace:
                    continue
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                counts[f"{entry['verb']} {ref.get('resource', '?')}{sub}"] += 1


class Operator:
    """``modelyard run -A`` in a subprocess, authenticated as its own ServiceAccount (cluster-admin here:
    RBAC is the chart's business, not the benchmark's)."""

    def __init__(self, sandbox: Sandbox, api: client.ApiClient, workdir: Path) -> None:
        self.kubeconfig = workdir / "operator.kubeconfig"
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.metrics_port = 0
        _service_account_kubeconfig(sandbox, api, self.kubeconfig)

    def start(self, env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()  # next to other operators (tests, benchmarks)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelyard.cli.main", "run", "-A", "--log-format", "plain"],
            env={
                **os.environ,
                "MODELYARD_METRICS_PORT": str(self.metrics_port),
                **(env or {}),
                "KUBECONFIG": str(self.kubeconfig),
            },
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        self.runs += 1
        profile_dir = os.environ.get("BENCH_PROFILE")
        if profile_dir:  # sample the operator's stacks with py-spy (pip install py-spy)
            out = Path(profile_dir) / f"operator-{self.runs}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            py_spy = str(Path(sys.executable).with_name("py-spy"))
            pid = str(self.process.pid)
            self.profiler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    pid,
                    "--format",
                    "raw",
                    "--rate",
                    "50",
                    "--nonblocking",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            self.profiler.wait(60)
            self.profiler = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def cpu_s(self) -> float:
        """CPU seconds the operator has used so far (user and system, from /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reconciles(self, kind: str) -> float:
        """Passes the operator has run for ``kind`` so far (its Prometheus counter, errors included)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        prefix = f'modelyard_reconciles_total{{kind="{kind}",'
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(prefix))

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_account_kubeconfig(sandbox: Sandbox, api: client.ApiClient, path: Path) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NS)))
    core.create_namespaced_service_account(
        OPERATOR_NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=OPERATOR_SA))
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="modelyard-bench"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=OPERATOR_SA, namespace=OPERATOR_NS)],
        )
    )
    token = core.create_namespaced_service_account_token(
        OPERATOR_SA,
        OPERATOR_NS,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=24 * 3600)
        ),
    ).status.token
    write_kubeconfig(path, sandbox.api_url, Pki(sandbox.directory / "pki").ca.cert, token, OPERATOR_SA)
