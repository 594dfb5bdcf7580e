"""CORS for browser players and pages: which origins may read responses, and the preflight.

Pure functions over header values. The policy is built once from settings (which refuse `*`
together with credentials at start-up). A preflight (`OPTIONS` with `Origin` and
`Access-Control-Request-Method`) is answered without a token: it carries none, and reveals only
this policy. It allows the token methods anywhere, and POST only at the bucket, where an S3
presigned POST form goes (`gateway.form_upload`): nowhere else can a POST succeed. Actual
responses, errors included, carry the allow headers for an allowed origin, so a page can read
`{"error": "expired"}` as well as the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from signer.format import METHODS

ANY = "*"
#: Request headers a player may send (ranges for seeking, validators for revalidation), and the
#: type of a browser upload (`fetch(url, {method: "PUT", body: file})` sends the file's).
REQUEST_HEADERS = frozenset(
    (
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "content-type",
    )
)
#: Response headers scripts may read beyond the CORS-safelisted ones.
EXPOSED = "Content-Range, Content-Length, Accept-Ranges, ETag, Content-Disposition"


def parse_origins(text: str) -> tuple[str, ...]:
    """Comma- or space-separated origins (`https://app.example.com`), or `*`; empty: CORS off."""
    origins: list[str] = []
    for entry in text.replace(",", " ").split():
        if entry == ANY:
            origins.append(ANY)
            continue
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.netloc or entry.endswith("/"):
            raise ValueError(f"{entry!r} is not an origin like https://app.example.com[:port]")
        if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"{entry!r} is not an origin (no path, query or user)")
        origins.append(entry.lower())
    if ANY in origins and len(origins) > 1:
        raise ValueError("'*' cannot be combined with named origins")
    return tuple(origins)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: tuple[str, ...] = ()
    credentials: bool = False
    max_age: int = 600

    def __post_init__(self) -> None:
        if self.credentials and ANY in self.origins:
            raise ValueError("'*' is never allowed with credentials; name the origins")

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """What an actual response (any status) gets for a request from `origin`."""
        if not self.origins:
            return {}
        if self.origins == (ANY,):
            return {"Access-Control-Allow-Origin": ANY, "Access-Control-Expose-Headers": EXPOSED}
        # The answer depends on Origin, so caches must key on it even when it is absent.
        headers = {"Vary": "Origin"}
        if origin is not None and origin.lower() in self.origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED
            if self.credentials:
                headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def preflight(
        self, headers: Mapping[str, str], methods: Sequence[str] = METHODS
    ) -> dict[str, str] | None:
        """The headers of a successful preflight answer, or None to refuse it. `methods`: those
        that can succeed at the preflight's target (the token methods, and POST at the bucket
        where S3 presigned POST forms go), allowed and listed in the answer."""
        origin = headers.get("Origin")
        allowed = self.response_headers(origin)
        if "Access-Control-Allow-Origin" not in allowed:
            return None
        if headers.get("Access-Control-Request-Method") not in methods:
            return None
        requested = {
            name.strip().lower()
            for name in headers.get("Access-Control-Request-Headers", "").split(",")
            if name.strip()
        }
        if not requested <= REQUEST_HEADERS:
            return None
        allowed.pop("Access-Control-Expose-Headers")
        allowed["Access-Control-Allow-Methods"] = ", ".join(methods)
        allowed["Access-Control-Allow-Headers"] = ", ".join(sorted(REQUEST_HEADERS))
        allowed["Access-Control-Max-Age"] = str(self.max_age)
        return allowed


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return (
        method == "OPTIONS" and "Origin" in headers and ("Access-Control-Request-Method" in headers)
    )
