"""`redact`: no form of a key a provider may echo back survives, and ordinary text is untouched.

The forms are computed here independently of `hub_core.errors` (with the `base64` module), so
a form the core stops looking for fails these tests.
"""

from __future__ import annotations

import base64
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_core import HubError, InvalidCredentials, UnexpectedResponse
from hub_core.errors import KEY_PIECE, MASK, FieldError, Redactor, redact, redactor, storable
from hub_core.responses import clean_text
from hub_core.testing import CANARY, find_secret

# What real keys are made of: letters, digits and the few symbols providers use.
KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+/="
keys = st.text(KEY_CHARS, min_size=KEY_PIECE, max_size=64)
surroundings = st.text(max_size=80)
SEPARATORS = [" ", "\n", "\r\n", ".", "-", ":", " - ", "\t", "_", "/", "%"]


def surviving(masked: str, material: str) -> list[str]:
    """The `KEY_PIECE`-long runs of *material* still readable in *masked*, outside the masks."""
    windows = {material[i : i + KEY_PIECE] for i in range(len(material) - KEY_PIECE + 1)}
    return [w for part in masked.split(MASK) for w in windows if w in part]


def key_material(encoded: str, before: int, length: int) -> str:
    """The characters of a base64 encoding that depend on the *length* key bytes alone, when
    *before* other bytes precede them: six bits a character, so a character is the key's when
    all its bits are."""
    first = -(-before * 8 // 6)
    last = (before + length) * 8 // 6
    return encoded[first:last]


@settings(max_examples=300, deadline=None)
@given(text=surroundings, secret=keys, reversed_=st.booleans())
def test_a_key_as_typed_or_reversed_never_survives(text: str, secret: str, reversed_: bool) -> None:
    form = secret[::-1] if reversed_ else secret
    masked = redact(text + form + text, [secret])
    assert not surviving(masked, form)
    assert find_secret(masked, [secret]) is None


@settings(max_examples=300, deadline=None)
@given(text=surroundings, secret=keys, upper=st.booleans(), sep=st.sampled_from(["", ":", " "]))
def test_a_key_in_hex_never_survives(text: str, secret: str, upper: bool, sep: str) -> None:
    digits = secret.encode().hex()
    digits = digits.upper() if upper else digits
    # "de:ad:be:ef", as hexdump-style tools print bytes
    form = sep.join(digits[i : i + 2] for i in range(0, len(digits), 2))
    masked = redact(f"{text}{form}{text}", [secret])
    assert not surviving(masked.replace(sep, "") if sep else masked, digits)
    assert find_secret(masked, [secret]) is None


@settings(max_examples=400, deadline=None)
@given(
    text=surroundings,
    secret=keys,
    before=st.binary(max_size=7),
    after=st.binary(max_size=7),
    urlsafe=st.booleans(),
    padded=st.booleans(),
)
def test_a_key_in_base64_never_survives_at_any_offset(
    text: str, secret: str, before: bytes, after: bytes, urlsafe: bool, padded: bool
) -> None:
    raw = secret.encode()
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(before + raw + after).decode()
    encoded = encoded if padded else encoded.rstrip("=")
    material = key_material(encoded, len(before), len(raw))
    masked = redact(f"{text}{encoded}{text}", [secret])
    assert not surviving(masked, material)
    assert find_secret(masked, [secret]) is None


@settings(max_examples=300, deadline=None)
@given(
    text=surroundings,
    secret=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8),
    cuts=st.lists(st.integers(1, 7), min_size=1, max_size=20),
    separator=st.sampled_from(SEPARATORS),
    form=st.sampled_from(["typed", "reversed", "hex", "base64"]),
)
def test_a_key_split_by_separators_never_survives(
    text: str, secret: str, cuts: list[int], separator: str, form: str
) -> None:
    shown = {
        "typed": secret,
        "reversed": secret[::-1],
        "hex": secret.encode().hex(),
        "base64": base64.b64encode(secret.encode()).decode(),
    }[form]
    parts, position = [], 0
    for cut in cuts * len(shown):
        if position >= len(shown):
            break
        parts.append(shown[position : position + cut])
        position += cut
    masked = redact(f"{text} {separator.join(parts)} {text}", [secret])
    assert not surviving(masked.replace(separator, ""), shown.rstrip("="))
    assert find_secret(masked, [secret]) is None


class _EveryPlace(Redactor):
    """A `Redactor` without the quick test: every place of a text compared with the forms."""

    __slots__ = ()

    def _starts(self, folded: str) -> range:
        return range(len(folded) - self._piece + 1)


def _echoes(secret: str) -> list[str]:
    """Texts a provider may echo *secret* in, whole: the forms `redact` documents."""
    raw = secret.encode("utf-8", "surrogatepass")
    encoded = [base64.b64encode(bytes(n) + raw).decode() for n in range(3)]
    return [secret, secret[::-1], raw.hex(), raw.hex().upper(), *encoded]


@settings(max_examples=400, deadline=None)
@given(
    secrets=st.lists(st.one_of(keys, st.text(min_size=KEY_PIECE, max_size=40)), max_size=3),
    parts=st.lists(
        st.one_of(surroundings, st.tuples(st.integers(0, 2), st.integers(0, 99))), max_size=8
    ),
    piece=st.sampled_from([5, 6, 7, KEY_PIECE, 9, 12]),
)
def test_the_quick_test_masks_exactly_what_comparing_every_place_masks(
    secrets: list[str], parts: list[str | tuple[int, int]], piece: int
) -> None:
    # Texts made of ordinary text and cuts of the secrets' forms (pieces, a form whole, a
    # form cut short at either end): whatever the quick test lets through or not, the result
    # is that of comparing every place of the text with the forms.
    text = ""
    for part in parts:
        if isinstance(part, str) or not secrets:
            text += str(part)
            continue
        which, cut = part
        echoes = _echoes(secrets[which % len(secrets)])
        echo = echoes[cut % len(echoes)]
        text += echo[cut % 5 : len(echo) - cut % 3]
    quick, every = Redactor(secrets, piece), _EveryPlace(secrets, piece)
    assert quick(text) == every(text)
    assert quick.find(text) == every.find(text)


@pytest.mark.parametrize(
    "text",
    [
        "Acme rejected the API Key (HTTP 401: invalid api key for organization 'Acme Team')",
        "request id 3f2b8c1e-9d4a-4e7b-8c2f-1a6d5e9b0c3d, digest 9a0364b9e99bb480dd25e1f0284c8555",
        "aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IGEga2V5 and SGVsbG8sIFdvcmxkIQ==",
        "https://api.acme.test/v1/organizations?page=2&per_page=100",
        "Überprüfen Sie den Schlüssel – 鍵を確認してください 🔑",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text, [CANARY, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"]) == text


def test_a_key_cut_short_and_a_key_in_capitals_are_masked() -> None:
    assert redact(f"key {CANARY[3:21]}…", [CANARY]) == f"key {MASK}…"
    assert redact(f"KEY {CANARY.upper()}", [CANARY]) == f"KEY {MASK}"
    assert redact(f"{CANARY[:4]} ends", [CANARY]) == f"{CANARY[:4]} ends"  # under KEY_PIECE


def test_a_short_secret_is_never_looked_for() -> None:
    assert redact("us-east us", ["us"]) == "us-east us"
    assert find_secret("us", ["us"]) is None


def test_find_secret_names_the_piece_it_found_in_the_text() -> None:
    assert find_secret(f"key {CANARY}!", [CANARY]) == CANARY
    assert find_secret(f"key {CANARY[3:21]}…", [CANARY]) == CANARY[3:11]
    hexed = CANARY.encode().hex()
    assert find_secret(f"echo {hexed}", [CANARY]) == hexed[:KEY_PIECE]
    split = " ".join(CANARY[i : i + 4] for i in range(0, len(CANARY), 4))
    assert find_secret(split, [CANARY]) == split[:9]  # 8 of its characters and the space


def test_a_redactor_is_built_once_per_set_of_secrets_and_shows_none() -> None:
    first = redactor([CANARY, "other-secret-value"])
    assert redactor(("other-secret-value", CANARY)) is first
    assert redactor(first) is first
    assert CANARY not in repr(first)
    assert "2 secret" in repr(first)
    assert not redactor(["short"])
    assert not Redactor(())


def test_hub_errors_are_masked_in_every_form_and_made_storable() -> None:
    encoded = base64.b64encode(f"user:{CANARY}".encode()).decode()
    error = InvalidCredentials(f"Acme said: bad token {encoded} for \ud800", field="api_key")
    error.redacted([CANARY])
    assert find_secret(str(error), [CANARY]) is None
    assert find_secret(" ".join(map(str, error.args)), [CANARY]) is None
    str(error).encode("utf-8")  # no lone surrogate left
    assert "\ufffd" in str(error)
    many = FieldError.many({"api_key": f"{CANARY[::-1]} \udfff", "team": "fine"})
    many.redacted([CANARY])
    assert all(find_secret(m, [CANARY]) is None for m in many.errors.values())
    "".join(many.errors.values()).encode("utf-8")


def test_clean_text_masks_the_same_forms() -> None:
    hexed = CANARY.encode().hex().upper()
    assert clean_text(f"token {hexed}", secrets=[CANARY]) == f"token {MASK}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\ud800b", "a\ufffdb"),
        ("\udfff", "\ufffd"),
        ("\ud83d\ude00 pair", "😀 pair"),  # a surrogate pair is joined, not lost
        ("nul \x00 stays", "nul \x00 stays"),
    ],
)
def test_storable_text_encodes_and_goes_into_sqlite(text: str, expected: str) -> None:
    stored = storable(text)
    assert stored == expected
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (stored,))
    assert conn.execute("SELECT x FROM t").fetchone()[0] == expected


def test_a_plain_hub_error_message_is_made_storable() -> None:
    error = UnexpectedResponse("Acme answered \ud800")
    assert isinstance(error.redacted(()), HubError)
    assert error.message == "Acme answered \ufffd" == error.args[0]


@pytest.mark.parametrize("before", [b"", b"u", b"us"])
def test_a_key_with_dashes_in_url_safe_base64_is_masked(before: bytes) -> None:
    # The key holds "-" and "_", so they are not separators for it, and its URL-safe
    # encoding (which has "-" and "_" where the standard one has "+" and "/") must be
    # looked for as such.
    secret = "key-~~~~~~~~~~~~~~~~_tail?>?>?>"
    encoded = base64.urlsafe_b64encode(before + secret.encode()).decode()
    material = key_material(encoded, len(before), len(secret))
    assert "-" in material or "_" in material
    masked = redact(f"echo {encoded} end", [secret])
    assert not surviving(masked, material)
