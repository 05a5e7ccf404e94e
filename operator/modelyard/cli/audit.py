"""``modelyard audit``: every LLM backend, who can call it, over which network, with which credentials and
which data; from manifest files (``-f``) or the live cluster (all namespaces, read-only, current kubeconfig).

The cluster policy the findings are judged against is the operator's, from the same ``MODELYARD_*``
environment variables (:meth:`modelyard.config.Settings.from_env`). Exit codes: 0, or 1 with ``--fail-on``
when a finding at or above that severity exists; 2 for bad input or an unreachable cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.api import API_VERSION, KINDS
from modelyard.api.common import Severity
from modelyard.api.policy import ClusterPolicy
from modelyard.audit.output import to_json, to_sarif, to_table
from modelyard.audit.report import Report, from_cluster, from_files
from modelyard.config import Settings
from modelyard.errors import UserError

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

FORMATS = ("table", "json", "sarif")
TIMEOUT_S = 30


def register(commands: Commands) -> None:
    """Add the ``audit`` subcommand."""
    audit = commands.add_parser(
        "audit", help="security report on every backend, from files or the cluster; a CI gate"
    )
    audit.add_argument(
        "-f", "--filename", type=Path, help="manifest file or directory (default: the cluster)"
    )
    audit.add_argument(
        "-o", "--output", choices=FORMATS, default="table", help="table (default), json, sarif"
    )
    audit.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        help="exit 1 when a finding at or above this severity exists",
    )
    audit.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Build the report, print it in the chosen format, and gate on ``--fail-on``."""
    policy = Settings.from_env().policy
    report = from_files(args.filename, policy) if args.filename is not None else _cluster_report(policy)
    if args.output == "table":
        sys.stdout.write(to_table(report))
    else:
        document = to_json(report) if args.output == "json" else to_sarif(report)
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if args.fail_on is not None and report.fails(Severity(args.fail_on)) else 0


def _cluster_report(policy: ClusterPolicy) -> Report:
    """The report on the cluster of the current kubeconfig; what goes wrong reaching it is one line."""
    return from_cluster(*asyncio.run(_read_cluster()), policy)


async def _read_cluster() -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """What the audit reads of the cluster, all namespaces, with the operator's own client logged in from
    the kubeconfig (an exec credential plugin included): the three kinds, and the namespace and labels of
    each NetworkPolicy. Nothing else (no Secret, ever)."""
    # Imported here: kopf (under modelyard.kube) costs ~0.3 s, which the offline commands should not pay.
    import kopf  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from modelyard.kube import ApiError, Kube, Unreachable  # noqa: PLC0415
    from modelyard.kube.login import login_with_kubeconfig  # noqa: PLC0415

    try:
        info = login_with_kubeconfig()
    except (kopf.LoginError, OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"no usable kubeconfig ({_first_line(exc)}); use -f to audit files") from None
    if info is None:
        raise UserError("no kubeconfig (KUBECONFIG is not set, no ~/.kube/config); use -f to audit files")
    kube = Kube.from_connection(info, timeout_s=TIMEOUT_S)
    try:
        listed = {kind: await kube.list(API_VERSION, kind, None) for kind in KINDS}
        policies = await kube.list("networking.k8s.io/v1", "NetworkPolicy", None)
    except ApiError as exc:
        raise UserError(f"the cluster answered {exc.status} {exc.reason}".rstrip()) from None
    except Unreachable as exc:
        raise UserError(f"cannot reach the cluster: {_first_line(exc)}") from None
    finally:
        await kube.close()
    metadata = [
        {"namespace": p["metadata"].get("namespace"), "labels": p["metadata"].get("labels") or {}}
        for p in policies
    ]
    return listed, metadata


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
