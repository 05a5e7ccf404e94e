"""Cloud error text made safe for conditions, Events and logs: no tokens, keys, signatures or signed URLs."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "<redacted>"
MAX_MESSAGE = 600

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens (ServiceAccount tokens, Entra ID assertions and access tokens)
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # query strings: pre-signed S3 URLs, SAS tokens, OAuth parameters
    (re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*"), rf"\1?{REDACTED}"),
    # AWS access key ids (long-term AKIA, temporary ASIA)
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    # name=value / name: value pairs of well-known secret fields
    (
        re.compile(
            r"(?i)\b(authorization|bearer|x-amz-security-token|x-amz-signature|security[_-]?token|"
            r"session[_-]?token|secret[_-]?access[_-]?key|client[_-]?secret|client[_-]?assertion|"
            r"access[_-]?token|refresh[_-]?token|api[_-]?key|password|signature|sig)(\"?\s*[:=]\s*\"?|\s+)"
            r"(?:(?:bearer|basic)\s+)?[^\s\"'&,;]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # AWS secret access keys: exactly 40 characters of base64
    (re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])"), REDACTED),
    # anything else that looks like a key: a long run of base64 / hex without separators
    (re.compile(r"(?<![A-Za-z0-9+=_-])[A-Za-z0-9+=_-]{40,}"), REDACTED),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets`` and anything shaped like a credential, on one line, shortened."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
