"""Sandbox start-up: time until 100 GPU nodes are Ready, and the control plane's memory.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from modelyard.sandbox import Ports, Sandbox

GPU_NODES = 100


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        started = time.perf_counter()
        try:
            sandbox.up(gpu_nodes=GPU_NODES, gpus_per_node=8, cpu_nodes=1, volumes=0)
            elapsed = time.perf_counter() - started
            ready_rss = sandbox.status().rss_mib
            time.sleep(30)
            status = sandbox.status()
        finally:
            sandbox.down()
    print(f"sandbox up, {GPU_NODES} GPU nodes + 1 CPU node Ready      {elapsed:8.1f} s")
    print(f"control-plane RSS at Ready                          {ready_rss:8.0f} MiB")
    print(
        f"control-plane RSS 30 s later ({status.ready}/{status.total} nodes Ready)  {status.rss_mib:8.0f} MiB"
    )
    for component in status.components:
        print(f"  {component.name:<24} {component.rss_kib / 1024:8.0f} MiB")


if __name__ == "__main__":
    main()
