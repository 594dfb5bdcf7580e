"""Our SigV4 for GET/HEAD produces exactly what botocore's S3 signer produces."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.storage.sigv4 import Credentials, SigV4Signer

keys = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40
)


def botocore_headers(
    method: str, url: str, creds: Credentials, region: str, extra: dict[str, str]
) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers=dict(extra))
    request.context["payload_signing_enabled"] = True  # the empty body's hash, as we send
    S3SigV4Auth(ReadOnlyCredentials(*creds), "s3", region).add_auth(request)
    return dict(request.headers.items())


def signed_headers(
    signer: SigV4Signer,
    method: str,
    host: str,
    raw_path: str,
    creds: Credentials,
    extra: dict[str, str],
    *,
    now: float,
) -> dict[str, str]:
    """The headers of `request_head` (what storage is sent), in their order; its request line
    and its last header, Host, checked on the way."""
    head = signer.request_head(method, host, raw_path, creds, extra, now=now).decode("latin-1")
    assert head.endswith("\r\n\r\n")
    request_line, *lines = head[:-4].split("\r\n")
    assert request_line == f"{method} {raw_path} HTTP/1.1"
    assert lines.pop() == f"Host: {host}"
    return dict(line.split(": ", 1) for line in lines)


@settings(max_examples=200)
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    key=keys,
    token=st.none() | st.text("abcXYZ019/+=", min_size=1, max_size=30),
    byte_range=st.none() | st.sampled_from(["bytes=0-", "bytes=10-19", "bytes=-5"]),
    endpoint=st.sampled_from(
        ["http://127.0.0.1:8333/bucket", "https://bkt.s3.eu-west-1.amazonaws.com"]
    ),
    region=st.sampled_from(["us-east-1", "eu-west-1"]),
)
def test_headers_match_botocore(
    method: str, key: str, token: str | None, byte_range: str | None, endpoint: str, region: str
) -> None:
    url = f"{endpoint}/{quote(key, safe='/')}"
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    extra = {"Range": byte_range} if byte_range else {}
    expected = botocore_headers(method, url, creds, region, extra)
    moment = _parse(expected["X-Amz-Date"])
    parts = urlsplit(url)
    ours = signed_headers(
        SigV4Signer(region), method, parts.netloc, parts.path, creds, extra, now=moment
    )
    assert ours == expected


@settings(max_examples=100)
@given(
    name=st.sampled_from(["If-None-Match", "if-none-match", "Range", "Accept", "X-Custom"]),
    value=st.text('abc 019"-=', min_size=1, max_size=20).filter(str.strip),
    token=st.none() | st.just("tok+/="),
)
def test_one_extra_header_of_any_name_matches_botocore(
    name: str, value: str, token: str | None
) -> None:
    """The one-header shortcut (a Range, a revalidation's If-None-Match) signs as the general
    path does, and names sorting outside it take the general path."""
    url = "http://127.0.0.1:8333/bucket/some/key.bin"
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    expected = botocore_headers("HEAD", url, creds, "us-east-1", {name: value})
    moment = _parse(expected["X-Amz-Date"])
    ours = signed_headers(
        SigV4Signer("us-east-1"),
        "HEAD",
        "127.0.0.1:8333",
        "/bucket/some/key.bin",
        creds,
        {name: value},
        now=moment,
    )
    assert ours == expected


@settings(max_examples=100)
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    token=st.none() | st.just("tok+/="),
    extra=st.sampled_from(
        [{}, {"Range": "bytes=0-99"}, {"If-None-Match": '"e"'}, {"Range": "bytes=1-", "X-A": "b"}]
    ),
)
def test_the_request_head_carries_exactly_the_signed_headers_then_host(
    method: str, token: str | None, extra: dict[str, str]
) -> None:
    """What the data path sends: the request line, the given headers, the signed ones in a
    fixed order (their values proved against botocore above), then Host."""
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signed = signed_headers(
        SigV4Signer("us-east-1"), method, "h:8333", "/b/k%20y", creds, extra, now=1e9
    )
    amz = ["X-Amz-Content-SHA256", "X-Amz-Date", *(["X-Amz-Security-Token"] if token else [])]
    assert list(signed) == [*extra, *amz, "Authorization"]


def _parse(amz_date: str) -> float:
    import calendar
    import time

    return float(calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))


def test_the_signing_key_is_derived_once_per_day() -> None:
    signer = SigV4Signer("us-east-1")
    creds = Credentials("A", "S", None)
    signed_headers(signer, "GET", "h", "/b/k", creds, {}, now=0.0)
    first = signer._key_cache
    signed_headers(signer, "GET", "h", "/b/k", creds, {}, now=3600.0)
    assert signer._key_cache is first
    signed_headers(signer, "GET", "h", "/b/k", creds, {}, now=86400.0)
    assert signer._key_cache is not first


@pytest.mark.parametrize("secret", ["S", "other"])
def test_a_new_secret_is_never_signed_with_a_cached_key(secret: str) -> None:
    signer = SigV4Signer("us-east-1")
    signed_headers(signer, "GET", "h", "/b/k", Credentials("A", "S", None), {}, now=0.0)
    fresh = signed_headers(
        SigV4Signer("us-east-1"), "GET", "h", "/b/k", Credentials("A", secret, None), {}, now=0.0
    )
    again = signed_headers(signer, "GET", "h", "/b/k", Credentials("A", secret, None), {}, now=0.0)
    assert again == fresh


def test_the_date_changes_with_the_second() -> None:
    signer = SigV4Signer("us-east-1")
    creds = Credentials("A", "S", None)
    dates = [
        signed_headers(signer, "GET", "h", "/b/k", creds, {}, now=t)["X-Amz-Date"]
        for t in (0.0, 0.9, 1.0)
    ]
    assert dates == ["19700101T000000Z", "19700101T000000Z", "19700101T000001Z"]
