"""Judge rendered ``vllm serve`` command lines with the pinned vLLM's own code. Runs inside the vLLM
virtualenv hack/vllm.sh installs (never in modelyard's), as one process for every case:

    python vllm_judge.py VERDICTS.json < cases.json      (vLLM logs to stdout, so verdicts go to a file)

For each case (a command line, the environment the pod sets, the GPU it is scheduled on and the model's
config.json) it runs, as ``vllm serve`` does before touching a GPU:

1. the ``vllm serve`` argument parser (``make_arg_parser`` on a ``FlexibleArgumentParser``) and
   ``validate_parsed_serve_args``;
2. ``AsyncEngineArgs.from_cli_args(...).create_engine_config(...)``: ModelConfig against the config.json
   (architecture, max_model_len against the positions, dtype, the checkpoint's quantization_config and
   ``--quantization``), the quantization config's minimum capability and accepted dtypes
   (``VllmConfig._get_quantization_config``), CacheConfig (KV-cache dtype), ParallelConfig, SchedulerConfig
   and the platform's ``check_and_update_config``;
3. any warning vLLM logs that says a setting is deprecated counts as a rejection: a deprecated flag is the
   next release's error.

The GPU is vLLM's own CUDA platform class with the device queries answered from the case (capability,
name, memory) instead of NVML, because no GPU is present; the model directory is a temporary directory
holding only the case's config.json, in place of the path the pod mounts.

It also reports what the pinned release serves and exports: the routes of the API server's FastAPI app
(``build_app``), the Prometheus metric names its ``PrometheusStatLogger`` registers, the environment
variables ``vllm.envs`` reads, and the activation dtypes of the quantization configs modelyard plans for.
"""

# vLLM is imported inside functions: after the simulated GPU platform is in place, and only in its venv.
# ruff: noqa: PLC0415
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

DEPRECATION_WORDS = ("deprecated", "will be removed")


class _Records:
    """Warnings vLLM logs, caught where every record is made (vLLM re-applies its logging configuration
    while building configs, which drops handlers added to its loggers)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            if record.name.startswith("vllm") and record.levelno >= logging.WARNING:
                self.messages.append(record.getMessage())
            return record

        logging.setLogRecordFactory(factory)


def _simulated_platform() -> Any:
    """One platform object for the whole run (modules bind ``current_platform`` when imported); the GPU it
    answers for is switched per case through ``SimulatedGpu.gpu``."""
    from vllm.platforms.cuda import CudaPlatformBase
    from vllm.platforms.interface import DeviceCapability

    class SimulatedGpu(CudaPlatformBase):  # type: ignore[misc]
        """vLLM's CUDA platform; only the device queries NVML would answer come from the case."""

        gpu: dict[str, Any] = {
            "capability": [9, 0],
            "name": "NVIDIA H100 80GB HBM3",
            "memory_bytes": 80 << 30,
        }

        @classmethod
        def get_device_capability(cls, device_id: int = 0) -> Any:
            major, minor = cls.gpu["capability"]
            return DeviceCapability(major=major, minor=minor)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return str(cls.gpu["name"])

        @classmethod
        def get_device_total_memory(cls, device_id: int = 0) -> int:
            return int(cls.gpu["memory_bytes"])

        @classmethod
        def is_fully_connected(cls, physical_device_ids: list[int]) -> bool:
            return True

        @classmethod
        def device_count(cls) -> int:
            return 8

    return SimulatedGpu()


def _judge(case: dict[str, Any], workdir: Path, records: _Records) -> dict[str, Any]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    model_dir = workdir / case["id"].replace("/", "_")
    model_dir.mkdir(parents=True)
    for name, content in case["files"].items():
        (model_dir / name).write_text(json.dumps(content))
    argv = list(case["argv"])
    rendered_model = argv[argv.index("--model") + 1]
    argv[argv.index("--model") + 1] = str(model_dir)
    # paths inside the pod (the weights claim, the compile cache) point into this case's directory instead
    env = dict(case["env"])
    for name, value in env.items():
        for root in case.get("pod_paths", []):
            if value == root or value.startswith(root + "/"):
                env[name] = str(Path(case["pod_root"]) / value.lstrip("/"))

    saved_env = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    records.messages.clear()
    result: dict[str, Any] = {"id": case["id"], "model": rendered_model, "model_dir": str(model_dir)}
    stderr = io.StringIO()
    try:
        parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
        validate_parsed_serve_args(args)
        config = AsyncEngineArgs.from_cli_args(args).create_engine_config(
            usage_context=UsageContext.OPENAI_API_SERVER
        )
        result["resolved"] = {
            "dtype": str(config.model_config.dtype).removeprefix("torch."),
            "quantization": config.model_config.quantization,
            "kv_cache_dtype": str(config.cache_config.cache_dtype),
            "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
            "pipeline_parallel_size": config.parallel_config.pipeline_parallel_size,
            "nnodes": config.parallel_config.nnodes,
            "node_rank": config.parallel_config.node_rank,
            "max_model_len": config.model_config.max_model_len,
            "served_model_name": config.model_config.served_model_name,
            "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
            "lora": None
            if config.lora_config is None
            else {
                "max_lora_rank": config.lora_config.max_lora_rank,
                "max_loras": config.lora_config.max_loras,
                "max_cpu_loras": config.lora_config.max_cpu_loras,
            },
            "lora_modules": [[m.name, m.path, m.base_model_name] for m in args.lora_modules or []],
        }
        result["config"] = config
        deprecated = [m for m in records.messages if any(w in m.lower() for w in DEPRECATION_WORDS)]
        result["error"] = f"deprecated: {deprecated[0]}" if deprecated else None
        result["warnings"] = list(records.messages)
    except SystemExit:
        result["error"] = f"argument parser: {stderr.getvalue().strip().splitlines()[-1:]}"
    except Exception as exc:  # every other refusal: vLLM raises ValueError, pydantic ValidationError, ...
        result["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:800]
        result["trace"] = traceback.format_exc()[-2000:]
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return result


def _served_facts(config: Any, argv: list[str]) -> dict[str, Any]:
    """Routes, metric names, environment variables and quantization dtypes of the installed release."""
    import prometheus_client
    import vllm.envs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.entrypoints.launchers.app import build_app
    from vllm.model_executor.layers.quantization import get_quantization_config
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    args = make_arg_parser(FlexibleArgumentParser(prog="vllm serve")).parse_args(argv)
    app = build_app(args, ("generate",), config.model_config)
    routes = sorted({getattr(route, "path", "") for route in app.routes} - {""})
    PrometheusStatLogger(config)
    metrics = sorted(
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in prometheus_client.REGISTRY.collect()
        if metric.name.startswith("vllm:")
    )
    methods = {"awq": "awq", "gptq": "gptq", "fp8": "fp8", "fp8_online": "fp8_per_tensor", "mxfp4": "mxfp4"}
    dtypes = {
        method: [
            str(dtype).removeprefix("torch.")
            for dtype in get_quantization_config(name).get_supported_act_dtypes()
        ]
        for method, name in methods.items()
    }
    return {
        "routes": routes,
        "metrics": metrics,
        "env": sorted(vllm.envs.environment_variables),
        "act_dtypes": dtypes,
        "version": vllm.__version__,
        "harmony_strings": _harmony_strings(),
    }


def _harmony_strings() -> list[str]:
    """Printable strings of openai-harmony's compiled extension (which loads gpt-oss's tokenizer encoding):
    the environment variable it reads and the digests it checks are in there, not in Python."""
    import re

    import openai_harmony

    found: set[str] = set()
    for binary in Path(openai_harmony.__file__).parent.glob("*.so"):
        found.update(m.decode() for m in re.findall(rb"[A-Z_]{8,}|[0-9a-f]{64}", binary.read_bytes()))
    return sorted(found)


def main() -> None:
    request = json.load(sys.stdin)
    import vllm.platforms

    records = _Records()

    platform = _simulated_platform()
    vllm.platforms.current_platform = platform
    verdicts: list[dict[str, Any]] = []
    first: tuple[Any, list[str]] | None = None
    with tempfile.TemporaryDirectory(prefix="vllm-judge-") as tmp:
        for case in sorted(request["cases"], key=lambda c: c["gpu"]["name"]):  # the cases of one GPU together
            type(platform).gpu = case["gpu"]
            result = _judge(case, Path(tmp), records)
            config = result.pop("config", None)
            if config is not None and first is None:
                first = (config, [result["model_dir"] if a == result["model"] else a for a in case["argv"]])
            verdicts.append(result)
        facts = _served_facts(*first) if first else {}
    Path(sys.argv[1]).write_text(json.dumps({"verdicts": verdicts, **facts}))


if __name__ == "__main__":
    main()
