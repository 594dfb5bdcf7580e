"""Specification of the request pipeline (`gateway.handler.Pipeline`), fast: `create_app` in
front of the local store (a `file://` directory), over loopback, keys made at test time.

Every case states the request, the status, and the `reason` the request is recorded with in
`gateway_requests_total` (read from the app's own metrics registry): each request is recorded
exactly once, with that reason, and a refusal's body is `{"error": reason}`. The cases are data,
so one test can replay all of them and enumerate the reasons the module sees against the
closed set `gateway.errors.REASONS`. SeaweedFS-backed suites keep what needs real S3
(tests/integration/).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import REASONS
from gateway.http.conditionals import format_http_date, parse_http_date
from gateway.http.ranges import RangeSpec
from gateway.revocation import Kind, Revocation
from gateway.storage import ObjectBody, ObjectMeta
from gateway.token_source import COOKIE_NAME
from signer.format import encode_payload, path_form
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)

SMALL = b"hello, private world\n" * 50  # 1050 bytes
SIZE = len(SMALL)
SEGMENT = b"segment one"
OBJECTS = {"docs/hello.txt": SMALL, "hls/ep1/seg.ts": SEGMENT, "hls/ep2/seg.ts": b"another"}
PLAYER = "https://player.example"
MAX_LIFETIME = 3600
MAX_UPLOAD = 64 * 1024
REVOKED_SUB = "revoked-user"
ALLOW = "GET, HEAD, PUT"


@dataclass
class Site:
    """A running gateway over a directory, with what cases need to build their requests."""

    gw: RunningGateway
    keys: Keys
    root: Path
    etag: str  # of docs/hello.txt
    modified: str  # its Last-Modified

    def sign(self, path: str, **options: Any) -> str:
        return self.keys.sign(path, **options)

    def query(self, path: str, **options: Any) -> str:
        """Only the signed query of a link (for the path form, cookies, foreign paths)."""
        return self.sign(path, **options).partition("?")[2]

    def date(self, hours: float) -> str:
        moment = parse_http_date(self.modified)
        assert moment is not None
        return format_http_date(moment + timedelta(hours=hours))


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    root = tmp_path / "objects"
    for key, content in OBJECTS.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(content)
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    settings = gateway_settings(
        f"file://{root}",
        keys.gateway_file,
        cors_origins=PLAYER,
        token_cookie="true",
        max_link_lifetime=str(MAX_LIFETIME),
        max_upload_bytes=str(MAX_UPLOAD),
        keyring_watch_interval="0",
    )
    async with running_gateway(settings) as gw:
        now = time.time()
        gw.services.revocations.apply(Revocation(Kind.SUB, REVOKED_SUB, now + 3600, now + 60))
        meta = await gw.services.store.head("docs/hello.txt")
        assert meta.etag is not None
        assert meta.last_modified is not None
        yield Site(gw, keys, root, meta.etag, format_http_date(meta.last_modified))


# --- requests, answers, records ---------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    raw: bool = False  # sent as written (no Content-Length is added); only the head is read


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | None  # None: not read (a raw request)


@dataclass(frozen=True)
class Seen:
    """One exchange, for a case's checks."""

    site: Site
    request: Request
    answer: Answer

    @property
    def body(self) -> bytes:
        assert self.answer.body is not None
        return self.answer.body


Check = Callable[[Seen], None]


@dataclass(frozen=True)
class Case:
    id: str
    request: Callable[[Site], Request]
    status: int
    reason: str
    checks: tuple[Check, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def get(target: Callable[[Site], str], **headers: str) -> Callable[[Site], Request]:
    return lambda s: Request("GET", target(s), _names(headers))


def head(target: Callable[[Site], str], **headers: str) -> Callable[[Site], Request]:
    return lambda s: Request("HEAD", target(s), _names(headers))


def _names(headers: Mapping[str, str]) -> dict[str, str]:
    """`if_range=` -> `If-Range` (keyword arguments cannot hold dashes)."""
    return {name.replace("_", "-").title(): value for name, value in headers.items()}


async def send(site: Site, request: Request) -> Answer:
    gw = site.gw
    if request.raw:
        return await _send_raw(gw, request)
    async with gw.session.request(
        request.method, gw.url(request.target), headers=request.headers, data=request.body
    ) as response:
        return Answer(response.status, response.headers, await response.read())


async def _send_raw(gw: RunningGateway, request: Request) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    try:
        lines = [f"{request.method} {request.target} HTTP/1.1", "Host: t"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    finally:
        writer.close()
    headers = CIMultiDict[str]()
    for line in header_lines:
        name, _, value = line.partition(": ")
        headers.add(name, value)
    return Answer(int(status_line.split()[1]), CIMultiDictProxy(headers), None)


def recorded(gw: RunningGateway) -> dict[tuple[str, str, str], float]:
    """Every (method, status, reason) of `gateway_requests_total` that counted something."""
    counts = {}
    for metric in gw.services.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "gateway_requests_total" and sample.value:
                labels = sample.labels
                counts[labels["method"], labels["status"], labels["reason"]] = sample.value
    return counts


async def run(site: Site, case: Case) -> Answer:
    """Send the case's request; check its status, its one record, its error body, its checks."""
    before = recorded(site.gw)
    request = case.request(site)
    answer = await send(site, request)
    assert answer.status == case.status, answer.body
    after = recorded(site.gw)
    new = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    assert new == {(request.method, str(case.status), case.reason): 1.0}
    if case.status >= 400 and answer.body is not None and request.method != "HEAD":
        assert json.loads(answer.body) == {"error": case.reason}
        assert answer.headers["Cache-Control"] == "no-store"
    for check in case.checks:
        check(Seen(site, request, answer))
    return answer


# --- checks -------------------------------------------------------------------------------------


def body(expected: bytes) -> Check:
    def check(seen: Seen) -> None:
        assert seen.body == expected

    return check


def header(name: str, expected: str | Callable[[Site], str]) -> Check:
    def check(seen: Seen) -> None:
        value = expected(seen.site) if callable(expected) else expected
        assert seen.answer.headers.get(name) == value

    return check


def without(*names: str) -> Check:
    def check(seen: Seen) -> None:
        assert [name for name in names if name in seen.answer.headers] == []

    return check


def etag(site: Site) -> str:
    return site.etag


def cookie_for(prefix: str) -> Check:
    def check(seen: Seen) -> None:
        attributes = seen.answer.headers["Set-Cookie"].split("; ")
        assert attributes[0].startswith(f"{COOKIE_NAME}=")
        assert f"Path={prefix}" in attributes
        assert "HttpOnly" in attributes

    return check


def stored(size: int) -> Check:
    """The upload is in the directory under its key, and the answer says so."""

    def check(seen: Seen) -> None:
        path = seen.request.target.partition("?")[0]
        assert json.loads(seen.body) == {
            "path": path,
            "size": size,
            "etag": seen.answer.headers["ETag"],
        }
        assert (seen.site.root / path.lstrip("/")).read_bytes() == b"u" * size

    return check


def not_stored(seen: Seen) -> None:
    """Nothing of the upload is in the directory: no object, no temporary file."""
    name = seen.request.target.partition("?")[0].rpartition("/")[2]
    assert [p for p in seen.site.root.rglob("*") if name in p.name] == []


def unchanged(seen: Seen) -> None:
    assert (seen.site.root / "docs" / "hello.txt").read_bytes() == SMALL


# --- tokens that do not verify: 403 with the reason ---------------------------------------------


def _good(s: Site) -> str:
    return s.sign("/docs/hello.txt")


REJECTED = [
    Case("missing", get(lambda s: "/docs/hello.txt"), 403, "missing_token"),
    Case("missing-with-app-query", get(lambda s: "/docs/hello.txt?w=1"), 403, "missing_token"),
    Case(
        "malformed-expires",
        get(lambda s: _good(s).replace("Expires=", "Expires=0")),
        403,
        "malformed_token",
    ),
    Case("malformed-extra", get(lambda s: _good(s) + "&extra=1"), 403, "malformed_token"),
    Case(
        "dot-dot",
        get(lambda s: "/docs/../docs/hello.txt?" + s.query("/docs/hello.txt")),
        403,
        "malformed_token",
    ),
    Case(
        "expired",
        get(
            lambda s: s.sign(
                "/docs/hello.txt", expires_at=int(time.time()) - 120, now=time.time() - 600
            )
        ),
        403,
        "expired",
    ),
    Case(
        "not-yet-valid",
        get(lambda s: s.sign("/docs/hello.txt", starts_at=int(time.time()) + 600, expires_in=900)),
        403,
        "not_yet_valid",
    ),
    Case("tampered-path", get(lambda s: _good(s).replace("hello", "hellO")), 403, "bad_signature"),
    Case(
        "tampered-expiry",
        get(lambda s: _good(s).replace("Expires=", "Expires=1", 1)),
        403,
        "bad_signature",
    ),
    Case(
        "unknown-key",
        get(lambda s: _good(s).replace("KeyID=live", "KeyID=nobody")),
        403,
        "unknown_key",
    ),
    Case(
        "retired-key",
        get(lambda s: _good(s).replace("KeyID=live", "KeyID=gone")),
        403,
        "retired_key",
    ),
    Case(
        "ip-bound-elsewhere",
        get(lambda s: s.sign("/docs/hello.txt", ip="10.0.0.0/8")),
        403,
        "ip_mismatch",
    ),
    Case(
        "outside-prefix",
        get(lambda s: "/hls/ep2/seg.ts?" + s.query("/hls/ep1/seg.ts", prefix="/hls/ep1/")),
        403,
        "outside_prefix",
    ),
    Case(
        "head-link-for-get",
        get(lambda s: s.sign("/docs/hello.txt", method="HEAD")),
        403,
        "wrong_method",
    ),
    Case(
        "put-link-for-head",
        head(lambda s: s.sign("/docs/hello.txt", method="PUT")),
        403,
        "wrong_method",
    ),
    Case(
        "get-link-for-put",
        lambda s: Request("PUT", _good(s), body=b"x"),
        403,
        "wrong_method",
        (unchanged,),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in REJECTED])
async def test_a_token_that_does_not_verify_is_403_with_its_reason(site: Site, case: Case) -> None:
    await run(site, case)


# --- authentic links the gateway still refuses -------------------------------------------------

STILL_REFUSED = [
    Case(
        "revoked",
        get(lambda s: s.sign("/docs/hello.txt", sub=REVOKED_SUB)),
        403,
        "revoked",
    ),
    Case(
        "revoked-head",
        head(lambda s: s.sign("/docs/hello.txt", sub=REVOKED_SUB)),
        403,
        "revoked",
    ),
    Case(
        "outlives-revocations",
        get(lambda s: s.sign("/docs/hello.txt", expires_in=MAX_LIFETIME + 60)),
        403,
        "lifetime_exceeded",
    ),
    Case("backslash-path", get(lambda s: s.sign("/a\\b.txt")), 400, "invalid_path"),
    Case("control-character", get(lambda s: s.sign("/a\x01b.txt")), 400, "invalid_path"),
    Case("missing-object", get(lambda s: s.sign("/docs/nothing.txt")), 404, "not_found"),
    Case("missing-object-head", head(lambda s: s.sign("/docs/nothing.txt")), 404, "not_found"),
    Case("a-directory", get(lambda s: s.sign("/docs")), 404, "not_found"),
]


@pytest.mark.parametrize("case", [c.param() for c in STILL_REFUSED])
async def test_an_authentic_link_can_still_be_refused_and_says_why(site: Site, case: Case) -> None:
    await run(site, case)


METHODS_REFUSED = [
    Case(
        method.lower(),
        (lambda m: lambda s: Request(m, _good(s)))(method),
        405,
        "method_not_allowed",
        (header("Allow", ALLOW),),
    )
    for method in ("POST", "DELETE", "PATCH", "OPTIONS")
]


@pytest.mark.parametrize("case", [c.param() for c in METHODS_REFUSED])
async def test_a_method_the_gateway_does_not_serve_is_405_with_allow(
    site: Site, case: Case
) -> None:
    await run(site, case)


# --- where the token travels ---------------------------------------------------------------------


def _stream(s: Site, **options: Any) -> str:
    """A query-form link for the ep1 stream, authorizing its whole prefix."""
    return s.sign("/hls/ep1/seg.ts", prefix="/hls/ep1/", **options)


def _stream_cookie(s: Site, **options: Any) -> dict[str, str]:
    """The ep1 stream's token as the cookie a browser sends back."""
    query = _stream(s, **options).partition("?")[2]
    return {"Cookie": f"{COOKIE_NAME}={encode_payload(query)}"}


FORMS = [
    Case("path", get(lambda s: path_form(_good(s))), 200, "ok", (body(SMALL),)),
    Case(
        "path-tampered",
        get(lambda s: path_form(_good(s).replace("Expires=", "Expires=1", 1))),
        403,
        "bad_signature",
    ),
    Case(
        "path-climbing-out",
        get(lambda s: path_form(_stream(s)).replace("/hls/ep1/seg.ts", "/hls/ep1/../ep2/seg.ts")),
        403,
        "malformed_token",
    ),
    Case(
        "cookie",
        lambda s: Request("GET", "/hls/ep1/seg.ts", _stream_cookie(s)),
        200,
        "ok",
        (body(SEGMENT), without("Set-Cookie")),
    ),
    Case(
        "cookie-expired",
        lambda s: Request("GET", "/hls/ep1/seg.ts", _stream_cookie(s, now=0)),
        403,
        "expired",
    ),
    Case(
        "cookie-outside-its-prefix",
        lambda s: Request("GET", "/hls/ep2/seg.ts", _stream_cookie(s)),
        403,
        "outside_prefix",
    ),
    Case(
        "cookie-not-a-payload",
        lambda s: Request("GET", "/hls/ep1/seg.ts", {"Cookie": f"{COOKIE_NAME}=!!"}),
        403,
        "malformed_token",
    ),
    Case(
        "cookie-revoked",
        lambda s: Request(
            "GET",
            "/hls/ep1/seg.ts",
            _stream_cookie(s, sub=REVOKED_SUB),
        ),
        403,
        "revoked",
    ),
    Case(
        "url-token-wins-over-a-cookie",
        lambda s: Request(
            "GET",
            _stream(s).replace("Expires=", "Expires=1", 1),
            _stream_cookie(s),
        ),
        403,
        "bad_signature",
    ),
    Case(
        "prefix-query-sets-the-cookie",
        get(_stream),
        200,
        "ok",
        (cookie_for("/hls/ep1/"),),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in FORMS])
async def test_the_token_is_judged_alike_in_the_path_the_query_or_a_cookie(
    site: Site, case: Case
) -> None:
    await run(site, case)


# --- reading objects ---------------------------------------------------------------------------


def _range(first: int, last: int) -> tuple[Check, ...]:
    return (
        body(SMALL[first : last + 1]),
        header("Content-Range", f"bytes {first}-{last}/{SIZE}"),
        header("Content-Length", str(last - first + 1)),
    )


WHOLE = (body(SMALL), header("Content-Length", str(SIZE)), without("Content-Range"))

READS = [
    Case(
        "get",
        get(_good),
        200,
        "ok",
        (
            *WHOLE,
            header("Content-Type", "text/plain"),
            header("ETag", etag),
            header("Accept-Ranges", "bytes"),
            header("Cache-Control", "private, max-age=300"),
            header("X-Content-Type-Options", "nosniff"),
            header("Server", "edge-gateway"),
        ),
    ),
    Case(
        "head",
        head(_good),
        200,
        "ok",
        (body(b""), header("Content-Length", str(SIZE)), header("ETag", etag)),
    ),
    Case("range-closed", get(_good, range="bytes=100-199"), 206, "ok", _range(100, 199)),
    Case("range-first-byte", get(_good, range="bytes=0-0"), 206, "ok", _range(0, 0)),
    Case("range-open", get(_good, range="bytes=1000-"), 206, "ok", _range(1000, SIZE - 1)),
    Case("range-suffix", get(_good, range="bytes=-50"), 206, "ok", _range(SIZE - 50, SIZE - 1)),
    Case(
        "range-past-the-end",
        get(_good, range=f"bytes={SIZE - 10}-{SIZE + 1000}"),
        206,
        "ok",
        _range(SIZE - 10, SIZE - 1),
    ),
    Case(
        "range-head",
        head(_good, range="bytes=10-19"),
        206,
        "ok",
        (body(b""), header("Content-Range", f"bytes 10-19/{SIZE}"), header("Content-Length", "10")),
    ),
    Case("multi-range", get(_good, range="bytes=0-1,5-6"), 200, "ok", WHOLE),
    Case("range-garbage", get(_good, range="bytes=abc"), 200, "ok", WHOLE),
    Case("range-other-unit", get(_good, range="items=0-1"), 200, "ok", WHOLE),
    Case(
        "if-range-same",
        lambda s: Request("GET", _good(s), {"Range": "bytes=0-4", "If-Range": s.etag}),
        206,
        "ok",
        _range(0, 4),
    ),
    Case(
        "if-range-same-date",
        lambda s: Request("GET", _good(s), {"Range": "bytes=0-4", "If-Range": s.modified}),
        206,
        "ok",
        _range(0, 4),
    ),
    Case(
        "if-range-stale",
        get(_good, range="bytes=0-4", if_range='"stale"'),
        200,
        "ok",
        WHOLE,
    ),
    Case(
        "overrides",
        get(
            lambda s: s.sign(
                "/docs/hello.txt",
                response_content_type="application/octet-stream",
                response_content_disposition='attachment; filename="hello.bin"',
            )
        ),
        200,
        "ok",
        (
            header("Content-Type", "application/octet-stream"),
            header("Content-Disposition", 'attachment; filename="hello.bin"'),
        ),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in READS])
async def test_an_object_is_served_whole_or_by_range(site: Site, case: Case) -> None:
    await run(site, case)


UNSATISFIABLE = [
    Case(
        f"{method.lower()}-{name}",
        (lambda m, r: lambda s: Request(m, _good(s), {"Range": r}))(method, value),
        416,
        "range_not_satisfiable",
        (header("Content-Range", f"bytes */{SIZE}"),),
    )
    for method in ("GET", "HEAD")
    for name, value in (("at-the-end", f"bytes={SIZE}-"), ("zero-suffix", "bytes=-0"))
]


@pytest.mark.parametrize("case", [c.param() for c in UNSATISFIABLE])
async def test_an_unsatisfiable_range_is_416_with_the_size(site: Site, case: Case) -> None:
    await run(site, case)


def _conditional(method: str, headers: Callable[[Site], dict[str, str]]) -> Callable[..., Request]:
    return lambda s: Request(method, _good(s), headers(s))


NOT_MODIFIED = [
    Case(
        f"{method.lower()}-{name}",
        _conditional(method, headers),
        304,
        "not_modified",
        (body(b""), header("ETag", etag), header("Cache-Control", "private, max-age=300")),
    )
    for method in ("GET", "HEAD")
    for name, headers in (
        ("if-none-match-same", lambda s: {"If-None-Match": s.etag}),
        ("if-none-match-star", lambda s: {"If-None-Match": "*"}),
        ("if-none-match-in-a-list", lambda s: {"If-None-Match": f'"x", {s.etag}'}),
        ("if-none-match-weak", lambda s: {"If-None-Match": "W/" + s.etag}),
        ("if-modified-since-later", lambda s: {"If-Modified-Since": s.date(+1)}),
        ("if-modified-since-same", lambda s: {"If-Modified-Since": s.modified}),
        ("with-a-range", lambda s: {"If-None-Match": s.etag, "Range": "bytes=0-4"}),
    )
] + [
    Case(
        "keeps-the-cookie",
        lambda s: Request("GET", _stream(s), {"If-None-Match": "*"}),
        304,
        "not_modified",
        (cookie_for("/hls/ep1/"), without("Content-Type", "Content-Length")),
    ),
]

PROCEEDS = [
    Case(
        f"{method.lower()}-{name}",
        _conditional(method, headers),
        200,
        "ok",
        (header("Content-Length", str(SIZE)), body(SMALL if method == "GET" else b"")),
    )
    for method in ("GET", "HEAD")
    for name, headers in (
        ("if-none-match-other", lambda s: {"If-None-Match": '"other"'}),
        ("if-modified-since-earlier", lambda s: {"If-Modified-Since": s.date(-1)}),
        ("if-match-same", lambda s: {"If-Match": s.etag}),
        ("if-unmodified-since-later", lambda s: {"If-Unmodified-Since": s.date(+1)}),
        (
            "if-none-match-wins-over-if-modified-since",
            lambda s: {"If-None-Match": '"other"', "If-Modified-Since": s.date(+1)},
        ),
    )
]

PRECONDITION_FAILED = [
    Case(
        f"{method.lower()}-{name}",
        _conditional(method, headers),
        412,
        "precondition_failed",
        (without("ETag", "Content-Range"),),
    )
    for method in ("GET", "HEAD")
    for name, headers in (
        ("if-match-other", lambda s: {"If-Match": '"other"'}),
        ("if-match-weak", lambda s: {"If-Match": "W/" + s.etag}),
        ("if-unmodified-since-earlier", lambda s: {"If-Unmodified-Since": s.date(-1)}),
        ("before-if-none-match", lambda s: {"If-Match": '"other"', "If-None-Match": s.etag}),
        ("before-the-range", lambda s: {"If-Match": '"other"', "Range": f"bytes={SIZE}-"}),
    )
]


@pytest.mark.parametrize("case", [c.param() for c in NOT_MODIFIED])
async def test_a_matching_revalidation_is_304_without_a_body(site: Site, case: Case) -> None:
    await run(site, case)


@pytest.mark.parametrize("case", [c.param() for c in PROCEEDS])
async def test_a_precondition_that_holds_serves_the_object(site: Site, case: Case) -> None:
    await run(site, case)


@pytest.mark.parametrize("case", [c.param() for c in PRECONDITION_FAILED])
async def test_a_failed_precondition_is_412(site: Site, case: Case) -> None:
    await run(site, case)


def _by_id(*ids: str) -> list[Case]:
    cases = {c.id: c for c in READS + UNSATISFIABLE + PROCEEDS}
    return [cases[i] for i in ids]


@pytest.fixture
def storage_calls(site: Site, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store's reads during a test: "head" (metadata only) or "get" (opens the body)."""
    store = site.gw.services.store
    calls: list[str] = []
    real_head, real_get = store.head, store.get

    async def head(key: str) -> ObjectMeta:
        calls.append("head")
        return await real_head(key)

    async def get(key: str, spec: RangeSpec | None) -> ObjectBody:
        calls.append("get")
        return await real_get(key, spec)

    monkeypatch.setattr(store, "head", head)
    monkeypatch.setattr(store, "get", get)
    return calls


@pytest.mark.parametrize(
    "case",
    [
        c.param()
        for c in NOT_MODIFIED
        + PRECONDITION_FAILED
        + _by_id("head", "range-head", "head-at-the-end", "head-zero-suffix")
    ],
)
async def test_an_answer_without_a_body_never_opens_the_object(
    site: Site, case: Case, storage_calls: list[str]
) -> None:
    """A 304, a 412 or a HEAD is planned from metadata alone: storage moves no object bytes."""
    await run(site, case)
    assert storage_calls == ["head"]


@pytest.mark.parametrize(
    ("case", "calls"),
    [
        *[pytest.param(c, ["get"], id=c.id) for c in _by_id("get", "range-closed", "multi-range")],
        *[pytest.param(c, ["head", "get"], id=c.id) for c in _by_id("get-if-match-same")],
    ],
)
async def test_a_plain_get_opens_the_object_at_once_and_a_conditional_one_after_its_metadata(
    site: Site, case: Case, calls: list[str], storage_calls: list[str]
) -> None:
    await run(site, case)
    assert storage_calls == calls


# --- CORS preflights -----------------------------------------------------------------------------


def _preflight(
    origin: str, method: str = "GET", headers: str = "range", target: str = "/hls/ep1/seg.ts"
) -> Callable[..., Request]:
    asked = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }
    return lambda s: Request("OPTIONS", target, asked)


BUCKET = "/objects"  # the site's `file://` directory: where S3 presigned POST forms go


PREFLIGHTS = [
    Case(
        "allowed",
        _preflight(PLAYER),
        204,
        "preflight",
        (
            body(b""),
            header("Access-Control-Allow-Origin", PLAYER),
            header("Access-Control-Allow-Methods", ALLOW),
        ),
    ),
    Case("allowed-put", _preflight(PLAYER, "PUT", "content-type"), 204, "preflight"),
    Case(
        "other-origin",
        _preflight("https://evil.example"),
        403,
        "cors_refused",
        (without("Access-Control-Allow-Origin"),),
    ),
    Case("other-method", _preflight(PLAYER, "DELETE"), 403, "cors_refused"),
    Case("other-header", _preflight(PLAYER, "GET", "x-evil"), 403, "cors_refused"),
    *(
        Case(
            f"post-to-the-bucket{target.removeprefix(BUCKET)}",
            _preflight(PLAYER, "POST", "if-none-match", target),
            204,
            "preflight",
            (header("Access-Control-Allow-Methods", f"{ALLOW}, POST"),),
        )
        for target in (BUCKET, BUCKET + "/")
    ),
    Case(
        "get-at-the-bucket",
        _preflight(PLAYER, "GET", "range", BUCKET + "/"),
        204,
        "preflight",
        (header("Access-Control-Allow-Methods", f"{ALLOW}, POST"),),
    ),
    *(
        Case(f"post-{name}", _preflight(PLAYER, "POST", "", target), 403, "cors_refused")
        for name, target in (
            ("to-an-object", "/hls/ep1/seg.ts"),
            ("to-another-bucket", "/another-bucket/"),
            ("with-a-query", BUCKET + "?uploads"),
        )
    ),
    Case(
        "post-to-the-bucket-from-another-origin",
        _preflight("https://evil.example", "POST", "", BUCKET),
        403,
        "cors_refused",
    ),
    Case(
        "post-to-the-bucket-with-another-header",
        _preflight(PLAYER, "POST", "x-evil", BUCKET),
        403,
        "cors_refused",
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in PREFLIGHTS])
async def test_a_preflight_is_answered_by_the_cors_policy_without_a_token(
    site: Site, case: Case
) -> None:
    await run(site, case)


# --- uploads -------------------------------------------------------------------------------------


def _put(
    size: int,
    headers: Mapping[str, str] | None = None,
    *,
    raw: bool = False,
    path: str | None = None,
    **options: Any,
) -> Callable[[Site], Request]:
    def make(s: Site) -> Request:
        target = s.sign(path or f"/up/{uuid.uuid4().hex}.bin", method="PUT", **options)
        return Request("PUT", target, headers or {}, None if raw else b"u" * size, raw)

    return make


UPLOADS = [
    Case("stored", _put(100), 201, "ok", (stored(100),)),
    Case("empty", _put(0), 201, "ok", (stored(0),)),
    Case("no-length", _put(0, raw=True), 411, "length_required", (not_stored,)),
    Case("over-max-bytes", _put(1000, max_bytes=10), 413, "too_large", (not_stored,)),
    Case(
        "over-the-gateways-bound",
        _put(0, {"Content-Length": str(MAX_UPLOAD + 1)}, raw=True, max_bytes=10**12),
        413,
        "too_large",
        (not_stored, header("Connection", "close")),
    ),
    Case("under-min-bytes", _put(1000, min_bytes=5000), 400, "too_small", (not_stored,)),
    Case(
        "no-type-for-a-typed-link",
        _put(1000, content_type="image/png"),
        415,
        "unsupported_media_type",
        (not_stored,),
    ),
    Case(
        "other-type",
        _put(1000, {"Content-Type": "text/html"}, content_type="image/"),
        415,
        "unsupported_media_type",
        (not_stored,),
    ),
    Case(
        "encoded",
        _put(1000, {"Content-Encoding": "gzip"}),
        415,
        "unsupported_content_encoding",
        (not_stored,),
    ),
    Case(
        "no-overwrite-of-an-object",
        _put(10, path="/docs/hello.txt", no_overwrite=True),
        412,
        "object_exists",
        (unchanged,),
    ),
    Case(
        "revoked",
        _put(10, sub=REVOKED_SUB),
        403,
        "revoked",
        (not_stored,),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in UPLOADS])
async def test_an_upload_is_stored_or_refused_before_anything_is_written(
    site: Site, case: Case
) -> None:
    await run(site, case)


async def test_an_unknown_expectation_is_417_and_recorded(site: Site) -> None:
    expect = {"Content-Length": "10", "Expect": "teapot"}
    await run(site, Case("expect", _put(10, expect, raw=True), 417, "expectation_failed"))


# --- the closed set of reasons -------------------------------------------------------------------

CASES = [
    *REJECTED,
    *STILL_REFUSED,
    *METHODS_REFUSED,
    *FORMS,
    *READS,
    *UNSATISFIABLE,
    *NOT_MODIFIED,
    *PROCEEDS,
    *PRECONDITION_FAILED,
    *PREFLIGHTS,
    *UPLOADS,
]


async def test_every_reason_recorded_in_this_module_is_in_the_catalogue(site: Site) -> None:
    """Replays every case above on one gateway: what the metric saw is a subset of `REASONS`
    (and exactly the reasons the cases expect, so none is recorded that a case did not name)."""
    for case in CASES:
        await run(site, case)
    seen = {reason for _, _, reason in recorded(site.gw)}
    assert seen == {case.reason for case in CASES}
    assert seen <= REASONS


def test_the_catalogue_of_reasons_is_exactly_this_list() -> None:
    """Adding a reason (a new label value for dashboards and alerts) must be deliberate."""
    assert sorted(REASONS) == [
        "ambiguous_link",
        "bad_request",
        "bad_signature",
        "body_timeout",
        "body_too_large",
        "bytes_exhausted",
        "cancelled",
        "client_disconnected",
        "cors_refused",
        "expectation_failed",
        "expired",
        "form_fields_too_large",
        "header_fields_too_large",
        "internal_error",
        "invalid_form",
        "invalid_json",
        "invalid_path",
        "invalid_request",
        "ip_mismatch",
        "issued_in_future",
        "length_required",
        "lifetime_exceeded",
        "limits_unavailable",
        "malformed_token",
        "method_not_allowed",
        "missing_token",
        "not_found",
        "not_modified",
        "not_yet_valid",
        "object_exists",
        "ok",
        "origin_aborted",
        "origin_error",
        "origin_timeout",
        "outside_prefix",
        "policy_condition_failed",
        "precondition_failed",
        "preflight",
        "range_not_satisfiable",
        "retired_key",
        "revocation_store_unavailable",
        "revocations_unavailable",
        "revoked",
        "send_timeout",
        "shutdown",
        "store_unavailable",
        "token_in_use",
        "too_large",
        "too_many_streams",
        "too_small",
        "unauthorized",
        "unknown_key",
        "unsupported_content_encoding",
        "unsupported_media_type",
        "upload_in_progress",
        "uri_too_long",
        "uses_exhausted",
        "wrong_bucket",
        "wrong_method",
    ]
