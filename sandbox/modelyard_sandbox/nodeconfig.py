"""Configuration of the sandbox's real node: containerd, kubelet, CNI, kube-proxy, kube-router and CoreDNS.

Pure functions: paths and addresses in, file contents and manifests out. ``realnode.py`` writes and runs
them.

Addresses. The node has one fixed address, :data:`NODE_IP`, on a bridge the sandbox creates
(:data:`BRIDGE`); the bridge also carries the pods (CNI bridge plugin, gateway :data:`POD_GATEWAY`). The API
server listens on and advertises :data:`NODE_IP`, so pods reach it through the ``kubernetes`` Service and
nothing listens beyond this machine. kwok's simulated pods get addresses in ``components.POD_CIDR``, which
the sandbox routes as unreachable, so a connection to a simulated pod fails here instead of leaving the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "real-node"
NODE_IP = "10.250.0.1"
BRIDGE = "modelyard0"
#: The bridge's own MAC address (locally administered), set explicitly so the kernel keeps it. A bridge
#: whose address was never set takes the lowest MAC of its ports and moves whenever a pod's veth with a
#: lower one joins. A pod kept the old one for its gateway (POD_GATEWAY), REACHABLE for as long as its
#: traffic to Service IPs (DNATed, which br_netfilter delivers whatever the MAC) confirmed it; its answers
#: straight to NODE_IP (the kubelet's probes) reached the host under a MAC no longer the bridge's and were
#: dropped as another host's (``ip -s -s link`` counts them as otherhost): the operator's probes timed out
#: for minutes.
BRIDGE_MAC = "02:6d:79:00:00:01"
NODE_POD_CIDR = "10.245.0.0/24"
POD_GATEWAY = "10.245.0.1"
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "modelyard-pods"
#: The label the real node carries (kwok's nodes carry ``type=kwok``).
NODE_LABEL = ("modelyard.dev/sandbox-node", "real")
#: Fixed because only one real node runs per machine: containerd's socket and state, runc's state, and the
#: record of which sandbox owns the node.
RUN_DIR = Path("/run/modelyard-node")
#: Under the kubelet's cgroup root every pod of the node lives, in every cgroup v1 hierarchy.
CGROUP_ROOT = "modelyard-node"
#: Loopback ports of the node's health and metrics endpoints (the kubelet serves on NODE_IP:10250).
KUBELET_PORT = 10250
KUBE_PROXY_HEALTHZ = "127.0.0.1:10256"
KUBE_PROXY_METRICS = "127.0.0.1:10249"
COREDNS_LABELS = {"k8s-app": "kube-dns"}


@dataclass(frozen=True, slots=True)
class NodePaths:
    """Where one real node keeps its files: data under the sandbox directory, runtime state in RUN_DIR."""

    directory: Path  #: ``<sandbox>/node``
    bin_dir: Path  #: the build-node.sh output

    @property
    def containerd_root(self) -> Path:
        return self.directory / "containerd"

    @property
    def containerd_state(self) -> Path:
        return RUN_DIR / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return RUN_DIR / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return RUN_DIR / "runc"

    @property
    def containerd_config(self) -> Path:
        return self.directory / "containerd.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.directory / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.directory / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.directory / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.directory / "cni" / "ipam"

    @property
    def cni_bin_dir(self) -> Path:
        return self.bin_dir / "cni"

    @property
    def kube_proxy_config(self) -> Path:
        return self.directory / "kube-proxy.yaml"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


def containerd_config(paths: NodePaths, pause_image: str) -> str:
    """containerd 2.x (config version 4): its own root, state and socket, no config imports from /etc;
    runc with cgroupfs (cgroup v1); the pause image pinned as the sandbox image; CNI from the sandbox's
    directories; network namespaces under its state directory; no TCP, debug or metrics listener, no NRI
    socket, no /opt install plugin."""
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    socket = str(paths.containerd_socket)
    return f"""version = 4
root = {json.dumps(str(paths.containerd_root))}
state = {json.dumps(str(paths.containerd_state))}
imports = [{json.dumps(str(paths.directory / "containerd.d" / "*.toml"))}]
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.image-verifier.v1.bindir",
]

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = {json.dumps(socket)}
  [plugins.'io.containerd.server.v1.ttrpc']
    address = {json.dumps(socket + ".ttrpc")}
  [plugins.'io.containerd.server.v1.debug']
    address = ""
  [plugins.'io.containerd.server.v1.metrics']
    address = ""
  [plugins.'io.containerd.server.v1.grpc-tcp']
    address = ""

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {json.dumps(pause_image)}

  [{runtime}]
    netns_mounts_under_state_dir = true
    enable_selinux = false
    # the machine withholds CAP_SYS_RESOURCE even from root: lowering oom_score_adj (the kubelet asks
    # -998 for pause containers) fails in runc, so scores are clamped at containerd's own
    restrict_oom_score_adj = true
    [{runtime}.containerd]
      default_runtime_name = "runc"
      [{runtime}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [{runtime}.containerd.runtimes.runc.options]
          BinaryName = "runc"
          Root = {json.dumps(str(paths.runc_root))}
          SystemdCgroup = false
    [{runtime}.cni]
      bin_dirs = [{json.dumps(str(paths.cni_bin_dir))}]
      conf_dir = {json.dumps(str(paths.cni_conf_dir))}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def cni_config(paths: NodePaths) -> dict[str, Any]:
    """The pod network: the sandbox's bridge, host-local addresses from the node's pod CIDR (default route
    through POD_GATEWAY, an address of the bridge), port mappings. No masquerading: pods reach this machine
    (the node address, Service IPs, each other) and nothing else."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # the sandbox owns the bridge's addresses (hostnet.setup): the gateway as a /32 and the pod
                # route with the node address as source, so the kubelet's probes and the host's
                # connections come from NODE_IP, which kube-router lets reach the node's pods
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, ca_cert: Path, serving_cert: Path, serving_key: Path) -> dict[str, Any]:
    """KubeletConfiguration: cgroup v1 with the cgroupfs driver (``failCgroupV1: false``), authentication
    by client certificate and webhook, authorization by webhook, no read-only port, no image garbage
    collection (the images were imported, there is no registry to pull them again), evictions only when the
    disk is really full."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",  # pods get cluster DNS only; nothing forwards to the host's resolvers
        "podCIDR": NODE_POD_CIDR,
        "podLogsDir": str(paths.pod_logs),
        "serializeImagePulls": True,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "maxPods": 110,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "registerNode": True,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
    }


def kubelet_args(paths: NodePaths, kubeconfig: Path) -> list[str]:
    labels = "=".join(NODE_LABEL)
    return [
        str(paths.binary("kubelet")),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(kubeconfig: Path) -> dict[str, Any]:
    """kube-proxy in nftables mode (its own ``kube-proxy`` tables, removed with one command; IPVS is not in
    this kernel); leaves the machine's conntrack sysctls as they are; NodePorts on the node address only."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "clusterCIDR": NODE_POD_CIDR,
        "healthzBindAddress": KUBE_PROXY_HEALTHZ,
        "metricsBindAddress": KUBE_PROXY_METRICS,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "nftables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


def kube_proxy_args(paths: NodePaths) -> list[str]:
    return [str(paths.binary("kube-proxy")), f"--config={paths.kube_proxy_config}", "--v=1"]


def kube_router_args(paths: NodePaths, kubeconfig: Path, service_cidr: str) -> list[str]:
    """kube-router as the NetworkPolicy firewall only: no BGP routing, no service proxy, no health or
    metrics listener."""
    return [
        str(paths.binary("kube-router")),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={service_cidr}",
        "--health-port=0",
        "--metrics-port=0",
        "--iptables-sync-period=1m",
        "--v=1",
    ]


#: What kube-router's firewall reads (its own docs' RBAC for --run-firewall).
KUBE_ROUTER_RULES = [
    {"apiGroups": [""], "resources": ["namespaces", "pods", "nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["get", "list", "watch"]},
]

COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    hosts {{
        {NODE_IP} host.modelyard.internal
        fallthrough
    }}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loop
    reload
    loadbalance
}}
"""


def coredns_manifests(image: str) -> list[dict[str, Any]]:
    """Cluster DNS as a Deployment in kube-system labelled ``k8s-app: kube-dns`` (the label modelyard's
    NetworkPolicies allow DNS egress to) behind the ``kube-dns`` Service at CLUSTER_DNS_IP. Names outside
    the cluster domain are not forwarded anywhere (no ``forward`` plugin): the sandbox has no upstream."""
    name, namespace = "coredns", "kube-system"
    meta = {"name": name, "namespace": namespace, "labels": dict(COREDNS_LABELS)}
    container = {
        "name": "coredns",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            # an image whose /coredns carries the file capability needs it in the bounding set to exec
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    pod_spec = {
        "serviceAccountName": name,
        "dnsPolicy": "Default",
        "priorityClassName": "system-cluster-critical",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
            # port 53 also for an image without the file capability: unprivileged ports start at 53 in
            # the pod's network namespace
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}],
        },
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": name}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns", "labels": dict(COREDNS_LABELS)},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns", "labels": dict(COREDNS_LABELS)},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(COREDNS_LABELS)},
                "template": {"metadata": {"labels": dict(COREDNS_LABELS)}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": namespace, "labels": dict(COREDNS_LABELS)},
            "spec": {
                "selector": dict(COREDNS_LABELS),
                "clusterIP": CLUSTER_DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def kube_router_manifests() -> list[dict[str, Any]]:
    """The ClusterRole kube-router's firewall needs, bound to its certificate's user."""
    name = "modelyard-sandbox:kube-router"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": KUBE_ROUTER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-router"}
            ],
        },
    ]
