"""``modelyard sandbox up|down|status``: the ``modelyard`` command finds :func:`main` through the
``modelyard.commands`` entry point this distribution declares, and hands it the arguments after
``sandbox``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from modelyard_sandbox.nodeconfig import NODE_IP
from modelyard_sandbox.sandbox import Ports, Sandbox

DEFAULT_DIR = Path(".sandbox")


def main(argv: Sequence[str]) -> int:
    """Run ``modelyard sandbox ARGV...``; a user error is raised (``modelyard.errors.UserError``) for the
    ``modelyard`` command to print as one line."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The ``sandbox`` command and its ``up``, ``down`` and ``status`` subcommands."""
    sandbox = argparse.ArgumentParser(
        prog="modelyard sandbox",
        description="local control plane with simulated GPU nodes and one real node",
    )
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="{up,down,status}")
    up = commands.add_parser(
        "up",
        help="start etcd, kube-apiserver, controller-manager, scheduler, kwok and the real node "
        "(containerd, kubelet, kube-proxy, kube-router, CoreDNS)",
    )
    up.add_argument("--gpu-nodes", type=int, default=2, metavar="N", help="GPU nodes to create (default 2)")
    up.add_argument("--gpu-type", default="nvidia-h100-80gb", help="GPU type from the catalog")
    up.add_argument("--gpus-per-node", type=int, default=8, metavar="N", help="GPUs per node (default 8)")
    up.add_argument(
        "--cpu-nodes",
        type=int,
        default=None,
        metavar="M",
        help="simulated CPU-only nodes (default 0 with the real node, which runs non-GPU pods; else 1)",
    )
    up.add_argument(
        "--no-real-node",
        dest="real_node",
        action="store_false",
        help="simulated nodes only: no kubelet, containerd or pod networking (needs no root; several such "
        "sandboxes can run next to one with a real node)",
    )
    up.add_argument(
        "--volumes",
        type=int,
        default=50,
        metavar="V",
        help="PersistentVolumes for claims to bind (default 50)",
    )
    up.add_argument(
        "--api-port",
        type=int,
        default=Ports().apiserver,
        help=f"kube-apiserver port (on {NODE_IP} with the real node, else on 127.0.0.1)",
    )
    up.add_argument(
        "--etcd-port",
        type=int,
        default=Ports().etcd_client,
        help="etcd client port on 127.0.0.1 (the peer port is the next one)",
    )
    up.add_argument(
        "--lws",
        action="store_true",
        help="also run the LeaderWorkerSet controller with its webhooks (multi-node models; ~9 s, ~51 MiB)",
    )
    up.set_defaults(func=_up)
    down = commands.add_parser("down", help="stop the sandbox's processes and remove its directory")
    down.set_defaults(func=_down)
    status = commands.add_parser("status", help="show each component, the API server URL and the nodes")
    status.set_defaults(func=_status)
    for command in (up, down, status):
        command.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_DIR,
            help="sandbox directory (default .sandbox in the current directory)",
        )
    return sandbox


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ports = Ports(apiserver=args.api_port, etcd_client=args.etcd_port, etcd_peer=args.etcd_port + 1)
    sandbox = Sandbox(args.dir, ports=ports)
    sandbox.up(
        gpu_nodes=args.gpu_nodes,
        gpu_type=args.gpu_type,
        gpus_per_node=args.gpus_per_node,
        cpu_nodes=args.cpu_nodes,
        volumes=args.volumes,
        real_node=args.real_node,
        lws=args.lws,
    )
    if sandbox.recovered is not None:
        print(f"cleaned up after a real node that was not stopped: {sandbox.recovered.summary()}")
    status = sandbox.status()
    real = ", 1 real node" if args.real_node else ""
    cpu_nodes = (status.nodes_total or 0) - args.gpu_nodes - args.real_node
    print(
        f"sandbox up in {time.monotonic() - started:.1f}s: {status.nodes_ready} nodes Ready "
        f"({args.gpu_nodes} x {args.gpus_per_node} {args.gpu_type}, {cpu_nodes} CPU{real}), "
        f"RSS {status.rss_mib:.0f} MiB"
    )
    print(f"API {sandbox.api_url}\nexport KUBECONFIG={sandbox.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    leftovers = Sandbox(args.dir).down()
    cleaned = f"; real node cleaned up: {leftovers.summary()}" if leftovers else ""
    print(f"sandbox in {args.dir} stopped and removed in {time.monotonic() - started:.1f}s{cleaned}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = Sandbox(args.dir).status()
    print(status.render())
    return 0 if all(c.running for c in status.components) else 1
