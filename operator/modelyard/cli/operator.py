"""``modelyard run``: the operator itself (kopf underneath)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    run = commands.add_parser("run", help="run the operator against the current cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument(
        "--liveness", metavar="URL", help="serve health probes, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument(
        "--peering", metavar="NAME", help="kopf peering name: replicas never handle one object twice"
    )
    run.add_argument("--log-format", choices=("plain", "full", "json"), default="full")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    # kopf imports the official kubernetes client whenever it is installed, only to recognise that client's
    # model objects, which modelyard never hands it. modelyard does not depend on it (the image has none),
    # but a development virtualenv has it (the tests' observer): hidden there too, the operator the tests
    # and `make bench` measure is the image's (42 MiB less RSS at start). Logging in is kopf's own
    # (controllers/runtime.py).
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]  # import raises ImportError
    # Imported here: kopf costs ~0.3 s, which the offline commands should not pay.
    import kopf  # noqa: PLC0415

    import modelyard.controllers  # noqa: F401, PLC0415 - registers the handlers

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    # Our own peer identity (kopf's convention: POD_ID), so work outside kopf's handlers can tell whether
    # this replica is the active one (controllers/peering.py).
    identity = os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"
    memo = kopf.Memo(identity=identity, peering=args.peering, namespaces=args.namespace)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
            standalone=args.peering is None,
            peering_name=args.peering,
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            memo=memo,
        )
    )
    return 0
