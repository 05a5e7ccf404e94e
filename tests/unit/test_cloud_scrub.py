"""Cloud error text is scrubbed of tokens, keys, signatures and signed URLs before it reaches status."""

from __future__ import annotations

from modelyard.cloud.scrub import REDACTED, scrub

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bnM6Z3cifQ.sGn4tUr3-_x"


def test_tokens_and_keys_are_removed() -> None:
    text = (
        f"InvalidIdentityToken: {JWT} is expired; key ASIAQWERTYUIOPASDFGH secret "
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    )
    out = scrub(text)
    for secret in (JWT, "ASIAQWERTYUIOPASDFGH", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
        assert secret not in out
    assert out.startswith("InvalidIdentityToken: <redacted> is expired")


def test_signed_urls_keep_their_path_only() -> None:
    out = scrub(
        "fetch https://bucket.s3.amazonaws.com/logs/a.json?X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef "
        "failed; "
        "https://acct.blob.core.windows.net/c/b?sv=2024&sig=abc%3D ok"
    )
    assert "X-Amz-Signature" not in out and "sig=abc" not in out
    assert f"https://bucket.s3.amazonaws.com/logs/a.json?{REDACTED}" in out
    assert f"https://acct.blob.core.windows.net/c/b?{REDACTED}" in out


def test_named_secret_fields() -> None:
    out = scrub(
        'Authorization: Bearer abc.def client_assertion=xyz&scope=s "access_token": "tok123" password=hunter2'
    )
    for secret in ("abc.def", "xyz", "tok123", "hunter2"):
        assert secret not in out
    assert "scope=s" in out


def test_known_values_and_resource_ids() -> None:
    resource = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/llm"
        "/providers/Microsoft.CognitiveServices/accounts/contoso"
    )
    role = "arn:aws:iam::123456789012:role/llm-gateway"
    out = scrub(f"short-secret-7 denied on {resource} for {role}", ["short-secret-7"])
    assert "short-secret-7" not in out
    assert resource in out and role in out  # what identifies the failed check stays readable


def test_one_line_and_bounded() -> None:
    out = scrub("a\nb\t c" + " x" * 1000)
    assert "\n" not in out and out.startswith("a b c") and len(out) <= 600 and out.endswith("...")
