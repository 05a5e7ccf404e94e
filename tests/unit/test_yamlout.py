"""The YAML writer reads back, through PyYAML, as exactly the data it was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.manifests import load
from modelyard.render.common import to_yaml
from modelyard.render.offline import render_manifests
from modelyard.render.yamlout import dump

TRICKY = [
    "",
    " ",
    "true",
    "True",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "~",
    "1",
    "1.0",
    "0x1f",
    "1e3",
    "0o17",
    "-1",
    ".inf",
    "2026-11-22",
    "12:30",
    "a: b",
    "a #b",
    "#x",
    "- x",
    "[x]",
    "{x}",
    "*ref",
    "&anchor",
    "!tag",
    "|",
    ">",
    "'",
    '"',
    "%x",
    "@x",
    "`x`",
    "ends:",
    "trailing ",
    " leading",
    "tab\there",
    "unicode é ✓",
    "emoji 😀",
    "line\nbreak",
    "ends\n",
    "two\n\n",
    "\nleading newline",
    "  indented\nblock",
    "trailing space \nline",
    "os.environ/LITELLM_MASTER_KEY",
    "http://x.y.svc:8000/v1",
    "nvidia.com/gpu",
    "vllm:num_requests_running",
    "=",
    "a,b",
    "NoSchedule",
    "0e9e39f",
    "123e4567",
    "0755",
    "+1",
    "Y",
    "n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_round_trip(text: str) -> None:
    data = {"k": text, "list": [text], "nested": {text or "empty": [{"a": text}]}}
    assert yaml.safe_load(dump(data)) == data


def test_scalars_and_empties_round_trip() -> None:
    data: dict[str, Any] = {
        "i": 3,
        "f": 0.9,
        "big": 1e-05,
        "t": True,
        "n": None,
        "e": {},
        "l": [],
        "ll": [[1, 2], [], {}],
        "ld": [{"a": 1, "b": {"c": [1]}}, {}],
    }
    assert yaml.safe_load(dump(data)) == data


def test_every_rendered_example_round_trips() -> None:
    objects = render_manifests(load(Path(__file__).resolve().parents[2] / "examples"))
    assert objects
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects
