"""nginx's own rules that its `secure_link` links depend on, ported from nginx 1.22 so that the
gateway judges those links byte for byte as nginx does (docs/nginx-secure-link.md):

    parse_expression   `secure_link_md5`'s value: literal text and `$variables`
                       (ngx_http_script_compile), the subset that makes sense at the gateway
    normalize_uri      `$uri`: the path decoded and normalised (ngx_http_parse_complex_uri,
                       merge_slashes on)
    decode_md5         the md5 argument (ngx_decode_base64url, as ngx_http_secure_link_variable
                       calls it)
    parse_expires      the expires argument (ngx_atotm)

Pure and standard library only; imports nothing else of `signer`, so the keyring can validate
an expression when it loads one.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

EXPIRES: Final = "secure_link_expires"
URI: Final = "uri"
REMOTE_ADDR: Final = "remote_addr"
#: The variables an expression may use: those the gateway knows the value of as nginx would.
VARIABLES: Final = (EXPIRES, URI, REMOTE_ADDR)
#: nginx's time_t bound (NGX_MAX_TIME_T_VALUE on 64-bit systems): ngx_atotm refuses beyond it.
MAX_TIME_T: Final = 2**63 - 1
#: The md5 argument's bound before decoding (nginx: `if (val.len > 24) goto not_found`).
MAX_MD5_TEXT: Final = 24
MD5_BYTES: Final = 16

_NAME_CHARS: Final = re.compile(r"[A-Za-z0-9_]*")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_DIGITS: Final = re.compile(r"[0-9]+")


class ExpressionError(ValueError):
    """An expression nginx would refuse, or one the gateway cannot evaluate; the message names
    the variable or the rule, never the literal text (it holds the secret)."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed `secure_link_md5` value: literal text and variables, in order. `parts` holds
    the secret (the literal text), so it never appears in a repr."""

    parts: tuple[tuple[bool, str], ...]  # (is a variable, its lower-case name or the literal)

    def __repr__(self) -> str:
        return f"Expression({self.shape})"

    def uses(self, name: str) -> bool:
        return (True, name) in self.parts

    @property
    def shape(self) -> str:
        """The expression with each literal character as `*`: safe to show."""
        return self.masked({name: f"${name}" for name in VARIABLES})

    def evaluate(self, values: Mapping[str, str]) -> bytes:
        """The bytes nginx hashes: each variable's value in place (UTF-8)."""
        return "".join(values[text] if var else text for var, text in self.parts).encode()

    def masked(self, values: Mapping[str, str]) -> str:
        """`evaluate`'s text with every literal character replaced by `*`, for explanations."""
        return "".join(values[text] if var else "*" * len(text) for var, text in self.parts)


@functools.lru_cache(maxsize=64)
def parse_expression(text: str) -> Expression:
    """Parse as ngx_http_script_compile does: `$name` or `${name}`, names of A-Z a-z 0-9 _
    (matched in any case, as nginx looks variables up), everything else literal. Raises
    `ExpressionError` for what nginx refuses (`$` without a name, an unclosed `${`, regex
    captures `$1`..`$9`), for variables other than `VARIABLES`, and for expressions that cannot
    make a safe link: without `$secure_link_expires` (the expiry would not be signed) or
    without literal text (nothing secret)."""
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    i, end = 0, len(text)
    while i < end:
        if text[i] != "$":
            literal.append(text[i])
            i += 1
            continue
        i += 1
        if i < end and "1" <= text[i] <= "9":
            raise ExpressionError(f"${text[i]} is a regex capture, which the gateway has not")
        bracket = i < end and text[i] == "{"
        if bracket:
            i += 1
        match = _NAME_CHARS.match(text, i)
        name = match.group() if match else ""
        i += len(name)
        if bracket:
            if i >= end or text[i] != "}":
                raise ExpressionError(f"the closing bracket of ${{{name}}} is missing")
            i += 1
        if not name:
            raise ExpressionError("'$' without a variable name (nginx: invalid variable name)")
        if name.lower() not in VARIABLES:
            known = ", ".join(f"${known}" for known in VARIABLES)
            raise ExpressionError(f"unknown variable ${name} (the gateway knows {known})")
        if literal:
            parts.append((False, "".join(literal)))
            literal = []
        parts.append((True, name.lower()))
    if literal:
        parts.append((False, "".join(literal)))
    expression = Expression(tuple(parts))
    if not expression.uses(EXPIRES):
        raise ExpressionError(
            f"${EXPIRES} is missing: the link's expiry would not be signed, so anyone could "
            "extend it (nginx also accepts links without one; the gateway does not)"
        )
    if not any(not var for var, _ in expression.parts):
        raise ExpressionError("no literal text, so no secret: anyone could make its links")
    return expression


# --- $uri ----------------------------------------------------------------------------------

_USUAL, _SLASH, _DOT, _DOT_DOT, _QUOTED, _QUOTED_SECOND = range(6)
#: The bytes ngx_http_parse_complex_uri acts on; it copies every other byte as it is.
_SPECIAL: Final = frozenset(b"/%?#.")
_COMPLEX: Final = re.compile(r"[%?#]|/\.|//")


def normalize_uri(raw_path: str) -> bytes | None:
    """nginx's `$uri` of a request path as received (still percent-encoded, ASCII): decoded
    once, `%2F` a slash like any other, `.` and `..` segments resolved, runs of `/` merged.
    None where nginx answers 400 (`..` above the root, a broken or `%00` escape). A port of
    ngx_http_parse_complex_uri, state for state (it also returns what nginx copies unchanged
    for a path that needs none of this)."""
    raw = raw_path.encode("latin-1")
    if not raw.startswith(b"/"):
        return None
    if not _COMPLEX.search(raw_path):
        return raw  # what nginx itself does when its request-line parser saw none of these
    out = bytearray()
    state = quoted_state = _USUAL
    decoded = 0
    p, end = 1, len(raw)
    ch = raw[0]
    while p <= end:
        if state == _QUOTED:
            c = ch | 0x20
            if 0x30 <= ch <= 0x39:
                decoded = ch - 0x30
            elif 0x61 <= c <= 0x66:
                decoded = c - 0x61 + 10
            else:
                return None
            state = _QUOTED_SECOND
        elif state == _QUOTED_SECOND:
            c = ch | 0x20
            if 0x30 <= ch <= 0x39:
                ch = (decoded << 4) + ch - 0x30
                if ch in (0x25, 0x23):  # a decoded '%' or '#' is text, never acted on
                    state = _USUAL
                    out.append(ch)
                elif ch == 0:
                    return None
                else:
                    state = quoted_state
                    continue  # the decoded byte goes through the state it interrupted
            elif 0x61 <= c <= 0x66:
                ch = (decoded << 4) + c - 0x61 + 10
                if ch == 0x3F:  # a decoded '?' is text
                    state = _USUAL
                    out.append(ch)
                else:
                    state = quoted_state
                    continue
            else:
                return None
        elif ch not in _SPECIAL:
            state = _USUAL
            out.append(ch)
        elif ch == 0x25:  # '%'
            quoted_state, state = state, _QUOTED
        elif ch in (0x3F, 0x23):  # '?' or '#': the path ends here
            if state == _DOT:
                out.pop()
            elif state == _DOT_DOT and not _up(out):
                return None
            return bytes(out)
        elif ch == 0x2F:  # '/'
            if state == _USUAL:
                out.append(ch)
            elif state == _DOT:
                out.pop()  # "/./": drop the '.'
            elif state == _DOT_DOT and not _up(out):
                return None
            state = _SLASH  # in _SLASH itself: merge_slashes drops the second '/'
        else:  # '.'
            out.append(ch)
            state = {_SLASH: _DOT, _DOT: _DOT_DOT}.get(state, _USUAL)
        ch = raw[p] if p < end else 0
        p += 1
    if state in (_QUOTED, _QUOTED_SECOND):
        return None
    if state == _DOT:
        out.pop()
    elif state == _DOT_DOT and not _up(out):
        return None
    return bytes(out)


def _up(out: bytearray) -> bool:
    """`/..` just written: back to after the previous '/'; False above the root (nginx: 400)."""
    u = len(out) - 4
    while True:
        if u < 0:
            return False
        if out[u] == 0x2F:
            del out[u + 1 :]
            return True
        u -= 1


# --- the arguments ---------------------------------------------------------------------------


def decode_md5(text: str) -> bytes | None:
    """The 16 bytes nginx reads from the md5 argument, or None where it refuses it: at most 24
    characters, base64url up to the first `=` (nginx ignores what follows it), 22 of them (the
    low bits of the last one are ignored too). A `,` anywhere is refused: nginx splits its
    `secure_link` value at the first comma, which would cut such an argument short."""
    if len(text) > MAX_MD5_TEXT or "," in text:
        return None
    data = text.partition("=")[0]
    if len(data) != 22 or not _B64URL.fullmatch(data):
        return None
    # nginx keeps the top two bits of the last character; base64 would refuse the others.
    last = _B64_VALUES[data[-1]] & 0x30
    return base64.urlsafe_b64decode(data[:-1] + _B64_CHARS[last] + "==")


_B64_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUES: Final = {char: value for value, char in enumerate(_B64_CHARS)}


def parse_expires(text: str) -> int | None:
    """The expires argument as ngx_atotm reads it (digits only, leading zeros allowed, within
    time_t), or None where nginx refuses the link: also for 0 (`expires <= 0`)."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value <= MAX_TIME_T else None
