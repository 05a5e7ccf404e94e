"""Logging in from a kubeconfig, outside a cluster (``modelyard audit``): kopf's own kubeconfig login, the
operator's, plus the exec credential plugins managed clusters configure (``aws eks get-token``,
``kubelogin``, ``gke-gcloud-auth-plugin``): client.authentication.k8s.io/v1 (and v1beta1) ExecCredential.

The plugin is run with the kubeconfig's arguments and environment and ``KUBERNETES_EXEC_INFO`` (what it is
asked for, and the cluster when ``provideClusterInfo`` is set); it prints an ExecCredential whose status holds
a bearer token or a client certificate and key. Nothing of what it prints is logged or put into an error.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import yaml

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_INFO_ENV = "KUBERNETES_EXEC_INFO"
#: a cluster's extension that is handed to its exec plugin as spec.cluster.config
EXEC_EXTENSION = "client.authentication.k8s.io/exec"
EXEC_TIMEOUT_S = 60.0
Obj = dict[str, Any]


def login_with_kubeconfig(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's kubeconfig login (None without a kubeconfig), with the current user's exec plugin run when it
    has one. Raises :class:`kopf.LoginError` (or OSError, yaml.YAMLError for an unreadable kubeconfig)."""
    settings = kwargs.pop("settings", None) or kopf.OperatorSettings()
    info = kopf.login_with_kubeconfig(settings=settings, **kwargs)
    if info is None:
        return None
    user, cluster, directory = current_user()
    if not user.get("exec"):
        return info
    status = run_exec_plugin(user["exec"], cluster, directory)
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if not token and not (cert and key):
        raise kopf.LoginError(
            f"exec plugin {user['exec'].get('command')!r} returned neither a token nor a client certificate"
        )
    expires = status.get("expirationTimestamp")
    changes: dict[str, Any] = {"token": token or info.token}
    if cert and key:
        changes |= {
            "certificate_path": None,
            "certificate_data": cert,
            "private_key_path": None,
            "private_key_data": key,
        }
    if expires:
        changes["expiration"] = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    return dataclasses.replace(info, **changes)


def kubeconfig_paths() -> list[Path]:
    """The files kopf reads, in its order: ``KUBECONFIG`` (a path list), else ``~/.kube/config``."""
    value = os.environ.get("KUBECONFIG") or ""
    if not value and Path("~/.kube/config").expanduser().exists():
        value = "~/.kube/config"
    return [Path(p.strip()).expanduser() for p in value.split(os.pathsep) if p.strip()]


def current_user() -> tuple[Obj, Obj, Path]:
    """The current context's user and cluster, merged as kopf merges them (the first file that names one
    wins), and the directory of the file that defined the user (an exec command's relative path starts
    there)."""
    current: str | None = None
    contexts: dict[str, Obj] = {}
    clusters: dict[str, Obj] = {}
    users: dict[str, tuple[Obj, Path]] = {}
    for path in kubeconfig_paths():
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context")
        for item in config.get("contexts") or []:
            contexts.setdefault(item["name"], item.get("context") or {})
        for item in config.get("clusters") or []:
            clusters.setdefault(item["name"], item.get("cluster") or {})
        for item in config.get("users") or []:
            users.setdefault(item["name"], (item.get("user") or {}, path.parent))
    if current is None or current not in contexts:
        raise kopf.LoginError("the kubeconfig has no current context")
    context = contexts[current]
    user, directory = users.get(context.get("user", ""), ({}, Path.cwd()))
    return user, clusters.get(context.get("cluster", ""), {}), directory


def run_exec_plugin(config: Obj, cluster: Obj, directory: Path, timeout_s: float = EXEC_TIMEOUT_S) -> Obj:
    """Run the kubeconfig's exec plugin ``config`` for ``cluster``; the ExecCredential's status."""
    api_version = config.get("apiVersion")
    command = str(config.get("command") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise kopf.LoginError(
            f"exec plugin {command!r}: apiVersion {api_version!r} is not supported "
            f"(supported: {', '.join(EXEC_API_VERSIONS)})"
        )
    if not command:
        raise kopf.LoginError("exec plugin without a command")
    mode = config.get("interactiveMode") or "IfAvailable"
    interactive = mode != "Never" and sys.stdin is not None and sys.stdin.isatty()
    if mode == "Always" and not interactive:
        raise kopf.LoginError(f"exec plugin {command!r} needs a terminal (interactiveMode: Always)")
    spec: Obj = {"interactive": interactive}
    if config.get("provideClusterInfo"):
        spec["cluster"] = _cluster_info(cluster, directory)
    request = {"apiVersion": api_version, "kind": "ExecCredential", "spec": spec}
    env = {**os.environ, **{e["name"]: e["value"] for e in config.get("env") or []}}
    env[EXEC_INFO_ENV] = json.dumps(request)
    # a command with a path separator is relative to the kubeconfig that names it; a bare name is on PATH
    relative = os.sep in command and not Path(command).is_absolute()
    executable = str(directory / command) if relative else command
    try:
        result = subprocess.run(
            [executable, *(str(a) for a in config.get("args") or [])],
            env=env,
            stdin=None if interactive else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        hint = (config.get("installHint") or "").strip().splitlines()
        raise kopf.LoginError(
            f"exec plugin {command!r} not found" + (f": {hint[0]}" if hint else "")
        ) from None
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise kopf.LoginError(f"exec plugin {command!r} failed: {type(exc).__name__}") from None
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise kopf.LoginError(
            f"exec plugin {command!r} exited {result.returncode}" + (f": {said[-1][:200]}" if said else "")
        )
    try:
        credential = json.loads(result.stdout)
    except ValueError:
        raise kopf.LoginError(f"exec plugin {command!r} printed no JSON ExecCredential") from None
    if not isinstance(credential, dict) or credential.get("kind") != "ExecCredential":
        raise kopf.LoginError(f"exec plugin {command!r} printed no ExecCredential")
    if credential.get("apiVersion") != api_version:
        raise kopf.LoginError(
            f"exec plugin {command!r} answered {credential.get('apiVersion')!r}, "
            f"was asked for {api_version!r}"
        )
    status: Obj = credential.get("status") or {}
    return status


def _cluster_info(cluster: Obj, directory: Path) -> Obj:
    """spec.cluster of the ExecCredential: the kubeconfig's cluster, its CA as data, its exec extension."""
    info: Obj = {"server": cluster.get("server", "")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(key) is not None:
            info[key] = cluster[key]
    if cluster.get("certificate-authority-data"):
        info["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif cluster.get("certificate-authority"):
        ca = (directory / str(cluster["certificate-authority"])).read_bytes()
        info["certificate-authority-data"] = base64.b64encode(ca).decode()
    for extension in cluster.get("extensions") or []:
        if extension.get("name") == EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info
