"""docs/plugins.md agrees with hub_core.responses: every name documented, the example runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import hub_core.responses
from hub_core import UnexpectedResponse, Verified

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
KEY = "acme-key-0123456789abcdef"


def _section(title: str) -> str:
    text = DOCS.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_guide_names_every_public_name_of_the_responses_module() -> None:
    section = _section("Reading answers: `hub_core.responses`")
    missing = [name for name in hub_core.responses.__all__ if f"`{name}" not in section]
    assert not missing, f"docs/plugins.md does not document {missing}"
    assert f"`KEY_PIECE` ({hub_core.responses.KEY_PIECE})" in section
    assert f"`TEXT_LIMIT` ({hub_core.responses.TEXT_LIMIT})" in section


@pytest.fixture
def read_team() -> Any:
    (block,) = re.findall(
        r"```python\n(.*?)```", _section("Reading answers: `hub_core.responses`"), re.DOTALL
    )
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["read_team"]


def _answer(body: bytes) -> httpx.Response:
    request = httpx.Request("GET", "https://api.acme.com/v1/team")
    return httpx.Response(200, content=body, request=request)


def test_the_guides_example_reads_a_team_and_cleans_its_name(read_team: Any) -> None:
    body = b'{"team": {"id": "42", "name": "Acme \\u001b[2J team acme-key-0123456789abcdef"}}'
    verified = read_team(_answer(body), KEY)
    assert isinstance(verified, Verified)
    assert verified.identity == "team:42"
    assert verified.label == "Acme [2J team [redacted]"


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"team": {"id": 7}}'])
def test_the_guides_example_refuses_what_it_cannot_read(read_team: Any, body: bytes) -> None:
    with pytest.raises(UnexpectedResponse):
        read_team(_answer(body), KEY)
