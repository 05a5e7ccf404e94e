"""What ships: the runtime wheel (the one the Dockerfile builds, from the same files) holds the package and
nothing of the development tooling; the sandbox is a distribution of its own that declares what it imports."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox"
#: distribution name -> the module it provides, for the sandbox's declared dependencies
MODULES = {"modelyard": "modelyard", "httpx": "httpx", "cryptography": "cryptography", "PyYAML": "yaml"}


def _requirement_name(requirement: str) -> str:
    """The distribution a requirement names (``PyYAML>=6`` -> ``PyYAML``)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match is not None, requirement
    return match.group(0)


def test_the_sandbox_declares_exactly_what_it_imports() -> None:
    declared = tomllib.loads((SANDBOX / "pyproject.toml").read_text())["project"]["dependencies"]
    declared_modules = {MODULES[_requirement_name(r)] for r in declared}
    imported: set[str] = set()
    for path in (SANDBOX / "modelyard_sandbox").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.partition(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "modelyard_sandbox"}
    assert third_party == declared_modules


def _wheel(source: Path, out: Path) -> zipfile.ZipFile:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def _runtime_requirements(wheel: zipfile.ZipFile) -> set[str]:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    return {
        _requirement_name(line.removeprefix("Requires-Dist: "))
        for line in lines
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    }


@pytest.mark.timeout(600)
def test_the_runtime_wheel_holds_the_package_and_no_development_tooling(tmp_path: Path) -> None:
    """Built from what the Dockerfile copies (pyproject.toml, README.md, operator/)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "operator", source / "operator", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    wheel = _wheel(source, tmp_path / "dist")
    names = wheel.namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"modelyard"}
    assert not [n for n in names if "sandbox" in n]
    expected = {
        f"modelyard/{p.relative_to(ROOT / 'operator' / 'modelyard').as_posix()}"
        for p in (ROOT / "operator" / "modelyard").rglob("*.py")
    }
    assert expected <= set(names)
    assert "kubernetes" not in _runtime_requirements(wheel)  # the tests' observer only: the dev extra
    assert "kopf" in _runtime_requirements(wheel)


@pytest.mark.timeout(600)
def test_the_sandbox_wheel_holds_the_sandbox_and_its_command(tmp_path: Path) -> None:
    source = tmp_path / "sandbox"
    shutil.copytree(SANDBOX, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    wheel = _wheel(source, tmp_path / "dist")
    packages = {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"modelyard_sandbox"}
    assert _runtime_requirements(wheel) == set(MODULES)
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "[modelyard.commands]\nsandbox = modelyard_sandbox.cli:main" in wheel.read(entry_points).decode()
