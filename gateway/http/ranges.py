"""Range requests (RFC 9110 §14), reduced to what a single-object streaming proxy needs.

Only a single `bytes` range is honoured. A request with more than one range-spec is answered
with the full representation (200), as S3 does: multipart/byteranges would need the gateway to
assemble bodies it otherwise just streams, and the RFC lets a server ignore Range entirely.
Anything unparseable is likewise ignored rather than rejected, because a Range header is a
hint, never a precondition.

Parsing and resolving are separate steps: a `RangeSpec` is what the client asked for and can be
forwarded to the origin verbatim; a `ByteRange` is that request resolved against a known size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ByteRange", "RangeSpec", "parse_range", "unsatisfiable_content_range"]

# Any number is a position (RFC 9110 §14.1.1): one past the end makes a range unsatisfiable
# (416), one past the end of any object an open end. Storage parses positions as signed 64-bit
# integers, so larger ones are never sent to it (`RangeSpec.header`, `beyond_any_object`).
# Past 40 digits a number is taken as malformed (ignored), to keep parsing cheap.
_INT = r"[0-9]{1,40}"
MAX_POSITION = 2**63 - 1  # no object is larger: S3's objects end at 5 TiB
_SPEC = re.compile(rf"(?:(?P<first>{_INT})-(?P<last>{_INT})?|-(?P<suffix>{_INT}))")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A single satisfiable range, inclusive bounds, resolved against a known size."""

    start: int
    end: int  # inclusive
    size: int  # full object size

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < self.size:
            raise ValueError(f"invalid byte range {self.start}-{self.end}/{self.size}")

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """One syntactically valid range-spec, not yet resolved against a size."""

    first: int | None  # None for a suffix range
    last: int | None  # None for "a-" and for suffix ranges
    suffix: int | None  # N for "bytes=-N", else None

    def __post_init__(self) -> None:
        # Reject impossible combinations at construction so `header()` and `resolve()` need
        # not second-guess them.
        if self.suffix is not None:
            ok = self.first is None and self.last is None and self.suffix >= 0
        else:
            ok = (
                self.first is not None
                and self.first >= 0
                and (self.last is None or self.last >= self.first)
            )
        if not ok:
            raise ValueError(f"invalid range spec {self.first!r}-{self.last!r}/-{self.suffix!r}")

    def header(self) -> str:
        """Canonical form, so the origin sees exactly the range that was validated here, with
        positions past any object written as what they mean (an open end, the whole object).
        A first position past any object cannot be sent: see `beyond_any_object`."""
        if self.suffix is not None:
            return "bytes=0-" if self.suffix > MAX_POSITION else f"bytes=-{self.suffix}"
        last = "" if self.last is None or self.last > MAX_POSITION else str(self.last)
        return f"bytes={self.first}-{last}"

    @property
    def beyond_any_object(self) -> bool:
        """Starts past the end of any object: unsatisfiable, but only the size says how (416
        carries it), so the object's metadata must be read first."""
        return self.first is not None and self.first > MAX_POSITION

    def resolve(self, size: int) -> ByteRange | None:
        """The bytes to send for an object of `size`, or None when unsatisfiable (416)."""
        if size < 0:
            raise ValueError(f"negative size {size}")
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                return None
            return ByteRange(max(0, size - self.suffix), size - 1, size)
        assert self.first is not None  # guaranteed by __post_init__
        if self.first >= size:
            return None
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return ByteRange(self.first, end, size)


def parse_range(header: str | None) -> RangeSpec | None:
    """The single range to honour, or None to serve the whole representation.

    None when the header is absent, the unit is not `bytes` (case-insensitively), the syntax is
    invalid, there is more than one range-spec, or first-pos > last-pos. Empty list elements
    and OWS around elements are tolerated, as RFC 9110 §5.6.1 asks of recipients.
    """
    if header is None:
        return None
    unit, eq, range_set = header.strip(_OWS).partition("=")
    if not eq or unit.lower() != "bytes":
        return None
    elements = [element.strip(_OWS) for element in range_set.split(",")]
    specs = [element for element in elements if element]
    if len(specs) != 1:
        return None
    match = _SPEC.fullmatch(specs[0])
    if match is None:
        return None
    if match["suffix"] is not None:
        return RangeSpec(first=None, last=None, suffix=int(match["suffix"]))
    first = int(match["first"])
    last = None if match["last"] is None else int(match["last"])
    if last is not None and first > last:
        return None
    return RangeSpec(first=first, last=last, suffix=None)


def unsatisfiable_content_range(size: int) -> str:
    """The Content-Range a 416 must carry, telling the client the current size."""
    return f"bytes */{size}"
