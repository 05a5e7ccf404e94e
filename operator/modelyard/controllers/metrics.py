"""Prometheus metrics: reconciles, errors and durations per kind, and ProviderBinding verification results.

Served on ``MODELYARD_METRICS_PORT`` (default 8081) at ``/metrics`` from a ``@kopf.on.startup`` handler; the
Helm chart's metrics Service and ServiceMonitor point at that port. Handlers are instrumented with
:func:`instrumented`; the ProviderBinding controller reports each verification with
:func:`record_verification`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import kopf
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

PORT_ENV = "MODELYARD_METRICS_PORT"
DEFAULT_PORT = 8081
#: The ProviderBinding conditions whose outcome is a verification result.
VERIFICATION_CONDITIONS = (
    "IdentityConfigured",
    "CredentialsVerified",
    "PrivateConnectivityVerified",
    "Ready",
)

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger(__name__)


class Metrics:
    """The operator's metric families, on one registry (the process default in production; a fresh one in
    tests)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "modelyard_reconciles_total",
            "Reconciles of a modelyard resource, by kind and result (success or error).",
            ["kind", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "modelyard_reconcile_errors_total",
            "Reconciles that raised, by kind and exception type.",
            ["kind", "error"],
            registry=registry,
        )
        self.duration = Histogram(
            "modelyard_reconcile_duration_seconds",
            "Time one reconcile took, by kind.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.verifications = Counter(
            "modelyard_providerbinding_verifications_total",
            "ProviderBinding verification results: one count per verification, condition and its status.",
            ["condition", "status"],
            registry=registry,
        )

    def instrumented(self, kind: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async reconcile of ``kind``: count it, time it, count its exceptions by type."""

        def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                started = time.perf_counter()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    self.reconciles.labels(kind, "error").inc()
                    self.errors.labels(kind, type(exc).__name__).inc()
                    raise
                finally:
                    self.duration.labels(kind).observe(time.perf_counter() - started)
                self.reconciles.labels(kind, "success").inc()
                return result

            return wrapper

        return decorate

    def record_verification(self, conditions: Iterable[Mapping[str, Any]]) -> None:
        """Count one ProviderBinding verification: the status of each of its verification conditions."""
        for cond in conditions:
            if cond.get("type") in VERIFICATION_CONDITIONS:
                self.verifications.labels(cond["type"], str(cond.get("status", "Unknown"))).inc()


METRICS = Metrics()
instrumented = METRICS.instrumented
record_verification = METRICS.record_verification


def metrics_port(env: Mapping[str, str] | None = None) -> int:
    """``MODELYARD_METRICS_PORT``, or 8081."""
    value = (os.environ if env is None else env).get(PORT_ENV, "").strip()
    try:
        port = int(value) if value else DEFAULT_PORT
    except ValueError:
        raise kopf.PermanentError(f"{PORT_ENV} must be a port number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise kopf.PermanentError(f"{PORT_ENV} must be a port number, not {port}")
    return port


@kopf.on.startup()
async def serve_metrics(memo: kopf.Memo, **_: Any) -> None:
    """Serve ``/metrics`` on all interfaces. A port already in use is logged, not fatal: reconciling matters
    more than being scraped (and the health endpoint still reports the operator)."""
    port = metrics_port()
    try:
        server, _thread = start_http_server(port, addr="0.0.0.0", registry=METRICS.registry)
    except OSError as exc:
        logger.error("metrics are not served: port %d: %s", port, exc.strerror)
        return
    memo.metrics_server = server
    logger.info("serving Prometheus metrics on :%d/metrics", server.server_port)


# --- running as the Helm chart deploys it ---------------------------------------------------------------
@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()
