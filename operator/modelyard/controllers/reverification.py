"""When ProviderBindings are verified again: ``spec.verifyEvery`` after the last verification, with up to
10 % jitter, from one background task over kopf's index of bindings (a kopf timer would put a finalizer on
every binding; modelyard keeps none).

A verification that got no verdict from the cloud is retried sooner, with back-off, by the reconcile skeleton
(common.reconcile_guarded); this schedule only starts the periodic ones.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import kopf

JITTER = 0.1
WATCH_TICK_S = 1.0
DEFAULT_EVERY = "10m"
_DURATION_PART = re.compile(r"([0-9]+)(s|m|h)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}

#: ``verify(namespace, name)``: verify one binding now
Verify = Callable[[str, str], Coroutine[Any, Any, None]]


def parse_duration(text: str) -> float:
    """``1h30m`` -> 5400.0 seconds (the API's DURATION pattern: digits with s, m or h, repeated)."""
    return float(sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text)))


def _epoch(rfc3339: str | None) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else 0.0


def next_verification(entry: dict[str, Any], last_attempt: float = 0.0) -> float:
    """When a binding is due again (epoch seconds): ``verifyEvery`` after its last verification (or creation,
    or this process's last attempt, whichever is latest), stretched by a jitter of up to 10 % that is fixed
    for that interval, so bindings created together spread out."""
    last = max(
        _epoch(entry["status"].get("lastVerifiedTime")),
        _epoch(entry["metadata"].get("creationTimestamp")),
        last_attempt,
    )
    interval = parse_duration(str(entry["spec"].get("verifyEvery") or DEFAULT_EVERY))
    spread = zlib.crc32(f"{entry['metadata'].get('uid')}@{last}".encode()) / 0xFFFFFFFF
    return last + interval * (1 + JITTER * spread)


def start(memo: kopf.Memo, index: kopf.Index[str, dict[str, Any]], verify: Verify) -> None:
    """Start verifying the bindings of ``index`` when they are due, in the background."""
    memo.binding_verifier = asyncio.create_task(_verify_due(index, verify))


async def stop(memo: kopf.Memo) -> None:
    """Stop the background task and wait for it (and the verifications it started)."""
    task = memo.get("binding_verifier")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _verify_due(index: kopf.Index[str, dict[str, Any]], verify: Verify) -> None:
    """Every second, start the verification of each binding that is due and not already being verified;
    when cancelled, cancel those verifications and wait for them."""
    attempts: dict[tuple[str, str], float] = {}
    running: dict[tuple[str, str], asyncio.Task[None]] = {}
    try:
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            for done in [key for key, task in running.items() if task.done()]:
                del running[done]
            now = time.time()
            for namespace in list(index):
                for entry in list(index.get(namespace, [])):
                    key = (namespace, entry["metadata"]["name"])
                    if key in running or next_verification(entry, attempts.get(key, 0.0)) > now:
                        continue
                    attempts[key] = now
                    running[key] = asyncio.create_task(verify(*key))
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
