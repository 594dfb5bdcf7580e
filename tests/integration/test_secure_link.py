"""nginx `secure_link` links judged by real nginx and by a live gateway in front of SeaweedFS.

One table of links is sent to both: nginx (Debian's nginx-light, with `secure_link` and
`secure_link_md5` copied into the gateway's keyring, answering 200 with its `$uri`, 403 or 410)
and the gateway (in process, its keyring holding the same expression, serving objects whose
content is their own path). Their verdicts must be the same, and so must the path served. The
links are made here by a backend's few lines (MD5, base64url), not by the gateway's code.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.observability.access_log import configure
from signer import Algorithm, Key, Keyring, Status, new_key, sign_path, sign_url
from signer.keys import secure_link_key
from signer.nginx import normalize_uri
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import RunningGateway, link_gateway
from tests.servers import NginxServer, S3Server, nginx, nginx_binary

pytestmark = pytest.mark.integration
needs_nginx = pytest.mark.skipif(
    nginx_binary() is None, reason="needs nginx: Debian package nginx-light (secure_link module)"
)

PREFIX = "securelink/"
ORIGIN = f"s3://{PRIVATE_BUCKET}/{PREFIX}"
PATHS = ("/docs/hello.txt", "/docs/other.txt", "/docs/A.txt", "/public/open.txt")
SECRET = "test-only-" + secrets.token_urlsafe(12)  # made per run; never a real one
EXPRESSIONS = {
    "bound": f"$secure_link_expires$uri$remote_addr {SECRET}",
    "unbound": f"$secure_link_expires$uri {SECRET}",
}
KEY_ID = "nginx-media"
EDGE = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)
ADMIN_TOKEN = "secure-link-admin-bearer"
CLIENT, OTHER_CLIENT = "127.0.0.1", "127.0.0.2"  # all of 127/8 is loopback on Linux


def md5_arg(text: str) -> str:
    """What a backend puts in `md5=`: base64url of the MD5, without padding (nginx's docs)."""
    digest = hashlib.md5(text.encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hashed(kind: str, expires: str, uri: str, client: str = CLIENT) -> str:
    """The expression as nginx evaluates it, by plain substitution."""
    text = EXPRESSIONS[kind].replace("$secure_link_expires", expires).replace("$uri", uri)
    return text.replace("$remote_addr", client)


def link(
    kind: str,
    path: str,
    expires: int | str,
    *,
    signed_path: str | None = None,
    client: str = CLIENT,
) -> str:
    """A request target for `path`, hashed over `signed_path` (default: the same)."""
    md5 = md5_arg(hashed(kind, str(expires), signed_path or path, client))
    return f"{path}?md5={md5}&expires={expires}"


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> None:
    """Each object holds its own path and a newline: what nginx's `return 200 "$uri\\n"` says."""
    client = s3_server.client()
    for path in PATHS:
        client.put_object(Bucket=PRIVATE_BUCKET, Key=PREFIX + path[1:], Body=f"{path}\n".encode())


def nginx_server(kind: str) -> str:
    return f"""\
        location / {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "{EXPRESSIONS[kind]}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            default_type text/plain;
            return 200 "$uri\\n";
        }}"""


@pytest.fixture(scope="module", params=sorted(EXPRESSIONS))
def peer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, NginxServer]]:
    """(expression kind, nginx verifying that expression)."""
    if nginx_binary() is None:
        pytest.skip("needs nginx: Debian package nginx-light (secure_link module)")
    kind: str = request.param
    with nginx(tmp_path_factory.mktemp(f"nginx-{kind}"), nginx_server(kind)) as server:
        yield kind, server


@pytest.fixture
def make_gateway(
    s3_server: S3Server, stored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    def make(*keys: Key, **extra: str) -> Any:
        keyring = Keyring(keys or (EDGE, secure_link_key(KEY_ID, EXPRESSIONS["bound"])))
        extra.setdefault("admin_token", ADMIN_TOKEN)
        return link_gateway(monkeypatch, s3_server, tmp_path, keyring, ORIGIN, **extra)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[RunningGateway]:
    async with make_gateway() as running:
        yield running


async def fetch(url: str, source: str = CLIENT) -> tuple[int, bytes]:
    """GET `url` byte for byte from the loopback address `source`."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
        session.get(URL(url, encoded=True)) as response,
    ):
        return response.status, await response.read()


def base(gw: RunningGateway) -> str:
    return f"http://127.0.0.1:{gw.server.port}"


def nginx_verdict(status: int) -> str:
    return {200: "ok", 403: "refused", 410: "expired", 400: "invalid"}[status]


def gateway_verdict(status: int, body: bytes) -> str:
    if status != 403:
        return {200: "ok", 400: "invalid"}[status]
    return "expired" if json.loads(body)["error"] == "expired" else "refused"


# --- one table, two judges -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    make: Callable[[str, int], str]  # (expression kind, now) -> request target
    bound: str  # the verdict with $remote_addr in the expression
    unbound: str  # and without
    source: str = CLIENT


def flip_md5(target: str) -> str:
    head, _, rest = target.partition("md5=")
    return f"{head}md5={rest[:5]}{'B' if rest[5] != 'B' else 'C'}{rest[6:]}"


def non_canonical_last(target: str) -> str:
    """The md5's last character with its ignored low bits set: nginx reads the same bytes."""
    head, _, rest = target.partition("md5=")
    md5, _, tail = rest.partition("&")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(md5[-1]) | 0x0F]
    return f"{head}md5={md5[:-1]}{last}&{tail}"


def shorten_md5(target: str) -> str:
    head, _, rest = target.partition("md5=")
    md5, _, tail = rest.partition("&")
    return f"{head}md5={md5[:-1]}&{tail}"


ROWS = {
    "valid": Row(lambda k, now: link(k, "/docs/hello.txt", now + 600), "ok", "ok"),
    "expired": Row(lambda k, now: link(k, "/docs/hello.txt", now - 3600), "expired", "expired"),
    "tampered-md5": Row(
        lambda k, now: flip_md5(link(k, "/docs/hello.txt", now + 600)), "refused", "refused"
    ),
    "tampered-expires": Row(
        lambda k, now: link(k, "/docs/hello.txt", now + 600).replace(
            f"expires={now + 600}", f"expires={now + 601}"
        ),
        "refused",
        "refused",
    ),
    "other-path": Row(
        lambda k, now: link(k, "/docs/other.txt", now + 600, signed_path="/docs/hello.txt"),
        "refused",
        "refused",
    ),
    "escaped-slash": Row(
        lambda k, now: link(k, "/docs%2Fhello.txt", now + 600, signed_path="/docs/hello.txt"),
        "ok",
        "ok",
    ),
    "escaped-letter": Row(
        lambda k, now: link(k, "/docs/%41.txt", now + 600, signed_path="/docs/A.txt"), "ok", "ok"
    ),
    "dot-dot": Row(
        lambda k, now: link(k, "/docs/x/../hello.txt", now + 600, signed_path="/docs/hello.txt"),
        "ok",
        "ok",
    ),
    "escaped-dot-dot": Row(
        lambda k, now: link(
            k, "/docs/x/%2e%2E/hello.txt", now + 600, signed_path="/docs/hello.txt"
        ),
        "ok",
        "ok",
    ),
    "double-slash": Row(
        lambda k, now: link(k, "/docs//hello.txt", now + 600, signed_path="/docs/hello.txt"),
        "ok",
        "ok",
    ),
    "hashed-as-sent-not-as-normalised": Row(
        lambda k, now: link(k, "/docs/x/../hello.txt", now + 600), "refused", "refused"
    ),
    "md5-padded": Row(
        lambda k, now: link(k, "/docs/hello.txt", now + 600).replace("&", "==&"), "ok", "ok"
    ),
    "md5-non-canonical-last-character": Row(
        lambda k, now: non_canonical_last(link(k, "/docs/hello.txt", now + 600)), "ok", "ok"
    ),
    "md5-too-short": Row(
        lambda k, now: shorten_md5(link(k, "/docs/hello.txt", now + 600)), "refused", "refused"
    ),
    "expires-leading-zero": Row(
        lambda k, now: link(k, "/docs/hello.txt", f"0{now + 600}"), "ok", "ok"
    ),
    "expires-zero": Row(lambda k, now: link(k, "/docs/hello.txt", 0), "refused", "refused"),
    "no-expires": Row(
        lambda k, now: link(k, "/docs/hello.txt", now + 600).partition("&")[0],
        "refused",
        "refused",
    ),
    "other-client": Row(
        lambda k, now: link(k, "/docs/hello.txt", now + 600), "refused", "ok", OTHER_CLIENT
    ),
}


@needs_nginx
@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_nginx_and_the_gateway_judge_every_link_alike(
    peer: tuple[str, NginxServer], make_gateway: Callable[..., Any], row: Row
) -> None:
    kind, server = peer
    target = row.make(kind, int(time.time()))
    async with make_gateway(EDGE, secure_link_key(KEY_ID, EXPRESSIONS[kind])) as gw:
        by_gateway = await fetch(f"{base(gw)}{target}", row.source)
    by_nginx = await fetch(server.url(target), row.source)
    verdicts = (nginx_verdict(by_nginx[0]), gateway_verdict(*by_gateway))
    assert verdicts == (getattr(row, kind),) * 2
    if verdicts[0] == "ok":  # the same object: the one at nginx's $uri
        assert by_gateway[1] == by_nginx[1]


@pytest.fixture(scope="module")
def uri_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[http.client.HTTPConnection]:
    """An nginx answering every request with its `$uri` (400 where it refuses the path)."""
    if nginx_binary() is None:
        pytest.skip("needs nginx: Debian package nginx-light")
    body = '        location / { default_type text/plain; return 200 "$uri"; }'
    with nginx(tmp_path_factory.mktemp("nginx-uri"), body) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        yield connection
        connection.close()


SEGMENT_PIECES = st.sampled_from(
    [
        "a",
        "b",
        ".",
        "..",
        "/",
        "//",
        "%2F",
        "%2f",
        "%2E",
        "%2e",
        "%25",
        "%3F",
        "%23",
        "%41",
        "%00",
        "%",
        "%2",
        "%zz",
        "+",
        "%20",
        "%FF",
        "~",
        ";",
        "%5C",
    ]
)


@needs_nginx
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(SEGMENT_PIECES, max_size=8))
def test_the_gateways_uri_is_nginxs(
    uri_echo: http.client.HTTPConnection, pieces: list[str]
) -> None:
    """`$uri` as the gateway computes it is nginx's, byte for byte, and a path nginx refuses
    (400) is one the gateway cannot normalise."""
    raw = "/" + "".join(pieces)
    uri_echo.request("GET", raw)
    response = uri_echo.getresponse()
    body = response.read()
    assert normalize_uri(raw) == (body if response.status == 200 else None), raw
    if response.will_close:
        uri_echo.close()


# --- what differs from nginx, as docs/nginx-secure-link.md lists it -------------------------


DIFFERENCES = {
    "names-in-another-case": (
        lambda now: (
            link("bound", "/docs/hello.txt", now + 600)
            .replace("md5=", "MD5=")
            .replace("expires=", "Expires=")
        ),
        200,
        "malformed_token",  # `Expires` is our token's: a token parameter without its block
    ),
    "md5-repeated": (
        lambda now: link("bound", "/docs/hello.txt", now + 600) + "&md5=AAAA",
        200,
        "malformed_token",
    ),
    "longer-than-max-link-lifetime": (
        lambda now: link("bound", "/docs/hello.txt", now + 8 * 24 * 3600),
        200,
        "lifetime_exceeded",
    ),
    "above-the-root": (
        lambda now: link("bound", "/../docs/hello.txt", now + 600, signed_path="/docs/hello.txt"),
        400,
        "malformed_token",
    ),
}


@needs_nginx
@pytest.mark.parametrize("peer", ["bound"], indirect=True)
@pytest.mark.parametrize(("make", "by_nginx", "reason"), DIFFERENCES.values(), ids=DIFFERENCES)
async def test_what_nginx_accepts_and_the_gateway_refuses(
    peer: tuple[str, NginxServer],
    make_gateway: Callable[..., Any],
    make: Callable[[int], str],
    by_nginx: int,
    reason: str,
) -> None:
    target = make(int(time.time()))
    server = peer[1]
    async with make_gateway() as gw:
        status, body = await fetch(f"{base(gw)}{target}")
    assert (await fetch(server.url(target)))[0] == by_nginx
    assert (status, json.loads(body)["error"]) == (403, reason)


# --- the gateway's own: reasons, revocation, logs --------------------------------------------


def our_link(target: str) -> str:
    """Our own token for `target`, its query (an application's parameters) kept and signed."""
    url = sign_url(f"http://gateway{target}", Keyring([EDGE]), expires_in=600)
    return url.removeprefix("http://gateway")


async def request(gw: RunningGateway, target: str) -> tuple[int, bytes]:
    response, body = await gw.request("GET", target)
    return response.status, body


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda now: link("bound", "/docs/hello.txt", now + 600), "ok"),
        (lambda now: link("bound", "/docs/hello.txt", now - 10), "expired"),
        (lambda now: flip_md5(link("bound", "/docs/hello.txt", now + 600)), "bad_signature"),
        (lambda now: link("bound", "/docs/hello.txt", "x"), "malformed_token"),
        (lambda now: link("bound", "/docs/hello.txt", now + 8 * 86400), "lifetime_exceeded"),
    ],
    ids=["ok", "expired", "bad-signature", "malformed", "lifetime-exceeded"],
)
async def test_every_verdict_is_counted_under_the_scheme(
    gw: RunningGateway, make: Callable[[int], str], reason: str
) -> None:
    status, _ = await request(gw, make(int(time.time())))
    assert status == (200 if reason == "ok" else 403)
    assert gw.metric("gateway_links_total", scheme="secure_link", reason=reason) == 1
    assert gw.metric("gateway_requests_total", method="GET", status=str(status), reason=reason) == 1


async def test_a_head_is_answered_and_a_put_is_the_wrong_method(gw: RunningGateway) -> None:
    target = link("bound", "/docs/hello.txt", int(time.time()) + 600)
    response, _ = await gw.request("HEAD", target)
    assert response.status == 200
    async with gw.session.put(gw.url(target), data=b"x") as answer:
        assert (answer.status, (await answer.json())["error"]) == (403, "wrong_method")


async def test_the_edge_cache_serves_secure_links_too(
    make_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    async with make_gateway(cache="true", cache_dir=str(tmp_path / "cache")) as gw:
        for _ in range(2):
            assert await request(gw, link("bound", "/docs/hello.txt", int(time.time()) + 600)) == (
                200,
                b"/docs/hello.txt\n",
            )
        assert gw.metric("gateway_cache_requests_total", state="hit") == 1


async def test_without_a_secure_link_key_the_scheme_is_off_and_our_links_still_work(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(EDGE) as gw:
        status, body = await request(gw, link("bound", "/docs/hello.txt", int(time.time()) + 600))
        assert (status, json.loads(body)) == (403, {"error": "unknown_key"})
        assert gw.metric("gateway_links_total", scheme="secure_link", reason="unknown_key") == 1
        assert await request(gw, our_link("/docs/hello.txt?md5=app-value")) == (
            200,
            b"/docs/hello.txt\n",
        )


async def test_our_link_with_an_md5_parameter_is_ours_beside_a_secure_link_key(
    gw: RunningGateway,
) -> None:
    assert await request(gw, our_link("/docs/hello.txt?md5=app-value")) == (
        200,
        b"/docs/hello.txt\n",
    )
    assert gw.metric("gateway_links_total", scheme="edge", reason="ok") == 1


async def test_a_secure_link_that_also_carries_our_token_is_ambiguous(gw: RunningGateway) -> None:
    ours = sign_path("/docs/hello.txt", Keyring([EDGE]), expires_in=600).partition("?")[2]
    target = link("bound", "/docs/hello.txt", int(time.time()) + 600)
    status, body = await request(gw, f"{target}&{ours}")
    assert (status, json.loads(body)) == (403, {"error": "ambiguous_link"})


def digest(target: str) -> str:
    """The link's token id, as the access log shows it: from the 16 bytes md5 reads as."""
    md5 = target.partition("md5=")[2].partition("&")[0]
    return hashlib.sha256(base64.urlsafe_b64decode(md5 + "==")).hexdigest()[:32]


@pytest.mark.parametrize(
    ("trusted", "status"), [("127.0.0.1", 200), ("", 403)], ids=["trusted", "untrusted"]
)
async def test_behind_a_trusted_proxy_remote_addr_is_the_forwarded_client(
    make_gateway: Callable[..., Any], trusted: str, status: int
) -> None:
    async with make_gateway(trusted_proxies=trusted) as gw:
        target = link("bound", "/docs/hello.txt", int(time.time()) + 600, client="203.0.113.9")
        response, _ = await gw.request("GET", target, {"X-Forwarded-For": "203.0.113.9"})
        assert response.status == status


@pytest.mark.parametrize(
    ("revocation", "untouched"),
    [
        (lambda target: {"url": f"http://127.0.0.1{target}"}, "/docs/hello.txt"),
        (lambda target: {"digest": digest(target)}, "/docs/hello.txt"),
        (lambda target: {"key_id": KEY_ID}, None),
        (lambda target: {"prefix": "/docs/"}, "/public/open.txt"),
    ],
    ids=["by-link", "by-digest", "by-key", "by-prefix"],
)
async def test_a_revoked_secure_link_is_refused(
    gw: RunningGateway, revocation: Callable[[str], dict[str, str]], untouched: str | None
) -> None:
    now = int(time.time())
    target = link("bound", "/docs/hello.txt", now + 600)
    assert (await request(gw, target))[0] == 200
    await gw.revoke(revocation(target))
    status, body = await request(gw, target)
    assert (status, json.loads(body)) == (403, {"error": "revoked"})
    assert gw.metric("gateway_links_total", scheme="secure_link", reason="revoked") == 1
    # the same link spelt otherwise (padded md5, %2F) is the same link, and stays revoked
    respelt = target.replace("&", "==&").replace("/docs/", "/docs%2F", 1)
    assert (await request(gw, respelt))[0] == 403
    if untouched is not None:  # another link (another expiry, or outside the prefix) still works
        assert (await request(gw, link("bound", untouched, now + 601)))[0] == 200


async def test_the_access_log_names_the_scheme_and_key_and_never_the_md5(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    targets = [
        link("bound", "/docs/hello.txt", now + 600),
        flip_md5(link("bound", "/docs/A.txt", now + 600)),
    ]
    async with make_gateway(access_log="true", log_level="DEBUG") as gw:
        statuses = [(await request(gw, target))[0] for target in targets]
    assert statuses == [200, 403]
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["reason"]) for line in lines] == [
        ("secure_link", "ok"),
        ("secure_link", "bad_signature"),
    ]
    assert (lines[0]["key_id"], lines[0]["token_id"]) == (KEY_ID, digest(targets[0]))
    for target in targets:
        md5 = target.partition("md5=")[2].partition("&")[0]
        assert md5 not in logged
        assert target.partition("?")[2] not in logged
    assert SECRET not in logged
