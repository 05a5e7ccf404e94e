"""modelyard.kube.login: the kubeconfig's exec credential plugin is run as client-go runs it (arguments,
environment, KUBERNETES_EXEC_INFO, a command relative to the kubeconfig), and what it answers becomes the
connection's credentials; a failing or misbehaving plugin is one clear error that carries nothing it printed.
(The same against the sandbox's API server: tests/sandbox/test_exec_login.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from modelyard.kube.login import EXEC_INFO_ENV, login_with_kubeconfig

V1 = "client.authentication.k8s.io/v1"
SECRET_OUTPUT = "planted-plugin-output-3f9a"


def plugin(directory: Path, body: str) -> Path:
    """An executable Python script in ``directory``: it records its argv, env and KUBERNETES_EXEC_INFO in
    ``seen.json`` next to it, then runs ``body``."""
    path = directory / "bin" / "plugin"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "seen = {'argv': sys.argv[1:], 'env': os.environ.get('PLUGIN_ENV'), "
        f"'info': json.loads(os.environ['{EXEC_INFO_ENV}'])}}\n"
        "(Path(__file__).parent / 'seen.json').write_text(json.dumps(seen))\n" + body
    )
    path.chmod(0o755)
    return path


def answer(status: dict[str, Any], api_version: str = V1) -> str:
    credential = {"apiVersion": api_version, "kind": "ExecCredential", "status": status}
    return f"print({json.dumps(json.dumps(credential))})\n"


def kubeconfig(directory: Path, exec_config: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    path = directory / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"exec": exec_config}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.chdir(tmp_path.parent)  # a relative command resolves against the kubeconfig, not the cwd
    return tmp_path


def login(path: Path, monkeypatch: pytest.MonkeyPatch) -> kopf.ConnectionInfo:
    monkeypatch.setenv("KUBECONFIG", str(path))
    info = login_with_kubeconfig()
    assert info is not None
    return info


def test_a_token_plugin_runs_as_client_go_runs_it(at: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(at, answer({"token": "exec-token-1", "expirationTimestamp": "2030-01-02T03:04:05Z"}))
    config = kubeconfig(
        at,
        {
            "apiVersion": V1,
            "command": "./bin/plugin",  # relative to the kubeconfig's directory
            "args": ["eks", "get-token", "--cluster-name", "prod"],
            "env": [{"name": "PLUGIN_ENV", "value": "from-kubeconfig"}],
            "interactiveMode": "Never",
            "provideClusterInfo": True,
        },
        cluster={
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": "Q0E=",
            "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "x"}}],
        },
    )
    info = login(config, monkeypatch)
    assert info.token == "exec-token-1"
    assert info.as_http_headers() == {"Authorization": "Bearer exec-token-1"}
    assert info.server == "https://127.0.0.1:6443"
    assert info.expiration is not None and info.expiration.year == 2030
    seen = json.loads((at / "bin" / "seen.json").read_text())
    assert seen["argv"] == ["eks", "get-token", "--cluster-name", "prod"]
    assert seen["env"] == "from-kubeconfig"
    assert seen["info"] == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {
            "interactive": False,
            "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": "Q0E=",
                "config": {"audience": "x"},
            },
        },
    }


def test_a_client_certificate_plugin_replaces_the_kubeconfigs_files(
    at: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"
    plugin(
        at,
        answer({"clientCertificateData": pem, "clientKeyData": key}, "client.authentication.k8s.io/v1beta1"),
    )
    info = login(
        kubeconfig(
            at, {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(at / "bin" / "plugin")}
        ),
        monkeypatch,
    )
    assert (info.certificate_data, info.private_key_data, info.token) == (pem, key, None)
    seen = json.loads((at / "bin" / "seen.json").read_text())
    assert seen["info"]["spec"] == {"interactive": False}  # no cluster unless provideClusterInfo


@pytest.mark.parametrize(
    ("exec_config", "body", "expected"),
    [
        (
            {"command": "no-such-plugin-here", "installHint": "install it with: brew install x\nmore"},
            "",
            "exec plugin 'no-such-plugin-here' not found: install it with: brew install x",
        ),
        (
            {},
            f"print({SECRET_OUTPUT!r})\nsys.stderr.write('token expired\\n')\nsys.exit(3)\n",
            "exec plugin './bin/plugin' exited 3: token expired",
        ),
        ({}, f"print({SECRET_OUTPUT!r})\n", "exec plugin './bin/plugin' printed no JSON ExecCredential"),
        (
            {},
            answer({"token": SECRET_OUTPUT}, "client.authentication.k8s.io/v1beta1"),
            "exec plugin './bin/plugin' answered 'client.authentication.k8s.io/v1beta1', was asked for",
        ),
        (
            {},
            answer({"expirationTimestamp": "2030-01-02T03:04:05Z"}),
            "exec plugin './bin/plugin' returned neither a token nor a client certificate",
        ),
        (
            {"apiVersion": "client.authentication.k8s.io/v1alpha1"},
            "",
            "apiVersion 'client.authentication.k8s.io/v1alpha1' is not supported",
        ),
        (
            {"interactiveMode": "Always"},
            "",
            "exec plugin './bin/plugin' needs a terminal (interactiveMode: Always)",
        ),
    ],
)
def test_a_failing_plugin_is_one_clear_error(
    at: Path, monkeypatch: pytest.MonkeyPatch, exec_config: dict[str, Any], body: str, expected: str
) -> None:
    plugin(at, body)
    config = kubeconfig(at, {"apiVersion": V1, "command": "./bin/plugin", **exec_config})
    with pytest.raises(kopf.LoginError) as raised:
        login(config, monkeypatch)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert SECRET_OUTPUT not in message


def test_a_kubeconfig_without_exec_is_kopfs_login(at: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = at / "kubeconfig"
    path.write_text(
        "current-context: c\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: static-t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    info = login(path, monkeypatch)
    assert (info.server, info.token, info.expiration) == ("https://127.0.0.1:1", "static-t", None)
