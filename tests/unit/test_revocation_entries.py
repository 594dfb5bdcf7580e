"""Revocation entries: what each kind says, how untrusted input becomes one, how long it lives."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.revocation.entries import (
    REQUEST_KINDS,
    Kind,
    Revocation,
    RevocationError,
    checked,
    for_url,
    from_request,
    normalise_prefix,
    path_segments,
)
from gateway.revocation.view import RevocationView
from signer import Algorithm, Keyring, Status, new_key, sign_path, token_id, verify
from signer.format import Claims, parse_link
from signer.schemes import sigv4_query
from tests.conftest import NOW

KEYRING = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE, now=NOW)])
DIGEST = "0123456789abcdef0123456789abcdef"
UNTIL = NOW + 3600.0
BEFORE = float(NOW)
LIFETIME = 7 * 86400.0
SKEW = 30.0

segment_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00")
segments = st.text(segment_chars, min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
subjects = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40)
key_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
times = st.integers(min_value=0, max_value=2**40 - 1) | st.floats(
    min_value=0, max_value=2**40 - 1, allow_nan=False
)
entries = st.one_of(
    st.builds(lambda v, u: checked(Kind.TOKEN, v, u), digests, times),
    st.builds(lambda v, u, b: checked(Kind.SUB, v, u, b), subjects, times, times),
    st.builds(lambda v, u, b: checked(Kind.KEY_ID, v, u, b), key_ids, times, times),
    st.builds(lambda v, u, b: checked(Kind.PREFIX, v, u, b), paths, times, times),
)


def short(value: object) -> str:
    """A readable test id for long parameters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def signed(path: str = "/videos/a.mp4", **options: Any) -> str:
    if "expires_at" not in options:
        options.setdefault("expires_in", 300)
    return sign_path(path, KEYRING, now=NOW, **options)


# -- kinds and the entry itself ------------------------------------------------------------------


def test_kinds_have_stable_wire_names() -> None:
    assert [k.value for k in Kind] == ["token", "sub", "key_id", "prefix"]


def test_the_store_key_is_one_per_kind_and_value() -> None:
    assert Revocation(Kind.SUB, "user-42", UNTIL, BEFORE).field == "sub:user-42"
    assert Revocation(Kind.TOKEN, DIGEST, UNTIL).field == f"token:{DIGEST}"


def test_as_dict_lists_every_field_by_name() -> None:
    entry = Revocation(Kind.PREFIX, "/videos", UNTIL, BEFORE)
    assert entry.as_dict() == {
        "kind": "prefix",
        "value": "/videos",
        "before": BEFORE,
        "until": UNTIL,
    }


def test_a_token_entry_has_no_issue_time_bound() -> None:
    assert Revocation(Kind.TOKEN, DIGEST, UNTIL).as_dict()["before"] is None


@given(entries)
def test_json_round_trips_every_valid_entry(entry: Revocation) -> None:
    assert Revocation.from_json(entry.to_json()) == entry
    assert Revocation.from_json(entry.to_json().encode()) == entry


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        b"\xff\xfe",
        "[]",
        "null",
        '"token"',
        "{}",
        '{"kind": "token", "value": "' + DIGEST + '"}',
        '{"kind": "bogus", "value": "x", "until": 1}',
        '{"kind": "token", "value": "XYZ", "until": 1}',
        '{"kind": "sub", "value": "user", "until": 1}',
        '{"kind": "sub", "value": "user", "until": "1", "before": 1}',
        '{"kind": "sub", "value": 42, "until": 1, "before": 1}',
        '{"kind": "sub", "value": "user", "until": 1, "before": 1' + "0" * 400 + "}",
        '{"kind": "prefix", "value": "videos", "until": 1, "before": 1}',
    ],
    ids=short,
)
def test_anything_else_is_not_a_revocation_entry(text: str | bytes) -> None:
    with pytest.raises(RevocationError, match="not a revocation entry"):
        Revocation.from_json(text)


def test_merging_two_entries_for_the_same_thing_covers_both() -> None:
    early = Revocation(Kind.SUB, "u", until=100.0, before=10.0)
    late = Revocation(Kind.SUB, "u", until=90.0, before=20.0)
    assert early.merged(late) == Revocation(Kind.SUB, "u", until=100.0, before=20.0)


def test_merging_token_entries_keeps_the_later_expiry() -> None:
    a = Revocation(Kind.TOKEN, DIGEST, 100.0)
    b = Revocation(Kind.TOKEN, DIGEST, 200.0)
    assert a.merged(b) == b.merged(a) == b


@given(
    st.sampled_from([Kind.SUB, Kind.KEY_ID]),
    times,
    times,
    times,
    times,
)
def test_merging_is_commutative_and_idempotent(
    kind: Kind, until_a: float, before_a: float, until_b: float, before_b: float
) -> None:
    a = checked(kind, "x", until_a, before_a)
    b = checked(kind, "x", until_b, before_b)
    assert a.merged(b) == b.merged(a)
    assert a.merged(a) == a
    assert a.merged(b).merged(b) == a.merged(b)


# -- validating untrusted input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        (Kind.TOKEN, DIGEST, DIGEST),
        (Kind.SUB, "user-42", "user-42"),
        (Kind.SUB, "ünïcødé 𝄞 with spaces", "ünïcødé 𝄞 with spaces"),
        (Kind.SUB, "s" * 256, "s" * 256),
        (Kind.KEY_ID, "k2026-10.a_b", "k2026-10.a_b"),
        (Kind.KEY_ID, "k" * 64, "k" * 64),
        (Kind.PREFIX, "/videos/ep1/", "/videos/ep1"),
        (Kind.PREFIX, "/videos/ep1", "/videos/ep1"),
        (Kind.PREFIX, "/", "/"),
    ],
)
def test_valid_values_are_accepted_in_their_stored_form(
    kind: Kind, value: str, stored: str
) -> None:
    entry = checked(kind, value, UNTIL, BEFORE)
    assert (entry.kind, entry.value, entry.until) == (kind, stored, UNTIL)


def test_scoped_kinds_keep_their_issue_time_bound() -> None:
    assert checked(Kind.SUB, "u", UNTIL, BEFORE).before == BEFORE


def test_a_token_entry_ignores_any_issue_time_bound() -> None:
    assert checked(Kind.TOKEN, DIGEST, UNTIL, BEFORE).before is None


@pytest.mark.parametrize(
    ("kind", "value", "field"),
    [
        (Kind.TOKEN, DIGEST.upper(), "digest"),
        (Kind.TOKEN, DIGEST[:-1], "digest"),
        (Kind.TOKEN, DIGEST + "0", "digest"),
        (Kind.TOKEN, "g" * 32, "digest"),
        (Kind.TOKEN, "", "digest"),
        (Kind.TOKEN, 42, "token"),
        (Kind.SUB, "", "sub"),
        (Kind.SUB, "s" * 257, "sub"),
        (Kind.SUB, "user\n42", "sub"),
        (Kind.SUB, "user\x7f", "sub"),
        (Kind.SUB, "lone \ud800 surrogate", "sub"),
        (Kind.SUB, None, "sub"),
        (Kind.KEY_ID, "", "key_id"),
        (Kind.KEY_ID, "k" * 65, "key_id"),
        (Kind.KEY_ID, "k 1", "key_id"),
        (Kind.KEY_ID, "k/1", "key_id"),
        (Kind.KEY_ID, ["k1"], "key_id"),
        (Kind.PREFIX, "", "prefix"),
        (Kind.PREFIX, "videos/", "prefix"),
        (Kind.PREFIX, "//", "prefix"),
        (Kind.PREFIX, "/videos//ep1", "prefix"),
        (Kind.PREFIX, "/videos/ep1//", "prefix"),
        (Kind.PREFIX, "/videos/./ep1", "prefix"),
        (Kind.PREFIX, "/videos/../etc", "prefix"),
        (Kind.PREFIX, "/videos/\x00", "prefix"),
        (Kind.PREFIX, "/videos/\udcff", "prefix"),
    ],
    ids=short,
)
def test_invalid_values_are_refused_naming_the_field(kind: Kind, value: Any, field: str) -> None:
    with pytest.raises(RevocationError, match=f"^{field}:"):
        checked(kind, value, UNTIL, BEFORE)


@pytest.mark.parametrize(
    "time",
    [None, "1790000000", True, False, float("nan"), float("inf"), -1, 2**40, 10**400, [1]],
    ids=short,
)
@pytest.mark.parametrize("name", ["until", "before"])
def test_times_must_be_unix_seconds_in_range(name: str, time: Any) -> None:
    times = {"until": UNTIL, "before": BEFORE, name: time}
    with pytest.raises(RevocationError, match=f"^{name}:"):
        checked(Kind.SUB, "u", times["until"], times["before"])


@pytest.mark.parametrize("time", [0, 1, NOW, NOW + 0.5, 2**40 - 1])
def test_times_are_stored_as_floats(time: float) -> None:
    entry = checked(Kind.KEY_ID, "k1", time, time)
    assert entry.until == entry.before == float(time)
    assert isinstance(entry.until, float)


# -- prefixes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_prefix", "stored"),
    [("/", "/"), ("/a", "/a"), ("/a/", "/a"), ("/a/b c/", "/a/b c"), ("/ü/€", "/ü/€")],
)
def test_a_prefix_is_stored_without_its_trailing_slash(given_prefix: str, stored: str) -> None:
    assert normalise_prefix(given_prefix) == stored


def path_prefixes(path: str) -> list[str]:
    """Every prefix that could cover `path`, spelled out from the segments the view walks."""
    prefixes, current = ["/"], ""
    for segment in path_segments(path):
        current += "/" + segment
        prefixes.append(current)
    return prefixes


@pytest.mark.parametrize(
    ("path", "prefixes"),
    [
        ("/a", ["/", "/a"]),
        ("/a/b", ["/", "/a", "/a/b"]),
        ("/videos/ep1/seg 1.ts", ["/", "/videos", "/videos/ep1", "/videos/ep1/seg 1.ts"]),
    ],
)
def test_path_prefixes_lists_every_segment_boundary(path: str, prefixes: list[str]) -> None:
    assert path_prefixes(path) == prefixes


@given(paths)
def test_path_prefixes_are_exactly_the_prefixes_that_cover_the_path(path: str) -> None:
    found = path_prefixes(path)
    assert len(found) == path.count("/") + 1
    for prefix in found:
        assert normalise_prefix(prefix) == prefix
        assert prefix == "/" or path == prefix or path.startswith(prefix + "/")


@given(paths, st.lists(segments, min_size=1, max_size=3))
def test_a_normalised_prefix_is_found_among_the_prefixes_of_paths_under_it(
    prefix: str, rest: list[str]
) -> None:
    path = prefix + "/" + "/".join(rest)
    assert normalise_prefix(prefix + "/") in path_prefixes(path)


@given(st.lists(segments, min_size=1, max_size=6))
def test_path_segments_are_the_path_split_at_its_slashes(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    assert list(path_segments(path)) == parts
    assert list(path_segments(normalise_prefix(path + "/"))) == parts


def test_the_root_prefix_has_no_segments() -> None:
    assert list(path_segments(normalise_prefix("/"))) == []


def test_the_segments_of_a_deep_path_add_up_to_the_path_itself() -> None:
    """Linear, not quadratic: for 4,000 segments, 4,000 pieces whose sizes sum to the path's
    length (every prefix spelled out would be 4,000 strings of 16 million characters)."""
    path = "/ab" * 4000
    produced = list(path_segments(path))
    assert len(produced) == 4000
    assert sum(len(segment) for segment in produced) == len(path) - 4000


# -- one link, by URL ----------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["", "https://media.example.com"])
def test_a_signed_url_is_revoked_by_its_token_id_until_it_expires(origin: str) -> None:
    target = signed(sub="user-42")
    path, _, query = target.partition("?")
    verified = verify(
        KEYRING, method="GET", raw_path=path, raw_query=query, client_ip=None, now=NOW
    )
    entry = for_url(origin + target, skew=SKEW)
    assert entry == Revocation(Kind.TOKEN, verified.token_id, NOW + 300 + SKEW)
    assert entry.value == token_id(parse_link(path, query).signature)


def presigned_url() -> str:
    """An S3 presigned URL, as botocore makes it for a backend."""
    import botocore.session
    from botocore.config import Config

    client: Any = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://media.example.com",
        aws_access_key_id="GWLINKS01",
        aws_secret_access_key="a-link-secret-of-the-gateway-keyring",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": "media", "Key": "videos/a.mp4"}, ExpiresIn=900
    )
    return url


def test_an_s3_presigned_url_is_revoked_by_its_token_id_until_it_expires() -> None:
    url = presigned_url()
    parts = urlsplit(url)
    link = sigv4_query.parse(parts.path, parts.query)
    entry = for_url(url, skew=SKEW)
    assert entry == Revocation(Kind.TOKEN, link.token_id, link.issued + 900 + SKEW)
    assert entry.value == token_id(bytes.fromhex(url.rpartition("X-Amz-Signature=")[2]))


def test_a_url_with_two_schemes_links_is_refused_as_url() -> None:
    ours = signed().partition("?")[2]
    with pytest.raises(RevocationError, match="more than one scheme"):
        for_url(f"{presigned_url()}&{ours}", skew=SKEW)


def test_a_url_with_application_parameters_is_revoked_by_its_token_id() -> None:
    target = sign_path("/a.mp4", KEYRING, query="app=1", expires_in=60, now=NOW)
    path, _, query = target.partition("?")
    assert for_url(target, skew=0).value == token_id(parse_link(path, query).signature)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://media.example.com/videos/a.mp4",
        "/videos/a.mp4?app=1",
        "/videos/a.mp4?Expires=1&Signature=AAAA",
        "?Expires=1&KeyID=k1&Issued=0&Signature=AAAA",
        "/videos/a%2.mp4?Expires=2&KeyID=k1&Issued=1&Signature=AAAA",
    ],
)
def test_anything_but_a_signed_link_is_refused_as_url(url: str) -> None:
    with pytest.raises(RevocationError, match=r"^url: not a signed link \(") as caught:
        for_url(url, skew=SKEW)
    if url:
        assert url not in str(caught.value)


def test_the_refusal_of_a_url_never_repeats_its_signature() -> None:
    target = signed()
    broken = target.replace("Expires=", "Expires=0", 1)  # leading zero: malformed
    signature = target.rpartition("Signature=")[2]
    with pytest.raises(RevocationError) as caught:
        for_url(broken, skew=SKEW)
    assert signature not in str(caught.value)


# -- operators' requests -------------------------------------------------------------------------


def request(what: str, value: str, before: float | None = None) -> Revocation:
    return from_request(what, value, before=before, now=NOW, max_lifetime=LIFETIME, skew=SKEW)


def test_request_kinds_are_the_operator_vocabulary() -> None:
    assert REQUEST_KINDS == ("url", "digest", "sub", "key_id", "prefix")


def test_a_url_request_is_kept_until_that_link_expires() -> None:
    target = signed(expires_at=NOW + 100)
    assert request("url", target) == for_url(target, skew=SKEW)
    assert request("url", target).until == NOW + 100 + SKEW


def test_a_digest_request_is_kept_for_the_longest_lifetime_a_link_may_have() -> None:
    assert request("digest", DIGEST) == Revocation(Kind.TOKEN, DIGEST, NOW + LIFETIME + SKEW)


@pytest.mark.parametrize(("what", "kind"), [("sub", Kind.SUB), ("key_id", Kind.KEY_ID)])
def test_a_scoped_request_covers_links_issued_until_now_by_default(what: str, kind: Kind) -> None:
    assert request(what, "x1") == Revocation(kind, "x1", NOW + LIFETIME + SKEW, float(NOW))


def test_a_prefix_request_is_normalised() -> None:
    entry = request("prefix", "/videos/ep1/", before=NOW - 10)
    assert entry == Revocation(Kind.PREFIX, "/videos/ep1", NOW - 10 + LIFETIME + SKEW, NOW - 10)


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [("/a%20b", "/a b"), ("/a%20b/", "/a b/"), ("/%C3%BC/x", "/ü/x"), ("/a%2fb", "/a/b")],
)
def test_a_percent_encoded_prefix_is_refused_naming_its_decoded_form(
    encoded: str, decoded: str
) -> None:
    with pytest.raises(RevocationError, match=r"^prefix: give the decoded path") as caught:
        request("prefix", encoded)
    assert repr(decoded) in str(caught.value)


@pytest.mark.parametrize("prefix", ["/a b", "/ü/€", "/100%", "/a%zz", "/a%2"])
def test_a_decoded_prefix_is_taken_as_given(prefix: str) -> None:
    assert request("prefix", prefix).value == prefix


@given(st.lists(segments, min_size=1, max_size=4), st.sampled_from([" ", "ü", "%", "?", "#"]))
def test_the_prefix_that_covers_a_decoded_path_is_the_decoded_path(
    parts: list[str], odd: str
) -> None:
    path = "/" + "/".join(parts) + odd
    assume("%" not in path[:-1])  # a literal %XX is the one decoded prefix that cannot be given
    entry = request("prefix", path + "/")
    view = RevocationView()
    view.apply(entry)
    issued = Claims(expires=NOW + 300, key_id="k1", issued=NOW - 20)
    assert view.revoked(issued, DIGEST, path + "/x") is Kind.PREFIX


@given(
    st.sampled_from(["sub", "key_id", "prefix"]),
    st.integers(min_value=int(NOW - LIFETIME), max_value=2**39),
)
def test_a_scoped_entry_lives_until_its_last_possible_link_has_expired(
    what: str, before: int
) -> None:
    entry = request(what, "/p" if what == "prefix" else "v", before=before)
    assert entry.before == before
    assert entry.until == before + LIFETIME + SKEW


@pytest.mark.parametrize("what", ["sub", "key_id", "prefix"])
def test_a_bound_so_old_that_every_matching_link_has_expired_is_refused(what: str) -> None:
    with pytest.raises(RevocationError, match=r"^before: every link issued that early"):
        request(what, "/p" if what == "prefix" else "v", before=NOW - LIFETIME - SKEW)


@pytest.mark.parametrize("what", ["url", "digest"])
def test_before_is_refused_for_a_single_link(what: str) -> None:
    value = signed() if what == "url" else DIGEST
    with pytest.raises(RevocationError, match=r"^before: applies to sub, key_id and prefix"):
        request(what, value, before=NOW)


@pytest.mark.parametrize("what", ["token", "signature", "", "URL", "key-id"])
def test_an_unknown_kind_of_request_is_refused(what: str) -> None:
    with pytest.raises(RevocationError, match="one of url, digest, sub, key_id, prefix"):
        request(what, "x")


@pytest.mark.parametrize(
    "before", ["yesterday", "1790000000", True, -5, float("nan"), 2**40, 10**400, [1]], ids=short
)
def test_an_invalid_before_is_refused(before: Any) -> None:
    with pytest.raises(RevocationError, match=r"^before:"):
        request("sub", "u", before=before)


@pytest.mark.parametrize(
    ("what", "value", "field"),
    [
        ("digest", "not-a-digest", "digest"),
        ("sub", "", "sub"),
        ("key_id", "bad key", "key_id"),
        ("prefix", "relative/path", "prefix"),
        ("url", "https://example.com/a.mp4", "url"),
    ],
)
def test_an_invalid_request_names_the_field(what: str, value: str, field: str) -> None:
    with pytest.raises(RevocationError, match=f"^{field}:"):
        request(what, value)


def test_as_dict_is_json_serialisable() -> None:
    entry = request("prefix", "/a/b/")
    assert json.loads(json.dumps(entry.as_dict()))["value"] == "/a/b"
