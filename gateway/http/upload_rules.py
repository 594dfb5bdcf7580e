"""What an upload's headers must satisfy before a single body byte is read.

`upload_plan` judges a PUT's framing and entity headers against the constraints signed into its
token (ContentType, MinBytes, MaxBytes) and the gateway's own bound, and returns either the plan
for reading the body or the refusal to send instead. Pure: no I/O, no aiohttp.

    no Content-Length and not chunked              -> 411 length_required
    Content-Length above MaxBytes or the bound     -> 413 too_large
    Content-Length below MinBytes                  -> 400 too_small
    Content-Type absent/other than the signed one  -> 415 unsupported_media_type
    Content-Encoding other than one identity       -> 415 unsupported_content_encoding

A chunked body's size is unknown up front: it is counted while streaming (`BodyPlan.limit`,
`BodyPlan.minimum`) and refused the same way (413 once past the limit, 400 at the end).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway.errors import Refusal
from signer.format import Claims
from signer.syntax import TCHAR

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

# RFC 9110 §8.3.1: type "/" subtype, both tokens; parameters `; name=value` follow, each value
# a token or a quoted-string. Nothing else is stored (a `,` never: see `storable_type`).
_TCHARS: Final = TCHAR + "+"
_QUOTED: Final = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_MEDIA_TYPE: Final = re.compile(rf"({_TCHARS})/({_TCHARS})")
_PARAMETER: Final = re.compile(rf" *;(?: *({_TCHARS})=({_TCHARS}|{_QUOTED}))? *")
_STORABLE: Final = re.compile(r"[\x20-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class BodyPlan:
    """How to read an accepted upload's body."""

    length: int | None  # the announced Content-Length; None for a chunked body
    minimum: int  # fewer bytes than this at the end: too_small
    limit: int  # more bytes than this at any point: too_large
    content_type: str  # what to store the object with


def upload_plan(
    claims: Claims,
    *,
    content_length: int | None,
    chunked: bool,
    content_type: str | None,
    content_encodings: Sequence[str],
    max_upload_bytes: int,
) -> BodyPlan | Refusal:
    """The body plan for a PUT with these headers, or why it is refused."""
    limit = (
        max_upload_bytes if claims.max_bytes is None else min(claims.max_bytes, max_upload_bytes)
    )
    minimum = claims.min_bytes or 0
    if content_length is None and not chunked:
        return Refusal.LENGTH_REQUIRED
    if content_length is not None:
        if content_length > limit:
            return Refusal.TOO_LARGE
        if content_length < minimum:
            return Refusal.TOO_SMALL
    stored = storable_type(content_type)
    if stored is None or not type_allowed(claims.content_type, media_type(stored)):
        return Refusal.UNSUPPORTED_MEDIA_TYPE
    if len(content_encodings) > 1 or any(
        e.strip().lower() not in ("", "identity") for e in content_encodings
    ):
        # The stored bytes must be the bytes sent: no coding is undone, and more than one
        # header could be read differently by whatever looks at it next.
        return Refusal.UNSUPPORTED_CONTENT_ENCODING
    return BodyPlan(content_length, minimum, limit, stored)


def storable_type(header: str | None) -> str | None:
    """The Content-Type to store (absent: octet-stream), re-serialised from its parsed parts,
    or None when the header is not exactly one well-formed media type in visible ASCII.

    Never the header as sent: a browser reading a stored `image/png;,text/html` takes the last
    type after a comma (WHATWG "extract a MIME type") and would run the object as a page.
    """
    if header is None:
        return DEFAULT_CONTENT_TYPE
    value = header.strip()
    if not _STORABLE.fullmatch(value) or "," in value:
        return None
    essence = value.partition(";")[0]
    media = _MEDIA_TYPE.fullmatch(essence.strip())
    if media is None:
        return None
    stored = media.group(0).lower()
    position = len(essence)  # then each `; name=value` to the end
    while position < len(value):
        parameter = _PARAMETER.match(value, position)
        if parameter is None or parameter.end() == position:
            return None
        if parameter.group(1) is not None:
            stored += f"; {parameter.group(1).lower()}={parameter.group(2)}"
        position = parameter.end()
    return stored


def media_type(header: str) -> str | None:
    """`type/subtype` of a Content-Type value, lower-cased, without parameters."""
    match = _MEDIA_TYPE.fullmatch(header.partition(";")[0].strip())
    return match.group(0).lower() if match else None


def type_allowed(signed: str | None, media: str | None) -> bool:
    """A signed ContentType is an exact type (`image/png`) or a type prefix (`image/`)."""
    if signed is None:
        return True
    if media is None:
        return False
    return media.startswith(signed) if signed.endswith("/") else media == signed
