"""Offline throughput on one core: capacity plans, renders, and ModelDeployments parsed, planned and
rendered per second.

Target: 2,000 per second or more. Prints numbers; asserts nothing (speed is measured here, not in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchlib import Figures, standalone

from modelyard.api import ModelDeployment
from modelyard.planning.spec import plan_deployment
from modelyard.render.common import to_yaml
from modelyard.render.model_deployment import render_model_deployment

BODY: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "llama-8b", "namespace": "ml"},
    "spec": {
        "model": {
            "name": "llama-3.1-8b-instruct",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            "credentialsSecretRef": {"name": "hf-token", "key": "token"},
        },
        "gpu": {"type": "nvidia-h100-80gb"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 8},
    },
}


SECTION = "Offline"


def rate(fn: Callable[[int], object], seconds: float = 2.0) -> float:
    fn(0)  # warm up
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        fn(count)
        count += 1
    return count / elapsed


def parse_plan_render(i: int) -> None:
    body = {**BODY, "metadata": {"name": f"llama-{i}", "namespace": "ml"}}
    md = ModelDeployment.model_validate(body)
    render_model_deployment(md, plan_deployment(md.spec)).all()


def print_free(_: str) -> None:
    """Discard output (what matters is producing it)."""


def run(figures: Figures) -> None:
    md = ModelDeployment.model_validate(BODY)
    plan = plan_deployment(md.spec)
    figures.add(SECTION, "capacity plan", rate(lambda _: plan_deployment(md.spec)), "/s")
    figures.add(SECTION, "render (plan given)", rate(lambda _: render_model_deployment(md, plan).all()), "/s")
    total = rate(parse_plan_render)
    figures.add(SECTION, "parse + plan + render", total, "/s", target=">= 2,000", met=total >= 2000)
    with_yaml = rate(lambda _: print_free(to_yaml(render_model_deployment(md, plan).all())))
    figures.add(SECTION, "render + YAML (plan given)", with_yaml, "/s")


if __name__ == "__main__":
    standalone(run)
