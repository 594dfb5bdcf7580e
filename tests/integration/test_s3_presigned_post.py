"""S3 presigned POST (form uploads with a policy) through a live gateway in front of SeaweedFS.

The policy is botocore's own (`generate_presigned_post`, the method boto3's is), signed with the
link credentials of a `sigv4` key, so the gateway is held to what real backends send. Forms are
posted with aiohttp's FormData and with `requests`; a real browser posts one in
tests/integration/test_browsers.py. What the bucket holds afterwards is read through a separate
S3 client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import requests

from gateway.observability.access_log import configure
from signer import Key, Keyring, token_id
from signer.schemes.sigv4_post import WORDS
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import (
    RunningGateway,
    keyring_file,
    link_gateway,
    use_credentials,
)
from tests.integration.test_process import serve, stop
from tests.integration.test_s3_presigned import (
    ADMIN_TOKEN,
    EDGE,
    LINK,
    LINK_ID,
    OLD,
    OLD_SECRET,
    presign,
    presigner,
    secret,
)
from tests.integration.test_upload_memory import high_water_mark
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PREFIX = "post/"
KIB = 1024
MIB = 1024 * KIB
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
#: The issue's policy: a size range, a key prefix, the content type (botocore adds the bucket
#: and `starts-with $key` for a key ending in `${filename}`).
FIELDS = {"Content-Type": "image/png"}
CONDITIONS: list[Any] = [
    ["content-length-range", 1, MIB],
    ["starts-with", "$key", "uploads/"],
    {"Content-Type": "image/png"},
]


@pytest.fixture
def make_gateway(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    def make(*keys: Key, **extra: str) -> Any:
        keyring = Keyring(keys or (EDGE, LINK, OLD))
        extra.setdefault("admin_token", ADMIN_TOKEN)
        origin = f"s3://{PRIVATE_BUCKET}/{PREFIX}"
        return link_gateway(monkeypatch, s3_server, tmp_path, keyring, origin, **extra)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[RunningGateway]:
    async with make_gateway() as running:
        yield running


class Bucket:
    """The test's view of the bucket, through its own S3 client (in a thread)."""

    def __init__(self, server: S3Server) -> None:
        self.client = server.client()

    async def head(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await asyncio.to_thread(
                self.client.head_object, Bucket=PRIVATE_BUCKET, Key=PREFIX + key
            )
        except self.client.exceptions.ClientError:
            return None
        return found

    async def read(self, key: str) -> bytes:
        reply = await asyncio.to_thread(
            self.client.get_object, Bucket=PRIVATE_BUCKET, Key=PREFIX + key
        )
        data: bytes = reply["Body"].read()
        return data

    async def pending_uploads(self) -> list[str]:
        reply = await asyncio.to_thread(
            self.client.list_multipart_uploads, Bucket=PRIVATE_BUCKET, Prefix=PREFIX
        )
        return [upload["Key"] for upload in reply.get("Uploads", [])]


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server)


def presign_post(
    gw: RunningGateway,
    key: str = "uploads/${filename}",
    fields: dict[str, str] | None = None,
    conditions: list[Any] | None = None,
    *,
    expires_in: int = 600,
    bucket: str = PRIVATE_BUCKET,
    **client: Any,
) -> tuple[str, dict[str, str]]:
    """The path to post to and the form's fields, as a backend hands them to its page."""
    signer = presigner(f"http://127.0.0.1:{gw.server.port}", **client)
    post = signer.generate_presigned_post(
        bucket,
        key,
        Fields=dict(FIELDS if fields is None else fields),
        Conditions=list(CONDITIONS if conditions is None else conditions),
        ExpiresIn=expires_in,
    )
    return urlsplit(post["url"]).path, post["fields"]


def form(
    fields: dict[str, str], data: bytes | Any = PHOTO, filename: str = "photo.png"
) -> aiohttp.FormData:
    """The form a page posts: the fields in order, then the file (its name as a browser sends
    it, not percent-encoded)."""
    body = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        body.add_field(name, value)
    body.add_field("file", data, filename=filename, content_type="image/png")
    return body


async def post(
    gw: RunningGateway, path: str, body: aiohttp.FormData | bytes, **headers: str
) -> tuple[int, Any, bytes]:
    async with gw.session.post(
        gw.url(path), data=body, headers=headers, allow_redirects=False
    ) as response:
        return response.status, response.headers, await response.read()


async def refused(
    gw: RunningGateway, path: str, fields: dict[str, str], status: int, reason: str, **file: Any
) -> dict[str, str]:
    """The form is refused with `reason` in S3's words, counted once under sigv4-post."""
    answered, _, body = await post(gw, path, form(fields, **file))
    reply: dict[str, str] = json.loads(body)
    assert (answered, reply["error"]) == (status, reason)
    assert reply["detail"].startswith(WORDS[reason])
    assert gw.metric("gateway_links_total", scheme="sigv4-post", reason=reason) == 1
    return reply


# --- what a backend presigns works unchanged ---------------------------------------------


async def test_a_form_post_stores_the_file_under_its_filename_and_answers_204(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)

    status, headers, body = await post(gw, path, form(fields, filename="a b.png"))

    assert (status, body) == (204, b"")
    stored = await bucket.head("uploads/a b.png")
    assert stored is not None
    assert (stored["ContentType"], stored["ETag"]) == ("image/png", headers["ETag"])
    assert headers["Location"] == f"http://127.0.0.1:{gw.server.port}/private/uploads/a%20b.png"
    assert await bucket.read("uploads/a b.png") == PHOTO
    assert gw.metric("gateway_links_total", scheme="sigv4-post", reason="ok") == 1
    assert gw.metric("gateway_requests_total", method="POST", status="204", reason="ok") == 1


@pytest.mark.parametrize(
    ("sent", "status"), [("201", 201), ("200", 200), ("204", 204), ("302", 204)]
)
async def test_success_action_status_chooses_the_answer_as_in_s3(
    gw: RunningGateway, bucket: Bucket, sent: str, status: int
) -> None:
    """201 carries S3's XML; 200 and 204 no body; any other value is S3's default, 204."""
    key = f"uploads/status-{sent}.png"
    fields = {**FIELDS, "success_action_status": sent}
    path, signed = presign_post(gw, key, fields, [*CONDITIONS, {"success_action_status": sent}])

    answered, headers, body = await post(gw, path, form(signed))

    assert answered == status
    if status == 201:
        reply = ET.fromstring(body)
        assert reply.tag == "PostResponse"
        assert {child.tag: child.text for child in reply} == {
            "Location": f"http://127.0.0.1:{gw.server.port}/private/{key}",
            "Bucket": PRIVATE_BUCKET,
            "Key": key,
            "ETag": headers["ETag"],
        }
    else:
        assert body == b""
    assert await bucket.read(key) == PHOTO


@pytest.mark.parametrize(
    ("redirect", "query"),
    [("https://app.example.com/done", ""), ("https://app.example.com/done?n=1", "n=1&")],
    ids=["plain", "with-a-query"],
)
async def test_success_action_redirect_answers_303_with_bucket_key_and_etag(
    gw: RunningGateway, bucket: Bucket, redirect: str, query: str
) -> None:
    fields = {**FIELDS, "success_action_redirect": redirect}
    conditions = [*CONDITIONS, ["starts-with", "$success_action_redirect", "https://app."]]
    path, signed = presign_post(gw, fields=fields, conditions=conditions)

    status, headers, _ = await post(gw, path, form(signed, filename="r.png"))

    assert status == 303
    location = headers["Location"]
    assert location.startswith(f"{redirect.partition('?')[0]}?{query}")
    got = parse_qs(urlsplit(location).query)
    stored = await bucket.head("uploads/r.png")
    assert stored is not None
    assert (got["bucket"], got["key"], got["etag"]) == (
        [PRIVATE_BUCKET],
        ["uploads/r.png"],
        [stored["ETag"]],
    )


async def test_a_redirect_that_is_not_an_http_url_is_ignored_as_s3_does(
    gw: RunningGateway,
) -> None:
    redirect = {"success_action_redirect": "javascript:alert(1)"}
    path, signed = presign_post(
        gw, fields={**FIELDS, **redirect}, conditions=[*CONDITIONS, redirect]
    )

    status, headers, _ = await post(gw, path, form(signed))

    assert status == 204
    assert headers["Location"].startswith(f"http://127.0.0.1:{gw.server.port}/private/uploads/")


@pytest.mark.parametrize(
    ("fields", "stored_type"),
    [({"Content-Type": "image/webp"}, "image/webp"), ({}, "application/octet-stream")],
    ids=["the-field", "none"],
)
async def test_the_stored_type_is_the_content_type_field_not_the_file_parts(
    gw: RunningGateway, bucket: Bucket, fields: dict[str, str], stored_type: str
) -> None:
    conditions = [CONDITIONS[0], *({k: v} for k, v in fields.items())]
    path, signed = presign_post(gw, fields=fields, conditions=conditions)

    name = f"typed-{len(fields)}.bin"  # SeaweedFS types a .png without a type as image/png

    status, _, _ = await post(gw, path, form(signed, filename=name))  # the part: image/png

    assert status == 204
    stored = await bucket.head(f"uploads/{name}")
    assert stored is not None
    assert stored["ContentType"] == stored_type


async def test_a_post_replaces_an_object_already_under_the_key_as_s3_does(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)
    for data in (b"first", b"second"):
        status, _, _ = await post(gw, path, form(fields, data, filename="again.png"))
        assert status == 204
    assert await bucket.read("uploads/again.png") == b"second"


async def test_requests_posts_the_form_as_a_backend_script_would(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)

    def send() -> requests.Response:
        url = f"http://127.0.0.1:{gw.server.port}{path}"
        files = {"file": ("from-requests.png", PHOTO, "image/png")}
        return requests.post(url, data=fields, files=files, timeout=30)

    response = await asyncio.to_thread(send)

    assert response.status_code == 204, response.text
    assert await bucket.read("uploads/from-requests.png") == PHOTO


async def test_fields_after_the_file_are_ignored_as_s3_does(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)
    body = form(fields, filename="then.png")
    body.add_field("acl", "public-read")  # after the file: never read as a field

    status, _, _ = await post(gw, path, body)

    assert status == 204
    assert await bucket.read("uploads/then.png") == PHOTO


# --- every way a form can be wrong: refused with its reason, nothing stored --------------------


def b64_flip(text: str) -> str:
    """The policy with one condition changed (and its base64 re-encoded): still valid JSON."""
    policy = base64.b64decode(text).replace(b"uploads/", b"anywhere")
    return base64.b64encode(policy).decode()


def another_second(amz_date: str) -> str:
    """X-Amz-Date one second off, on the same day."""
    return amz_date[:-2] + ("8Z" if amz_date[-2] == "9" else "9Z")


def flip_hex(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: {**f, "policy": b64_flip(f["policy"])}, "bad_signature"),
        (lambda f: {**f, "policy": f["policy"][:-4]}, "bad_signature"),
        (lambda f: {**f, "x-amz-signature": flip_hex(f["x-amz-signature"])}, "bad_signature"),
        (lambda f: {**f, "x-amz-signature": f["x-amz-signature"].upper()}, "malformed_token"),
        (
            lambda f: {**f, "x-amz-credential": f["x-amz-credential"].replace(LINK_ID, "NOPE")},
            "unknown_key",
        ),
        (
            lambda f: {**f, "x-amz-credential": f["x-amz-credential"].replace("us-east-1", "eu")},
            "malformed_token",
        ),
        (lambda f: {**f, "x-amz-algorithm": "AWS4-HMAC-SHA512"}, "malformed_token"),
        (lambda f: {k: v for k, v in f.items() if k != "x-amz-date"}, "malformed_token"),
        (lambda f: {**f, "x-amz-security-token": "abc"}, "malformed_token"),
        (lambda f: {"key": f["key"], "Content-Type": "image/png"}, "missing_token"),
    ],
    ids=[
        "policy-changed",
        "policy-cut",
        "signature",
        "signature-upper-case",
        "credential-key-id",
        "credential-region",
        "algorithm",
        "no-date",
        "security-token",
        "no-policy",
    ],
)
async def test_a_tampered_policy_or_signature_is_refused(
    gw: RunningGateway,
    bucket: Bucket,
    tamper: Callable[[dict[str, str]], dict[str, str]],
    reason: str,
) -> None:
    path, fields = presign_post(gw)
    await refused(gw, path, tamper(fields), 403, reason, filename="tampered.png")
    assert await bucket.head("uploads/tampered.png") is None


@pytest.mark.parametrize(
    ("tamper", "condition"),
    [
        (lambda f: {**f, "key": "elsewhere/${filename}"}, '["starts-with", "$key", "uploads/"]'),
        (lambda f: {**f, "Content-Type": "text/html"}, '{"Content-Type": "image/png"}'),
        (lambda f: {**f, "x-amz-date": another_second(f["x-amz-date"])}, '{"x-amz-date": '),
        (lambda f: {**f, "success_action_status": "201"}, "Extra input fields"),
        (lambda f: {**f, "x-ignore-note": "hi", "redirect": "https://x"}, "Extra input fields"),
    ],
    ids=["key-outside-starts-with", "content-type", "date", "uncovered-field", "uncovered-2"],
)
async def test_a_field_the_policy_does_not_allow_is_refused(
    gw: RunningGateway,
    bucket: Bucket,
    tamper: Callable[[dict[str, str]], dict[str, str]],
    condition: str,
) -> None:
    path, fields = presign_post(gw)
    reply = await refused(gw, path, tamper(fields), 403, "policy_condition_failed")
    assert condition in reply["detail"]
    assert await bucket.pending_uploads() == []


@pytest.mark.parametrize(
    ("filename", "status"), [("photo-1.png", 204), ("other.png", 403)], ids=["holds", "fails"]
)
async def test_the_key_conditions_judge_the_key_with_the_filename_in_it(
    gw: RunningGateway, filename: str, status: int
) -> None:
    """`${filename}` is replaced before the conditions are checked: they judge what is
    written (this one cannot hold for the key field as sent, `uploads/${filename}`)."""
    path, fields = presign_post(
        gw, conditions=[*CONDITIONS, ["starts-with", "$key", "uploads/photo"]]
    )

    answered, _, _ = await post(gw, path, form(fields, filename=filename))

    assert answered == status


async def test_a_filename_that_would_leave_the_prefix_is_an_invalid_path(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)
    status, _, body = await post(gw, path, form(fields, filename="../../escape.png"))
    assert (status, json.loads(body)["error"]) == (400, "invalid_path")
    assert await bucket.pending_uploads() == []


async def test_a_file_above_content_length_range_is_413_and_nothing_is_stored(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)
    await refused(gw, path, fields, 413, "too_large", data=bytes(MIB + 1), filename="big.png")
    assert await bucket.head("uploads/big.png") is None
    assert await bucket.pending_uploads() == []


async def test_an_empty_file_below_content_length_range_is_400_too_small(
    gw: RunningGateway, bucket: Bucket
) -> None:
    path, fields = presign_post(gw)
    await refused(gw, path, fields, 400, "too_small", data=b"", filename="empty.png")
    assert await bucket.head("uploads/empty.png") is None


@pytest.fixture
def signed_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Make botocore sign at another time (its clock, not the gateway's)."""

    def shift(offset: timedelta) -> None:
        moment = datetime.now(UTC) + offset
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)
        monkeypatch.setattr("botocore.signers.get_current_datetime", lambda: moment)

    return shift


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(timedelta(hours=-2), "expired"), (timedelta(minutes=10), "not_yet_valid")],
    ids=["expired", "dated-in-the-future"],
)
async def test_a_policy_outside_its_time_is_refused(
    gw: RunningGateway, signed_at: Callable[[timedelta], None], offset: timedelta, reason: str
) -> None:
    signed_at(offset)
    path, fields = presign_post(gw, expires_in=3600)
    await refused(gw, path, fields, 403, reason)


async def test_a_policy_for_another_bucket_is_refused(gw: RunningGateway) -> None:
    path, fields = presign_post(gw, bucket="other-bucket")
    assert path == "/other-bucket"
    await refused(gw, path, fields, 403, "wrong_bucket")


@pytest.mark.parametrize(
    ("key_id", "secret_key", "reason"),
    [
        ("GWLINKSOLD", OLD_SECRET, "retired_key"),
        ("edge-1", None, "unknown_key"),
        (LINK_ID, "not-the-link-secret-at-all-not-the-link-secret", "bad_signature"),
    ],
    ids=["retired", "our-token-key", "wrong-secret"],
)
async def test_a_policy_signed_with_another_key_is_refused(
    gw: RunningGateway, key_id: str, secret_key: str | None, reason: str
) -> None:
    path, fields = presign_post(gw, key_id=key_id, secret_key=secret_key)
    await refused(gw, path, fields, 403, reason)


async def test_a_sigv2_policy_is_malformed(gw: RunningGateway) -> None:
    path, fields = presign_post(gw, version=None)
    assert "signature" in fields
    await refused(gw, path, fields, 403, "malformed_token")


async def test_the_policy_lifetime_is_bounded_by_max_link_lifetime(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(max_link_lifetime="600") as gw:
        path, fields = presign_post(gw, expires_in=3600)
        await refused(gw, path, fields, 403, "lifetime_exceeded")


def policy_digest(fields: dict[str, str]) -> str:
    return token_id(bytes.fromhex(fields["x-amz-signature"]))


@pytest.mark.parametrize(
    ("revocation", "other"),
    [
        (lambda fields: {"digest": policy_digest(fields)}, "uploads/${filename}"),
        (lambda fields: {"key_id": LINK_ID}, None),
        (lambda fields: {"prefix": "/uploads/"}, "public/${filename}"),
    ],
    ids=["by-digest", "by-key", "by-prefix"],
)
async def test_a_revoked_policy_is_refused(
    gw: RunningGateway,
    bucket: Bucket,
    revocation: Callable[[dict[str, str]], dict[str, str]],
    other: str | None,
) -> None:
    path, fields = presign_post(gw)
    await gw.revoke(revocation(fields))
    await refused(gw, path, fields, 403, "revoked", filename="revoked.png")
    assert await bucket.head("uploads/revoked.png") is None
    if other is not None:  # another policy (the same prefix, or outside it) still works
        conditions = [["starts-with", "$key", other.partition("$")[0]], CONDITIONS[2]]
        path, fields = presign_post(gw, other, conditions=conditions, expires_in=601)
        status, _, _ = await post(gw, path, form(fields))
        assert status == 204


# --- the form itself: read bounded, as multipart/form-data -----------------------------------


async def test_a_body_that_is_not_multipart_form_data_is_400(gw: RunningGateway) -> None:
    path, _ = presign_post(gw)
    status, _, body = await post(
        gw, path, b"key=a", **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (status, json.loads(body)["error"]) == (400, "invalid_form")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({f"x-ignore-{n}": "v" for n in range(80)}, "form_fields_too_large"),
        ({"x-ignore-big": "v" * (21 * KIB)}, "form_fields_too_large"),
        ({"acl": "public-read"}, "invalid_form"),
        ({"x-amz-meta-owner": "me"}, "invalid_form"),
    ],
    ids=["too-many-fields", "too-many-bytes", "acl", "metadata"],
)
async def test_fields_past_the_bounds_or_not_honoured_are_400(
    gw: RunningGateway, extra: dict[str, str], reason: str
) -> None:
    path, fields = presign_post(gw)
    await refused(gw, path, {**extra, **fields}, 400, reason)


def raw_form(fields: dict[str, str], *parts: bytes) -> bytes:
    """A multipart/form-data body written by hand: the fields, then `parts` as they are."""
    lines = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return "".join(lines).encode() + b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


BOUNDARY = "form-boundary-7MA4YWxk"
NOT_UTF8 = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="x-ignore-a"\r\n\r\n'.encode()
    + b"\xff\r\n"
)
FILE_PART = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="raw.png"\r\n'
    "\r\nPNG bytes\r\n"
).encode()


@pytest.mark.parametrize(
    ("parts", "headers", "status", "reason"),
    [
        (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="KEY"\r\n\r\nx\r\n'.encode(),
                FILE_PART,
            ),
            {},
            400,
            "invalid_form",
        ),
        (
            (NOT_UTF8, FILE_PART),
            {},
            400,
            "invalid_form",
        ),
        (
            (FILE_PART.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: base64\r\n\r\n", 1),),
            {},
            415,
            "unsupported_content_encoding",
        ),
        ((FILE_PART,), {"Content-Encoding": "gzip"}, 415, "unsupported_content_encoding"),
        ((FILE_PART[: -len("\r\n")],), {}, 400, "invalid_form"),
    ],
    ids=["field-repeated", "not-utf-8", "transfer-encoded-part", "content-encoded", "cut-short"],
)
async def test_a_form_the_gateway_cannot_read_as_sent_is_refused(
    gw: RunningGateway,
    bucket: Bucket,
    parts: tuple[bytes, ...],
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    path, fields = presign_post(gw)
    body = raw_form(fields, *parts)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    answered, _, reply = await post(gw, path, body, **{"Content-Type": content_type, **headers})
    assert (answered, json.loads(reply)["error"]) == (status, reason)
    assert await bucket.head("uploads/raw.png") is None


async def test_a_form_without_a_file_is_400(gw: RunningGateway) -> None:
    path, fields = presign_post(gw)
    body = aiohttp.FormData()
    for name, value in fields.items():
        body.add_field(name, value)
    body.add_field("x-ignore-no-file", "here")
    status, _, reply = await post(gw, path, body)
    assert (status, json.loads(reply)["error"]) == (400, "invalid_form")


async def test_a_post_elsewhere_than_the_bucket_is_405(gw: RunningGateway) -> None:
    path, fields = presign_post(gw)
    status, _, _ = await post(gw, f"{path}/uploads/x.png", form(fields))
    assert status == 405


# --- logs --------------------------------------------------------------------------------------


async def test_the_access_log_names_the_key_and_token_id_and_never_the_policy(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    async with make_gateway(access_log="true", log_level="DEBUG") as gw:
        path, fields = presign_post(gw)
        statuses = [
            (await post(gw, path, form(fields)))[0],
            (await post(gw, path, form({**fields, "policy": b64_flip(fields["policy"])})))[0],
        ]
    assert statuses == [204, 403]
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["reason"]) for line in lines] == [
        ("sigv4-post", "ok"),
        ("sigv4-post", "bad_signature"),
    ]
    assert (lines[0]["key_id"], lines[0]["token_id"]) == (LINK_ID, policy_digest(fields))
    assert lines[0]["received"] == len(PHOTO)
    assert fields["x-amz-signature"] not in logged
    assert fields["policy"] not in logged
    assert secret(LINK) not in logged


# --- streamed, never held: a file past the range is cut mid-stream ---------------------------

PART = 5 * MIB  # the smallest upload_part_size S3 allows


async def counted(total: int, sent: list[int]) -> AsyncIterator[bytes]:
    """`total` bytes (sent chunked), counting what the client handed over so far."""
    block = bytes(range(256)) * (MIB // 256)
    for _ in range(total // MIB):
        sent[0] += MIB
        yield block


async def test_a_file_past_the_range_is_cut_mid_stream_and_the_gateway_never_holds_it(
    tmp_path: Path,
    s3_server: S3Server,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`gateway serve` (its own process, so its memory is its own): a 96 MiB file against a
    32 MiB content-length-range is refused 413 before the client has sent it all; the parts
    streamed meanwhile are aborted; and the gateway's peak memory grew by less than the 32 MiB
    it read, so it never held them."""
    use_credentials(monkeypatch, s3_server)
    (tmp_path / "keys").mkdir()
    keyring = keyring_file(tmp_path / "keys", EDGE, LINK)
    served = serve(
        tmp_path,
        f"s3://{PRIVATE_BUCKET}/{PREFIX}",
        keyring=str(keyring),
        s3_endpoint_url=s3_server.endpoint_url,
        upload_part_size=str(PART),
        access_log="false",
    )
    try:
        signer = presigner(f"http://127.0.0.1:{served.port}")
        conditions = [["content-length-range", 1, 32 * MIB], ["starts-with", "$key", "big/"]]
        post = signer.generate_presigned_post(
            PRIVATE_BUCKET, "big/${filename}", Conditions=conditions, ExpiresIn=600
        )
        url = post["url"]
        async with aiohttp.ClientSession() as session:
            warm = aiohttp.FormData(post["fields"])
            warm.add_field("file", bytes(3 * PART), filename="warm-up.bin")
            async with session.post(url, data=warm) as response:  # every code path loaded
                assert response.status == 204, await response.text()
            before = high_water_mark(served.process.pid)

            sent = [0]
            big = aiohttp.FormData(post["fields"])
            big.add_field("file", counted(96 * MIB, sent), filename="big.bin")
            async with session.post(url, data=big) as response:
                assert (response.status, (await response.json())["error"]) == (413, "too_large")

            peak = high_water_mark(served.process.pid)
    finally:
        stop(served)
    with capsys.disabled():
        print(
            f"\n  POST of 96 MiB against a 32 MiB range: refused after the client sent "
            f"{sent[0] / MIB:.0f} MiB; gateway VmHWM +{(peak - before) / MIB:.1f} MiB"
        )
    assert sent[0] < 96 * MIB  # cut while the client was still sending
    assert await bucket.head("big/big.bin") is None
    assert await bucket.pending_uploads() == []
    assert peak - before < 4 * PART < 32 * MIB


async def test_a_form_upload_drops_the_cached_copy_of_its_key(
    make_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    newer = PHOTO[:8] + bytes(reversed(PHOTO[8:]))
    async with make_gateway(cache="true", cache_dir=str(tmp_path / "cache")) as gw:
        path, fields = presign_post(gw, key="uploads/cached.png")
        link = presign(gw, key="uploads/cached.png")
        assert (await post(gw, path, form(fields)))[0] == 204
        before = [await gw.request("GET", link) for _ in range(2)]  # a miss, then a hit
        assert (await post(gw, path, form(fields, data=newer)))[0] == 204
        after = await gw.request("GET", link)
        states = {
            state: gw.metric("gateway_cache_requests_total", state=state)
            for state in ("miss", "hit")
        }
    assert [(r.status, body) for r, body in before] == [(200, PHOTO)] * 2
    assert (after[0].status, after[1]) == (200, newer)
    assert states == {"miss": 2, "hit": 1}
