"""Private DNS for a LiteLLM proxy under test: put this directory on the proxy's PYTHONPATH and name the hosts
in ``MODELYARD_TEST_HOSTS`` (``name=127.0.0.1:port,...``). Those names resolve to the local fakes, as a VPC
endpoint's or private endpoint's private DNS resolves them to private addresses in a cluster; every other
name except loopback fails to resolve, so nothing the proxy does can leave the machine. Requests keep their
real host names (TLS server name, Host header, SigV4 canonical host).

Both resolvers the proxy uses are covered: ``socket.getaddrinfo`` (boto3, requests, threads) and uvloop's
``Loop.getaddrinfo`` (aiohttp and httpx on the proxy's event loop, which do not call the former)."""

from __future__ import annotations

import importlib
import os
import socket
from typing import Any

_HOSTS = {
    name: target.rpartition(":")
    for name, _, target in (
        entry.partition("=") for entry in os.environ.get("MODELYARD_TEST_HOSTS", "").split(",") if entry
    )
}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}
_getaddrinfo = socket.getaddrinfo


def _map(host: Any, port: Any) -> tuple[Any, Any]:
    name = host.decode() if isinstance(host, bytes) else host
    if name in _HOSTS:
        address, _, mapped = _HOSTS[name]
        return address, int(mapped)
    if name in _LOOPBACK or (isinstance(name, str) and name.startswith("127.")):
        return host, port
    raise socket.gaierror(socket.EAI_NONAME, f"{name}: not resolvable under test (no network)")


def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    return _getaddrinfo(*_map(host, port), *args, **kwargs)


if _HOSTS:
    socket.getaddrinfo = getaddrinfo
    try:
        uvloop = importlib.import_module("uvloop")  # the proxy's event loop (uvicorn --loop uvloop)
    except ImportError:
        pass
    else:
        _loop_getaddrinfo = uvloop.Loop.getaddrinfo

        async def loop_getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            return await _loop_getaddrinfo(self, *_map(host, port), *args, **kwargs)

        uvloop.Loop.getaddrinfo = loop_getaddrinfo
