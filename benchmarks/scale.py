"""modelyard at scale on the sandbox (50 simulated GPU nodes), side by side with the API server's own floor.

For N = 100 and 500 ModelDeployments (one replica of Llama 3.1 8B on one H100 each):

- **floor**: the same children, rendered beforehand, server-side applied directly at the same concurrency,
  until the same Deployments have rolled out. No operator runs; this is what the API server, the controller
  manager, the scheduler and kwok need for the objects alone.
- **convergence**: a fresh operator, N ModelDeployments created at that concurrency, until every one reads
  Ready for its current generation (weights cached by the download Job first, as in a real cluster).
- **idle**: the next 60 s with no change: the operator's write requests, from the API server's audit log.
- **churn**: ``spec.serving.maxModelLen`` changed on 10% of them: time until all are Ready again (the
  Deployments rolled out) and the operator's writes per changed object.
- **memory**: the operator's RSS before any object (N = 0) and after convergence at each N.

Each phase runs in its own namespace, deleted before the next, so one phase's pods never hold another's
GPUs. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from benchlib import AuditLog, Figures, Operator, install_crds, wait
from kubernetes import client, config

from modelyard.api import ModelDeployment
from modelyard.config import Settings
from modelyard.kube import Kube
from modelyard.planning.spec import plan_deployment
from modelyard.render.common import Manifest
from modelyard.render.model_deployment import Images, ModelDeploymentChildren, render_model_deployment
from modelyard_sandbox import Ports, Sandbox
from modelyard_sandbox.pki import Pki

OWNER_LABEL = "modelyard.dev/modeldeployment"

GPU_NODES = 50
GPUS_PER_NODE = 12  # kwok capacity: 600 GPUs, so 500 one-GPU replicas fit next to a churn rollout
SIZES = (100, 500)
CONCURRENCY = 16  # requests in flight, the same for the floor and for creating ModelDeployments
IDLE_S = 60
CHURN_FRACTION = 0.10
CHURN_MAX_MODEL_LEN = 4096
SECTION = "Scale"

T = TypeVar("T")


def model_deployment(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": "llama-3.1-8b-instruct",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            },
            "gpu": {"type": "nvidia-h100-80gb"},
            "replicas": 1,
        },
    }


def names(n: int) -> list[str]:
    return [f"model-{i:03d}" for i in range(n)]


class Cluster:
    """The sandbox as its administrator: a synchronous client for polling, an async one for load."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def http(self) -> httpx.AsyncClient:
        pki = Pki(self.sandbox.directory / "pki")
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        admin = pki.client("admin")
        context.load_cert_chain(str(admin.cert), str(admin.key))
        limits = httpx.Limits(max_connections=CONCURRENCY + 1, max_keepalive_connections=CONCURRENCY + 1)
        return httpx.AsyncClient(base_url=self.sandbox.api_url, verify=context, timeout=60, limits=limits)

    def kube(self) -> Kube:
        return Kube(self.http(), CONCURRENCY)

    def fan_out(self, items: Iterable[T], call: Callable[[Kube, T], Awaitable[Any]]) -> float:
        """Run ``call`` for every item, ``CONCURRENCY`` at a time; seconds taken."""

        async def main() -> None:
            kube = self.kube()
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(item: T) -> None:
                async with gate:
                    await call(kube, item)

            try:
                await asyncio.gather(*(one(item) for item in items))
            finally:
                await kube.close()

        started = time.perf_counter()
        asyncio.run(main())
        return time.perf_counter() - started

    def namespace(self, name: str) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def delete_namespace(self, name: str) -> float:
        """Delete a namespace and wait until it (and every pod holding a GPU in it) is gone."""
        self.core.delete_namespace(name)

        def gone() -> bool:
            try:
                self.core.read_namespace(name)
            except client.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        return wait(gone, 600, f"namespace {name} deleted", interval_s=1.0)

    def rolled_out(self, namespace: str) -> int:
        """Deployments whose rollout is complete (kubectl rollout status's rule)."""
        count = 0
        for d in self.apps.list_namespaced_deployment(namespace).items:
            s, wanted = d.status, d.spec.replicas
            count += (
                (s.observed_generation or 0) >= d.metadata.generation
                and (s.updated_replicas or 0) >= wanted
                and (s.replicas or 0) <= (s.updated_replicas or 0)
                and (s.ready_replicas or 0) >= wanted
            )
        return count

    def ready(self, namespace: str) -> int:
        """ModelDeployments Ready for their current generation."""
        items = self.custom.list_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", namespace, "modeldeployments"
        )["items"]
        count = 0
        for item in items:
            status = item.get("status") or {}
            count += (
                status.get("observedGeneration") == item["metadata"]["generation"]
                and status.get("phase") == "Ready"
            )
        return count


def rendered(namespace: str, n: int) -> dict[str, ModelDeploymentChildren]:
    settings = Settings.from_env()
    images = Images(settings.vllm_image, settings.aws_cli_image)
    children = {}
    for name in names(n):
        md = ModelDeployment.model_validate(model_deployment(name, namespace))
        children[name] = render_model_deployment(md, plan_deployment(md.spec), images)
    return children


def floor(cluster: Cluster, n: int, figures: Figures) -> float:
    """Every child of every ModelDeployment applied at once; the Deployments' pods then wait only for
    their claims to bind, side by side with the download pods."""
    namespace = f"floor-{n}"
    cluster.namespace(namespace)
    children = rendered(namespace, n)

    async def apply_all(kube: Kube, objects: list[Manifest]) -> None:
        for obj in objects:
            await kube.apply(obj)

    started = time.perf_counter()
    applied = cluster.fan_out([c.all() for c in children.values()], apply_all)
    wait(lambda: cluster.rolled_out(namespace) == n, 1800, f"{n} floor Deployments rolled out", 1.0)
    elapsed = time.perf_counter() - started
    figures.add(SECTION, f"floor N={n}: children applied", applied, "s")
    figures.add(SECTION, f"floor N={n}: Deployments rolled out", elapsed, "s")
    cluster.delete_namespace(namespace)
    return elapsed


def staged_floor(cluster: Cluster, n: int, figures: Figures) -> float:
    """The same children in the operator's order, with no operator: a client watching the Jobs applies a
    ModelDeployment's serving children the moment its download Job completes (GPU pods are not scheduled
    while weights download: DESIGN.md). What the API server and controllers need for the same sequence."""
    namespace = f"staged-{n}"
    cluster.namespace(namespace)
    children = rendered(namespace, n)

    async def main() -> None:
        http = cluster.http()
        kube = Kube(http, CONCURRENCY)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def apply(objects: list[Manifest]) -> None:
            async with gate:
                for obj in objects:
                    await kube.apply(obj)

        serving: list[asyncio.Task[None]] = []

        async def serve_when_cached() -> None:
            """Watch the Jobs; apply a ModelDeployment's serving children once its Job completes."""
            done: set[str] = set()
            path, version = f"/apis/batch/v1/namespaces/{namespace}/jobs", ""
            while len(done) < n:
                params = {"watch": "1", "timeoutSeconds": "300"}
                if version:
                    params["resourceVersion"] = version
                async with http.stream("GET", path, params=params, timeout=None) as response:
                    async for line in response.aiter_lines():
                        job = json.loads(line)["object"]
                        version = job["metadata"].get("resourceVersion", version)
                        owner = job["metadata"].get("labels", {}).get(OWNER_LABEL)
                        conditions = (job.get("status") or {}).get("conditions") or []
                        complete = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
                        if owner and complete and owner not in done:
                            done.add(owner)
                            serving.append(asyncio.create_task(apply(children[owner].serving)))
                        if len(done) == n:
                            return

        try:
            watch = asyncio.create_task(serve_when_cached())
            await asyncio.gather(*(apply([*c.base, *c.cache]) for c in children.values()))
            await watch
            await asyncio.gather(*serving)
        finally:
            await http.aclose()

    started = time.perf_counter()
    asyncio.run(main())
    wait(lambda: cluster.rolled_out(namespace) == n, 1800, f"{n} staged Deployments rolled out", 1.0)
    elapsed = time.perf_counter() - started
    figures.add(SECTION, f"staged floor N={n}: Deployments rolled out", elapsed, "s")
    cluster.delete_namespace(namespace)
    return elapsed


def converge(
    cluster: Cluster,
    operator: Operator,
    audit: AuditLog,
    *,
    n: int,
    floor_s: float,
    staged_s: float,
    figures: Figures,
) -> None:
    namespace = f"md-{n}"
    cluster.namespace(namespace)
    operator.start()
    time.sleep(8)  # kopf logs in, lists every resource and settles
    if n == SIZES[0]:
        figures.add(SECTION, "operator RSS, N=0", operator.rss_mib(), "MiB")

    audit.mark()
    started = time.perf_counter()

    async def create(kube: Kube, name: str) -> None:
        await kube.create(model_deployment(name, namespace))

    created = cluster.fan_out(names(n), create)
    wait(lambda: cluster.ready(namespace) == n, 1800, f"{n} ModelDeployments Ready", 1.0)
    elapsed = time.perf_counter() - started
    figures.add(SECTION, f"operator N={n}: created", created, "s")
    figures.add(SECTION, f"operator N={n}: all Ready", elapsed, "s")
    figures.add(SECTION, f"ratio N={n}: operator / staged floor", elapsed / staged_s, "x")
    ratio = elapsed / floor_s
    target = n == max(SIZES)
    figures.add(
        SECTION,
        f"convergence ratio N={n} (operator / floor)",
        ratio,
        "x",
        target="<= 1.5" if target else "",
        met=(ratio <= 1.5) if target else None,
    )
    time.sleep(5)
    first = audit.writes(namespace)
    figures.add(SECTION, f"operator N={n}: writes per object, first reconcile", sum(first.values()) / n, "")
    rss = operator.rss_mib()
    figures.add(
        SECTION,
        f"operator RSS, N={n}",
        rss,
        "MiB",
        target="< 250" if target else "",
        met=(rss < 250) if target else None,
    )

    audit.mark()
    time.sleep(IDLE_S)
    idle = sum(audit.writes().values()) * 60 / IDLE_S
    figures.add(SECTION, f"operator N={n}: idle writes", idle, "/min", target="0", met=idle == 0)

    changed = names(n)[:: round(1 / CHURN_FRACTION)]

    async def change(kube: Kube, name: str) -> None:  # a user's edit of one field
        edit = model_deployment(name, namespace)
        edit["spec"] = {"serving": {"maxModelLen": CHURN_MAX_MODEL_LEN}}
        await kube.apply(edit, field_manager="bench-user")

    audit.mark()
    started = time.perf_counter()
    cluster.fan_out(changed, change)
    wait(lambda: cluster.ready(namespace) == n, 1800, "churned ModelDeployments Ready", 1.0)
    churn = time.perf_counter() - started
    time.sleep(5)
    writes = sum(audit.writes(namespace).values()) / len(changed)
    figures.add(SECTION, f"churn N={n} ({len(changed)} changed): all Ready again", churn, "s")
    figures.add(SECTION, f"churn N={n}: writes per changed object", writes, "")

    operator.stop()
    cluster.delete_namespace(namespace)


def run(figures: Figures, sizes: tuple[int, ...] = SIZES) -> None:
    figures.context.update(
        gpu_nodes=GPU_NODES, gpus_per_node=GPUS_PER_NODE, concurrency=CONCURRENCY, sizes=list(sizes)
    )
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        operator: Operator | None = None
        try:
            started = time.perf_counter()
            # Each claim binds a pool volume for good (Retain), and every phase makes N claims.
            sandbox.up(
                gpu_nodes=GPU_NODES, gpus_per_node=GPUS_PER_NODE, cpu_nodes=2, volumes=3 * sum(sizes) + 10
            )
            print(f"  sandbox up in {time.perf_counter() - started:.1f} s", flush=True)
            install_crds(sandbox)
            cluster = Cluster(sandbox)
            operator = Operator(sandbox, cluster.api, Path(tmp))
            audit = AuditLog(sandbox)
            for n in sizes:
                floor_s = floor(cluster, n, figures)
                staged_s = staged_floor(cluster, n, figures)
                converge(cluster, operator, audit, n=n, floor_s=floor_s, staged_s=staged_s, figures=figures)
        except BaseException:
            if operator is not None:
                log = operator.log.read_text()[-4000:] if operator.log.exists() else ""
                print(f"operator log (tail):\n{log}", file=sys.stderr)
            raise
        finally:
            if operator is not None:
                operator.stop()
            sandbox.down()


def main() -> None:
    figures = Figures()
    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES
    run(figures, sizes)
    print(figures.table())


if __name__ == "__main__":
    main()
