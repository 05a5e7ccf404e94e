"""The operator's Prometheus metrics (served by the chart's metrics port): the reconcile decorator and the
ProviderBinding verification counter, on a private registry."""

from __future__ import annotations

import asyncio

import kopf
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelyard.controllers.metrics import Metrics, metrics_port


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_reconciles_errors_and_durations_per_kind() -> None:
    metrics = Metrics(CollectorRegistry())

    @metrics.instrumented("ModelDeployment")
    async def reconcile(fail: bool) -> str:
        if fail:
            raise kopf.TemporaryError("not yet", delay=1)
        return "done"

    assert asyncio.run(reconcile(False)) == "done"
    with pytest.raises(kopf.TemporaryError):
        asyncio.run(reconcile(True))

    r = metrics.registry
    assert sample(r, "modelyard_reconciles_total", kind="ModelDeployment", result="success") == 1
    assert sample(r, "modelyard_reconciles_total", kind="ModelDeployment", result="error") == 1
    assert sample(r, "modelyard_reconcile_errors_total", kind="ModelDeployment", error="TemporaryError") == 1
    assert sample(r, "modelyard_reconcile_duration_seconds_count", kind="ModelDeployment") == 2
    assert reconcile.__name__ == "reconcile"  # kopf and logs still see the real function


def test_verification_results_by_condition_and_status() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.record_verification(
        [
            {"type": "IdentityConfigured", "status": "True"},
            {"type": "CredentialsVerified", "status": "False"},
            {"type": "PrivateConnectivityVerified", "status": "Unknown"},
            {"type": "Ready", "status": "False"},
            {"type": "SomethingElse", "status": "True"},
        ]
    )
    r = metrics.registry
    name = "modelyard_providerbinding_verifications_total"
    assert sample(r, name, condition="CredentialsVerified", status="False") == 1
    assert sample(r, name, condition="PrivateConnectivityVerified", status="Unknown") == 1
    assert sample(r, name, condition="Ready", status="False") == 1
    assert b"SomethingElse" not in generate_latest(r)


def test_metrics_port_from_the_environment() -> None:
    assert metrics_port({}) == 8081
    assert metrics_port({"MODELYARD_METRICS_PORT": "9102"}) == 9102
    with pytest.raises(kopf.PermanentError, match="MODELYARD_METRICS_PORT must be a port number"):
        metrics_port({"MODELYARD_METRICS_PORT": "http"})
