"""The ``modelyard`` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def modelyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_plan_405b_on_l4_does_not_fit() -> None:
    result = modelyard(
        "plan", "--model", "meta-llama/Llama-3.1-405B-Instruct", "--gpu", "nvidia-l4", "--max-nodes", "1"
    )
    assert result.returncode == 1
    assert "needs 97.0 GiB per GPU at tensor-parallel size 8" in result.stderr
    assert "nvidia-l4 has 20.2 GiB usable per GPU" in result.stderr
    spanned = modelyard("plan", "--model", "meta-llama/Llama-3.1-405B-Instruct", "--gpu", "nvidia-l4")
    assert spanned.returncode == 1
    spanned_error = "needs 26.4 GiB per GPU on 4 nodes (tensor-parallel size 8 x pipeline-parallel size 4"
    assert spanned_error in spanned.stderr
    assert "and 4 nodes is the widest span allowed" in spanned.stderr


def test_plan_8b_on_h100_fits_on_one_gpu() -> None:
    result = modelyard("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "nvidia-h100-80gb")
    assert result.returncode == 0, result.stderr
    rows = {
        label.strip(): value.strip()
        for label, value in (line.split("  ", 1) for line in result.stdout.splitlines())
    }
    assert rows["tensor-parallel size"] == "1"


def test_plan_files_plans_every_model_deployment() -> None:
    result = modelyard("plan", "-f", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert (
        "# ModelDeployment/llama-8b" in result.stdout and "# ModelDeployment/llama-70b-nim" in result.stdout
    )


def test_plan_file_that_does_not_fit_exits_1(tmp_path: Path) -> None:
    body = yaml.safe_load((EXAMPLES / "vllm-llama-8b.yaml").read_text())
    body["spec"]["model"]["source"] = "hf://meta-llama/Llama-3.1-405B-Instruct"
    body["spec"]["gpu"]["type"] = "nvidia-l4"
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(body))
    result = modelyard("plan", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "does not fit" in result.stdout and "usable per GPU" in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x\n",
            "bad.yaml:4: malformed YAML",
        ),
        ("apiVersion: modelyard.dev/v1alpha1\nkind: Model\nmetadata: {name: x}\n", "unknown kind 'Model'"),
        (
            "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: a, source: 'hf://meta-llama/Llama-3.1-8B-Instruct'}\n"
            "  gpu: {type: nvidia-h100-80gb}\n"
            "  replicas: 2\n  autoscaling: {maxReplicas: 3}\n",
            "bad.yaml:1: ModelDeployment/x: spec: replicas and autoscaling are exclusive",
        ),
        (
            "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: a, source: 'hf://meta-llama/Llama-3.1-8B-Instruct'}\n  gpu: {type: nvidia-t4}\n",
            "spec.gpu.type: unknown GPU type 'nvidia-t4'",
        ),
        (
            "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: a, source: 'hf://acme/secret-model'}\n  gpu: {type: nvidia-l4}\n",
            "spec.model.source: hf://acme/secret-model is not in the model catalog",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no modelyard.dev objects found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    for command in (["render", "-f"], ["plan", "-f"]):
        line = one_line_error(modelyard(*command, str(tmp_path / "bad.yaml")))
        assert expected in line


def test_plan_unknown_model_and_missing_file() -> None:
    assert "not in the model catalog" in one_line_error(
        modelyard("plan", "--model", "acme/x", "--gpu", "nvidia-l4")
    )
    assert "no such file or directory" in one_line_error(modelyard("render", "-f", "does/not/exist"))


def test_render_examples_yaml_and_json() -> None:
    as_yaml = modelyard("render", "-f", str(EXAMPLES))
    assert as_yaml.returncode == 0, as_yaml.stderr
    objects = list(yaml.safe_load_all(as_yaml.stdout))
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "NetworkPolicy", "Job", "PersistentVolumeClaim"} <= kinds
    as_json = modelyard("render", "-f", str(EXAMPLES), "-o", "json")
    assert json.loads(as_json.stdout)["items"] == objects
    assert modelyard("render", "-f", str(EXAMPLES)).stdout == as_yaml.stdout  # byte-identical


def test_crds_prints_three_definitions() -> None:
    result = modelyard("crds")
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout)]
    assert names == [
        "modeldeployments.modelyard.dev",
        "providerbindings.modelyard.dev",
        "routepolicies.modelyard.dev",
    ]


def test_sandbox_is_found_through_its_entry_point(tmp_path: Path) -> None:
    """``modelyard sandbox`` comes from the modelyard-sandbox distribution (sandbox/), handed every argument
    after ``sandbox``, options first included."""
    listed = modelyard("--help")
    assert "sandbox" in listed.stdout
    usage = modelyard("sandbox", "--help")
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: modelyard sandbox [-h] {up,down,status}")
    status = modelyard("sandbox", "status", "--dir", str(tmp_path))
    assert status.returncode == 1, status.stderr  # nothing running there
    assert f"sandbox {tmp_path}" in status.stdout
    assert "kube-apiserver" in status.stdout
    bad = modelyard("sandbox", "up", "--gpu-nodes", "x")  # argparse's usage error, as for every command
    assert bad.returncode == 2
    assert "modelyard sandbox up: error: argument --gpu-nodes: invalid int value: 'x'" in bad.stderr


def test_sandbox_without_its_distribution_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wheel and the image have no sandbox: the command says how to install it, in one line, exit 2."""
    from modelyard.cli import main  # noqa: PLC0415

    monkeypatch.setattr(main, "entry_points", lambda **_: ())  # as where modelyard-sandbox is not installed
    assert main.main(["sandbox", "up", "--no-real-node"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "modelyard sandbox: not installed: install modelyard-sandbox from a clone of the repository: "
        "pip install ./sandbox (make install does)"
    ]


def test_unknown_arguments_are_still_refused() -> None:
    result = modelyard("crds", "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


def test_the_offline_commands_import_neither_kopf_nor_a_kubernetes_client() -> None:
    """kopf (~0.3 s) and the clients are imported when a command reaches a cluster, not by ``modelyard``."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelyard.cli.main; print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for module in ("kopf", "kubernetes", "httpx", "aiohttp", "modelyard_sandbox"):
        assert f"'{module}'" not in loaded
