"""engine: ollama without a cluster: the API's rules, the GGUF memory plan (against the Ollama library's own
sizes and the gguf package's reader), ``modelyard plan -f`` exit codes and what the renderer makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from tests.realnode import tiny_gguf

from modelyard.api import ModelDeployment
from modelyard.api.ollama import GgufQuantization
from modelyard.errors import Infeasible
from modelyard.planning.capacity import GIB
from modelyard.planning.gguf import (
    BITS_PER_WEIGHT,
    OLLAMA_LIBRARY,
    lookup_library,
    plan_ollama,
    quantization_in_name,
    read_gguf,
)
from modelyard.planning.spec import plan_deployment
from modelyard.render.model_deployment import OLLAMA_VERSION, PORT, Images, render_model_deployment
from modelyard.render.ollama import SERVE_SH, served_tag

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "examples" / "lifecycle"
K8S_VERSION = "1.35.0"


def md(**spec: Any) -> ModelDeployment:
    body: dict[str, Any] = {
        "engine": "ollama",
        "model": {"name": "qwen2.5:7b", "source": "ollama://qwen2.5:7b"},
        **spec,
    }
    return ModelDeployment.model_validate({"metadata": {"name": "proto", "namespace": "ml"}, "spec": body})


def children(obj: ModelDeployment) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for child in render_model_deployment(obj, plan_deployment(obj.spec)).all():
        out.setdefault(child["kind"], []).append(child)
    return out


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


# --- the API -------------------------------------------------------------------------------------------
def test_ollama_needs_no_gpu_and_other_engines_do() -> None:
    assert md().spec.gpu is None
    with pytest.raises(ValidationError, match="gpu: required for engines vllm and nim"):
        md(engine="vllm", model={"name": "m", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"engine": "vllm", "gpu": {"type": "nvidia-l4"}}, "ollama:// sources need engine: ollama"),
        ({"model": {"name": "m", "source": "hf://Qwen/Qwen2.5-7B-Instruct"}}, "engine ollama serves"),
        ({"model": {"name": "m", "source": "s3://bucket/m"}}, "engine ollama serves"),
        ({"serving": {"quantization": "awq"}}, "vLLM/NIM settings"),
        ({"serving": {"kvCacheDtype": "fp8"}}, "vLLM/NIM settings"),
        ({"serving": {"extraArgs": ["--foo"]}}, "vLLM/NIM settings"),
        ({"autoscaling": {"maxReplicas": 3}}, "Ollama exports no in-flight"),
        ({"ollama": {"modelfile": "FROM /etc/passwd\n"}}, "modelyard writes FROM"),
        ({"gpu": {"type": "nvidia-l4", "maxNodesPerReplica": 2}}, "Ollama serves a model on one node"),
    ],
)
def test_combinations_that_cannot_work_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        md(**spec)


def test_ollama_settings_only_with_engine_ollama() -> None:
    with pytest.raises(ValidationError, match="only for engine ollama"):
        md(
            engine="vllm",
            model={"name": "m", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            gpu={"type": "nvidia-l4"},
            resources={"memory": "16Gi"},
        )


# --- the plan ------------------------------------------------------------------------------------------
def test_bits_per_weight_reproduce_llama_cpp_table() -> None:
    # tools/quantize/quantize.cpp: Q4_K_M "4.58G" and Q8_0 "7.96G" for Llama-3-8B (8030261248 parameters)
    assert 8030261248 * BITS_PER_WEIGHT[GgufQuantization.Q4_K_M] / 8 / GIB == pytest.approx(4.58)
    assert BITS_PER_WEIGHT[GgufQuantization.Q8_0] == pytest.approx(8.5, abs=0.02)  # 34 bytes per 32 weights


@pytest.mark.parametrize("tag", sorted(t for t, m in OLLAMA_LIBRARY.items() if m.parameters > 2e9))
def test_bits_per_weight_estimate_the_library_download_sizes(tag: str) -> None:
    """parameters x bits per weight is within 12 % of the size ollama.com/library shows for each tag of 2 B
    parameters or more (below that the embeddings, kept at higher precision, dominate; the plan of a library
    tag in its own quantization uses the listed size itself)."""
    entry = OLLAMA_LIBRARY[tag]
    planned_gb = entry.parameters * BITS_PER_WEIGHT[entry.quantization] / 8 / 1e9
    assert planned_gb == pytest.approx(entry.library_size_gb, rel=0.12)


def test_library_names_resolve_to_their_default_tags() -> None:
    assert lookup_library("ollama://qwen2.5") is OLLAMA_LIBRARY["qwen2.5:7b"]
    assert lookup_library("llama3.3:latest") is OLLAMA_LIBRARY["llama3.3:70b"]
    assert lookup_library("nosuch:1b") is None
    assert quantization_in_name("bartowski/Qwen2.5-7B-Instruct-GGUF/Qwen2.5-7B-Instruct-Q8_0.gguf") == "Q8_0"
    assert quantization_in_name("org/repo/model-q4_k_m.gguf") == "Q4_K_M"


def test_qwen_7b_fits_16gi_with_the_numbers() -> None:
    plan = plan_ollama(md(resources={"memory": "16Gi"}).spec)
    # KV: 2 x 28 layers x 4 KV heads x 128 x 2 bytes x 8192 tokens = 0.4375 GiB
    assert plan.kv_cache_gib == pytest.approx(0.4375)
    assert plan.weights_gib == pytest.approx(4.7e9 / GIB)  # the tag's GGUF: 4.7 GB on ollama.com/library
    assert plan.needed_gib < 16 and plan.memory_request == "16Gi"


def test_llama_70b_is_refused_with_the_numbers() -> None:
    obj = md(model={"name": "llama3.3:70b", "source": "ollama://llama3.3:70b"}, resources={"memory": "16Gi"})
    with pytest.raises(Infeasible, match=r"needs 43\.\d GiB: weights 40\.\d .* 16Gi holds 16\.0 GiB"):
        plan_ollama(obj.spec)


def test_parallel_requests_and_kv_type_scale_the_kv_cache() -> None:
    f16 = plan_ollama(md(ollama={"numParallel": 4}).spec)
    q8 = plan_ollama(md(ollama={"numParallel": 4, "kvCacheType": "q8_0"}).spec)
    assert f16.kv_cache_gib == pytest.approx(4 * 0.4375)
    assert q8.kv_cache_gib == pytest.approx(f16.kv_cache_gib * (34 / 32) / 2)
    assert f16.memory_request == f"{int(f16.needed_gib) + 1}Gi"  # unset: the need, rounded up


def test_issue_examples_through_the_cli(tmp_path: Path) -> None:
    """``modelyard plan -f``: qwen2.5:7b Q4_K_M in 16Gi fits (exit 0), llama3.3:70b does not (exit 1)."""
    fits = _plan_cli(LIFECYCLE / "prototype-ollama.yaml")
    assert fits.returncode == 0, fits.stderr
    assert "qwen2.5:7b" in fits.stdout and "Q4_K_M" in fits.stdout and "16.00 GiB (16Gi)" in fits.stdout
    body = yaml.safe_load((LIFECYCLE / "prototype-ollama.yaml").read_text())
    body["spec"]["model"] = {"name": "llama3.3:70b", "source": "ollama://llama3.3:70b"}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(body))
    refused = _plan_cli(tmp_path / "big.yaml")
    assert refused.returncode == 1, refused.stderr
    assert "does not fit: llama3.3:70b (Q4_K_M) needs 43." in refused.stdout


def _plan_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "plan", "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_gguf_header_reader_agrees_with_the_gguf_package(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    tiny_gguf.write(path)
    info = read_gguf(path)
    reader = gguf.GGUFReader(path)
    assert info.architecture == "llama" and info.tensors == len(reader.tensors)
    assert info.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert info.key("block_count") == tiny_gguf.LAYERS
    assert info.metadata["tokenizer.ggml.model"] == "llama"
    assert path.stat().st_size - info.tensor_bytes < 64 * 1024  # the rest is the header (vocabulary)
    spec = md(
        model={"name": "tiny", "source": "pvc://claim/models", "architecture": _tiny_arch()},
        ollama={"ggufFile": "tiny.gguf"},
    ).spec
    assert plan_ollama(spec, read_gguf(path)).weights_gib == info.tensor_bytes / GIB


def _tiny_arch() -> dict[str, int]:
    return {
        "parameters": 1,
        "layers": tiny_gguf.LAYERS,
        "attentionHeads": tiny_gguf.HEADS,
        "kvHeads": tiny_gguf.KV_HEADS,
        "headDim": tiny_gguf.EMBEDDING // tiny_gguf.HEADS,
    }


# --- rendering -----------------------------------------------------------------------------------------
def test_server_pod_is_ollama_on_the_engines_port_non_root_read_only() -> None:
    kinds = children(md(resources={"memory": "16Gi", "cpu": "4"}))
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"docker.io/ollama/ollama:{OLLAMA_VERSION}"
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi"},
    }
    assert "nodeSelector" not in pod and "tolerations" not in pod  # CPU nodes: no GPU product, no GPU taint
    variables = env(container)
    assert variables["OLLAMA_HOST"] == f"127.0.0.1:{PORT}" and '0.0.0.0:$PORT" ollama serve' in SERVE_SH
    assert variables["OLLAMA_MODELS"] == "/models/ollama"
    assert variables["OLLAMA_CONTEXT_LENGTH"] == "8192" and variables["OLLAMA_NUM_PARALLEL"] == "1"
    assert variables["MAKE_MODEL"] == "pulled" and variables["PULLED"] == "qwen2.5:7b"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/models", "/tmp"}
    assert "ollama ps" in container["readinessProbe"]["exec"]["command"][2]
    assert variables["SERVED"] == "qwen2.5:7b"
    for kind in ("Deployment", "Job", "Service", "NetworkPolicy", "PersistentVolumeClaim"):
        for obj in kinds[kind]:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_ollama_source_is_pulled_by_the_download_job_over_https() -> None:
    kinds = children(md())
    (job,) = kinds["Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "ollama pull" in container["command"][2] and env(container)["PULLED"] == "qwen2.5:7b"
    (download_policy,) = [p for p in kinds["NetworkPolicy"] if p["metadata"]["name"].endswith("-download")]
    assert download_policy["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 443}]


def test_hf_gguf_downloads_the_one_file_and_creates_the_model_from_it() -> None:
    source = "hf://bartowski/Qwen2.5-7B-Instruct-GGUF/Qwen2.5-7B-Instruct-Q4_K_M.gguf"
    obj = md(model={"name": "qwen2.5:7b", "source": source, "revision": "a" * 40})  # the library's shape
    kinds = children(obj)
    (job,) = kinds["Job"]
    (download,) = job["spec"]["template"]["spec"]["containers"]
    variables = env(download)
    assert variables["REPO"] == "bartowski/Qwen2.5-7B-Instruct-GGUF"
    assert (
        variables["FILE"] == "Qwen2.5-7B-Instruct-Q4_K_M.gguf" and "hf_hub_download" in download["command"][2]
    )
    (container,) = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"]
    served = env(container)
    assert served["MAKE_MODEL"] == "gguf"
    assert served["GGUF"] == f"/models/hf/bartowski/Qwen2.5-7B-Instruct-GGUF/{'a' * 40}/{variables['FILE']}"
    (claim,) = kinds["PersistentVolumeClaim"]
    assert (
        claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    )  # the GGUF and its copy in OLLAMA_MODELS


def test_pvc_gguf_with_modelfile_and_quantized_kv_cache() -> None:
    obj = md(
        model={"name": "tiny-chat", "source": "pvc://weights/models", "architecture": _tiny_arch()},
        ollama={
            "ggufFile": "tiny.gguf",
            "quantization": "F32",
            "kvCacheType": "q8_0",
            "modelfile": "SYSTEM hi",
        },
    )
    kinds = children(obj)
    assert "Job" not in kinds and "PersistentVolumeClaim" not in kinds
    (container,) = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"]
    variables = env(container)
    assert variables["GGUF"] == "/models/models/tiny.gguf" and variables["MODELFILE"] == "SYSTEM hi"
    assert variables["OLLAMA_MODELS"] == "/models/models/.ollama"
    assert variables["OLLAMA_KV_CACHE_TYPE"] == "q8_0" and variables["OLLAMA_FLASH_ATTENTION"] == "1"
    assert variables["SERVED"] == "tiny-chat:latest" == served_tag("tiny-chat")


def test_the_image_is_overridable_and_in_the_spec_hash() -> None:
    obj = md()
    plan = plan_deployment(obj.spec)
    default = render_model_deployment(obj, plan).serving[0]
    other = render_model_deployment(obj, plan, Images(ollama="localhost/modelyard/ollama:x")).serving[0]
    assert other["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/modelyard/ollama:x"
    assert default["metadata"]["annotations"] != other["metadata"]["annotations"]


def test_ollama_with_gpus_requests_them() -> None:
    (deployment,) = children(md(gpu={"type": "nvidia-l4", "count": 1}))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"


# --- examples/lifecycle ----------------------------------------------------------------------------------
def test_lifecycle_examples_keep_the_route_names_and_confidential_data_off_the_prototype() -> None:
    """``modelyard render -f examples/lifecycle``: the prototype's gateway serves "chat" from Ollama and
    leaves the confidential "contracts" route out (its only backend is cleared for public data); production
    serves both names from vLLM with Bedrock as the fallback."""
    rendered = subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "render", "-f", str(LIFECYCLE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    configs = {
        obj["metadata"]["namespace"]: yaml.safe_load(obj["data"]["config.yaml"])
        for obj in yaml.safe_load_all(rendered)
        if obj and obj["kind"] == "ConfigMap" and "config.yaml" in obj.get("data", {})
    }
    routes = {
        namespace: {entry["model_name"]: entry["litellm_params"] for entry in config["model_list"]}
        for namespace, config in configs.items()
    }
    assert set(routes["prototype"]) == {"chat"}
    assert routes["prototype"]["chat"]["api_base"] == "http://qwen-proto.prototype.svc:8000/v1"
    assert routes["prototype"]["chat"]["model"] == "openai/qwen2.5:7b"  # Ollama's OpenAI-compatible API
    assert {name.split("@")[0] for name in routes["production"]} == {"chat", "contracts"}
    assert routes["production"]["chat@fallback-1"]["model"].startswith("bedrock/")


def test_plan_reads_the_gguf_header_when_given_the_file(tmp_path: Path) -> None:
    """``modelyard plan -f MD --gguf FILE``: the file's tensor bytes are the weights (the tiny model: 883328
    float32 weights = 3.37 MiB), not parameters x bits of the declared quantization."""
    from tests.realnode import ollama  # noqa: PLC0415 (kubernetes client: only this test needs it)

    gguf_path = tmp_path / "tiny.gguf"
    tiny_gguf.write(gguf_path)
    body = ollama.tiny_ollama_model("tiny", "pvc://weights/models")
    body["metadata"]["namespace"] = "team"
    body["spec"]["ollama"]["quantization"] = "Q4_0"  # what the estimate would use
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(body))
    estimated = _plan_cli(tmp_path / "md.yaml")
    read = _plan_cli_args(tmp_path / "md.yaml", "--gguf", str(gguf_path))
    assert estimated.returncode == read.returncode == 0, (estimated.stderr, read.stderr)
    assert "0.88 M parameters" in read.stdout
    assert "weights           3.37 MiB" in read.stdout  # the header: 883328 float32 weights
    assert "weights           0.47 MiB" in estimated.stdout  # the estimate: 883328 x 4.5 bits
    missing = _plan_cli_args(tmp_path / "md.yaml", "--gguf", str(tmp_path / "nosuch.gguf"))
    assert missing.returncode == 2 and "--gguf:" in missing.stderr and "Traceback" not in missing.stderr


def _plan_cli_args(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "plan", "-f", str(path), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
