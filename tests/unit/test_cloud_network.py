"""The endpoint DNS check: private address ranges, the hosts-file resolver, and how resolver failures end."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from modelyard.cloud import CloudUnavailable
from modelyard.cloud.network import HostsFileResolver, check_private, is_private, parse_hosts, resolver_from


class Table:
    """A resolver answering from a dict; a missing name raises as getaddrinfo does."""

    def __init__(self, answers: dict[str, list[str]], error: int = socket.EAI_NONAME) -> None:
        self.answers = answers
        self.error = error
        self.asked: list[str] = []

    def resolve(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(self.error, "lookup failed")
        return self.answers[host]


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.10.1", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.1", True),
        ("172.32.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT is not RFC 1918
        ("127.0.0.1", False),
        ("169.254.170.23", False),
        ("52.119.168.1", False),
        ("2600:1f18::1", False),
        ("fe80::1", False),
    ],
)
def test_private_ranges(address: str, private: bool) -> None:
    assert is_private(address) is private


def test_all_private_passes() -> None:
    check = asyncio.run(
        check_private(
            ["a.example", "b.example"], Table({"a.example": ["10.0.0.1"], "b.example": ["fd00::5"]})
        )
    )
    assert check.passed and check.reason == "ResolvesPrivately"


def test_one_public_address_fails() -> None:
    resolver = Table({"a.example": ["10.0.0.1", "52.1.2.3"]})
    check = asyncio.run(check_private(["a.example"], resolver))
    assert (check.passed, check.reason) == (False, "EndpointResolvesPublic")
    assert "52.1.2.3" in check.message


def test_a_name_that_does_not_exist_fails() -> None:
    check = asyncio.run(check_private(["gone.example"], Table({})))
    assert (check.passed, check.reason) == (False, "EndpointNotResolvable")


def test_a_resolver_that_fails_temporarily_gives_no_verdict() -> None:
    with pytest.raises(CloudUnavailable):
        asyncio.run(check_private(["a.example"], Table({}, error=socket.EAI_AGAIN)))


def test_a_hanging_resolver_times_out() -> None:
    class Slow:
        def resolve(self, host: str) -> list[str]:
            time.sleep(1)
            return ["10.0.0.1"]

    with pytest.raises(CloudUnavailable, match="timed out"):
        asyncio.run(check_private(["a.example"], Slow(), timeout_s=0.1))


def test_hosts_file_answers_first_then_falls_back(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# private zone\n"
        "10.0.0.7 Bedrock-Runtime.eu-central-1.amazonaws.com  alias.example\n"
        "not-an-ip x.example\n"
    )
    fallback = Table({"other.example": ["52.1.2.3"]})
    resolver = HostsFileResolver(hosts, fallback)
    assert resolver.resolve("bedrock-runtime.eu-central-1.amazonaws.com.") == ["10.0.0.7"]
    assert resolver.resolve("alias.example") == ["10.0.0.7"]
    assert resolver.resolve("other.example") == ["52.1.2.3"]
    assert fallback.asked == ["other.example"]
    hosts.write_text("10.0.0.8 alias.example\n")  # read at every lookup
    assert resolver.resolve("alias.example") == ["10.0.0.8"]


def test_parse_hosts_skips_comments_and_garbage() -> None:
    assert parse_hosts("1.2.3.4 a b # c\n\n# x\nbad line\nfd00::1 a\n") == {
        "a": {"1.2.3.4", "fd00::1"},
        "b": {"1.2.3.4"},
    }


def test_resolver_from_setting(tmp_path: Path) -> None:
    assert isinstance(resolver_from(str(tmp_path / "hosts")), HostsFileResolver)
    assert not isinstance(resolver_from(None), HostsFileResolver)
