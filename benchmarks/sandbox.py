"""Sandbox start-up: time until 100 GPU nodes are Ready, and the control plane's memory.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchlib import Figures, standalone

from modelyard_sandbox import Ports, Sandbox

GPU_NODES = 100
SECTION = "Sandbox"


def run(figures: Figures) -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        started = time.perf_counter()
        try:
            sandbox.up(gpu_nodes=GPU_NODES, gpus_per_node=8, cpu_nodes=1, volumes=0)
            figures.add(
                SECTION, f"up, {GPU_NODES} GPU nodes + 1 CPU node Ready", time.perf_counter() - started, "s"
            )
            figures.add(SECTION, "control-plane RSS at Ready", sandbox.status().rss_mib, "MiB")
            time.sleep(30)
            status = sandbox.status()
            figures.add(
                SECTION,
                f"control-plane RSS 30 s later ({status.nodes_ready} nodes Ready)",
                status.rss_mib,
                "MiB",
            )
            for component in status.components:
                figures.add(SECTION, f"  {component.name}", component.rss_kib / 1024, "MiB")
        finally:
            sandbox.down()


if __name__ == "__main__":
    standalone(run)
