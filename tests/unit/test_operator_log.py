"""What the operator logs, and what of it becomes an Event."""

from __future__ import annotations

import logging
from typing import Any

from modelyard.controllers.runtime import _quiet_kopf_log


def test_a_handler_success_is_not_logged_and_a_retry_is_not_an_event(caplog: Any) -> None:
    """kopf's ``Handler '...' succeeded.`` came once per watch event of every child: most of the log."""
    _quiet_kopf_log()
    objects = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        objects.info("Handler 'on_child' succeeded.")
        objects.info("Handler 'on_model_deployment' failed temporarily: API server unreachable")
        objects.info("Creation is processed: 1 succeeded; 0 failed.")
    assert [r.getMessage() for r in caplog.records] == [
        "Handler 'on_model_deployment' failed temporarily: API server unreachable",
        "Creation is processed: 1 succeeded; 0 failed.",
    ]
    assert getattr(caplog.records[0], "k8s_skip", False) is True
