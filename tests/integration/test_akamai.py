"""Akamai EdgeAuth 2.0 tokens through a live gateway in front of SeaweedFS, made by Akamai's own
`akamai-edgeauth` package.

A backend keeps its EdgeAuth code and its hex key (an `akamai` key of the gateway's keyring) and
sends its users to the gateway instead of Akamai. The tokens here come from EdgeAuth itself, so
the gateway is held to what real backends send, in the query (`__token__`), an `hdnts` cookie and
an `hdnts` header.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from akamai.edgeauth import EdgeAuth

from gateway.observability.access_log import configure
from signer import Algorithm, Key, Keyring, Status, new_key, token_id
from signer.keys import LinkScheme
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import RunningGateway, link_gateway, store_objects
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PREFIX = "akamai/"
ORIGIN = f"s3://{PRIVATE_BUCKET}/{PREFIX}"
HELLO = b"hello through an EdgeAuth token\n"
OBJECTS = {
    "videos/hello.txt": HELLO,
    "videos/ep1/seg001.ts": b"segment one\n",
    "videos/ep1/seg002.ts": b"segment two\n",
    "videos/a b.txt": b"space\n",
    "docs/other.txt": b"another object\n",
}
ADMIN_TOKEN = "akamai-admin-bearer"


def akamai_key(key_id: str, digest: str = "sha256", **options: Any) -> Key:
    scheme = LinkScheme.AKAMAI
    return new_key(
        key_id, Algorithm.HMAC_SHA256, Status.VERIFY, scheme=scheme, digest=digest, **options
    )


PLAIN = akamai_key("akamai-1")
EARLY = akamai_key("akamai-early", escape_early=True)
SHA1 = akamai_key("akamai-sha1", "sha1")
MD5 = akamai_key("akamai-md5", "md5")
RETIRED = new_key("akamai-old", Algorithm.HMAC_SHA256, Status.RETIRED, scheme=LinkScheme.AKAMAI)
EDGE = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)


def hex_key(key: Key) -> str:
    """What the backend's EdgeAuth holds: the key's hex, as the keyring file writes it."""
    assert key.secret is not None
    return key.secret.hex()


def edgeauth(key: Key | str, **options: Any) -> Any:
    """The backend's EdgeAuth for `key` (or a bare hex key): its algorithm, its escape_early."""
    if isinstance(key, str):
        return EdgeAuth(key=key, **{"window_seconds": 600, **options})
    settings = {"algorithm": key.digest, "escape_early": key.escape_early, "window_seconds": 600}
    return EdgeAuth(key=hex_key(key), **{**settings, **options})


def url_token(path: str, key: Key | str = PLAIN, **options: Any) -> str:
    token: str = edgeauth(key, **options).generate_url_token(path)
    return token


def acl_token(acl: str | list[str], key: Key | str = PLAIN, **options: Any) -> str:
    token: str = edgeauth(key, **options).generate_acl_token(acl)
    return token


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> None:
    store_objects(s3_server, PRIVATE_BUCKET, {PREFIX + key: body for key, body in OBJECTS.items()})


@pytest.fixture
def make_gateway(
    s3_server: S3Server, stored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    def make(*keys: Key, **extra: str) -> Any:
        keyring = Keyring(keys or (EDGE, PLAIN, EARLY, SHA1, MD5, RETIRED))
        extra.setdefault("admin_token", ADMIN_TOKEN)
        return link_gateway(monkeypatch, s3_server, tmp_path, keyring, ORIGIN, **extra)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[RunningGateway]:
    async with make_gateway() as running:
        yield running


def in_query(path: str, token: str) -> tuple[str, dict[str, str]]:
    return f"{path}?__token__={token}", {}


def in_cookie(path: str, token: str) -> tuple[str, dict[str, str]]:
    return path, {"Cookie": f"lang=en; hdnts={token}"}


def in_header(path: str, token: str) -> tuple[str, dict[str, str]]:
    return path, {"hdnts": token}


FORMS = [in_query, in_cookie, in_header]
FORM_IDS = ["query", "cookie", "header"]


async def refused(
    gw: RunningGateway,
    path: str,
    token: str,
    reason: str,
    *,
    method: str = "GET",
    form: Callable[[str, str], tuple[str, dict[str, str]]] = in_query,
) -> None:
    """The request is refused with `reason` and counted once under akamai."""
    target, headers = form(path, token)
    async with gw.session.request(
        method, gw.url(target), headers=headers, data=b"x" if method == "PUT" else None
    ) as response:
        assert (response.status, await response.json()) == (403, {"error": reason})
    assert gw.metric("gateway_links_total", scheme="akamai", reason=reason) == 1
    assert gw.metric("gateway_requests_total", method=method, status="403", reason=reason) == 1


# --- what EdgeAuth makes is served, in every form ------------------------------------------------


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize(
    ("make", "path", "body"),
    [
        (lambda: url_token("/videos/hello.txt"), "/videos/hello.txt", HELLO),
        (lambda: url_token("/videos/a%20b.txt"), "/videos/a%20b.txt", b"space\n"),
        (lambda: acl_token("/videos/*"), "/videos/ep1/seg001.ts", b"segment one\n"),
        (lambda: acl_token("/videos/hello.txt"), "/videos/hello.txt", HELLO),
        (
            lambda: acl_token(["/docs/*", "/videos/ep1/*"]),
            "/videos/ep1/seg002.ts",
            b"segment two\n",
        ),
        (lambda: acl_token("/videos/*/seg00*.ts"), "/videos/ep1/seg002.ts", b"segment two\n"),
    ],
    ids=["url", "url-encoded", "acl-prefix", "acl-exact", "acl-several", "acl-mid-path"],
)
async def test_an_edgeauth_token_streams_the_object(
    gw: RunningGateway,
    form: Callable[[str, str], tuple[str, dict[str, str]]],
    make: Callable[[], str],
    path: str,
    body: bytes,
) -> None:
    target, headers = form(path, make())
    response, got = await gw.request("GET", target, headers)
    assert (response.status, got) == (200, body)
    assert gw.metric("gateway_links_total", scheme="akamai", reason="ok") == 1


@pytest.mark.parametrize(
    ("key", "options"),
    [
        (PLAIN, {"session_id": "user-42", "payload": "plan=gold", "ip": "127.0.0.1"}),
        (EARLY, {"session_id": "user 42/ä", "payload": "a b&c", "ip": "127.0.0.1"}),
        (SHA1, {"session_id": "user-42"}),
        (MD5, {"payload": "md5"}),
        (PLAIN, {"start_time": int(time.time()) - 5, "end_time": int(time.time()) + 60}),
        (PLAIN, {"start_time": "now", "window_seconds": 300}),
        (EARLY, {"window_seconds": 60}),
    ],
    ids=[
        "ip-id-data",
        "escape-early",
        "sha1",
        "md5",
        "start-and-end",
        "start-now-window",
        "window",
    ],
)
async def test_every_edgeauth_option_is_verified(
    gw: RunningGateway, key: Key, options: dict[str, Any]
) -> None:
    for token in (
        url_token("/videos/a%20b.txt", key, **options),
        acl_token("/videos/*", key, **options),
    ):
        response, body = await gw.request("GET", *in_query("/videos/a%20b.txt", token))
        assert (response.status, body) == (200, b"space\n")


async def test_the_token_id_becomes_the_subject(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    async with make_gateway(access_log="true") as gw:
        token = url_token("/videos/hello.txt", EARLY, session_id="user 42")
        assert (await gw.request("GET", *in_query("/videos/hello.txt", token)))[0].status == 200
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["key_id"], line["sub"]) for line in lines] == [
        ("akamai", "akamai-early", "user 42")
    ]


async def test_a_head_is_answered_and_a_put_is_wrong_method(gw: RunningGateway) -> None:
    token = acl_token("/videos/*")
    response, body = await gw.request("HEAD", *in_query("/videos/hello.txt", token))
    assert (response.status, body) == (200, b"")
    await refused(gw, "/videos/put.txt", token, "wrong_method", method="PUT")


async def test_an_acl_token_in_the_query_sets_no_edge_cookie(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(token_cookie="true") as gw:
        response, _ = await gw.request(
            "GET", *in_query("/videos/hello.txt", acl_token("/videos/*"))
        )
        assert (response.status, response.headers.get("Set-Cookie")) == (200, None)


# --- every field tampered, and every way a token can be wrong ------------------------------------


def swap(pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> Callable[[str], str]:
    def tamper(token: str) -> str:
        changed, count = re.subn(pattern, replacement, token, count=1)
        assert count == 1, (pattern, token)
        return changed

    return tamper


def flip_last_hex(token: str) -> str:
    return token[:-1] + ("0" if token[-1] != "0" else "1")


FULL = {"ip": "127.0.0.1", "session_id": "user-42", "payload": "plan=gold"}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (swap(r"ip=127\.0\.0\.1", "ip=127.0.0.2"), "bad_signature"),
        (swap(r"st=(\d+)", lambda m: f"st={int(m[1]) - 1}"), "bad_signature"),
        (swap(r"exp=(\d+)", lambda m: f"exp={int(m[1]) + 1}"), "bad_signature"),
        (swap(r"acl=/videos/\*", "acl=/*"), "bad_signature"),
        (swap("id=user-42", "id=user-43"), "bad_signature"),
        (swap("data=plan=gold", "data=plan=free"), "bad_signature"),
        (flip_last_hex, "bad_signature"),
        (swap(r"~hmac=\w+", ""), "malformed_token"),
        (swap(r"hmac=(\w+)", lambda m: f"hmac={m[1].upper()}"), "malformed_token"),
        (swap(r"^ip=127\.0\.0\.1~(st=\d+)", r"\1~ip=127.0.0.1"), "malformed_token"),
        (swap("~hmac=", "~url=/videos/hello.txt~hmac="), "malformed_token"),
        (swap("~hmac=", "~foo=bar~hmac="), "malformed_token"),
        (swap("~id=", "~id=x~id="), "malformed_token"),
        (swap(r"exp=\d+~", ""), "malformed_token"),
        (swap(r"st=(\d+)", r"st=0\1"), "malformed_token"),
    ],
    ids=[
        "ip",
        "st",
        "exp",
        "acl",
        "id",
        "data",
        "hmac",
        "hmac-removed",
        "hmac-upper-case",
        "out-of-order",
        "url-field",
        "unknown-field",
        "repeated-field",
        "exp-removed",
        "st-leading-zero",
    ],
)
async def test_a_tampered_token_is_refused_with_its_reason(
    gw: RunningGateway, tamper: Callable[[str], str], reason: str
) -> None:
    start = int(time.time()) - 5
    token = acl_token("/videos/*", start_time=start, **FULL)
    await refused(gw, "/videos/hello.txt", tamper(token), reason)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
async def test_a_url_token_for_another_path_is_a_bad_signature(
    gw: RunningGateway, form: Callable[[str, str], tuple[str, dict[str, str]]]
) -> None:
    await refused(gw, "/docs/other.txt", url_token("/videos/hello.txt"), "bad_signature", form=form)


@pytest.mark.parametrize(
    ("signed", "sent", "reason"),
    [
        ("/videos/hello.txt", "/videos/%68ello.txt", "malformed_token"),
        ("/videos/a%20b.txt", "/videos/a+b.txt", "malformed_token"),
        ("/videos/a%20b.txt", "/videos/a%2520b.txt", "bad_signature"),
        ("/videos/hello.txt", "/videos%2Fhello.txt", "malformed_token"),
        ("/videos/hello.txt", "/videos/x/../hello.txt", "malformed_token"),
        ("/videos/a b.txt", "/videos/a%20b.txt", "bad_signature"),
    ],
    ids=[
        "escaped-letter",
        "raw-plus",
        "double-escape",
        "escaped-slash",
        "dot-dot",
        "signed-unencoded",
    ],
)
async def test_a_path_that_decodes_differently_is_refused(
    gw: RunningGateway, signed: str, sent: str, reason: str
) -> None:
    await refused(gw, sent, url_token(signed), reason)


@pytest.mark.parametrize(
    ("acl", "reason"),
    [
        ("/docs/*", "outside_prefix"),
        (["/docs/*", "/videos/ep1/*"], "outside_prefix"),
        ("/videos/*/seg*.ts", "outside_prefix"),
        ("/videos/hello.txt?", "malformed_token"),
    ],
    ids=["prefix", "several", "mid-path", "question-mark"],
)
async def test_an_acl_that_does_not_cover_the_path_is_refused(
    gw: RunningGateway, acl: str | list[str], reason: str
) -> None:
    await refused(gw, "/videos/hello.txt", acl_token(acl), reason)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"start_time": int(time.time()) - 7200, "end_time": int(time.time()) - 3600}, "expired"),
        ({"end_time": int(time.time()) - 31}, "expired"),
        (
            {"start_time": int(time.time()) + 600, "end_time": int(time.time()) + 900},
            "not_yet_valid",
        ),
        ({"ip": "203.0.113.7"}, "ip_mismatch"),
        ({"window_seconds": 86400 + 600}, "lifetime_exceeded"),
    ],
    ids=[
        "expired-an-hour-ago",
        "expired-past-the-skew",
        "not-yet-valid",
        "another-ip",
        "no-st-beyond-window",
    ],
)
async def test_an_authentic_token_outside_its_claims_is_refused(
    gw: RunningGateway, options: dict[str, Any], reason: str
) -> None:
    await refused(gw, "/videos/hello.txt", acl_token("/videos/*", **options), reason)


async def test_a_token_lifetime_beyond_max_link_lifetime_is_refused(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(max_link_lifetime="600") as gw:
        start = int(time.time())
        ok = acl_token("/videos/*", start_time=start, end_time=start + 600)
        assert (await gw.request("GET", *in_query("/videos/hello.txt", ok)))[0].status == 200
        long = acl_token("/videos/*", start_time=start, end_time=start + 601)
        await refused(gw, "/videos/hello.txt", long, "lifetime_exceeded")


async def test_a_key_window_beyond_max_link_lifetime_refuses_tokens_without_st(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(max_link_lifetime="3600") as gw:  # the key's window: 86400
        token = acl_token("/videos/*", window_seconds=60)
        await refused(gw, "/videos/hello.txt", token, "lifetime_exceeded")


@pytest.mark.parametrize(
    ("key", "keys", "reason"),
    [
        (secrets.token_hex(32), (), "bad_signature"),
        (hex_key(RETIRED), (), "bad_signature"),
        (hex_key(PLAIN), (EDGE, RETIRED), "retired_key"),
        (hex_key(PLAIN), (EDGE,), "unknown_key"),
    ],
    ids=["wrong-key", "a-retired-key", "every-key-retired", "no-akamai-key"],
)
async def test_a_token_without_a_usable_key_is_refused(
    make_gateway: Callable[..., Any], key: str, keys: tuple[Key, ...], reason: str
) -> None:
    async with make_gateway(*keys) as gw:
        await refused(gw, "/videos/hello.txt", acl_token("/videos/*", key), reason)


async def test_a_sha1_token_with_only_sha256_keys_is_a_bad_signature(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(EDGE, PLAIN) as gw:
        token = acl_token("/videos/*", hex_key(PLAIN), algorithm="sha1")
        await refused(gw, "/videos/hello.txt", token, "bad_signature")


async def test_the_query_token_wins_and_is_judged_alone(gw: RunningGateway) -> None:
    good, bad = acl_token("/videos/*"), flip_last_hex(acl_token("/videos/*"))
    target, _ = in_query("/videos/hello.txt", bad)
    response, body = await gw.request("GET", target, {"Cookie": f"hdnts={good}"})
    assert (response.status, json.loads(body)) == (403, {"error": "bad_signature"})


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/videos/hello.txt?__token__={t}&x=1", {}),
        ("/videos/hello.txt?__token__={t}&__token__={t}", {}),
        ("/videos/hello.txt?x=1", {"hdnts": "{t}"}),
        ("/videos/hello.txt", {"hdnts": "{t}", "Cookie": "hdnts={o}"}),
    ],
    ids=["another-parameter", "token-twice", "carried-with-a-query", "two-carried-tokens"],
)
async def test_an_ambiguous_request_is_malformed(
    gw: RunningGateway, target: str, headers: dict[str, str]
) -> None:
    token, other = acl_token("/videos/*"), acl_token("/videos/*", session_id="other")
    target = target.format(t=token)
    sent = {name: value.format(t=token, o=other) for name, value in headers.items()}
    response, body = await gw.request("GET", target, sent)
    assert (response.status, json.loads(body)) == (403, {"error": "malformed_token"})
    assert gw.metric("gateway_links_total", scheme="akamai", reason="malformed_token") == 1


async def test_a_target_with_two_schemes_links_is_ambiguous(gw: RunningGateway) -> None:
    token = acl_token("/videos/*")
    target = f"/videos/hello.txt?__token__={token}&X-Amz-Signature=00"
    response, body = await gw.request("GET", target)
    assert (response.status, json.loads(body)) == (403, {"error": "ambiguous_link"})


# --- revocation: the same list as our tokens ----------------------------------------------------


def digest(token: str) -> str:
    return token_id(bytes.fromhex(token.rpartition("hmac=")[2]))


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize(
    ("revocation", "untouched"),
    [
        (lambda target, token: {"url": f"http://127.0.0.1{in_query(target, token)[0]}"}, True),
        (lambda target, token: {"digest": digest(token)}, True),
        (lambda target, token: {"key_id": PLAIN.id}, False),
        (lambda target, token: {"sub": "user-42"}, False),
        (lambda target, token: {"prefix": "/videos/"}, False),
    ],
    ids=["by-link", "by-digest", "by-key", "by-id", "by-prefix"],
)
async def test_a_revoked_token_is_refused(
    gw: RunningGateway,
    form: Callable[[str, str], tuple[str, dict[str, str]]],
    revocation: Callable[[str, str], dict[str, str]],
    untouched: bool,
) -> None:
    start = int(time.time()) - 5
    token = acl_token("/videos/*", start_time=start, session_id="user-42")
    target, headers = form("/videos/hello.txt", token)
    assert (await gw.request("GET", target, headers))[0].status == 200
    await gw.revoke(revocation("/videos/hello.txt", token))
    await refused(gw, "/videos/hello.txt", token, "revoked", form=form)
    other = acl_token("/docs/*", EARLY, start_time=start, session_id="user-7")
    response, _ = await gw.request("GET", *form("/docs/other.txt", other))
    assert response.status == 200  # another key, subject and prefix: untouched by any of them
    if untouched:  # a token for the same object, signed a second later, still works
        again = acl_token("/videos/*", start_time=start + 1, session_id="user-42")
        assert (await gw.request("GET", *form("/videos/hello.txt", again)))[0].status == 200


async def test_a_token_without_st_is_revoked_by_key(gw: RunningGateway) -> None:
    token = acl_token("/videos/*", window_seconds=300)
    assert (await gw.request("GET", *in_query("/videos/hello.txt", token)))[0].status == 200
    await gw.revoke({"key_id": PLAIN.id})
    await refused(gw, "/videos/hello.txt", token, "revoked")


# --- logs ---------------------------------------------------------------------------------------


async def test_the_access_log_names_the_scheme_and_never_the_token(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    tokens = [acl_token("/videos/*"), flip_last_hex(url_token("/videos/hello.txt"))]
    async with make_gateway(access_log="true", log_level="DEBUG") as gw:
        statuses = [
            (await gw.request("GET", *in_query("/videos/hello.txt", tokens[0])))[0].status,
            (await gw.request("GET", *in_cookie("/videos/hello.txt", tokens[1])))[0].status,
        ]
    assert statuses == [200, 403]
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["reason"]) for line in lines] == [
        ("akamai", "ok"),
        ("akamai", "bad_signature"),
    ]
    assert (lines[0]["key_id"], lines[0]["token_id"]) == (PLAIN.id, digest(tokens[0]))
    assert lines[0]["path"] == "/videos/hello.txt"
    for token in tokens:
        assert token.rpartition("hmac=")[2] not in logged
        assert token not in logged
    assert hex_key(PLAIN) not in logged
