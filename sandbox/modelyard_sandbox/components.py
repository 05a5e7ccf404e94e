"""Command lines of the control-plane components, in start order.

Everything listens on 127.0.0.1 only. The controller manager and the scheduler do not serve (secure port
0) and do not elect leaders, so they need no ports and start at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard_sandbox.nodes import KWOK_ANNOTATION
from modelyard_sandbox.pki import Pki

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  #: the ``kubernetes`` Service's cluster IP: first address of SERVICE_CIDR
POD_CIDR = "10.244.0.1/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
CLOUD_CONTROLLERS = ("service-lb-controller", "cloud-node-lifecycle-controller", "node-route-controller")
NODE_LEASE_SECONDS = 40
#: Every write request (who, verb, resource) goes to logs/audit.log: `make bench` counts the operator's
#: writes from it, and a failing test's log copy shows what changed the cluster.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


#: The revision a test gives a model whose download must fail: kwok ends that download pod the way the
#: downloader ends on a revision the hub does not have (the exit code the Job's podFailurePolicy fails on).
FAILING_REVISION = "sandbox-download-fails"
FAILING_DOWNLOAD_STAGE = f"""apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: modelyard-download-fails
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  weight: 1  # kwok's own stages weigh 0: when both match, this one runs
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '.spec.containers.[].env.[].value'
      operator: 'In'
      values: ['{FAILING_REVISION}']
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      containerStatuses:
      {{{{ range $index, $item := .spec.containers }}}}
      - image: {{{{ $item.image | Quote }}}}
        name: {{{{ $item.name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{exit_code}}
            finishedAt: {{{{ $now | Quote }}}}
            reason: Error
            startedAt: {{{{ $now | Quote }}}}
      {{{{ end }}}}
      phase: Failed
"""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one sandbox keeps its files, and what it connects to."""

    directory: Path
    bin_dir: Path
    stages: Path
    api_port: int
    etcd_port: int
    etcd_peer_port: int
    api_host: str = "127.0.0.1"  #: the real node's address when the sandbox runs one
    real_node: bool = False

    @property
    def pki(self) -> Pki:
        return Pki(self.directory / "pki")

    def kubeconfig(self, component: str) -> Path:
        """The kubeconfig a component uses (the admin's is the user-facing ``<dir>/kubeconfig``)."""
        if component == "admin":
            return self.directory / "kubeconfig"
        return self.directory / "kubeconfigs" / f"{component}.kubeconfig"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def extra_stages(self) -> Path:
        """The sandbox's own kwok stages (FAILING_DOWNLOAD_STAGE), next to kwok's defaults."""
        return self.directory / "kwok-modelyard-stages.yaml"

    @property
    def audit_policy(self) -> Path:
        return self.directory / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.directory / "logs" / "audit.log"


def etcd(layout: Layout) -> list[str]:
    peer = f"http://127.0.0.1:{layout.etcd_peer_port}"
    client = f"http://127.0.0.1:{layout.etcd_port}"
    return [
        str(layout.binary("etcd")),
        "--name=sandbox",
        f"--data-dir={layout.directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sandbox={peer}",
        "--unsafe-no-fsync=true",  # throwaway data: durability buys nothing, fsync costs seconds
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]


def kube_apiserver(layout: Layout) -> list[str]:
    pki = layout.pki
    if layout.real_node:
        # pods on the real node reach the API server through the `kubernetes` Service: its endpoint is the
        # node address the server listens on; the server reaches kubelets (logs, exec) with its own cert
        node = [
            f"--kubelet-client-certificate={pki.client('apiserver-kubelet-client').cert}",
            f"--kubelet-client-key={pki.client('apiserver-kubelet-client').key}",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NodeRestriction",
        ]
    else:
        # Endpoints may not hold loopback addresses; nothing in the sandbox dials the in-cluster Service.
        node = ["--endpoint-reconciler-type=none"]
    return [
        str(layout.binary("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{layout.etcd_port}",
        f"--bind-address={layout.api_host}",
        f"--advertise-address={layout.api_host}",
        *node,
        f"--secure-port={layout.api_port}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki.service_accounts.cert}",
        f"--service-account-signing-key-file={pki.service_accounts.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
    ]


def kube_controller_manager(layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        str(layout.binary("kube-controller-manager")),
        f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
        "--secure-port=0",
        "--leader-elect=false",
        "--controllers=*," + ",".join(f"-{c}" for c in CLOUD_CONTROLLERS),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_accounts.key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        "--cluster-name=modelyard-sandbox",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--profiling=false",
    ]


def kube_scheduler(layout: Layout) -> list[str]:
    return [
        str(layout.binary("kube-scheduler")),
        f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
        "--secure-port=0",
        "--leader-elect=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--profiling=false",
    ]


def kwok(layout: Layout) -> list[str]:
    key, value = KWOK_ANNOTATION
    return [
        str(layout.binary("kwok")),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={layout.stages}",
        f"--config={layout.extra_stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        f"--cidr={POD_CIDR}",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
    ]


#: start order; stopped in reverse
COMMANDS = {
    "etcd": etcd,
    "kube-apiserver": kube_apiserver,
    "kube-controller-manager": kube_controller_manager,
    "kube-scheduler": kube_scheduler,
    "kwok": kwok,
}
