"""Commands that need no cluster: ``crds``, ``render`` and ``plan``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.api.crd import all_crds
from modelyard.api.model_deployment import MAX_NODES_PER_REPLICA, Dtype, Engine, ModelDeployment
from modelyard.errors import Infeasible, UserError
from modelyard.manifests import load
from modelyard.planning.capacity import format_plan_table, plan
from modelyard.planning.catalog import GPU_TYPES, lookup_gpu, lookup_model
from modelyard.planning.gguf import format_ollama_plan, plan_ollama, read_gguf
from modelyard.planning.spec import plan_deployment
from modelyard.render.common import to_yaml
from modelyard.render.offline import render_manifests

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def crd_documents() -> list[dict[str, Any]]:
    """The CRDs with the GPU catalog as the allowed values of spec.gpu.type."""
    return all_crds({"ModelDeployment.spec.gpu.type": list(GPU_TYPES)})


def register(commands: Commands) -> None:
    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions generated from the API")
    crds.add_argument("--output-dir", type=Path, help="write one file per CRD into this directory instead")
    crds.set_defaults(func=run_crds)

    render = commands.add_parser("render", help="print the objects the operator would create (offline)")
    render.add_argument("-f", "--filename", type=Path, required=True, help="manifest file or directory")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    render.set_defaults(func=run_render)

    plan_cmd = commands.add_parser("plan", help="prove a model fits its GPUs (capacity plan)")
    source = plan_cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--filename", type=Path, help="plan every ModelDeployment in FILE or DIR")
    source.add_argument("--model", help="Hugging Face id or catalog alias")
    plan_cmd.add_argument("--gpu", help=f"GPU type: {', '.join(GPU_TYPES)}")
    plan_cmd.add_argument("--max-model-len", type=int, default=8192, help="context length in tokens (8192)")
    plan_cmd.add_argument("--dtype", default=Dtype.BFLOAT16.value, help="bfloat16, float16, float32")
    plan_cmd.add_argument(
        "--quantization",
        help="fp8 (a 16-bit checkpoint quantized while loading), awq or gptq (an int4 checkpoint of the "
        "model); the catalog's AWQ/FP8 checkpoints and gpt-oss are loaded as stored",
    )
    plan_cmd.add_argument("--kv-cache-dtype", default="auto", help="auto (the dtype) or fp8")
    plan_cmd.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="0.5-0.98 (0.9)")
    plan_cmd.add_argument("--gpu-count", type=int, help="fix the tensor-parallel size instead of choosing")
    plan_cmd.add_argument(
        "--max-nodes",
        type=int,
        default=MAX_NODES_PER_REPLICA,
        help=f"most nodes one replica may span, pipeline-parallel ({MAX_NODES_PER_REPLICA}; 1: one node)",
    )
    plan_cmd.add_argument(
        "--gguf",
        type=Path,
        help="with -f: the GGUF file of the engine: ollama ModelDeployments (its header's tensor bytes are "
        "the weights, instead of the estimate)",
    )
    plan_cmd.set_defaults(func=run_plan)


def run_crds(args: argparse.Namespace) -> int:
    documents = crd_documents()
    if args.output_dir is None:
        sys.stdout.write(to_yaml(documents))
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (args.output_dir / f"{document['metadata']['name']}.yaml").write_text(to_yaml([document]))
    return 0


def run_render(args: argparse.Namespace) -> int:
    objects = render_manifests(load(args.filename))
    if args.output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_yaml(objects))
    return 0


def run_plan(args: argparse.Namespace) -> int:
    if args.filename is not None:
        return _plan_files(args.filename, args.gguf)
    if args.gpu is None:
        raise UserError("--gpu is required with --model")
    arch = lookup_model(args.model)
    if arch is None:
        raise UserError(f"--model: {args.model!r} is not in the model catalog")
    gpu = lookup_gpu(args.gpu)
    if gpu is None:
        raise UserError(f"--gpu: unknown GPU type {args.gpu!r} (known: {', '.join(GPU_TYPES)})")
    try:
        result = plan(
            arch,
            gpu,
            max_model_len=args.max_model_len,
            dtype=args.dtype,
            quantization=args.quantization,
            gpu_memory_utilization=args.gpu_memory_utilization,
            gpu_count=args.gpu_count,
            kv_cache_dtype=args.kv_cache_dtype,
            max_nodes=args.max_nodes,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(format_plan_table(result))
    return 0


def _plan_files(target: Path, gguf_file: Path | None = None) -> int:
    gguf = None
    if gguf_file is not None:
        try:
            gguf = read_gguf(gguf_file)
        except (OSError, ValueError) as exc:
            raise UserError(f"--gguf: {exc}") from None
    deployments = [m for m in load(target) if isinstance(m.obj, ModelDeployment)]
    if not deployments:
        raise UserError(f"{target}: no ModelDeployment found")
    infeasible = 0
    for index, manifest in enumerate(deployments):
        print(("\n" if index else "") + f"# {manifest.ref} ({manifest.path}:{manifest.line})")
        assert isinstance(manifest.obj, ModelDeployment)
        try:
            spec = manifest.obj.spec
            if spec.engine is Engine.OLLAMA:
                print(format_ollama_plan(plan_ollama(spec, gguf)))
            else:
                print(format_plan_table(plan_deployment(spec)))
        except Infeasible as exc:
            infeasible += 1
            print(f"does not fit: {exc}")
        except UserError as exc:
            raise UserError(f"{manifest.path}:{manifest.line}: {manifest.ref}: {exc}") from None
    return 1 if infeasible else 0
