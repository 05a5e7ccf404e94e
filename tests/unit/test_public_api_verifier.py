"""The public-API verifier (cloud/public_api.py) against the local HTTPS fake of every vendor
(tests/fakes/public_apis.py), which checks the auth header each vendor documents and answers its documented
models JSON (bare lists, paging): a key accepted, a key refused, models the vendor does not list, an outage
that gives no verdict, and the key never in a message."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.public_apis import VENDORS, PublicApisFake, base_url

from modelyard.api.public_api import Vendor
from modelyard.cloud import CloudUnavailable
from modelyard.cloud.public_api import (
    ACCEPTED,
    KEY_PRESENT,
    REJECTED,
    PublicApiReport,
    PublicApiTarget,
    PublicApiVerifier,
)

KEY = "sk-PLANTED-public-api-key-5d1e0c"
LISTED = ["alpha-1", "beta-2", "gamma-3", "delta-4", "epsilon-5"]  # more than one page of the paged lists
LISTING = [v for v in VENDORS if VENDORS[v].models is not None]


@pytest.fixture(scope="module")
def fake() -> Iterator[PublicApisFake]:
    server = PublicApisFake(Path(tempfile.mkdtemp(prefix="public-apis-")))
    for vendor in VENDORS:
        server.state.keys[vendor] = f"{KEY}-{vendor}"
        server.state.models[vendor] = list(LISTED)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def trust(fake: PublicApisFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))  # httpx takes its trust anchors from it


def verify(
    fake: PublicApisFake, vendor: str, key: str, models: tuple[str, ...] = ("alpha-1",)
) -> PublicApiReport:
    target = PublicApiTarget(vendor, base_url(fake.url, vendor), key, models)
    return asyncio.run(PublicApiVerifier().verify(target))


def test_every_vendor_of_the_api_is_served_by_the_fake() -> None:
    assert set(VENDORS) == {v.value for v in Vendor}


@pytest.mark.parametrize("vendor", LISTING)
def test_a_valid_key_is_accepted_and_unlisted_models_are_named(fake: PublicApisFake, vendor: str) -> None:
    before = len(fake.requests(vendor))
    report = verify(fake, vendor, f"{KEY}-{vendor}", ("alpha-1", "epsilon-5", "no-such-model"))
    assert report.credentials.passed and report.credentials.reason == ACCEPTED, report
    assert report.unlisted_models == ("no-such-model",)  # epsilon-5 is on the last page of the paged lists
    assert "5 models" in report.credentials.message
    gets = [r for r in fake.requests(vendor)[before:] if r.method == "GET"]
    assert gets, "the vendor was asked"
    if vendor in ("anthropic", "gemini"):
        assert len([r for r in gets if "models" in r.path]) == 3  # pages of 2, followed to the end


@pytest.mark.parametrize("vendor", LISTING)
def test_a_wrong_key_is_refused_without_the_key_in_the_message(fake: PublicApisFake, vendor: str) -> None:
    wrong = f"{KEY}-wrong-{vendor}"
    report = verify(fake, vendor, wrong)
    if vendor == "gemini":  # Google answers a wrong key with 400 API_KEY_INVALID or 403
        assert not report.credentials.passed, report
    else:
        assert report.credentials.reason == REJECTED and not report.credentials.passed, report
    assert wrong not in report.credentials.message
    assert report.unlisted_models == () and report.models_unverified


def test_openrouter_proves_the_key_although_its_models_list_needs_none(fake: PublicApisFake) -> None:
    before = len(fake.requests("openrouter"))
    report = verify(fake, "openrouter", "sk-or-v1-wrong")
    assert report.credentials.reason == REJECTED
    assert [r.path for r in fake.requests("openrouter")[before:]] == ["/api/v1/key"]


def test_perplexity_has_no_models_endpoint_so_only_presence_is_claimed(fake: PublicApisFake) -> None:
    before = len(fake.requests())
    report = verify(fake, "perplexity", "anything")
    assert report.credentials.passed and report.credentials.reason == KEY_PRESENT
    assert "only its presence" in report.credentials.message and report.models_unverified
    assert len(fake.requests()) == before  # nothing was called


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_outage_gives_no_verdict(fake: PublicApisFake, status: int) -> None:
    fake.state.faults["groq"] = status
    try:
        with pytest.raises(CloudUnavailable) as info:
            verify(fake, "groq", f"{KEY}-groq")
    finally:
        del fake.state.faults["groq"]
    assert str(status) in str(info.value) and KEY not in str(info.value)


def test_an_unreachable_vendor_gives_no_verdict() -> None:
    target = PublicApiTarget("openai", "https://127.0.0.1:9/v1", KEY, ("gpt-4o",))
    with pytest.raises(CloudUnavailable) as info:
        asyncio.run(PublicApiVerifier().verify(target))
    assert KEY not in str(info.value)


def test_a_wrong_base_url_is_a_verdict_that_says_so(fake: PublicApisFake) -> None:
    target = PublicApiTarget("openai", f"{fake.url}/openai/v2", f"{KEY}-openai", ("alpha-1",))
    report = asyncio.run(PublicApiVerifier().verify(target))
    assert report.credentials.reason == "EndpointRefused" and "baseURL" in report.credentials.message


def test_the_target_never_shows_its_key() -> None:
    assert KEY not in repr(PublicApiTarget("openai", "https://x", KEY, ()))
