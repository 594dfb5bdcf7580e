"""Verification cost per request: the full `verify` (parse + key lookup + signature + claims)
next to its baseline, the bare cryptographic primitive on the same bytes.

    python -m benchmarks.verify_cost [--seconds 1.0]

Prints microseconds per call and the ratio full/primitive, for HMAC-SHA256 and Ed25519, on a
plain link and on a link carrying every optional binding; and for S3 presigned URLs (scheme
sigv4, presigned by botocore here, verified by `signer.schemes.sigv4_query`), whose primitive is
the SHA-256 of the canonical request and the HMAC of the string to sign; for nginx
`secure_link` links (`signer.schemes.secure_link`), whose primitive is the MD5 of the
expression's text and the comparison; for Akamai EdgeAuth 2.0 tokens (scheme akamai, made
by `akamai-edgeauth` here, verified by `signer.schemes.akamai`, parsing included), whose
primitive is the HMAC of the token's fields; and for CloudFront signed URLs (scheme cloudfront,
canned and custom, signed by botocore's CloudFrontSigner here, verified by
`signer.schemes.cloudfront`), whose primitive is the RSA-2048 PKCS #1 v1.5 check.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signer import Algorithm, Key, Keyring, Status, new_key, sign_path, verify
from signer.format import b64encode, parse_link
from signer.keys import LinkScheme, secure_link_key
from signer.schemes import LinkRequest, akamai, cloudfront, secure_link, sigv4_query


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: best of 5 timed batches sized to `seconds` in total."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start > seconds / 20:
            break
        batch *= 2
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - start) / batch)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per row")
    args = parser.parse_args()
    now = time.time()
    print(f"{'case':34} {'verify µs':>10} {'parse µs':>9} {'primitive µs':>13} {'ratio':>6}")
    for alg in Algorithm:
        key = new_key("bench", alg, Status.ACTIVE, now=now)
        keyring = Keyring([key])
        cases = {
            "plain": sign_path("/videos/2026/intro-1080p.mp4", keyring, expires_in=3600, now=now),
            "all bindings": sign_path(
                "/hls/ep1/720p/seg042.ts",
                keyring,
                expires_in=3600,
                now=now,
                starts_at=int(now) - 10,
                ip="203.0.113.0/24",
                prefix="/hls/ep1/",
                method="GET",
                sub="user-4711",
            ),
        }
        for label, target in cases.items():
            row = measure(keyring, key, target, now, args.seconds)
            name = f"{alg.value} / {label}"
            t_full, t_parse, t_prim = row
            print(f"{name:34} {t_full:10.2f} {t_parse:9.2f} {t_prim:13.2f} {t_full / t_prim:5.1f}x")
    for label, url in presigned_urls().items():
        t_full, t_parse, t_prim = measure_sigv4(url, args.seconds)
        name = f"sigv4 / {label}"
        print(f"{name:34} {t_full:10.2f} {t_parse:9.2f} {t_prim:13.2f} {t_full / t_prim:5.1f}x")
    for label, target in secure_links(now).items():
        t_full, t_parse, t_prim = measure_secure_link(target, now, args.seconds)
        name = f"secure_link / {label}"
        print(f"{name:34} {t_full:10.2f} {t_parse:9.2f} {t_prim:13.2f} {t_full / t_prim:5.1f}x")
    for label, request in akamai_requests(now).items():
        t_full, t_parse, t_prim = measure_akamai(request, now, args.seconds)
        name = f"akamai / {label}"
        print(f"{name:34} {t_full:10.2f} {t_parse:9.2f} {t_prim:13.2f} {t_full / t_prim:5.1f}x")
    for label, (url, keyring, public) in cloudfront_urls().items():
        t_full, t_parse, t_prim = measure_cloudfront(url, keyring, public, args.seconds)
        name = f"cloudfront / {label}"
        print(f"{name:34} {t_full:10.2f} {t_parse:9.2f} {t_prim:13.2f} {t_full / t_prim:5.1f}x")


SIGV4_KEY = new_key("GWLINKS01", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4)
SIGV4_KEYRING = Keyring([new_key("edge", Algorithm.ED25519, Status.ACTIVE), SIGV4_KEY])


def presigned_urls() -> dict[str, str]:
    """The links a backend's boto3 makes: a plain GET, and one with both response overrides."""
    import botocore.session
    from botocore.config import Config

    assert SIGV4_KEY.secret is not None
    client: Any = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://media.example.com",
        aws_access_key_id=SIGV4_KEY.id,
        aws_secret_access_key=b64encode(SIGV4_KEY.secret),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def presign(**params: str) -> str:
        url: str = client.generate_presigned_url(
            "get_object",
            Params={"Bucket": "media", "Key": "videos/2026/intro-1080p.mp4", **params},
            ExpiresIn=3600,
        )
        return url

    return {
        "presigned GET": presign(),
        "presigned GET + overrides": presign(
            ResponseContentType="video/mp4",
            ResponseContentDisposition='attachment; filename="intro.mp4"',
        ),
    }


AKAMAI_KEY = new_key("akamai-1", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI)
AKAMAI_KEYRING = Keyring([new_key("edge", Algorithm.ED25519, Status.ACTIVE), AKAMAI_KEY])


def akamai_requests(now: float) -> dict[str, LinkRequest]:
    """What a backend's EdgeAuth makes: a url token, and an acl token with ip and id."""
    from akamai.edgeauth import EdgeAuth

    assert AKAMAI_KEY.secret is not None
    path = "/videos/2026/intro-1080p.mp4"
    auth = EdgeAuth(key=AKAMAI_KEY.secret.hex(), start_time=int(now) - 10, end_time=int(now) + 600)
    url_token = auth.generate_url_token(path)
    auth.ip, auth.session_id = "203.0.113.7", "user-4711"
    acl_token = auth.generate_acl_token("/videos/*")
    client = ipaddress.ip_address("203.0.113.7")
    return {
        "url token": LinkRequest("GET", path, f"__token__={url_token}"),
        "acl + ip, id (cookie)": LinkRequest(
            "GET",
            path,
            "",
            header=lambda name: [f"hdnts={acl_token}"] if name == "Cookie" else [],
            client_ip=client,
        ),
    }


def measure_akamai(request: LinkRequest, now: float, seconds: float) -> tuple[float, float, float]:
    """(full verify, parse only, HMAC-SHA256) in microseconds per call."""
    token = akamai.parse_token(akamai.token_text(request))
    signed = akamai.string_to_sign(token, request.raw_path, escape_early=False).encode()
    assert AKAMAI_KEY.secret is not None
    secret = AKAMAI_KEY.secret

    def primitive() -> object:
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, token.hmac)

    def full() -> object:
        return akamai.verify(AKAMAI_KEYRING, request, now=now)

    def parse() -> object:
        return akamai.parse_token(akamai.token_text(request))

    assert full()
    return per_call(full, seconds), per_call(parse, seconds), per_call(primitive, seconds)


def measure_sigv4(url: str, seconds: float) -> tuple[float, float, float]:
    """(full verify, parse only, SHA-256 + HMAC) in microseconds per call."""
    parts = urlsplit(url)
    request = LinkRequest("GET", parts.path, parts.query, host=parts.netloc)
    link = sigv4_query.parse(parts.path, parts.query)
    now = float(link.issued)
    headers = sigv4_query.header_values(link, request)
    canonical = sigv4_query.canonical_request(link, "GET", headers).encode()
    assert SIGV4_KEY.secret is not None
    signing = sigv4_query.signing_key(b64encode(SIGV4_KEY.secret), link.date, link.region)
    prefix = f"AWS4-HMAC-SHA256\n{link.amz_date}\n{link.scope}\n".encode()

    def primitive() -> object:
        text = prefix + hashlib.sha256(canonical).hexdigest().encode()
        return hmac.compare_digest(hmac.digest(signing, text, hashlib.sha256).hex(), link.signature)

    def full() -> object:
        return sigv4_query.verify(SIGV4_KEYRING, request, now=now)

    def parse() -> object:
        return sigv4_query.parse(parts.path, parts.query)

    assert full()
    return per_call(full, seconds), per_call(parse, seconds), per_call(primitive, seconds)


SECURE_LINK_EXPRESSION = "$secure_link_expires$uri$remote_addr bench-secret-not-a-real-one"
SECURE_LINK_KEYRING = Keyring([secure_link_key("nginx-media", SECURE_LINK_EXPRESSION)])
CLIENT = ipaddress.ip_address("203.0.113.7")


def secure_links(now: float) -> dict[str, str]:
    """What a backend makes for nginx: a plain path, and one sent with %2F and `..` in it."""
    expires = int(now) + 3600
    text = f"{expires}/videos/2026/intro-1080p.mp4{CLIENT} bench-secret-not-a-real-one"
    digest = hashlib.md5(text.encode(), usedforsecurity=False).digest()
    md5 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = f"md5={md5}&expires={expires}"
    return {
        "plain": f"/videos/2026/intro-1080p.mp4?{query}",
        "path with %2F and ..": f"/videos%2F2026/x/../intro-1080p.mp4?{query}",
    }


def measure_secure_link(target: str, now: float, seconds: float) -> tuple[float, float, float]:
    """(full verify, parse only, MD5 + comparison) in microseconds per call."""
    raw_path, _, raw_query = target.partition("?")
    request = LinkRequest("GET", raw_path, raw_query, client_ip=CLIENT)
    link = secure_link.parse(raw_path, raw_query)
    text = f"{link.expires_text}{link.path}{CLIENT} bench-secret-not-a-real-one".encode()

    def primitive() -> object:
        digest = hashlib.md5(text, usedforsecurity=False).digest()
        return hmac.compare_digest(digest, link.md5)

    def full() -> object:
        return secure_link.verify(SECURE_LINK_KEYRING, request, now=now)

    def parse() -> object:
        return secure_link.parse(raw_path, raw_query)

    assert full()
    assert primitive()
    return per_call(full, seconds), per_call(parse, seconds), per_call(primitive, seconds)


def cloudfront_urls() -> dict[str, tuple[str, Keyring, Any]]:
    """A canned link, and a custom one with a wildcard, DateGreaterThan and IpAddress, as a
    backend's botocore signs them (RSA-2048, SHA-1)."""
    from botocore.signers import CloudFrontSigner
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from signer.keys import cloudfront_key

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keyring = Keyring([cloudfront_key("K2JCJMDEHXQW5F", der)])
    signer: Any = CloudFrontSigner(
        "K2JCJMDEHXQW5F", lambda m: private.sign(m, padding.PKCS1v15(), hashes.SHA1())
    )
    url = "https://media.example.com/videos/2026/intro-1080p.mp4"
    expiry = datetime.now(UTC) + timedelta(hours=1)
    policy = signer.build_policy(
        "https://media.example.com/videos/*",
        expiry,
        date_greater_than=datetime.now(UTC) - timedelta(minutes=1),
        ip_address="203.0.113.0/24",
    )
    public = private.public_key()
    return {
        "canned": (signer.generate_presigned_url(url, date_less_than=expiry), keyring, public),
        "custom wildcard+IP": (
            signer.generate_presigned_url(url, policy=policy),
            keyring,
            public,
        ),
    }


def measure_cloudfront(
    url: str, keyring: Keyring, public: Any, seconds: float
) -> tuple[float, float, float]:
    """(full verify, parse only, RSA verify of the policy) in microseconds per call."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    client = ipaddress.ip_address("203.0.113.7")
    request = LinkRequest("GET", parts.path, parts.query, host=parts.netloc, client_ip=client)
    link = cloudfront.parse(parts.query, request.header)
    signed = link.policy_bytes or cloudfront.canned_policy(
        f"https://{parts.netloc}{parts.path}", link.expiry
    )

    def primitive() -> object:
        public.verify(link.signature, signed, padding.PKCS1v15(), hashes.SHA1())
        return None

    def full() -> object:
        return cloudfront.verify(keyring, request)

    def parse() -> object:
        return cloudfront.parse(parts.query, request.header)

    assert full()
    return per_call(full, seconds), per_call(parse, seconds), per_call(primitive, seconds)


def measure(
    keyring: Keyring, key: Key, target: str, now: float, seconds: float
) -> tuple[float, float, float]:
    """(full verify, parse only, bare primitive) in microseconds per call."""
    client = ipaddress.ip_address("203.0.113.7")
    raw_path, _, raw_query = target.partition("?")
    link = parse_link(raw_path, raw_query)
    primitive: Callable[[], object]
    if key.alg is Algorithm.HMAC_SHA256:
        secret = key.secret
        assert secret is not None

        def primitive() -> object:
            expected = hmac.digest(secret, link.signed, hashlib.sha256)
            return hmac.compare_digest(expected, link.signature)
    else:
        assert key.public is not None
        public = Ed25519PublicKey.from_public_bytes(key.public)

        def primitive() -> object:
            public.verify(link.signature, link.signed)
            return None

    def full() -> object:
        return verify(
            keyring, method="GET", raw_path=raw_path, raw_query=raw_query, client_ip=client, now=now
        )

    def parse() -> object:
        return parse_link(raw_path, raw_query)

    return per_call(full, seconds), per_call(parse, seconds), per_call(primitive, seconds)


if __name__ == "__main__":
    main()
