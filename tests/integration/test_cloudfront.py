"""CloudFront signed URLs and cookies through a live gateway in front of SeaweedFS, signed by
botocore's own `CloudFrontSigner` (its policies, its base64, its URLs) with an RSA key.

botocore signs with whatever function it is given and knows nothing of `Hash-Algorithm`: the
SHA-256 links here are botocore's policy and URL signed with SHA-256 by `cryptography`, with
`&Hash-Algorithm=SHA256` (or the cookie) added as CloudFront's documentation says.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.observability.access_log import configure
from signer import Algorithm, Key, Keyring, Status, new_key, sign_path, token_id
from signer.keys import cloudfront_key
from signer.schemes.cloudfront import WORDS
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import RunningGateway, link_gateway, store_objects
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PREFIX = "cloudfront/"
ORIGIN = f"s3://{PRIVATE_BUCKET}/{PREFIX}"
HELLO = b"hello through CloudFront's links\n"
OBJECTS = {
    "docs/hello.txt": HELLO,
    "docs/other.txt": b"another object\n",
    "docs/a b.txt": b"space\n",
    "public/open.txt": b"outside the docs prefix\n",
}
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def der(private: rsa.RSAPrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


CF_KEY = cloudfront_key(KEY_PAIR_ID, der(PRIVATE))
OLD_KEY = cloudfront_key("KOLDRETIRED01", der(OTHER_PRIVATE))
EDGE = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)
ADMIN_TOKEN = "cloudfront-admin-bearer"
HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256}


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> None:
    store_objects(s3_server, PRIVATE_BUCKET, {PREFIX + key: body for key, body in OBJECTS.items()})


@pytest.fixture
def make_gateway(
    s3_server: S3Server, stored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    def make(*keys: Key, **extra: str) -> Any:
        ring = Keyring(keys or (EDGE, CF_KEY, OLD_KEY))
        if OLD_KEY in ring:
            ring = ring.retired(OLD_KEY.id)
        extra.setdefault("admin_token", ADMIN_TOKEN)
        return link_gateway(monkeypatch, s3_server, tmp_path, ring, ORIGIN, **extra)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[RunningGateway]:
    async with make_gateway() as running:
        yield running


def cf_signer(
    private: rsa.RSAPrivateKey = PRIVATE, key_id: str = KEY_PAIR_ID, hash_name: str = "SHA1"
) -> Any:
    """A backend's CloudFront signer: botocore's, with an RSA signing function."""

    def sign(message: bytes) -> bytes:
        return private.sign(message, padding.PKCS1v15(), HASHES[hash_name]())

    return CloudFrontSigner(key_id, sign)


def origin(gw: RunningGateway) -> str:
    return f"http://127.0.0.1:{gw.server.port}"


def target(url: str) -> str:
    """The request target of an absolute URL, byte for byte."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def soon(seconds: int = 600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def canned(
    gw: RunningGateway, path: str = "/docs/hello.txt", *, expires_in: int = 600, **kw: Any
) -> str:
    url: str = cf_signer(**kw).generate_presigned_url(
        origin(gw) + path, date_less_than=soon(expires_in)
    )
    return target(url)


def custom(
    gw: RunningGateway,
    path: str = "/docs/hello.txt",
    resource: str | None = None,
    *,
    expires_in: int = 600,
    starts: datetime | None = None,
    ip: str | None = None,
    **kw: Any,
) -> str:
    signer = cf_signer(**kw)
    policy = signer.build_policy(
        resource or origin(gw) + path, soon(expires_in), date_greater_than=starts, ip_address=ip
    )
    url: str = signer.generate_presigned_url(origin(gw) + path, policy=policy)
    return target(url)


def cookie_header(
    policy: str, signer: Any, *, expires: int | None = None, hash_name: str | None = None
) -> str:
    """The cookies CloudFront documents, from a policy botocore built: its signature, the
    key-pair id, and the policy itself (custom) or, for a canned policy, its `Expires`."""
    encode = signer._url_b64encode  # botocore's CloudFront base64
    first = (
        f"CloudFront-Policy={encode(policy.encode()).decode()}"
        if expires is None
        else f"CloudFront-Expires={expires}"
    )
    pairs = [
        first,
        f"CloudFront-Signature={encode(signer.rsa_signer(policy.encode())).decode()}",
        f"CloudFront-Key-Pair-Id={signer.key_id}",
    ]
    if hash_name is not None:
        pairs.append(f"CloudFront-Hash-Algorithm={hash_name}")
    return "; ".join(pairs)


async def refused(
    gw: RunningGateway,
    method: str,
    link: str,
    reason: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Refused with `reason`, in CloudFront's words, counted once under cloudfront."""
    response, body = await gw.request(method, link, headers)
    assert (response.status, json.loads(body)) == (403, {"error": reason, "detail": WORDS[reason]})
    assert gw.metric("gateway_links_total", scheme="cloudfront", reason=reason) == 1
    assert gw.metric("gateway_requests_total", method=method, status="403", reason=reason) == 1


# --- what a backend signs works unchanged ----------------------------------------------------


async def test_a_canned_url_streams_the_object(gw: RunningGateway) -> None:
    response, body = await gw.request("GET", canned(gw))
    assert (response.status, body) == (200, HELLO)
    assert gw.metric("gateway_links_total", scheme="cloudfront", reason="ok") == 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("make", [canned, custom], ids=["canned", "custom"])
async def test_a_link_allows_get_and_head(
    gw: RunningGateway, make: Callable[..., str], method: str
) -> None:
    response, body = await gw.request(method, make(gw), {"Range": "bytes=0-4"})
    assert response.status == 206
    assert body == (HELLO[:5] if method == "GET" else b"")


async def test_an_encoded_key_is_the_one_signed(gw: RunningGateway) -> None:
    response, body = await gw.request("GET", canned(gw, "/docs/a%20b.txt"))
    assert (response.status, body) == (200, b"space\n")


@pytest.mark.parametrize(
    ("path", "content"),
    [("/docs/hello.txt", HELLO), ("/docs/other.txt", b"another object\n")],
)
async def test_a_wildcard_resource_covers_every_path_under_its_prefix(
    gw: RunningGateway, path: str, content: bytes
) -> None:
    link = custom(gw, path, origin(gw) + "/docs/*")
    response, body = await gw.request("GET", link)
    assert (response.status, body) == (200, content)


async def test_http_star_covers_either_scheme(gw: RunningGateway) -> None:
    resource = f"http*://127.0.0.1:{gw.server.port}/docs/*"
    response, body = await gw.request("GET", custom(gw, resource=resource))
    assert (response.status, body) == (200, HELLO)


async def test_date_greater_than_and_ip_address_are_honoured(gw: RunningGateway) -> None:
    link = custom(gw, starts=datetime.now(UTC) - timedelta(minutes=1), ip="127.0.0.1")
    response, body = await gw.request("GET", link)
    assert (response.status, body) == (200, HELLO)


@pytest.mark.parametrize("make", [canned, custom], ids=["canned", "custom"])
async def test_the_sha256_variant_is_verified_with_sha256(
    gw: RunningGateway, make: Callable[..., str]
) -> None:
    link = make(gw, hash_name="SHA256")
    response, body = await gw.request("GET", link + "&Hash-Algorithm=SHA256")
    assert (response.status, body) == (200, HELLO)


async def test_a_sha256_signature_without_hash_algorithm_is_a_bad_signature(
    gw: RunningGateway,
) -> None:
    await refused(gw, "GET", canned(gw, hash_name="SHA256"), "bad_signature")


# --- cookies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs/hello.txt", "/docs/a%20b.txt"])
async def test_cookies_from_a_wildcard_policy_cover_many_paths(
    gw: RunningGateway, path: str
) -> None:
    signer = cf_signer()
    policy = signer.build_policy(origin(gw) + "/docs/*", soon())
    response, body = await gw.request("GET", path, {"Cookie": cookie_header(policy, signer)})
    assert response.status == 200
    assert body == OBJECTS[path.replace("%20", " ")[1:]]
    assert gw.metric("gateway_links_total", scheme="cloudfront", reason="ok") == 1


async def test_a_cookie_policy_does_not_reach_outside_its_prefix(gw: RunningGateway) -> None:
    signer = cf_signer()
    policy = signer.build_policy(origin(gw) + "/docs/*", soon())
    cookies = {"Cookie": cookie_header(policy, signer)}
    await refused(gw, "GET", "/public/open.txt", "outside_prefix", cookies)


async def test_canned_cookies_cover_the_one_url_they_name(gw: RunningGateway) -> None:
    signer = cf_signer()
    expiry = soon()
    canned_policy = signer.build_policy(origin(gw) + "/docs/hello.txt", expiry)
    header = cookie_header(canned_policy, signer, expires=int(expiry.timestamp()))
    response, body = await gw.request("GET", "/docs/hello.txt", {"Cookie": header})
    assert (response.status, body) == (200, HELLO)
    await refused(gw, "GET", "/docs/other.txt", "bad_signature", {"Cookie": header})


async def test_sha256_cookies_name_their_hash(gw: RunningGateway) -> None:
    signer = cf_signer(hash_name="SHA256")
    policy = signer.build_policy(origin(gw) + "/docs/*", soon())
    header = cookie_header(policy, signer, hash_name="SHA256")
    response, _ = await gw.request("GET", "/docs/hello.txt", {"Cookie": header})
    assert response.status == 200


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (
            lambda h: h.replace("CloudFront-Key-Pair-Id=", "CloudFront-Key-Pair-Id=KNOPE"),
            "unknown_key",
        ),
        (lambda h: re.sub(r"; CloudFront-Key-Pair-Id=\w+", "", h), "malformed_token"),
        (lambda h: h + "; CloudFront-Signature=AAAA", "malformed_token"),
        (lambda h: h + "; CloudFront-Expires=2000000000", "malformed_token"),
        (lambda h: h.replace("CloudFront-Signature=", "CloudFront-Signature=A"), "malformed_token"),
    ],
    ids=["unknown-key", "no-key-pair-id", "signature-twice", "expires-and-policy", "signature"],
)
async def test_a_broken_cookie_trio_is_refused(
    gw: RunningGateway, mangle: Callable[[str], str], reason: str
) -> None:
    signer = cf_signer()
    policy = signer.build_policy(origin(gw) + "/docs/*", soon())
    header = mangle(cookie_header(policy, signer))
    await refused(gw, "GET", "/docs/hello.txt", reason, {"Cookie": header})


# --- every field tampered, and every way a link can be wrong -----------------------------------


def swap(pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> Callable[[str], str]:
    def tamper(link: str) -> str:
        changed, count = re.subn(pattern, replacement, link, count=1)
        assert count == 1, (pattern, link)
        return changed

    return tamper


def flip_signature(link: str) -> str:
    """One character of the signature's middle changed: still CloudFront base64."""

    def flip(match: re.Match[str]) -> str:
        value = match[1]
        middle = len(value) // 2
        return "Signature=" + value[:middle] + "AB"[value[middle] == "A"] + value[middle + 1 :]

    return re.sub(r"Signature=([A-Za-z0-9~_-]+)", flip, link)


def repolicy(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    """Decode the Policy, change it, encode it again (the signature stays the old one's)."""

    def tamper(link: str) -> str:
        def edit(match: re.Match[str]) -> str:
            raw = match[1].translate(str.maketrans("-~_", "+/="))
            policy = json.loads(base64.b64decode(raw))
            change(policy)
            text = json.dumps(policy, separators=(",", ":")).encode()
            return "Policy=" + base64.b64encode(text).decode().translate(
                str.maketrans("+/=", "-~_")
            )

        return re.sub(r"Policy=([A-Za-z0-9~_-]+)", edit, link)

    return tamper


def later(policy: dict[str, Any]) -> None:
    policy["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"] += 1


def widened(policy: dict[str, Any]) -> None:
    resource = policy["Statement"][0]["Resource"]
    policy["Statement"][0]["Resource"] = resource.rpartition("/")[0] + "/*"


def extra_field(policy: dict[str, Any]) -> None:
    policy["Statement"][0]["Condition"]["StringLike"] = {"AWS:Referer": "x"}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (swap(r"Expires=(\d+)", lambda m: f"Expires={int(m[1]) + 1}"), "bad_signature"),
        (flip_signature, "bad_signature"),
        (swap("Signature=", "Signature=AAAA"), "malformed_token"),
        (swap(r"(Signature=[^&]*)_", r"\1="), "malformed_token"),
        (swap(f"Key-Pair-Id={KEY_PAIR_ID}", "Key-Pair-Id=KUNKNOWN0001"), "unknown_key"),
        (swap("Key-Pair-Id=", "key-pair-id="), "malformed_token"),
        (lambda link: link + "&Hash-Algorithm=SHA256", "bad_signature"),
        (lambda link: link + "&Hash-Algorithm=MD5", "malformed_token"),
        (lambda link: link + "&x=1", "malformed_token"),
        (lambda link: link + "&Expires=1", "malformed_token"),
        (lambda link: link + "&Policy=e30_", "malformed_token"),
        (swap("hello.txt", "other.txt"), "bad_signature"),
    ],
    ids=[
        "expires",
        "signature",
        "signature-longer",
        "signature-standard-padding",
        "key-pair-id",
        "key-pair-id-spelling",
        "hash-algorithm-added",
        "hash-algorithm-unknown",
        "parameter-added",
        "expires-repeated",
        "policy-and-expires",
        "path",
    ],
)
async def test_a_tampered_canned_link_is_refused_with_its_reason(
    gw: RunningGateway, tamper: Callable[[str], str], reason: str
) -> None:
    await refused(gw, "GET", tamper(canned(gw)), reason)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (repolicy(later), "bad_signature"),
        (repolicy(widened), "bad_signature"),
        (repolicy(extra_field), "malformed_token"),
        (swap(r"Policy=[A-Za-z0-9]", "Policy=%"), "malformed_token"),
        (flip_signature, "bad_signature"),
        (swap("hello.txt", "other.txt"), "bad_signature"),
    ],
    ids=["expiry", "resource", "unknown-condition", "policy-not-base64", "signature", "path"],
)
async def test_a_tampered_custom_link_is_refused_with_its_reason(
    gw: RunningGateway, tamper: Callable[[str], str], reason: str
) -> None:
    await refused(gw, "GET", tamper(custom(gw)), reason)


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ("/docs/hello*", "malformed_token"),
        ("/docs/*.txt", "malformed_token"),
        ("/docs/hell?.txt", "malformed_token"),
        ("/*/hello.txt", "malformed_token"),
    ],
    ids=["mid-segment-star", "inner-star", "question-mark", "leading-star"],
)
async def test_a_wildcard_that_is_no_prefix_is_refused(
    gw: RunningGateway, resource: str, reason: str
) -> None:
    await refused(gw, "GET", custom(gw, resource=origin(gw) + resource), reason)


@pytest.mark.parametrize(
    ("path", "spelled"),
    [
        ("/docs/hello.txt", "/docs/%68ello.txt"),
        ("/docs/%C3%A4.txt", "/docs/%c3%a4.txt"),
        ("/docs/a%2Bb.txt", "/docs/a+b.txt"),
        ("/docs/hello.txt", "/docs/x/../hello.txt"),
        ("/docs/hello.txt", "/docs%2Fhello.txt"),
    ],
    ids=["escaped-letter", "lower-case-escape", "raw-plus", "dot-dot", "escaped-slash"],
)
async def test_a_path_spelled_another_way_is_malformed_even_under_a_wildcard(
    gw: RunningGateway, path: str, spelled: str
) -> None:
    """One spelling per path: the wildcard covers paths, not their other encodings."""
    link = custom(gw, path, origin(gw) + "/docs/*")
    await refused(gw, "GET", link.replace(path, spelled, 1), "malformed_token")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda gw: canned(gw, expires_in=-3600), "expired"),
        (lambda gw: custom(gw, expires_in=-60), "expired"),
        (lambda gw: custom(gw, starts=soon(600), expires_in=3600), "not_yet_valid"),
        (lambda gw: custom(gw, ip="203.0.113.0/24"), "ip_mismatch"),
    ],
    ids=["canned-expired", "custom-expired-past-the-skew", "not-yet-valid", "ip-address"],
)
async def test_a_link_outside_its_conditions_is_refused(
    gw: RunningGateway, make: Callable[[RunningGateway], str], reason: str
) -> None:
    await refused(gw, "GET", make(gw), reason)


async def test_a_start_within_the_skew_is_accepted(gw: RunningGateway) -> None:
    response, _ = await gw.request("GET", custom(gw, starts=soon(10)))
    assert response.status == 200


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"key_id": "KNOSUCHKEY01"}, "unknown_key"),
        ({"key_id": "edge-1"}, "unknown_key"),
        ({"key_id": "KOLDRETIRED01", "private": OTHER_PRIVATE}, "retired_key"),
        ({"private": OTHER_PRIVATE}, "bad_signature"),
    ],
    ids=["unknown", "our-token-key", "retired", "another-private-key"],
)
async def test_a_link_signed_with_another_key_is_refused(
    gw: RunningGateway, kw: dict[str, Any], reason: str
) -> None:
    await refused(gw, "GET", canned(gw, **kw), reason)


@pytest.mark.parametrize("make", [canned, custom], ids=["canned", "custom"])
async def test_a_link_for_another_host_is_refused(
    gw: RunningGateway, make: Callable[..., str]
) -> None:
    link = make(gw)
    await refused(gw, "GET", link, "bad_signature", {"Host": "media.example.com"})


@pytest.mark.parametrize(
    ("trusted", "status"), [("127.0.0.1", 200), ("", 403)], ids=["trusted", "untrusted"]
)
async def test_behind_a_trusted_proxy_the_forwarded_host_is_the_resources(
    make_gateway: Callable[..., Any], trusted: str, status: int
) -> None:
    async with make_gateway(trusted_proxies=trusted) as gw:
        signer = cf_signer()
        url = "https://media.example.com/docs/hello.txt"
        link = target(signer.generate_presigned_url(url, date_less_than=soon()))
        headers = {"X-Forwarded-Host": "media.example.com", "X-Forwarded-For": "203.0.113.9"}
        response, _ = await gw.request("GET", link, headers)
        assert response.status == status


async def test_a_put_is_wrong_method(gw: RunningGateway) -> None:
    async with gw.session.put(gw.url(canned(gw)), data=b"x") as response:
        assert (response.status, await response.json()) == (
            403,
            {"error": "wrong_method", "detail": WORDS["wrong_method"]},
        )
    assert gw.metric("gateway_links_total", scheme="cloudfront", reason="wrong_method") == 1


async def test_our_token_beside_a_cloudfront_link_is_ambiguous(gw: RunningGateway) -> None:
    ours = sign_path("/docs/hello.txt", Keyring([EDGE]), expires_in=600).partition("?")[2]
    response, body = await gw.request("GET", f"{canned(gw)}&{ours}")
    assert (response.status, json.loads(body)) == (403, {"error": "ambiguous_link"})


async def test_without_a_cloudfront_key_the_scheme_is_off(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(EDGE) as gw:
        await refused(gw, "GET", canned(gw), "unknown_key")


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda gw: canned(gw, expires_in=500), 200),
        (lambda gw: canned(gw, expires_in=700), 403),
        (lambda gw: custom(gw, starts=datetime.now(UTC), expires_in=550), 200),
        (lambda gw: custom(gw, starts=soon(-3600), expires_in=60), 403),
    ],
    ids=["canned-within", "canned-beyond", "custom-within", "custom-beyond"],
)
async def test_max_link_lifetime_bounds_the_lifetime_or_how_far_away_the_expiry_is(
    make_gateway: Callable[..., Any], make: Callable[[RunningGateway], str], status: int
) -> None:
    """With DateGreaterThan the lifetime is DateLessThan - DateGreaterThan; without, the link
    states no issue time and DateLessThan may be at most max_link_lifetime away."""
    async with make_gateway(max_link_lifetime="600") as gw:
        response, body = await gw.request("GET", make(gw))
        assert response.status == status
        if status == 403:
            assert json.loads(body)["error"] == "lifetime_exceeded"


# --- revocation: the same list as our tokens -------------------------------------------------


def digest(link: str) -> str:
    value = re.search(r"Signature=([^&]+)", link)
    assert value is not None
    return token_id(base64.b64decode(value[1].translate(str.maketrans("-~_", "+/="))))


@pytest.mark.parametrize(
    ("revocation", "untouched"),
    [
        (lambda link: {"url": f"http://127.0.0.1{link}"}, "/docs/hello.txt"),
        (lambda link: {"digest": digest(link)}, "/docs/hello.txt"),
        (lambda link: {"key_id": KEY_PAIR_ID}, None),
        (lambda link: {"prefix": "/docs/"}, "/public/open.txt"),
    ],
    ids=["by-link", "by-digest", "by-key", "by-prefix"],
)
async def test_a_revoked_cloudfront_link_is_refused(
    gw: RunningGateway, revocation: Callable[[str], dict[str, str]], untouched: str | None
) -> None:
    link = custom(gw, starts=soon(-60))
    response, _ = await gw.request("GET", link)
    assert response.status == 200
    await gw.revoke(revocation(link))
    await refused(gw, "GET", link, "revoked")
    if untouched is not None:
        response, _ = await gw.request("GET", canned(gw, untouched, expires_in=601))
        assert response.status == 200


@pytest.mark.parametrize(
    ("before", "status"), [(600, 403), (601, 200)], ids=["revoked", "issued-after-it"]
)
async def test_a_link_without_an_issue_time_counts_as_issued_a_lifetime_before_its_expiry(
    make_gateway: Callable[..., Any], before: int, status: int
) -> None:
    """Without DateGreaterThan a link is taken as issued max_link_lifetime before it expires:
    a key revocation at T covers every link valid at T, and spares those signed after it."""
    async with make_gateway(max_link_lifetime="600") as gw:
        expires = int(datetime.now(UTC).timestamp()) + 500
        url = cf_signer().generate_presigned_url(
            origin(gw) + "/docs/hello.txt", date_less_than=datetime.fromtimestamp(expires, UTC)
        )
        await gw.revoke({"key_id": KEY_PAIR_ID, "before": expires - before})
        response, body = await gw.request("GET", target(url))
        assert response.status == status
        if status == 403:
            assert json.loads(body)["error"] == "revoked"


# --- logs ---------------------------------------------------------------------------------------


async def test_the_access_log_names_the_scheme_and_never_the_signature_or_cookies(
    make_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    async with make_gateway(access_log="true", log_level="DEBUG") as gw:
        signer = cf_signer()
        policy = signer.build_policy(origin(gw) + "/docs/*", soon())
        cookies = cookie_header(policy, signer)
        links = [canned(gw), flip_signature(custom(gw))]
        statuses = [(await gw.request("GET", link))[0].status for link in links]
        response, _ = await gw.request("GET", "/docs/other.txt", {"Cookie": cookies})
        statuses.append(response.status)
    assert statuses == [200, 403, 200]
    logged = caplog.text + "\n".join(capsys.readouterr())
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith('{"ts"')]
    assert [(line["scheme"], line["reason"]) for line in lines] == [
        ("cloudfront", "ok"),
        ("cloudfront", "bad_signature"),
        ("cloudfront", "ok"),
    ]
    assert (lines[0]["key_id"], lines[0]["token_id"]) == (KEY_PAIR_ID, digest(links[0]))
    for link in links:
        assert link.partition("?")[2] not in logged
        for value in re.findall(r"(?:Signature|Policy)=([^&]+)", link):
            assert value not in logged
    for pair in cookies.split("; "):
        name, _, value = pair.partition("=")
        if name != "CloudFront-Key-Pair-Id":  # the key id is logged, as for every scheme
            assert value not in logged


async def test_a_wildcard_url_hands_out_no_edge_token_cookie(
    make_gateway: Callable[..., Any],
) -> None:
    """`token_cookie` turns our Prefix tokens into cookies; a CloudFront link's cookies are
    CloudFront's to set, so its wildcard URL is served without one."""
    async with make_gateway(token_cookie="true") as gw:
        response, body = await gw.request("GET", custom(gw, resource=origin(gw) + "/docs/*"))
        assert (response.status, body) == (200, HELLO)
        assert "Set-Cookie" not in response.headers
