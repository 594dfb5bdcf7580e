"""S3 presigned URLs through a live gateway in front of SeaweedFS, signed by botocore itself.

A backend keeps its `generate_presigned_url(...)` code and points the client at the gateway
with link credentials (a `sigv4` key of the gateway's keyring). Here the presigner is botocore's
own (boto3's `generate_presigned_url` is this very method), so the gateway is held to what real
backends send, not to our reading of the specification.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.config import Config

from gateway.observability.access_log import configure
from signer import Algorithm, Key, Keyring, Status, new_key, sign_path, token_id
from signer.format import b64encode
from signer.keys import LinkScheme
from signer.schemes.sigv4_query import WORDS
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import RunningGateway, link_gateway, store_objects
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PREFIX = "presigned/"
ORIGIN = f"s3://{PRIVATE_BUCKET}/{PREFIX}"
HELLO = b"hello through a presigned URL\n"
OBJECTS = {
    "docs/hello.txt": HELLO,
    "docs/other.txt": b"another object\n",
    "a+b.txt": b"plus\n",
    "a b.txt": b"space\n",
    "Über uns/ä ö.txt": b"unicode\n",
    "public/open.txt": b"outside the revoked prefix\n",
}
LINK_ID = "GWLINKS01"
LINK = new_key(LINK_ID, Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4)
OLD = new_key("GWLINKSOLD", Algorithm.HMAC_SHA256, Status.RETIRED, scheme=LinkScheme.SIGV4)
EDGE = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)
ADMIN_TOKEN = "presigned-admin-bearer"


def secret(key: Key) -> str:
    """A sigv4 key's aws_secret_access_key: its `secret` as the keyring file writes it."""
    assert key.secret is not None
    return b64encode(key.secret)


OLD_SECRET = secret(OLD)  # taken before the export strips a retired key's material


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> None:
    store_objects(s3_server, PRIVATE_BUCKET, {PREFIX + key: body for key, body in OBJECTS.items()})


@pytest.fixture
def make_gateway(
    s3_server: S3Server, stored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    def make(*keys: Key, **extra: str) -> Any:
        keyring = Keyring(keys or (EDGE, LINK, OLD))
        extra.setdefault("admin_token", ADMIN_TOKEN)
        return link_gateway(monkeypatch, s3_server, tmp_path, keyring, ORIGIN, **extra)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[RunningGateway]:
    async with make_gateway() as running:
        yield running


def presigner(
    endpoint: str,
    key_id: str = LINK_ID,
    secret_key: str | None = None,
    *,
    region: str = "us-east-1",
    version: str | None = "s3v4",
) -> Any:
    """A backend's S3 client for presigning: botocore, pointed at the gateway."""
    return botocore.session.get_session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret_key or secret(LINK),
        config=Config(signature_version=version, s3={"addressing_style": "path"}),
    )


def base(gw: RunningGateway) -> str:
    return f"http://127.0.0.1:{gw.server.port}"


def target(url: str) -> str:
    """The request target of an absolute URL, byte for byte."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def presign(
    gw: RunningGateway, operation: str = "get_object", key: str = "docs/hello.txt", **params: Any
) -> str:
    client = presigner(base(gw))
    expires = params.pop("ExpiresIn", 600)
    bucket = params.pop("Bucket", PRIVATE_BUCKET)
    url: str = client.generate_presigned_url(
        operation, Params={"Bucket": bucket, "Key": key, **params}, ExpiresIn=expires
    )
    return target(url)


async def refused(
    gw: RunningGateway, method: str, link: str, reason: str, headers: dict[str, str] | None = None
) -> None:
    """The request is refused with `reason`, in S3's words, and counted once under sigv4."""
    response, body = await gw.request(method, link, headers)
    assert (response.status, json.loads(body)) == (403, {"error": reason, "detail": WORDS[reason]})
    assert gw.metric("gateway_links_total", scheme="sigv4", reason=reason) == 1
    assert gw.metric("gateway_requests_total", method=method, status="403", reason=reason) == 1


# --- what a backend presigns works unchanged ---------------------------------------------


async def test_a_presigned_get_streams_the_object(gw: RunningGateway) -> None:
    response, body = await gw.request("GET", presign(gw))
    assert (response.status, body) == (200, HELLO)
    assert response.headers["Content-Type"] == "text/plain"
    assert gw.metric("gateway_links_total", scheme="sigv4", reason="ok") == 1


async def test_a_presigned_head_answers_the_headers(gw: RunningGateway) -> None:
    response, body = await gw.request("HEAD", presign(gw, "head_object"))
    assert (response.status, body) == (200, b"")
    assert response.headers["Content-Length"] == str(len(HELLO))


async def test_a_range_request_with_a_presigned_link_gets_206(gw: RunningGateway) -> None:
    response, body = await gw.request("GET", presign(gw), {"Range": "bytes=0-4"})
    assert (response.status, body) == (206, HELLO[:5])


@pytest.mark.parametrize(
    ("key", "content"),
    [("a+b.txt", b"plus\n"), ("a b.txt", b"space\n"), ("Über uns/ä ö.txt", b"unicode\n")],
    ids=["plus-is-a-plus", "space", "unicode"],
)
async def test_the_key_is_the_one_signed_byte_for_byte(
    gw: RunningGateway, key: str, content: bytes
) -> None:
    response, body = await gw.request("GET", presign(gw, key=key))
    assert (response.status, body) == (200, content)


async def test_signed_response_overrides_become_the_response_headers(gw: RunningGateway) -> None:
    link = presign(
        gw,
        ResponseContentType="application/pdf",
        ResponseContentDisposition='attachment; filename="report 2026.pdf"',
    )
    response, body = await gw.request("GET", link)
    assert (response.status, body) == (200, HELLO)
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="report 2026.pdf"'


@pytest.mark.parametrize(
    ("params", "sent", "stored_type"),
    [
        ({"ContentType": "image/jpeg"}, {"Content-Type": "image/jpeg"}, "image/jpeg"),
        ({}, {"Content-Type": "text/csv"}, "text/csv"),
        ({}, {}, "application/octet-stream"),
    ],
    ids=["signed-content-type", "unsigned-content-type", "no-content-type"],
)
async def test_a_presigned_put_stores_the_body(
    gw: RunningGateway,
    s3_server: S3Server,
    params: dict[str, str],
    sent: dict[str, str],
    stored_type: str,
) -> None:
    key = f"uploads/{len(params)}-{len(sent)}.bin"
    link = presign(gw, "put_object", key, **params)
    async with gw.session.put(
        gw.url(link), data=b"uploaded bytes", headers=sent, skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 201, await response.text()
    head = s3_server.client().head_object(Bucket=PRIVATE_BUCKET, Key=PREFIX + key)
    assert head["ContentType"] == stored_type
    response, body = await gw.request("GET", presign(gw, key=key))
    assert (response.status, body) == (200, b"uploaded bytes")


@pytest.mark.parametrize(
    "sent",
    [{"Content-Type": "text/html"}, {}],
    ids=["another-type", "none"],
)
async def test_a_put_without_the_signed_content_type_is_refused(
    gw: RunningGateway, sent: dict[str, str]
) -> None:
    link = presign(gw, "put_object", "uploads/typed.jpg", ContentType="image/jpeg")
    async with gw.session.put(
        gw.url(link), data=b"<script>", headers=sent, skip_auto_headers=["Content-Type"]
    ) as response:
        assert (response.status, await response.json()) == (
            403,
            {"error": "bad_signature", "detail": WORDS["bad_signature"]},
        )


async def test_the_edge_cache_serves_presigned_links_too(
    make_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    async with make_gateway(cache="true", cache_dir=str(tmp_path / "cache")) as gw:
        for _ in range(2):
            response, body = await gw.request("GET", presign(gw))
            assert (response.status, body) == (200, HELLO)
        assert gw.metric("gateway_cache_requests_total", state="hit") == 1


# --- every field tampered, and every way a link can be wrong --------------------------------


def swap(pattern: str, replacement: str) -> Callable[[str], str]:
    def tamper(link: str) -> str:
        changed, count = re.subn(pattern, replacement, link, count=1)
        assert count == 1, (pattern, link)
        return changed

    return tamper


def flip_last_hex(link: str) -> str:
    return link[:-1] + ("0" if link[-1] != "0" else "1")


def retime(link: str) -> str:
    """X-Amz-Date one second off, on the same day."""
    return re.sub(r"(X-Amz-Date=\d{8}T\d{5})(\d)", lambda m: m[1] + "98"[m[2] == "9"], link)


def upper_signature(link: str) -> str:
    return re.sub(r"(X-Amz-Signature=)(\w+)", lambda m: m[1] + m[2].upper(), link)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (swap("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "malformed_token"),
        (swap(f"Credential={LINK_ID}", "Credential=GWLINKS02"), "unknown_key"),
        (swap(r"(Credential=\w+%2F)\d{8}", r"\g<1>19991231"), "malformed_token"),
        (swap("us-east-1", "eu-west-1"), "malformed_token"),
        (swap("%2Fs3%2F", "%2Fec2%2F"), "malformed_token"),
        (swap("aws4_request", "aws4_reqest"), "malformed_token"),
        (retime, "bad_signature"),
        (swap(r"(X-Amz-Date=)\d{4}", r"\g<1>2031"), "malformed_token"),
        (swap("X-Amz-Expires=600", "X-Amz-Expires=601"), "bad_signature"),
        (swap("X-Amz-Expires=600", "X-Amz-Expires=604801"), "malformed_token"),
        (swap("X-Amz-Expires=600", "X-Amz-Expires=0600"), "malformed_token"),
        (swap("SignedHeaders=host", "SignedHeaders=content-type%3Bhost"), "bad_signature"),
        (swap("SignedHeaders=host", "SignedHeaders=host%3Bx-amz-meta-a"), "malformed_token"),
        (swap("SignedHeaders=host", "SignedHeaders=range"), "malformed_token"),
        (flip_last_hex, "bad_signature"),
        (upper_signature, "malformed_token"),
        (swap("hello.txt", "other.txt"), "bad_signature"),
        (lambda link: link.replace("?", "?response-content-type=text%2Fhtml&"), "bad_signature"),
        (lambda link: link + "&x=1", "malformed_token"),
        (lambda link: link + "&X-Amz-Signature=" + "0" * 64, "malformed_token"),
        (lambda link: link + "&X-Amz-Security-Token=abc", "malformed_token"),
        (lambda link: link.replace("X-Amz-Signature", "x-amz-signature"), "malformed_token"),
    ],
    ids=[
        "algorithm",
        "credential-key-id",
        "credential-date",
        "credential-region",
        "credential-service",
        "credential-terminator",
        "amz-date-time",
        "amz-date-other-day",
        "expires",
        "expires-over-7-days",
        "expires-leading-zero",
        "signed-headers-added",
        "signed-headers-unsupported",
        "signed-headers-without-host",
        "signature",
        "signature-upper-case",
        "path",
        "override-added",
        "parameter-added",
        "signature-repeated",
        "security-token",
        "name-spelled-otherwise",
    ],
)
async def test_a_tampered_link_is_refused_with_its_reason(
    gw: RunningGateway, tamper: Callable[[str], str], reason: str
) -> None:
    await refused(gw, "GET", tamper(presign(gw)), reason)


async def test_a_tampered_override_is_a_bad_signature(gw: RunningGateway) -> None:
    link = presign(gw, ResponseContentType="application/pdf")
    await refused(gw, "GET", link.replace("application%2Fpdf", "text%2Fhtml"), "bad_signature")


@pytest.mark.parametrize(
    ("key", "tamper", "reason"),
    [
        ("a+b.txt", swap("a%2Bb", "a+b"), "malformed_token"),
        ("a+b.txt", swap("a%2Bb", "a%2bb"), "malformed_token"),
        ("a+b.txt", swap("a%2Bb", "a%20b"), "bad_signature"),
        ("docs/hello.txt", swap("docs/hello", "docs%2Fhello"), "malformed_token"),
        ("docs/hello.txt", swap("/hello.txt", "/x/../hello.txt"), "malformed_token"),
        ("docs/hello.txt", swap("hello", "%68ello"), "malformed_token"),
        ("docs/./hello.txt", lambda link: link, "malformed_token"),
        ("docs//hello.txt", lambda link: link, "malformed_token"),
    ],
    ids=[
        "raw-plus",
        "lower-case-escape",
        "another-key",
        "escaped-slash",
        "dot-dot",
        "escaped-letter",
        "signed-dot-segment",
        "signed-empty-segment",
    ],
)
async def test_a_path_that_decodes_differently_is_refused(
    gw: RunningGateway, key: str, tamper: Callable[[str], str], reason: str
) -> None:
    await refused(gw, "GET", tamper(presign(gw, key=key)), reason)


@pytest.fixture
def signed_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Make botocore's presigner sign at another time (its clock, not the gateway's)."""

    def shift(offset: timedelta) -> None:
        moment = datetime.now(UTC) + offset
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)

    return shift


@pytest.mark.parametrize(
    ("offset", "expires_in", "reason"),
    [
        (timedelta(hours=-2), 3600, "expired"),
        (timedelta(minutes=-11), 600, "expired"),
        (timedelta(minutes=10), 3600, "not_yet_valid"),
    ],
    ids=["expired-an-hour-ago", "expired-past-the-skew", "dated-in-the-future"],
)
async def test_a_link_outside_its_time_is_refused(
    gw: RunningGateway,
    signed_at: Callable[[timedelta], None],
    offset: timedelta,
    expires_in: int,
    reason: str,
) -> None:
    signed_at(offset)
    await refused(gw, "GET", presign(gw, ExpiresIn=expires_in), reason)


async def test_a_link_dated_within_the_skew_is_accepted(
    gw: RunningGateway, signed_at: Callable[[timedelta], None]
) -> None:
    signed_at(timedelta(seconds=10))
    response, body = await gw.request("GET", presign(gw))
    assert (response.status, body) == (200, HELLO)


@pytest.mark.parametrize(
    ("key_id", "secret_key", "reason"),
    [
        ("NOSUCHKEY", None, "unknown_key"),
        ("edge-1", None, "unknown_key"),
        ("GWLINKSOLD", OLD_SECRET, "retired_key"),
        (LINK_ID, "not-the-link-secret-at-all-not-the-link-secret", "bad_signature"),
    ],
    ids=["unknown", "our-token-key", "retired", "wrong-secret"],
)
async def test_a_link_signed_with_another_key_is_refused(
    gw: RunningGateway, key_id: str, secret_key: str | None, reason: str
) -> None:
    client = presigner(base(gw), key_id, secret_key)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": PRIVATE_BUCKET, "Key": "docs/hello.txt"}
    )
    await refused(gw, "GET", target(url), reason)


async def test_a_link_for_another_host_is_a_bad_signature(gw: RunningGateway) -> None:
    url = presigner(f"http://media.example.com:{gw.server.port}").generate_presigned_url(
        "get_object", Params={"Bucket": PRIVATE_BUCKET, "Key": "docs/hello.txt"}
    )
    await refused(gw, "GET", target(url), "bad_signature")


@pytest.mark.parametrize(
    ("trusted", "status"), [("127.0.0.1", 200), ("", 403)], ids=["trusted", "untrusted"]
)
async def test_behind_a_trusted_proxy_the_forwarded_host_is_the_signed_host(
    make_gateway: Callable[..., Any], trusted: str, status: int
) -> None:
    async with make_gateway(trusted_proxies=trusted) as gw:
        url = presigner("https://media.example.com").generate_presigned_url(
            "get_object", Params={"Bucket": PRIVATE_BUCKET, "Key": "docs/hello.txt"}
        )
        headers = {"X-Forwarded-Host": "media.example.com", "X-Forwarded-For": "203.0.113.9"}
        response, _ = await gw.request("GET", target(url), headers)
        assert response.status == status


@pytest.mark.parametrize(
    ("operation", "method", "body"),
    [("get_object", "PUT", b"x"), ("head_object", "GET", None), ("put_object", "GET", None)],
    ids=["get-link-put", "head-link-get", "put-link-get"],
)
async def test_a_link_used_with_another_method_is_wrong_method(
    gw: RunningGateway, operation: str, method: str, body: bytes | None
) -> None:
    link = presign(gw, operation, "docs/hello.txt")
    async with gw.session.request(method, gw.url(link), data=body) as response:
        assert (response.status, await response.json()) == (
            403,
            {"error": "wrong_method", "detail": WORDS["wrong_method"]},
        )
    assert gw.metric("gateway_links_total", scheme="sigv4", reason="wrong_method") == 1


async def test_a_link_for_another_bucket_is_refused(gw: RunningGateway) -> None:
    await refused(gw, "GET", presign(gw, Bucket="other-bucket"), "wrong_bucket")


async def test_a_missing_object_is_not_found_in_s3s_words(gw: RunningGateway) -> None:
    response, body = await gw.request("GET", presign(gw, key="docs/missing.txt"))
    assert (response.status, json.loads(body)) == (
        404,
        {"error": "not_found", "detail": "NoSuchKey: The specified key does not exist."},
    )


async def test_x_amz_expires_is_the_lifetime_max_link_lifetime_bounds(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(max_link_lifetime="600") as gw:
        response, _ = await gw.request("GET", presign(gw, ExpiresIn=600))
        assert response.status == 200
        await refused(gw, "GET", presign(gw, ExpiresIn=601), "lifetime_exceeded")


async def test_a_target_with_two_schemes_links_is_ambiguous(gw: RunningGateway) -> None:
    ours = sign_path("/docs/hello.txt", Keyring([EDGE]), expires_in=600).partition("?")[2]
    response, body = await gw.request("GET", f"{presign(gw)}&{ours}")
    assert (response.status, json.loads(body)) == (403, {"error": "ambiguous_link"})
    assert (
        gw.metric("gateway_requests_total", method="GET", status="403", reason="ambiguous_link")
        == 1
    )


async def test_a_sigv2_link_is_malformed(gw: RunningGateway) -> None:
    """botocore presigns with SigV2 unless told `signature_version="s3v4"`."""
    url = presigner(base(gw), version=None).generate_presigned_url(
        "get_object", Params={"Bucket": PRIVATE_BUCKET, "Key": "docs/hello.txt"}
    )
    assert "X-Amz-" not in url
    response, body = await gw.request("GET", target(url))
    assert (response.status, json.loads(body)) == (403, {"error": "malformed_token"})


async def test_without_a_sigv4_key_the_scheme_is_off(make_gateway: Callable[..., Any]) -> None:
    async with make_gateway(EDGE) as gw:
        await refused(gw, "GET", presign(gw), "unknown_key")
        ours = sign_path("/docs/hello.txt", Keyring([EDGE]), expires_in=600)
        response, body = await gw.request("GET", ours)
        assert (response.status, body) == (200, HELLO)


# --- revocation: the same list as our tokens -------------------------------------------------


def digest(link: str) -> str:
    """The link's token id, as the access log shows it: from the signature's bytes."""
    return token_id(bytes.fromhex(link.rpartition("X-Amz-Signature=")[2]))


@pytest.mark.parametrize(
    ("revocation", "untouched"),
    [
        (lambda link: {"url": f"http://127.0.0.1{link}"}, "docs/hello.txt"),
        (lambda link: {"digest": digest(link)}, "docs/hello.txt"),
        (lambda link: {"key_id": LINK_ID}, None),
        (lambda link: {"prefix": "/docs/"}, "public/open.txt"),
    ],
    ids=["by-link", "by-digest", "by-key", "by-prefix"],
)
async def test_a_revoked_presigned_link_is_refused(
    gw: RunningGateway, revocation: Callable[[str], dict[str, str]], untouched: str | None
) -> None:
    link = presign(gw)
    response, _ = await gw.request("GET", link)
    assert response.status == 200
    await gw.revoke(revocation(link))
    await refused(gw, "GET", link, "revoked")
    if untouched is not None:  # another link (the same object, or outside the prefix) still works
        response, _ = await gw.request("GET", presign(gw, key=untouched, ExpiresIn=601))
        assert response.status == 200


# --- logs ------------------------------------------------------------------------------------


async def test_the_access_log_names_the_scheme_and_never_the_signature(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    async with make_gateway(access_log="true", log_level="DEBUG") as gw:
        links = [presign(gw), flip_last_hex(presign(gw, key="a b.txt"))]
        statuses = [(await gw.request("GET", link))[0].status for link in links]
    assert statuses == [200, 403]
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["reason"]) for line in lines] == [
        ("sigv4", "ok"),
        ("sigv4", "bad_signature"),
    ]
    assert (lines[0]["key_id"], lines[0]["token_id"]) == (LINK_ID, digest(links[0]))
    assert lines[0]["path"] == "/private/docs/hello.txt"
    for link in links:
        assert link.rpartition("X-Amz-Signature=")[2] not in logged
        assert link.partition("?")[2] not in logged
    assert secret(LINK) not in logged
