"""The errors hub raises: one base class, each message written for the person who typed the key.

Every error class lives here, so that a caller (the CLI, a web page) can catch any of them by
type without importing the module that raises it (the store's sqlite3 and cryptography).

No message may contain a secret. Plugins write messages by hand, and the core redacts every
secret value of the submission from any error that passes through it (`HubError.redacted`).
"""

from __future__ import annotations

import contextlib
import functools
import struct
from binascii import b2a_base64
from collections.abc import Iterable, Mapping

__all__ = [
    "RETRY_AFTER_MAX",
    "AccountNotFound",
    "AmbiguousAccount",
    "ConfigurationError",
    "FieldError",
    "HubError",
    "IdentityMismatch",
    "InvalidCredentials",
    "LinkUsed",
    "PermissionDenied",
    "PluginError",
    "ProviderUnavailable",
    "RateLimited",
    "StoreError",
    "UnexpectedResponse",
    "UnknownProvider",
]

MASK = "[redacted]"

#: How many consecutive characters of a key count as the key. A secret this long or longer is
#: masked wherever it appears, whole or in part: every run of this many of its characters (a
#: key cut short is still a key). Shorter values are left alone: they cannot be told apart
#: from ordinary words ("us", "key"), and no provider issues keys that short.
KEY_PIECE = 8

# Characters a provider may put between the parts of a split key ("abcd-efgh", a key over two
# lines, hex as "de:ad:be:ef" or "%DE%AD"). Text and keys are compared with them left out and
# ASCII letters in lower case, so a key cut into short parts is still one key, and hex in
# either case (or a key in capitals) is still the key. A character that occurs in a secret is
# not a separator for it: every run of KEY_PIECE of the key's own characters stays one.
_SEPARATORS = " \t\n\r\v\f\0.-_:,;|/\\%+='\"`"
_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
_ASCII_LOWER = bytes.maketrans(_UPPER.encode("ascii"), _LOWER.encode("ascii"))
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_SEPARATOR_BYTES = "".join(sorted(_SEPARATORS)).encode("ascii")
# The quick test looks for the forms' words (_WORD characters) in a text. A piece of a key is
# KEY_PIECE characters of one form; words cut from the forms every KEY_PIECE + 1 - _WORD
# characters leave none of those pieces without a whole word, so a text that holds a piece of
# a key holds one of those words. `str.__contains__` finds one in C: a text is read once per
# word, and a key's forms have a few dozen. (Reading the text's own words instead made a
# Python int of each, which cost more than the whole search.) Five characters rather than
# four: a key's four-character words turn up in ordinary text (its hex in dates and ids, a
# word a key and a name share), and each such text was then compared place by place.
_WORD = 5


def _forms(secret: str, delete: bytes, url_safe: bool) -> set[bytes]:
    """*secret* as a provider may echo it, in UTF-8: as is, reversed, in hex and in base64;
    each folded as text is (ASCII letters in lower case, the separators *delete* left out).

    Base64 encodes three bytes in four characters, so a key encoded inside a longer string
    looks different at each of the three byte offsets it can start at: for each, the part of
    the encoding that depends on the key's bytes alone (and, at the end of a string, its
    padding) is a form, in the standard alphabet and, when folding does not make the two the
    same (*url_safe*), in the URL-safe one.
    """
    raw = secret.encode("utf-8", "surrogatepass")
    folded = raw.translate(_ASCII_LOWER, delete)
    # Folding goes byte by byte, so it commutes with reversing the bytes of an ASCII key;
    # other keys are reversed by character. Hex digits are folded already.
    backwards = (
        folded[::-1]
        if secret.isascii()
        else secret[::-1].encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, delete)
    )
    # At offsets 1 and 2 the first 2 and 3 characters also carry bits of the bytes before the
    # key: dropped.
    tails = (
        b2a_base64(raw, newline=False),
        b2a_base64(b"\0" + raw, newline=False)[2:],
        b2a_base64(b"\0\0" + raw, newline=False)[3:],
    )
    forms = {folded, backwards, raw.hex().encode("ascii")}
    forms.update([tail.translate(_ASCII_LOWER, delete) for tail in tails])
    if url_safe:
        # Mapped first, then folded: "+" becomes "-", which may be the key's own (kept).
        forms.update([tail.translate(_URL_SAFE).translate(_ASCII_LOWER, delete) for tail in tails])
    return forms


@functools.lru_cache(maxsize=32)
def _folding(delete: bytes) -> tuple[dict[int, int | None], frozenset[str], bool]:
    """For secrets whose separators are *delete* (those they do not hold themselves): the
    table that folds text (as str), the separators as a set, and whether the URL-safe base64
    alphabet folds to other text than the standard one."""
    separators = delete.decode("ascii")
    table = str.maketrans(_UPPER, _LOWER, separators)
    url_safe = not set(separators).issuperset("+/-_")
    return table, frozenset(separators), url_safe


def _long_enough(secrets: Iterable[str], piece: int) -> frozenset[str]:
    """The secrets of *secrets* at least *piece* characters long: those a `Redactor` masks."""
    if isinstance(secrets, tuple | list) and len(secrets) == 1:  # most often one key: no loop
        (secret,) = secrets
        long_enough = isinstance(secret, str) and len(secret) >= piece
        return frozenset(secrets) if long_enough else _NO_KEYS
    return frozenset([s for s in secrets if isinstance(s, str) and len(s) >= piece])


_NO_KEYS: frozenset[str] = frozenset()


class Redactor:
    """Masks a set of secrets in text, in every form `redact` documents; build it once, reuse it.

    The forms are computed once, when it is built. Masking a text then starts with a quick
    test at C speed: the text, folded, is searched for each of the words cut from the forms
    (`_WORD` characters, one every ``piece + 1 - _WORD``). Only a text that holds one (it
    holds key material or, rarely, a word that happens to match) is compared with the forms
    piece by piece. ``repr()`` never shows a secret.
    """

    __slots__ = ("_delete", "_hay", "_keys", "_piece", "_separators", "_table", "_words")

    def __init__(self, secrets: Iterable[str], piece: int = KEY_PIECE) -> None:
        self._piece = piece
        self._keys = keys = _long_enough(secrets, piece)
        # The separators, less any character of a key (its UTF-8 bytes: a separator is ASCII).
        joined = "".join(keys).encode("utf-8", "surrogatepass")
        self._delete = delete = _SEPARATOR_BYTES.translate(None, joined)
        self._table, self._separators, url_safe = _folding(delete)
        # The forms, folded (bytes: C speed), a separator between them: folded text holds
        # none, so none of its windows spans two forms. In order, so that the words cut from
        # them are the same in every process.
        forms = sorted(set().union(*[_forms(key, delete, url_safe) for key in keys]))
        hay = delete[:1].join(forms)
        self._hay = hay.decode("utf-8", "surrogatepass")
        # The quick test's words (none for pieces too short to hold one).
        self._words = _words(hay, self._hay, piece + 1 - _WORD) if piece > _WORD else ()

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._keys)} secret(s)>"

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __call__(self, text: str) -> str:
        """Return *text* with every form of each secret, and every piece of one, masked."""
        spans = self._spans(text)
        if not spans:
            return text
        out, position = [], 0
        for start, end in spans:
            out += [text[position:start], MASK]
            position = end
        out.append(text[position:])
        return "".join(out)

    def find(self, text: str) -> str | None:
        """The first piece of a secret, in any of its forms, that *text* holds; None if none.

        A secret that appears whole is returned whole; otherwise the text of the first
        `KEY_PIECE`-long piece found (with any separators the provider put inside it).
        """
        for key in self._keys:
            if key in text:
                return key
        spans = self._spans(text)
        if not spans:
            return None
        start, end = spans[0]
        counted, stop = 0, start
        while stop < end and counted < self._piece:
            counted += text[stop] not in self._separators
            stop += 1
        return text[start:stop]

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where *text* holds key material: sorted, disjoint (start, end) spans."""
        if not self._keys or len(text) < self._piece:
            return []
        piece, hay = self._piece, self._hay
        if text.isascii():  # most text: folded as bytes, several times faster than as str
            folded = text.encode("ascii").translate(_ASCII_LOWER, self._delete).decode("ascii")
        else:
            folded = text.translate(self._table)
        found: list[tuple[int, int]] = []
        for start in self._starts(folded):
            if folded[start : start + piece] in hay:
                end = start + piece
                if found and start <= found[-1][1]:
                    found[-1] = (found[-1][0], end)
                else:
                    found.append((start, end))
        if not found or len(folded) == len(text):
            return found
        kept = [i for i, char in enumerate(text) if char not in self._separators]
        return [(kept[start], kept[end - 1] + 1) for start, end in found]

    def _starts(self, folded: str) -> Iterable[int]:
        """Where in *folded* (a text, folded) a piece of a key may start.

        The quick test: the forms' words, each looked for in the text at C speed. A piece of
        a key holds one of them within its first ``piece - _WORD`` characters, so only the
        places just before each word found are compared with the forms.
        """
        last = len(folded) - self._piece
        if not self._words:  # pieces too short to hold a word: no quick test
            return range(last + 1)
        found = [word for word in self._words if word in folded]
        if not found:
            return ()
        reach = self._piece - _WORD  # how far into a piece its word may start
        starts: set[int] = set()
        for word in found:
            at = folded.find(word)
            while at >= 0:
                starts.update(range(max(0, at - reach), min(at, last) + 1))
                at = folded.find(word, at + 1)
        return sorted(starts)


def _words(hay: bytes, text: str, stride: int) -> tuple[str, ...]:
    """The `_WORD`-long words of *text* (*hay* decoded) that start every *stride* characters."""
    if len(hay) != len(text) or b"\n" in hay:  # not ASCII (or odd): a slice at a time
        return tuple(text[i : i + _WORD] for i in range(0, len(text) - _WORD + 1, stride))
    # ASCII: cut in C. Words that overlap are cut in several passes, each of words apart.
    passes = -(-_WORD // stride)
    step = passes * stride
    cut: list[bytes] = []
    for first in range(0, step, stride):
        count = (len(hay) - first - _WORD) // step + 1
        if count > 0:
            cut += _cutter(count, step).unpack_from(hay, first)
    return tuple(b"\n".join(cut).decode("ascii").split("\n")) if cut else ()


@functools.lru_cache(maxsize=256)
def _cutter(count: int, step: int) -> struct.Struct:
    """What cuts *count* words, one every *step* bytes (at least `_WORD`)."""
    word = f"{_WORD}s"
    return struct.Struct((word + f"{step - _WORD}x" * (step > _WORD)) * (count - 1) + word)


_NONE = Redactor(())


# A check builds a key's redactor in the driver and looks it up again from the plugin's code;
# `check_many` keeps 50 checks in flight, each with a set or two of secrets, so a smaller cache
# forgot each key between the two and built it twice (about 50 KiB each, 12 MiB at most).
@functools.lru_cache(maxsize=256)
def _cached(keys: frozenset[str], piece: int) -> Redactor:
    return Redactor(keys, piece)


def redactor(secrets: Iterable[str] | Redactor, piece: int = KEY_PIECE) -> Redactor:
    """The `Redactor` of *secrets*; built once per set of secrets and kept for the next call.

    A check redacts its errors and its result, a string at a time, and `check_many` does so
    for thousands of accounts: a small cache builds each key's forms once.
    """
    if isinstance(secrets, Redactor):
        return secrets
    keys = _long_enough(secrets, piece)
    return _cached(keys, piece) if keys else _NONE


def redact(text: str, secrets: Iterable[str] | Redactor) -> str:
    """Return *text* with each secret, and every `KEY_PIECE`-long piece of one, masked.

    A run of text made of such pieces becomes one mask, so a quoted key, a key cut short and a
    key split across lines all leave no key material behind. Each secret is looked for in the
    forms a provider may echo it in:

    - as typed, and reversed;
    - its UTF-8 bytes in hex;
    - its UTF-8 bytes in base64, standard (``+/``) or URL-safe (``-_``), with or without
      padding, alone or inside a longer encoded string: the key may start at any of the three
      byte offsets of a base64 group, and each gives other characters; the characters that
      depend on the key's bytes alone are looked for at all three;
    - any of these in upper or lower case (ASCII letters are compared folded), or cut into
      parts by separators, such as a key over several lines or hex as ``DE:AD:BE:EF``. The
      separators are white space, NUL, quotes and ``. - _ : , ; | / \\ % + =``, less those
      the secret itself holds (a key with dashes split at other dashes is not recognised).

    What is not feasible is left out: a provider may transform a key in endless ways (another
    text encoding, encodings stacked, a hash, a cipher), and trying each would slow every
    message and mask ordinary text by chance. A key transformed so is not recognised.
    """
    if len(text) < KEY_PIECE:
        return text
    return redactor(secrets)(text)


class MaskedError(Exception):
    """Chained in place of an exception whose text would show a secret however its values are
    masked (its own ``__str__``, say): its type and text with every secret masked, and its
    traceback, which shows where it was raised (frames, never values)."""


def scrub_chain(error: BaseException, secrets: Iterable[str] | Redactor) -> None:
    """Mask every secret in the exceptions chained behind *error* (causes and contexts), in
    place, so that no traceback of it shows one.

    Each one's values are masked: its args (text, bytes, and the tuples and lists that hold
    them), its notes, an OSError's file names and message, an exception group's members. One
    whose text still shows a secret after that is replaced in the chain by a `MaskedError`,
    so a chain keeps the plugin's own exception types wherever it can, and shows no key.
    """
    mask = redactor(secrets)
    if not mask:
        return
    seen: set[int] = {id(error)}
    stack = [error]
    while stack:
        current = stack.pop()
        for link in ("__cause__", "__context__"):
            chained = getattr(current, link)
            if chained is None or id(chained) in seen:
                continue
            seen.add(id(chained))
            _scrub(chained, mask, seen)
            if mask.find(describe(chained)) is not None:
                stand_in = MaskedError(mask(describe(chained)))
                stand_in.__traceback__ = chained.__traceback__
                stand_in.__cause__ = chained.__cause__
                stand_in.__context__ = chained.__context__
                stand_in.__suppress_context__ = chained.__suppress_context__
                suppressed = current.__suppress_context__
                setattr(current, link, stand_in)
                current.__suppress_context__ = suppressed  # setting a cause would change it
                chained = stand_in
            stack.append(chained)


def _scrub(error: BaseException, mask: Redactor, seen: set[int]) -> None:
    """Mask the values *error* holds, in place (its chain is `scrub_chain`'s)."""
    with contextlib.suppress(Exception):  # args that cannot be set: its text decides
        error.args = tuple(_masked_value(arg, mask) for arg in error.args)
    _mask_notes(error, mask)
    if isinstance(error, OSError):
        for name in ("filename", "filename2", "strerror"):
            value = getattr(error, name, None)
            if isinstance(value, str | bytes):
                with contextlib.suppress(Exception):  # a read-only attribute: its text decides
                    setattr(error, name, _masked_value(value, mask))
    if isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            if id(member) not in seen:
                seen.add(id(member))
                _scrub(member, mask, seen)
                scrub_chain(member, mask)


def _masked_value(value: object, mask: Redactor) -> object:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
        return value if mask.find(text) is None else mask(text).encode("utf-8")
    if isinstance(value, tuple):
        return tuple(_masked_value(item, mask) for item in value)
    if isinstance(value, list):
        return [_masked_value(item, mask) for item in value]
    return value


def _mask_notes(error: BaseException, mask: Redactor) -> None:
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list) and notes:
        error.__notes__ = [mask(n) if isinstance(n, str) else "(a note)" for n in notes]


def storable(text: str) -> str:
    """*text* made storable: each lone surrogate becomes U+FFFD (the replacement character).

    A lone surrogate (``"\ud800"``, which JSON's ``\ud800`` escape gives) is the one code
    point UTF-8 cannot encode, so sqlite, a log file or a terminal would fail on it; a pair of
    surrogates is joined into its character. Everything else is left as it was (NUL too:
    sqlite stores it, and the display shows it as ``\x00``).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception raised by plugin code; never raises itself.

    A plugin's exception is untrusted like the rest of it: its ``__str__`` may fail too.
    """
    try:
        text = str(exc).strip()
    except Exception:
        text = "(its message cannot be read)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HubError(Exception):
    """Base class of every error hub raises on purpose.

    ``str(error)`` is the message for the person; ``field`` names the input at fault, if any.
    """

    #: A short, stable name for the kind of failure (used in ``--json`` output and by web pages).
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        field = f", field={self.field!r}" if self.field else ""
        return f"{type(self).__name__}({self.message!r}{field})"

    def redacted(self, secrets: Iterable[str] | Redactor) -> HubError:
        """Mask every secret value in this error's text and notes, in place, and return it.

        The text is also made `storable`: a message quoting a provider's lone surrogate can
        still become an account's ``last_error``.
        """
        mask = redactor(secrets)
        self.message = storable(mask(self.message))
        self.args = tuple(storable(mask(a)) if isinstance(a, str) else a for a in self.args)
        _mask_notes(self, mask)
        return self


class FieldError(HubError):
    """One or more fields hold a value that cannot be right.

    ``errors`` always maps each field at fault to its message, so a form can show every message
    beside its own field at once.
    """

    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.errors: dict[str, str] = {field: message}

    @classmethod
    def many(cls, errors: Mapping[str, str]) -> FieldError:
        """Report several fields at once; *errors* maps field name to message (not empty)."""
        if not errors:
            raise ValueError("FieldError.many() needs at least one field")
        items = list(errors.items())
        error = cls(*items[0])
        error.errors = dict(items)
        if len(items) > 1:
            error.message = "; ".join(f"{name}: {message}" for name, message in items)
            error.args = (error.message,)
        return error

    def __repr__(self) -> str:
        return f"FieldError({self.errors!r})"

    def redacted(self, secrets: Iterable[str] | Redactor) -> FieldError:
        """Mask every secret value in the message and in each field's message."""
        mask = redactor(secrets)
        super().redacted(mask)
        self.errors = {name: storable(mask(msg)) for name, msg in self.errors.items()}
        return self


class ConfigurationError(HubError):
    """An environment variable hub depends on holds a value it cannot use.

    ``variable`` names it (``SSL_CERT_FILE``, ``HTTPS_PROXY``, ...). This is the setup's fault,
    not the provider's or the key's: nothing was sent, and nothing is stored. The message shows
    the value with any password masked.
    """

    code = "configuration_error"

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


class InvalidCredentials(HubError):
    """The provider rejected the key: wrong, expired or revoked (usually HTTP 401)."""

    code = "invalid_credentials"


class PermissionDenied(HubError):
    """The key is valid but lacks a role or permission the check needs (usually HTTP 403)."""

    code = "permission_denied"


#: The longest wait hub takes from a provider's ``Retry-After`` (a day): a provider that
#: asks for a year, or for a number of 400 digits, has an account checked again tomorrow.
RETRY_AFTER_MAX = 86_400.0


class RateLimited(HubError):
    """The provider asked us to slow down; ``retry_after`` is in seconds when known."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class ProviderUnavailable(HubError):
    """The provider could not be reached or failed on its side: network, timeout, 5xx.

    ``reason`` says which: ``unresolved`` (the host name does not resolve), ``connect``,
    ``tls``, ``timeout``, ``proxy``, ``protocol`` or ``server`` (a 5xx answer). The driver throws
    this error into the flow at the ``yield`` that asked for the request, so a flow can say
    more (hub-qlik names the tenant field and its likely cause); it stays a
    `ProviderUnavailable`: no network is no verdict on the key or the values.
    """

    code = "provider_unavailable"

    def __init__(self, message: str, *, reason: str = "server", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class UnexpectedResponse(HubError):
    """The provider answered with something the plugin cannot make sense of."""

    code = "unexpected_response"


class PluginError(HubError):
    """A plugin broke the contract: it raised an unknown exception or asked for a forbidden request.

    ``plugin`` names the plugin at fault.
    """

    code = "plugin_error"

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class UnknownProvider(HubError):
    """No installed plugin provides the provider id that was asked for."""

    code = "unknown_provider"

    def __init__(self, provider_id: str, known: Iterable[str] = ()) -> None:
        known = sorted(known)
        hint = f"; installed: {', '.join(known)}" if known else "; no provider plugin is installed"
        super().__init__(f"no provider {provider_id!r}{hint}")
        self.provider_id = provider_id


class IdentityMismatch(HubError):
    """A relink's new key reaches another organisation, user or tenant than the account's.

    ``stored_label`` and ``new_label``, when known, name the account and what the new key
    reaches, so a page can show both.
    """

    code = "identity_mismatch"

    def __init__(
        self,
        message: str,
        *,
        stored_label: str | None = None,
        new_label: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.stored_label = stored_label
        self.new_label = new_label


class StoreError(HubError):
    """The account store cannot do what was asked: no key, wrong key, unusable database."""

    code = "store_error"


class AccountNotFound(StoreError):
    """No stored account has this id (or an id starting with this prefix)."""

    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}")
        self.account_id = account_id


class AmbiguousAccount(StoreError):
    """Several accounts have ids starting with this prefix; ``matches`` lists them."""

    code = "ambiguous_account"

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(
            f"{prefix!r} matches {len(matches)} accounts ({', '.join(matches)}); "
            "type more of the id"
        )
        self.prefix = prefix
        self.matches = matches


class LinkUsed(StoreError):
    """An auth link cannot be used: ``reason`` says why.

    ``used`` (it linked an account already), ``revoked`` (withdrawn), ``expired``, ``locked``
    (too many failed attempts), ``unknown`` (no such link), or ``scope`` (it was made for
    another provider or account).
    """

    code = "link_used"

    def __init__(self, link_id: str, reason: str) -> None:
        why = _LINK_WHY.get(reason, "cannot be used")
        super().__init__(f"link {link_id} {why}; nothing was stored. Ask for a new link")
        self.link_id = link_id
        self.reason = reason


_LINK_WHY = {
    "used": "was used already",
    "revoked": "was withdrawn",
    "expired": "has expired",
    "locked": "is locked after too many failed attempts",
    "unknown": "does not exist",
    "scope": "was made for another provider or account",
}
