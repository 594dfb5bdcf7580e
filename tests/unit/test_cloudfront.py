"""The CloudFront scheme's parsers: its base64, its policy JSON, its Resource, and detection.

Links here are signed by botocore's `CloudFrontSigner` with an RSA key, so the parsers are held
to what botocore writes, not to our reading of CloudFront's documentation.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from signer import Algorithm, Keyring, KeyringError, Reason, Rejected, Status, new_key, token_id
from signer.cli import main
from signer.format import Claims
from signer.keys import LinkScheme, cloudfront_key
from signer.schemes import SCHEMES, Ambiguous, LinkRequest, detect
from signer.schemes.cloudfront import (
    Resource,
    b64decode,
    b64encode,
    canned_policy,
    parse_policy,
    parse_resource,
    verify,
)

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DER = PRIVATE.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
KEYRING = Keyring([new_key("edge-1", Algorithm.ED25519, Status.ACTIVE), cloudfront_key("K1", DER)])
SIGNER: Any = CloudFrontSigner("K1", lambda m: PRIVATE.sign(m, padding.PKCS1v15(), hashes.SHA1()))
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
YEAR_9999 = 253402300799  # the last second datetime can hold
NOW = EXPIRY.timestamp() - 3600


def request(url: str, method: str = "GET", cookie: str | None = None) -> LinkRequest:
    parts = urlsplit(url)
    return LinkRequest(
        method,
        parts.path,
        parts.query,
        host=parts.netloc,
        header=lambda name: [cookie] if cookie is not None and name == "Cookie" else [],
    )


# --- CloudFront's base64 -------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_cloudfront_base64_is_botocores_and_round_trips(data: bytes) -> None:
    text = b64encode(data)
    assert text == SIGNER._url_b64encode(data).decode()
    assert b64decode(text, "x") == data


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_any_other_text_is_refused_or_is_the_one_spelling(text: str) -> None:
    try:
        data = b64decode(text, "x")
    except Rejected:
        return
    assert b64encode(data) == text


@pytest.mark.parametrize(
    "text",
    ["AQ==", "AQ", "AQ_", "AR__", "A+B/", "AQ__AQ__"],
    ids=["standard-padding", "unpadded", "short-padding", "stray-bits", "standard", "inner-pad"],
)
def test_base64_spellings_cloudfront_does_not_write_are_refused(text: str) -> None:
    with pytest.raises(Rejected):
        b64decode(text, "x")


# --- the policy -------------------------------------------------------------------------------


def policy(**condition: Any) -> bytes:
    body = {"DateLessThan": {"AWS:EpochTime": 1893456000}, **condition}
    document = {"Statement": [{"Resource": "https://h/a/*", "Condition": body}]}
    return json.dumps(document).encode()


@given(
    resource=st.sampled_from(["https://h.example/a/b.mp4", "http://h:8080/hls/*", "http*://h/*"]),
    expires=st.integers(1, YEAR_9999),
    starts=st.none() | st.integers(0, YEAR_9999),
    ip=st.none() | st.sampled_from(["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"]),
)
def test_botocores_policies_parse_to_their_conditions(
    resource: str, expires: int, starts: int | None, ip: str | None
) -> None:
    text = SIGNER.build_policy(
        resource,
        datetime.fromtimestamp(expires, UTC),
        date_greater_than=None if starts is None else datetime.fromtimestamp(starts, UTC),
        ip_address=ip,
    )
    parsed = parse_policy(text.encode())
    assert (parsed.expires, parsed.starts) == (expires, starts)
    assert (str(parsed.ip) if parsed.ip else None) == (
        None if ip is None else ip if "/" in ip else ip + "/32"
    )
    assert parsed.resource == parse_resource(resource)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(json_values)
def test_any_json_is_a_policy_or_malformed(value: object) -> None:
    """Never any other exception: a forged policy is a 403, never a 500."""
    with contextlib.suppress(Rejected):
        parse_policy(json.dumps(value).encode())


@given(st.binary(max_size=200))
def test_any_bytes_are_a_policy_or_malformed(data: bytes) -> None:
    with contextlib.suppress(Rejected):
        parse_policy(data)


@pytest.mark.parametrize(
    "text",
    [
        policy(StringLike={"AWS:Referer": "x"}),
        policy(DateGreaterThan={"AWS:EpochTime": 1.5}),
        policy(DateGreaterThan={"AWS:EpochTime": "1"}),
        policy(DateGreaterThan={"AWS:EpochTime": True}),
        policy(IpAddress={"AWS:SourceIp": "203.0.113.1/24"}),
        policy(IpAddress={"AWS:SourceIp": ["203.0.113.0/24"]}),
        policy(IpAddress={"AWS:SourceIp": "::ffff:0:0/96"}),
        b'{"Statement":[{"Resource":"https://h/a","Condition":{"DateGreaterThan":{"AWS:EpochTime":1}}}]}',
        b'{"Statement":{"Resource":"https://h/a","Condition":{"DateLessThan":{"AWS:EpochTime":9}}}}',
        b'{"Statement":[],"Other":1}',
        b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":9}}}]}',
        b'{"Statement":[{"Resource":"https://h/a","Resource":"https://h/b",'
        b'"Condition":{"DateLessThan":{"AWS:EpochTime":9}}}]}',
        b'{"Statement":[{"Resource":"https://h/a","Condition":{"DateLessThan":{"AWS:EpochTime":NaN}}}]}',
        b"[" * 100000,
    ],
    ids=[
        "unknown-condition",
        "float-time",
        "string-time",
        "boolean-time",
        "host-bits",
        "ip-list",
        "mapped-ipv6",
        "no-date-less-than",
        "statement-object",
        "unknown-field",
        "no-resource",
        "field-twice",
        "nan",
        "deep-nesting",
    ],
)
def test_a_policy_the_gateway_cannot_hold_exactly_is_malformed(text: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_policy(text)
    assert caught.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("https://H.example/a%20b.mp4", Resource("h.example", path="/a b.mp4")),
        ("http://h:8080/hls/ep1/*", Resource("h:8080", prefix="/hls/ep1/")),
        ("http*://h/*", Resource("h", prefix="/")),
    ],
)
def test_a_resource_is_one_path_or_a_prefix(text: str, resource: Resource) -> None:
    assert parse_resource(text) == resource


@pytest.mark.parametrize(
    "text",
    [
        "https://h/a*",
        "https://h/a/*.ts",
        "https://h/a/?.ts",
        "https://*/a/b",
        "*",
        "https://h/a?x=1",
        "ftp://h/a",
        "https://h",
        "https://h/a/../b",
        "https://h/%68",
        "https://user@h/a",
    ],
    ids=[
        "star-mid-segment",
        "inner-star",
        "question-mark",
        "star-host",
        "star-alone",
        "query",
        "scheme",
        "no-path",
        "dot-dot",
        "non-canonical",
        "userinfo",
    ],
)
def test_a_resource_that_is_neither_is_refused(text: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_resource(text)
    assert caught.value.reason is Reason.MALFORMED


def test_the_canned_policy_is_byte_for_byte_botocores() -> None:
    url = "https://h.example/a%20b.mp4"
    expected = SIGNER.build_policy(url, EXPIRY).encode()
    assert canned_policy(url, int(EXPIRY.timestamp())) == expected


# --- detection and ambiguity ------------------------------------------------------------------


def test_a_canned_url_is_cloudfronts_not_ambiguous_though_it_has_expires_and_signature() -> None:
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    parts = urlsplit(url)
    assert parts.query.startswith("Expires=")
    found = detect(parts.path, parts.query)
    assert found is not None
    assert found.name == "cloudfront"


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/a.txt", "&KeyID=k1&Issued=0"),
        ("/a.txt", "&keyid=k1"),
        ("/a.txt", "&X-Amz-Signature=ab"),
        ("/token=abc/a.txt", ""),
    ],
    ids=["our-token", "our-key-id-any-case", "sigv4", "path-form"],
)
def test_a_cloudfront_link_with_another_schemes_link_is_ambiguous(path: str, extra: str) -> None:
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    with pytest.raises(Ambiguous):
        detect(path, urlsplit(url).query + extra)


@pytest.mark.parametrize(
    ("cookie", "carried"),
    [
        ("CloudFront-Policy=x; CloudFront-Signature=y", True),
        ("a=1; CloudFront-Key-Pair-Id=K1", True),
        ("EdgeToken=abc; cloudfront-policy=x", False),
        ("", False),
    ],
)
def test_cloudfront_cookies_are_carried(cookie: str, carried: bool) -> None:
    assert (
        SCHEMES["cloudfront"].carried(lambda name: [cookie] if name == "Cookie" else []) is carried
    )


# --- verification in a few words (the live suite has the rest) ---------------------------------


def test_a_verified_link_has_the_claims_of_our_tokens() -> None:
    text = SIGNER.build_policy(
        "https://h/hls/*", EXPIRY, date_greater_than=datetime.fromtimestamp(NOW - 60, UTC)
    )
    url = SIGNER.generate_presigned_url("https://h/hls/a.ts", policy=text)
    link = verify(KEYRING, request(url, "HEAD"), now=NOW).verified
    claims = link.claims
    assert (link.path, claims.key_id, claims.prefix, claims.method) == (
        "/hls/a.ts",
        "K1",
        "/hls/",
        "GET",
    )
    assert (claims.issued, claims.starts, claims.expires) == (
        NOW - 60,
        NOW - 60,
        EXPIRY.timestamp(),
    )
    signature = urlsplit(url).query.split("Signature=")[1].split("&")[0]
    assert link.token_id == token_id(
        base64.b64decode(signature.translate(str.maketrans("-~_", "+/=")))
    )


@pytest.mark.parametrize(
    ("max_lifetime", "verdict"),
    [(3600, "ok"), (3600 - 30, "ok"), (3600 - 31, "lifetime_exceeded")],
    ids=["expiry-a-lifetime-away", "within-the-skew", "beyond-the-skew"],
)
def test_a_link_without_datagreaterthan_is_issued_a_lifetime_before_its_expiry(
    max_lifetime: int, verdict: str
) -> None:
    """The one rule of links that state no issue time (as nginx secure_link's): a revocation
    by key or prefix at T then covers every such link valid at T."""
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    found = dataclasses.replace(request(url), max_lifetime=max_lifetime)
    claims: Claims | None
    try:
        claims, said = verify(KEYRING, found, now=NOW).verified.claims, "ok"  # NOW + 3600
    except Rejected as exc:
        claims, said = exc.claims, exc.reason.value
    assert claims is not None
    assert (said, claims.issued, claims.starts) == (
        verdict,
        EXPIRY.timestamp() - max_lifetime,
        None,
    )


def test_revoking_by_url_records_the_links_token_id_and_expiry() -> None:
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    parts = urlsplit(url)
    digest, expires = SCHEMES["cloudfront"].revocation(parts.path, parts.query)
    assert expires == EXPIRY.timestamp()
    assert digest == verify(KEYRING, request(url), now=NOW).verified.token_id


@given(query=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300))
def test_any_query_is_accepted_or_refused_with_a_reason(query: str) -> None:
    with pytest.raises(Rejected):
        verify(KEYRING, LinkRequest("GET", "/a", "Key-Pair-Id=K1&" + query, host="h"), now=NOW)


@given(cookie=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
def test_any_cookie_header_is_accepted_or_refused_with_a_reason(cookie: str) -> None:
    with pytest.raises(Rejected):
        verify(KEYRING, request("https://h/a", cookie="CloudFront-Signature=x; " + cookie), now=NOW)


@pytest.mark.parametrize(
    ("keyring", "reason", "detail"),
    [
        (Keyring([new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)]), Reason.UNKNOWN_KEY, "off"),
        (Keyring([cloudfront_key("K1", DER)]).retired("K1"), Reason.RETIRED_KEY, "retired"),
    ],
    ids=["scheme-off", "retired"],
)
def test_the_key_must_be_a_current_cloudfront_key(
    keyring: Keyring, reason: Reason, detail: str
) -> None:
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    with pytest.raises(Rejected) as caught:
        verify(keyring, request(url), now=NOW)
    assert (caught.value.reason, detail in caught.value.detail) == (reason, True)


@pytest.mark.parametrize(
    ("word", "reason"),
    [("AccessDenied", "bad_signature"), ("AccessDenied", "expired"), ("InvalidKey", "unknown_key")],
)
def test_refusals_carry_cloudfronts_words(word: str, reason: str) -> None:
    said = SCHEMES["cloudfront"].words(reason)
    assert said is not None
    assert said.startswith(word)


# --- the keyring entry ------------------------------------------------------------------------


def test_a_cloudfront_key_round_trips_and_never_verifies_our_tokens() -> None:
    loaded = Keyring.loads(KEYRING.dumps(public_only=True))
    key = loaded.get("K1")
    assert key is not None
    assert (key.scheme, key.alg.value, key.public) == (LinkScheme.CLOUDFRONT, "rsa-pkcs1", DER)
    assert loaded.verifier_for("K1") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"public": "AAAA"}, "must be an RSA public key"),
        ({"status": "active"}, "never 'active'"),
        ({"public": None}, "needs 'public'"),
        ({"scheme": None}, "cloudfront"),
        ({"private": "AAAA"}, "unknown field"),
        ({"region": "us-east-1"}, "unknown field"),
    ],
    ids=["not-rsa", "active", "no-public", "no-scheme", "private", "region"],
)
def test_invalid_cloudfront_entries_name_the_field(entry: dict[str, Any], message: str) -> None:
    from signer.format import b64encode as b64url

    fields = {
        "id": "K1",
        "alg": "rsa-pkcs1",
        "scheme": "cloudfront",
        "status": "verify",
        "public": b64url(DER),
    }
    fields.update(entry)
    document = {
        "format": "edge-keyring/1",
        "keys": [{k: v for k, v in fields.items() if v is not None}],
    }
    with pytest.raises(KeyringError, match=message):
        Keyring.loads(json.dumps(document))


def test_a_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyringError, match="at least 2048 bits"):
        cloudfront_key("K2", der)


# --- signer keygen and signer verify -----------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_keyring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    pem = tmp_path / "public_key.pem"
    pem.write_bytes(
        PRIVATE.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    path = tmp_path / "gateway-keyring.json"
    argv = ["keygen", "--keyring", str(path), "--key-id", "K1", "--scheme", "cloudfront"]
    code, out, _ = run(capsys, *argv, "--public-pem", str(pem))
    assert (code, "added cloudfront key 'K1'" in out) == (0, True)
    return path


def test_keygen_takes_the_key_pairs_public_pem(cli_keyring: Path) -> None:
    (entry,) = json.loads(cli_keyring.read_text())["keys"]
    assert {k: entry[k] for k in ("id", "alg", "scheme", "status")} == {
        "id": "K1",
        "alg": "rsa-pkcs1",
        "scheme": "cloudfront",
        "status": "verify",
    }
    assert base64.urlsafe_b64decode(entry["public"] + "==") == DER


@pytest.mark.parametrize(
    "argv",
    [["--scheme", "cloudfront"], ["--scheme", "sigv4", "--public-pem", "x.pem"]],
    ids=["cloudfront-without-pem", "pem-without-cloudfront"],
)
def test_public_pem_goes_with_the_cloudfront_scheme_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path = tmp_path / "k.json"
    code, _, err = run(capsys, "keygen", "--keyring", str(path), "--key-id", "K1", *argv)
    assert (code, "--public-pem" in err, path.exists()) == (2, True, False)


def signed_url(**policy: Any) -> str:
    expiry = datetime.now(UTC) + timedelta(hours=1)
    if not policy:
        url: str = SIGNER.generate_presigned_url(
            "https://media.example.com/docs/a.txt", date_less_than=expiry
        )
        return url
    text = SIGNER.build_policy(policy.pop("resource"), expiry, **policy)
    url = SIGNER.generate_presigned_url("https://media.example.com/docs/a.txt", policy=text)
    return url


def test_verify_accepts_a_cloudfront_url(
    cli_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = signed_url(resource="https://media.example.com/docs/*", ip_address="203.0.113.0/24")
    argv = ["verify", url, "--keyring", str(cli_keyring), "--client-ip", "203.0.113.9"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "valid (cloudfront): key 'K1', path '/docs/a.txt'" in out
    assert "issued  not stated; counted as " in out
    assert "(the expiry minus the max link lifetime)" in out
    assert "prefix       /docs/" in out
    assert "ip           203.0.113.0/24" in out
    assert "token id " in out


def test_verify_shows_the_signed_policy_of_a_bad_signature_never_the_signature(
    cli_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = signed_url(resource="https://media.example.com/docs/a.txt")
    signature = url.split("Signature=")[1].split("&")[0]
    forged = url.replace(signature, signature[:10] + "AB"[signature[10] == "A"] + signature[11:])
    code, out, _ = run(capsys, "verify", forged, "--keyring", str(cli_keyring))
    assert code == 1
    assert "rejected (cloudfront): bad_signature" in out
    lines = [line.strip() for line in out.splitlines()]
    shown = json.loads(lines[lines.index("---") + 1])
    assert shown["Statement"][0]["Resource"] == "https://media.example.com/docs/a.txt"
    assert signature[20:60] not in out
    assert forged.split("Signature=")[1][20:60] not in out
    assert "SHA-256 of the canonical request" not in out  # that is SigV4's


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (lambda url: url + "&x=1", "malformed_token: the query has a parameter besides"),
        (lambda url: url.replace("Key-Pair-Id=K1", "Key-Pair-Id=K9"), "unknown_key"),
        (lambda url: url.replace("/docs/a.txt", "/docs/b.txt"), "bad_signature"),
    ],
    ids=["parameter", "key-pair-id", "path"],
)
def test_verify_says_which_field_is_wrong(
    cli_keyring: Path, capsys: pytest.CaptureFixture[str], tamper: Callable[[str], str], said: str
) -> None:
    code, out, _ = run(capsys, "verify", tamper(signed_url()), "--keyring", str(cli_keyring))
    assert (code, said in out) == (1, True)


def test_verify_reads_the_cookie_trio_from_header(
    cli_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expiry = datetime.now(UTC) + timedelta(hours=1)
    text = SIGNER.build_policy("https://media.example.com/hls/*", expiry)
    encode = SIGNER._url_b64encode
    signature = encode(SIGNER.rsa_signer(text.encode())).decode()
    cookie = (
        f"Cookie: CloudFront-Policy={encode(text.encode()).decode()}; "
        f"CloudFront-Signature={signature}; CloudFront-Key-Pair-Id=K1"
    )
    url = "https://media.example.com/hls/seg001.ts"
    code, out, _ = run(capsys, "verify", url, "--keyring", str(cli_keyring), "--header", cookie)
    assert (code, "valid (cloudfront)" in out) == (0, True)
    forged = cookie.replace("CloudFront-Key-Pair-Id=K1", "CloudFront-Key-Pair-Id=K2")
    code, out, _ = run(capsys, "verify", url, "--keyring", str(cli_keyring), "--header", forged)
    assert (code, "rejected (cloudfront): unknown_key" in out) == (1, True)


def cookies_for(text: str) -> str:
    encode = SIGNER._url_b64encode
    signature = encode(SIGNER.rsa_signer(text.encode())).decode()
    return (
        f"CloudFront-Policy={encode(text.encode()).decode()}; "
        f"CloudFront-Signature={signature}; CloudFront-Key-Pair-Id=K1"
    )


@pytest.mark.parametrize(
    ("url", "cookie", "accepted"),
    [
        ("https://h/hls/a.ts", None, True),
        ("https://H/hls/a.ts", None, True),
        ("https://h/hls/a.ts?v=2", None, False),
        ("https://h/hls/a.ts", "CloudFront-Policy=x", False),
    ],
    ids=["as-signed", "host-in-upper-case", "a-query-beside-cookies", "policy-twice"],
)
def test_cookies_are_verified_against_the_requests_own_url(
    url: str, cookie: str | None, accepted: bool
) -> None:
    header = cookies_for(SIGNER.build_policy("https://h/hls/*", EXPIRY))
    if cookie is not None:
        header += "; " + cookie
    if accepted:
        assert verify(KEYRING, request(url, cookie=header), now=NOW)
    else:
        with pytest.raises(Rejected) as caught:
            verify(KEYRING, request(url, cookie=header), now=NOW)
        assert caught.value.reason is Reason.MALFORMED


def test_a_link_without_expires_or_policy_is_malformed() -> None:
    url = SIGNER.generate_presigned_url("https://h/a.txt", date_less_than=EXPIRY)
    without = "&".join(p for p in urlsplit(url).query.split("&") if not p.startswith("Expires="))
    with pytest.raises(Rejected, match="give Expires"):
        verify(KEYRING, LinkRequest("GET", "/a.txt", without, host="h"), now=NOW)
