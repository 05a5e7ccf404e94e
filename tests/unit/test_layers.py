"""hack/layers.py: the import layering check finds what it must, and the package passes it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "hack" / "layers.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


layers = _load()


def package(root: Path, files: dict[str, str], name: str = "modelyard") -> Path:
    """A package named ``name`` under ``root`` with ``files`` (path -> source) and their __init__.py."""
    pkg = root / name
    for file, source in {"__init__.py": "", **files}.items():
        path = pkg / file
        path.parent.mkdir(parents=True, exist_ok=True)
        init = path.parent / "__init__.py"
        if not init.exists():
            init.write_text("")
        path.write_text(source)
    return pkg


def check(pkg: Path, sandbox: Path | None = None) -> tuple[int, str]:
    out: list[str] = []
    status = layers.report(pkg, graph=False, out=out, sandbox=sandbox)
    return status, "\n".join(out)


CLEAN = {
    "api/common.py": "from modelyard.errors import UserError\n",
    "errors.py": "class UserError(Exception): ...\n",
    "render/common.py": "from modelyard.api.common import UserError\nfrom . import yamlout\n",
    "render/yamlout.py": "import yaml\n",
    "controllers/common.py": "import kopf\nfrom modelyard.render.common import UserError\n",
    "cli/main.py": "from modelyard.controllers import common\n",
}


def test_a_clean_package_passes(tmp_path: Path) -> None:
    status, out = check(package(tmp_path, CLEAN))
    assert status == 0, out
    assert "no back-edges" in out
    assert "tier 3 render       pure   3 modules  -> api\n" in out


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        # an absolute import up the layers
        (
            {"api/model.py": "from modelyard.controllers.common import kopf\n"},
            "modelyard.api.model:1: api (tier 1) imports modelyard.controllers.common (controllers, tier 5)",
        ),
        # a relative one, deferred into a function
        (
            {"render/gateway.py": "def f():\n    from ..cli import main\n"},
            "modelyard.render.gateway:2: render (tier 3) imports modelyard.cli.main (cli, tier 6)",
        ),
        # sideways: two layers of one tier
        (
            {"audit/report.py": "from modelyard import config\n", "config.py": ""},
            "modelyard.audit.report:1: audit (tier 4) imports modelyard.config (config, tier 4): "
            "a back-edge, sideways",
        ),
        # a pure layer reaching for an I/O library
        (
            {"render/offline.py": "def f():\n    from kubernetes import client\n"},
            "modelyard.render.offline:2: render is pure and imports kubernetes",
        ),
        ({"planning/cloud.py": "import boto3.session\n"}, "planning is pure and imports boto3"),
        # a package no layer declares
        ({"newthing/x.py": ""}, "modelyard.newthing: in no declared layer"),
        # the official client, which only the tests install (the dev extra)
        (
            {"cli/audit.py": "def f():\n    from kubernetes import client\n"},
            "modelyard.cli.audit:2: cli imports kubernetes, which is not a runtime dependency",
        ),
        # the sandbox, which neither the wheel nor the image ships, even deferred
        (
            {"cli/main.py": "def f():\n    from modelyard_sandbox.cli import main\n"},
            "modelyard.cli.main:2: cli imports modelyard_sandbox, which modelyard does not ship",
        ),
    ],
)
def test_a_planted_violation_fails_the_check(tmp_path: Path, planted: dict[str, str], expected: str) -> None:
    status, out = check(package(tmp_path, {**CLEAN, **planted}))
    assert status == 1
    assert expected in out, out


def test_the_package_has_no_back_edges() -> None:
    """modelyard itself: run as `make lint` runs it, with the graph."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--graph"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "modelyard.render.gateway -> " in result.stdout
    assert "modelyard_sandbox.sandbox -> modelyard.errors" in result.stdout
    assert "no back-edges" in result.stdout


SANDBOX = {
    "sandbox.py": "import httpx\nfrom modelyard.render.common import UserError\nfrom . import kube\n",
    "kube.py": "from modelyard import errors\nfrom modelyard.errors import UserError\n",
}


def test_the_sandbox_may_import_lower_layers_of_modelyard(tmp_path: Path) -> None:
    sandbox = package(tmp_path, SANDBOX, name="modelyard_sandbox")
    status, out = check(package(tmp_path, CLEAN), sandbox)
    assert status == 0, out
    assert "tier 5 sandbox      I/O    3 modules  -> core, render\n" in out


def test_the_sandbox_importing_the_controllers_or_the_cli_fails(tmp_path: Path) -> None:
    planted = {
        "cli.py": "def f():\n    from modelyard.cli import main\n",
        "sandbox.py": "import modelyard.controllers.common\n",
    }
    sandbox = package(tmp_path, {**SANDBOX, **planted}, name="modelyard_sandbox")
    status, out = check(package(tmp_path, CLEAN), sandbox)
    assert status == 1
    assert "modelyard_sandbox.cli:2: sandbox (tier 5) imports modelyard.cli (cli, tier 6)" in out, out
    assert (
        "modelyard_sandbox.sandbox:1: sandbox (tier 5) imports modelyard.controllers.common "
        "(controllers, tier 5): a back-edge" in out
    ), out
