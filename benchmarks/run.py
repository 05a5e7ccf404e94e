"""``make bench``: every benchmark in one run, one table, one JSON file.

    python benchmarks/run.py [--only offline,gateway,scale,sandbox,realnode,ollama] [--out bench-results.json]

Sections: Offline (plan and render throughput), Sandbox (control-plane start-up), Gateway compile (a
200-route RoutePolicy, offline and in the operator, and a binding flip), Scale (N = 100, 500 and 1,000
ModelDeployments, each repeated, against the API server's own floor: medians and spreads of the ratios, the
first, median and last Ready, writes per object by verb and resource, idle writes, churn, the operator's
memory; and a pvc:// phase; ``BENCH_SCALE_SIZES``, ``BENCH_SCALE_REPEATS``, ``BENCH_SCALE_PVC``), Real node
(sandbox up with the real node, image builds cold and warm, the chart's operator pod, the gateway's first
answer and its added latency per request).
``BENCH_PROFILE=DIR`` samples the operator with py-spy into DIR (docs/performance.md).

Prints numbers; asserts nothing. Targets are marked met or MISSED; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import engine_ollama
import render
import scale
from benchlib import ROOT, Figures

import gateway
import realnode
import sandbox

BENCHMARKS: dict[str, Callable[[Figures], None]] = {
    "offline": render.run,
    "sandbox": sandbox.run,
    "gateway": gateway.run,
    "scale": scale.run,
    "realnode": realnode.run,
    "ollama": engine_ollama.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results.json")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark: {', '.join(unknown)}")

    figures = Figures()
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, check=False, capture_output=True, text=True, cwd=ROOT)
    figures.context.update(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=commit.stdout.strip(),
        python=platform.python_version(),
        cpus=os.cpu_count(),
    )
    started = time.perf_counter()
    for name in chosen:
        print(f"== {name}", flush=True)
        BENCHMARKS[name](figures)
    figures.context["seconds"] = round(time.perf_counter() - started)
    args.out.write_text(figures.to_json() + "\n")
    print()
    print(figures.table())
    print(f"\nfigures written to {args.out}")


if __name__ == "__main__":
    main()
