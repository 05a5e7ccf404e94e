"""Does an endpoint host resolve only to private addresses (RFC 1918, RFC 4193)?

The resolver is an interface: the operator uses the system resolver, optionally in front of it a hosts(5)
file (``MODELYARD_HOSTS_FILE``) whose names answer from the file only, as ``/etc/hosts`` does — for clusters
whose resolver cannot see the VPC's private zone, and for tests on a machine without the cloud's DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from . import Check, CloudUnavailable

#: RFC 1918 (IPv4) and RFC 4193 unique local (IPv6) networks.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
RESOLVE_TIMEOUT_S = 5.0
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class Resolver(Protocol):
    """Turns a host name into its addresses; raises ``socket.gaierror`` as ``getaddrinfo`` does."""

    def resolve(self, host: str) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``: /etc/hosts, then DNS)."""

    def resolve(self, host: str) -> list[str]:
        infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        return sorted({str(info[4][0]) for info in infos})


class HostsFileResolver:
    """Names listed in a hosts(5) file answer from it (read at every lookup); others from ``fallback``."""

    def __init__(self, path: Path, fallback: Resolver) -> None:
        self.path = path
        self.fallback = fallback

    def resolve(self, host: str) -> list[str]:
        found = parse_hosts(self.path.read_text()).get(host.lower().rstrip("."))
        return sorted(found) if found else self.fallback.resolve(host)


def parse_hosts(text: str) -> dict[str, set[str]]:
    """hosts(5) text -> {name: addresses}; comments and malformed addresses are skipped."""
    table: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0]))
        except ValueError:
            continue
        for name in fields[1:]:
            table.setdefault(name.lower().rstrip("."), set()).add(address)
    return table


def resolver_from(hosts_file: str | None) -> Resolver:
    """The system resolver, behind ``hosts_file`` when one is configured."""
    system = SystemResolver()
    return HostsFileResolver(Path(hosts_file), system) if hosts_file else system


def is_private(address: str) -> bool:
    """True for an address in RFC 1918 or RFC 4193 space (an IPv4-mapped IPv6 address counts as its IPv4)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in PRIVATE_NETWORKS)


async def check_private(
    hosts: Sequence[str], resolver: Resolver, timeout_s: float = RESOLVE_TIMEOUT_S
) -> Check:
    """Every host resolves, and only to private addresses. A resolver that times out or fails temporarily
    raises CloudUnavailable; a name that does not exist fails the check."""
    for host in hosts:
        try:
            addresses = await asyncio.wait_for(asyncio.to_thread(resolver.resolve, host), timeout_s)
        except TimeoutError:
            raise CloudUnavailable(f"resolving {host} timed out after {timeout_s:.0f}s") from None
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                return Check.failed("EndpointNotResolvable", f"{host} does not resolve")
            raise CloudUnavailable(f"resolving {host}: {exc.strerror}") from None
        public = [a for a in addresses if not is_private(a)]
        if public or not addresses:
            return Check.failed(
                "EndpointResolvesPublic",
                f"{host} resolves to non-private addresses {', '.join(public)}: traffic would leave "
                "the private network",
            )
    return Check.ok("ResolvesPrivately", f"{', '.join(hosts)} resolve only to private addresses")
