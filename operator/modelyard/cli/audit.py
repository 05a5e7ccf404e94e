"""``modelyard audit``: every LLM backend, who can call it, over which network, with which credentials and
which data; from manifest files (``-f``) or the live cluster (all namespaces, read-only, current kubeconfig).

The cluster policy the findings are judged against is the operator's, from the same ``MODELYARD_*``
environment variables (:meth:`modelyard.config.Settings.from_env`). Exit codes: 0, or 1 with ``--fail-on``
when a finding at or above that severity exists; 2 for bad input or an unreachable cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.api import GROUP, KINDS, VERSION
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
    # Imported here: the kubernetes client costs ~60 MiB, which `modelyard run` (same CLI) should not pay.
    from kubernetes import config  # noqa: PLC0415
    from kubernetes.client.rest import ApiException  # noqa: PLC0415
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    try:
        api = config.new_client_from_config()
    except (ConfigException, OSError) as exc:
        raise UserError(f"no usable kubeconfig ({_first_line(exc)}); use -f to audit files") from None
    try:
        return from_cluster(*_read_cluster(api), policy)
    except ApiException as exc:
        raise UserError(f"the cluster answered {exc.status} {exc.reason}") from None
    except HTTPError as exc:
        raise UserError(f"cannot reach the cluster: {_first_line(exc)}") from None
    finally:
        api.close()


def _read_cluster(api: Any) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """What the audit reads of the cluster behind ``api`` (a ``kubernetes`` ApiClient), all namespaces:
    the three kinds, and the namespace and labels of each NetworkPolicy. Nothing else (no Secret, ever)."""
    from kubernetes import client  # noqa: PLC0415 - see _cluster_report

    custom = client.CustomObjectsApi(api)
    listed = {
        kind: custom.list_cluster_custom_object(GROUP, VERSION, cls.PLURAL, _request_timeout=TIMEOUT_S).get(
            "items", []
        )
        for kind, cls in KINDS.items()
    }
    policies = client.NetworkingV1Api(api).list_network_policy_for_all_namespaces(_request_timeout=TIMEOUT_S)
    metadata = [
        {"namespace": p.metadata.namespace, "labels": p.metadata.labels or {}} for p in policies.items
    ]
    return listed, metadata


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the kubernetes client's run long)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
