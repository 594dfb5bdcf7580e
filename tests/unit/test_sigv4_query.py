"""The SigV4 presigned-URL verifier computes exactly what botocore's presigner signs.

botocore logs the canonical request and string to sign it computes (at DEBUG, `botocore.auth`);
every property here presigns with a real botocore client and holds ours to those bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from signer import Algorithm, Key, Keyring, Reason, Rejected, Status, new_key, token_id
from signer.format import b64encode
from signer.keys import LinkScheme
from signer.schemes import SCHEMES, Ambiguous, LinkRequest, detect
from signer.schemes.sigv4_query import (
    canonical_request,
    header_values,
    parse,
    string_to_sign,
    verify,
)

KEY = new_key("GWLINKS01", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4)
EU_KEY = new_key(
    "GWLINKSEU", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4, region="eu-west-1"
)
EDGE_KEY = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)
KEYRING = Keyring([EDGE_KEY, KEY, EU_KEY])
ENDPOINTS = ("http://127.0.0.1:8080", "https://media.example.com", "http://Media.Example.com:80")


def secret(key: Key) -> str:
    assert key.secret is not None
    return b64encode(key.secret)


class Captured(logging.Handler):
    """botocore's own canonical request and string to sign, from its DEBUG log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.canonical: str | None = None
        self.string_to_sign: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "CanonicalRequest:\n%s":
            self.canonical = record.getMessage().partition("\n")[2]
        elif record.msg == "StringToSign:\n%s":
            self.string_to_sign = record.getMessage().partition("\n")[2]


@pytest.fixture(scope="module")
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("botocore.auth")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


CLIENTS: dict[tuple[str, str], Any] = {}


def client(endpoint: str, key: Key = KEY) -> Any:
    region = key.region or "us-east-1"
    if (endpoint, key.id) not in CLIENTS:
        CLIENTS[endpoint, key.id] = botocore.session.get_session().create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=key.id,
            aws_secret_access_key=secret(key),
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
    return CLIENTS[endpoint, key.id]


def host_of(url: str) -> str:
    """The Host a client sends for `url`: lower case, no default port."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    default = {"http": 80, "https": 443}[parts.scheme]
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def request_for(url: str, method: str, headers: dict[str, str] | None = None) -> LinkRequest:
    parts = urlsplit(url)
    sent = {name.lower(): [value] for name, value in (headers or {}).items()}
    return LinkRequest(
        method, parts.path, parts.query, host=host_of(url), header=lambda n: sent.get(n, [])
    )


def moment(link_url: str) -> float:
    parts = urlsplit(link_url)
    return float(parse(parts.path, parts.query).issued)


# Object keys the gateway serves: non-empty segments other than "." and "..", no NUL.
segments = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00/"), min_size=1
).filter(lambda s: s not in (".", ".."))
object_keys = st.lists(segments, min_size=1, max_size=4).map("/".join)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
content_types = st.none() | st.sampled_from(
    ["image/jpeg", "text/plain; charset=utf-8", "application/octet-stream"]
)
dispositions = st.none() | st.sampled_from(
    ['attachment; filename="a b.pdf"', "inline", "attachment; filename*=UTF-8''%C3%A4.txt"]
)


@settings(max_examples=300, deadline=None)
@given(
    key=object_keys,
    operation=st.sampled_from(["get_object", "head_object", "put_object"]),
    endpoint=st.sampled_from(ENDPOINTS),
    link_key=st.sampled_from([KEY, EU_KEY]),
    expires=st.integers(1, 604800),
    content_type=content_types,
    response_type=st.none() | st.sampled_from(["application/pdf", "text/plain; charset=utf-8"]),
    disposition=dispositions,
)
def test_the_canonical_request_is_byte_identical_to_botocores(
    captured: Captured,
    key: str,
    operation: str,
    endpoint: str,
    link_key: Key,
    expires: int,
    content_type: str | None,
    response_type: str | None,
    disposition: str | None,
) -> None:
    params: dict[str, Any] = {"Bucket": "media", "Key": key}
    headers = {}
    if operation == "put_object" and content_type is not None:
        params["ContentType"] = content_type
        headers["Content-Type"] = content_type
    if operation == "get_object":
        params.update(
            {
                name: value
                for name, value in (
                    ("ResponseContentType", response_type),
                    ("ResponseContentDisposition", disposition),
                )
                if value is not None
            }
        )
    captured.canonical = captured.string_to_sign = None
    url = client(endpoint, link_key).generate_presigned_url(
        operation, Params=params, ExpiresIn=expires
    )
    method = {"get_object": "GET", "head_object": "HEAD", "put_object": "PUT"}[operation]
    request = request_for(url, method, headers)
    link = parse(request.raw_path, request.raw_query)

    ours = canonical_request(link, method, header_values(link, request))
    assert ours == captured.canonical
    assert string_to_sign(link, ours) == captured.string_to_sign

    verified = verify(KEYRING, request, now=moment(url)).verified
    assert verified.path == "/" + key
    assert verified.claims.method == method
    assert verified.claims.response_content_type == (response_type if method == "GET" else None)
    assert verified.token_id == token_id(bytes.fromhex(link.signature))


@pytest.mark.parametrize("key", ["./a", "a/../b", "a//b", "/a", "a/", "a\x00b"])
def test_a_key_the_gateway_cannot_serve_is_malformed_though_botocore_signs_it(key: str) -> None:
    url = client(ENDPOINTS[0]).generate_presigned_url(
        "get_object", Params={"Bucket": "media", "Key": key}
    )
    with pytest.raises(Rejected) as caught:
        verify(KEYRING, request_for(url, "GET"), now=moment(url))
    assert caught.value.reason is Reason.MALFORMED


def presigned(operation: str = "get_object", **params: Any) -> str:
    url: str = client(ENDPOINTS[0]).generate_presigned_url(
        operation, Params={"Bucket": "media", "Key": "docs/a.txt", **params}, ExpiresIn=600
    )
    return url


def rejection(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, **kw: Any
) -> Rejected:
    kw.setdefault("now", moment(url))
    with pytest.raises(Rejected) as caught:
        verify(kw.pop("keyring", KEYRING), request_for(url, method, headers), **kw)
    return caught.value


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(600 + 30, Reason.EXPIRED), (-31, Reason.NOT_YET_VALID)],
    ids=["expiry-plus-skew", "date-minus-skew"],
)
def test_the_validity_window_is_the_signed_one_plus_the_skew(offset: int, reason: Reason) -> None:
    url = presigned()
    issued = moment(url)
    assert verify(KEYRING, request_for(url, "GET"), now=issued + offset - (1 if offset > 0 else -1))
    caught = rejection(url, now=issued + offset)
    assert caught.reason is reason
    assert caught.claims is not None
    assert caught.claims.key_id == KEY.id


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Type": "image/jpeg"}, None),
        ({"Content-Type": "  image/jpeg "}, None),  # SigV4 trims
        ({"Content-Type": "image/png"}, Reason.BAD_SIGNATURE),
        ({}, Reason.BAD_SIGNATURE),
    ],
    ids=["as-signed", "padded", "another", "missing"],
)
def test_a_signed_content_type_must_be_sent_as_signed(
    headers: dict[str, str], reason: Reason | None
) -> None:
    url = presigned("put_object", ContentType="image/jpeg")
    if reason is None:
        assert verify(KEYRING, request_for(url, "PUT", headers), now=moment(url))
    else:
        assert rejection(url, "PUT", headers).reason is reason


@pytest.mark.parametrize(
    "params",
    [
        {"ResponseContentType": "text/html\r\nSet-Cookie: a=b"},
        {"ResponseContentDisposition": "attachment; filename=a\x7f.txt"},
        {"ResponseContentType": "x" * 600 + "/y"},
    ],
    ids=["header-splitting", "control-character", "too-long"],
)
def test_an_override_our_tokens_could_not_carry_is_malformed(params: dict[str, str]) -> None:
    assert rejection(presigned(**params)).reason is Reason.MALFORMED


def test_a_signed_header_sent_twice_is_malformed() -> None:
    url = presigned("put_object", ContentType="image/jpeg")
    parts = urlsplit(url)
    twice = LinkRequest(
        "PUT",
        parts.path,
        parts.query,
        host=host_of(url),
        header=lambda name: ["image/jpeg", "image/jpeg"] if name == "content-type" else [],
    )
    with pytest.raises(Rejected) as caught:
        verify(KEYRING, twice, now=moment(url))
    assert caught.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("keyring", "reason", "detail"),
    [
        (Keyring([EDGE_KEY]), Reason.UNKNOWN_KEY, "SigV4 links are off"),
        (Keyring([EDGE_KEY, EU_KEY]), Reason.UNKNOWN_KEY, "no sigv4 key 'GWLINKS01'"),
        (Keyring([KEY]).retired(KEY.id), Reason.RETIRED_KEY, "retired"),
    ],
    ids=["scheme-off", "unknown", "retired"],
)
def test_the_key_must_be_a_current_sigv4_key(keyring: Keyring, reason: Reason, detail: str) -> None:
    caught = rejection(presigned(), keyring=keyring)
    assert (caught.reason, detail in caught.detail) == (reason, True)


def test_the_region_is_the_keys() -> None:
    url = client(ENDPOINTS[0], EU_KEY).generate_presigned_url(
        "get_object", Params={"Bucket": "media", "Key": "a"}
    )
    assert verify(KEYRING, request_for(url, "GET"), now=moment(url))
    forged = url.replace("eu-west-1", "us-east-1")
    assert rejection(forged).reason is Reason.MALFORMED


def test_a_sigv4_key_never_verifies_our_tokens() -> None:
    assert KEYRING.verifier_for(KEY.id) is None
    assert KEYRING.verifier_for(EDGE_KEY.id) is not None


@pytest.mark.parametrize(
    ("query", "scheme"),
    [
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab", "sigv4"),
        ("a=1&x-amz-signature=ab", "sigv4"),
        ("X-AMZ-CREDENTIAL=x", "sigv4"),
        ("X-Amz-Date=20260101T000000Z", None),
        ("Expires=1&KeyID=k&Issued=0&Signature=x", None),
        ("", None),
    ],
)
def test_detection_looks_for_the_sigv4_parameters_in_any_case(
    query: str, scheme: str | None
) -> None:
    found = detect("/media/a", query)
    assert (found.name if found is not None else None) == scheme


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/media/a", "Expires=1&KeyID=k&Issued=0&X-Amz-Signature=ab&Signature=x"),
        ("/media/a", "X-Amz-Signature=ab&Expires=1&KeyID=k&Issued=0&Signature=x"),
        ("/token=abc/media/a", "X-Amz-Algorithm=AWS4-HMAC-SHA256"),
    ],
    ids=["token-first", "sigv4-first", "path-form"],
)
def test_our_token_and_a_sigv4_link_together_are_ambiguous(path: str, query: str) -> None:
    with pytest.raises(Ambiguous):
        detect(path, query)


@given(query=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300))
def test_any_query_is_accepted_or_refused_with_a_reason(query: str) -> None:
    """The parser never fails in any other way: a malformed link is a 403, never a 500."""
    request = LinkRequest("GET", "/media/a", "X-Amz-Signature=0&" + query, host="h")
    with pytest.raises(Rejected):
        verify(KEYRING, request, now=0)


@given(
    path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    host=header_text,
    content_type=header_text,
)
def test_any_path_and_headers_are_verified_or_refused_with_a_reason(
    path: str, host: str, content_type: str
) -> None:
    url = presigned("put_object", ContentType="image/jpeg")
    parts = urlsplit(url)
    request = LinkRequest(
        "PUT", "/" + path, parts.query, host=host, header=lambda name: [content_type]
    )
    with contextlib.suppress(Rejected):
        verify(KEYRING, request, now=moment(url))


def test_revoking_by_url_records_the_links_token_id_and_expiry() -> None:
    url = presigned()
    parts = urlsplit(url)
    link = parse(parts.path, parts.query)
    assert SCHEMES["sigv4"].revocation(parts.path, parts.query) == (
        token_id(bytes.fromhex(link.signature)),
        link.issued + 600,
    )


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("bad_signature", "SignatureDoesNotMatch"),
        ("expired", "Request has expired"),
        ("unknown_key", "InvalidAccessKeyId"),
        ("revoked", "AccessDenied"),
        ("origin_error", None),
    ],
)
def test_refusals_carry_s3s_words_where_a_client_looks_for_them(
    reason: str, words: str | None
) -> None:
    said = SCHEMES["sigv4"].words(reason)
    if words is None:
        assert said is None
    else:
        assert said is not None
        assert words in said
