"""The response to a GET or HEAD, planned once from the request's headers and the object's
metadata: pure, so every case of the range and conditional rules is tested without a server.

    preconditions (RFC 9110 §13.2.2)   -> 412, or 304 for GET/HEAD
    Range, unless If-Range says no     -> 206 with the resolved range, or 416
    otherwise                          -> 200

The pipeline asks storage for metadata first only when the request is conditional (so a 304
moves no bytes and keeps the storage connection), and otherwise plans from the metadata that
came with the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.http.conditionals import (
    Outcome,
    Validators,
    evaluate,
    format_http_date,
    if_range_allows,
)
from gateway.http.ranges import ByteRange, RangeSpec, parse_range
from gateway.storage import ObjectMeta

#: Request headers that make the answer depend on the object's validators.
CONDITIONAL: Final = (
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "If-Range",
)
#: Types a browser runs as a page (script on the gateway's origin): served as attachments
#: unless a setting allows them inline. `+xml` covers SVG, XHTML and every XML dialect.
ACTIVE_TYPES: Final = frozenset(
    (
        "text/html",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-javascript",
        "text/xsl",
    )
)
#: Even a page that gets through runs in an opaque origin, without the gateway's cookies (CSP
#: `sandbox`). Media elements and downloads do not notice it; a PDF is left out, because
#: browsers refuse to show a sandboxed PDF inline (its viewer keeps its own sandbox).
SANDBOX: Final = "sandbox"
_UNSANDBOXED: Final = frozenset(("application/pdf",))
#: What a 304 repeats of the 200 it stands for (RFC 9110 §15.4.5).
_NOT_MODIFIED_KEEPS: Final = frozenset(("ETag", "Last-Modified", "Cache-Control", "Set-Cookie"))


@dataclass(frozen=True, slots=True)
class Plan:
    status: int  # 200, 206, 304, 412 or 416
    range: ByteRange | None = None  # for a 206: the bytes to send


OK: Final = Plan(200)
NOT_MODIFIED: Final = Plan(304)
PRECONDITION_FAILED: Final = Plan(412)
UNSATISFIABLE: Final = Plan(416)


def is_conditional(headers: Mapping[str, str]) -> bool:
    """Whether any of `CONDITIONAL` was sent (spelled out: no generator per request)."""
    return (
        "If-Match" in headers
        or "If-None-Match" in headers
        or "If-Modified-Since" in headers
        or "If-Unmodified-Since" in headers
        or "If-Range" in headers
    )


def plan(method: str, headers: Mapping[str, str], meta: ObjectMeta) -> Plan:
    """What to answer a GET or HEAD of an object with this metadata."""
    if "Range" not in headers and not is_conditional(headers):
        return OK  # nothing to judge (most requests): no validators to build
    validators = Validators(etag=meta.etag, last_modified=meta.last_modified)
    outcome = evaluate(
        method,
        headers.get("If-Match"),
        headers.get("If-None-Match"),
        headers.get("If-Modified-Since"),
        headers.get("If-Unmodified-Since"),
        validators,
    )
    if outcome is Outcome.NOT_MODIFIED:
        return NOT_MODIFIED
    if outcome is Outcome.PRECONDITION_FAILED:
        return PRECONDITION_FAILED
    spec = parse_range(headers.get("Range"))
    if spec is None or not if_range_allows(headers.get("If-Range"), validators):
        return OK
    byte_range = spec.resolve(meta.size)
    if byte_range is None:
        return UNSATISFIABLE
    return Plan(206, byte_range)


def storage_range(plan: Plan) -> RangeSpec | None:
    """The range to ask storage for, to send what `plan` says."""
    if plan.range is None:
        return None
    return RangeSpec(first=plan.range.start, last=plan.range.end, suffix=None)


def is_active(content_type: str) -> bool:
    """Whether a browser would run a response of this type as a page or a script."""
    essence = content_type.partition(";")[0].strip().lower()
    return essence in ACTIVE_TYPES or essence.endswith("+xml")


def object_headers(
    meta: ObjectMeta,
    plan: Plan,
    *,
    cache_control: str,
    granted: Mapping[str, str],
    inline_active: bool = False,
) -> dict[str, str]:
    """The response headers for `plan`: only what clients need, nothing storage-internal
    (x-amz-*, Server, request ids). `granted` (a token's signed overrides, a cookie) wins.

    Stored objects are whatever uploaders sent: an active type (HTML, SVG, XML, script) goes
    out as an attachment unless `inline_active` or a signed Content-Disposition says otherwise,
    and every object but a PDF runs sandboxed if it is opened as a page anyway."""
    headers = {
        "Content-Type": meta.content_type,
        "Content-Length": str(meta.size),
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
        # A stored HTML/SVG/PDF must not be sniffed into script, nor leak its own signed
        # URL to the next site through Referer.
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if meta.etag:
        headers["ETag"] = meta.etag
    if meta.last_modified:
        headers["Last-Modified"] = format_http_date(meta.last_modified)
    if meta.content_encoding:
        headers["Content-Encoding"] = meta.content_encoding
    if meta.content_disposition:
        headers["Content-Disposition"] = meta.content_disposition
    if meta.content_language:
        headers["Content-Language"] = meta.content_language
    headers.update(granted)
    content_type = headers["Content-Type"]
    if content_type.partition(";")[0].strip().lower() not in _UNSANDBOXED:
        headers["Content-Security-Policy"] = SANDBOX
    if (
        not inline_active
        and is_active(content_type)
        and "Content-Disposition" not in granted
        and not headers.get("Content-Disposition", "").lower().startswith("attachment")
    ):
        headers["Content-Disposition"] = "attachment"
    if plan.status == 304:
        return {k: v for k, v in headers.items() if k in _NOT_MODIFIED_KEEPS}
    if plan.range is not None:
        headers["Content-Range"] = plan.range.content_range()
        headers["Content-Length"] = str(plan.range.length)
    return headers
