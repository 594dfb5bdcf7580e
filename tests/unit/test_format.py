"""The format's parsing rules, one behaviour per case."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import string
import unicodedata
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from signer import Reason, Rejected, SigningError, SignOptions, is_token_id, token_id
from signer.format import (
    MAX_TIME,
    PARAM_ORDER,
    Claims,
    IPNetwork,
    b64decode,
    b64encode,
    canonical,
    canonical_ip,
    check_app_query,
    decode,
    decode_payload,
    encode_claims,
    encode_payload,
    format_ip,
    has_token,
    is_path_form,
    parse_link,
    path_form,
    resembles_token_parameter,
    strip_path_token,
    unverified_prefix_covers,
    valid_sub,
)
from signer.params import PARAMS, ip_binding
from signer.sign import TIMING_OPTIONS, content_disposition

BLOCK = "Expires=2000000000&KeyID=k1&Issued=1900000000"
SIG = "&Signature=" + b64encode(bytes(32))


def reason_of(path: str, query: str) -> Reason:
    with pytest.raises(Rejected) as caught:
        parse_link(path, query)
    return caught.value.reason


@given(st.text())
def test_canonical_encoding_decodes_back(text: str) -> None:
    try:
        raw = canonical(text)
    except UnicodeEncodeError:
        return  # lone surrogates cannot be encoded, so they cannot be signed either
    assert decode(raw, "x") == text


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_decode_accepts_exactly_the_canonical_spelling(raw: str) -> None:
    try:
        text = decode(raw, "x")
    except Rejected as exc:
        assert exc.reason is Reason.MALFORMED  # noqa: PT017 (a property over both branches)
    else:
        assert canonical(text) == raw


@given(st.binary(max_size=80))
def test_base64url_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data), "x") == data


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=12))
def test_base64url_accepts_exactly_what_encoding_gives(text: str) -> None:
    try:
        data = b64decode(text, "x")
    except Rejected:
        canonical_text = len(text) % 4 != 1 and b64encode(_lenient_b64decode(text)) == text
        assert not canonical_text
    else:
        assert b64encode(data) == text


def _lenient_b64decode(text: str) -> bytes:
    """Any bits past the data's end ignored, as base64 decoders do."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("text", ["YQ==", "YQ=", "YR", "Y", "a+b/", "a b"])
def test_base64url_refuses_padding_stray_bits_and_other_alphabets(text: str) -> None:
    with pytest.raises(Rejected):
        b64decode(text, "x")


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/a", "", Reason.MISSING),
        ("/a", "w=1&h=2", Reason.MISSING),
        ("/a", f"{BLOCK}", Reason.MALFORMED),
        ("/a", f"{BLOCK}{SIG}&x=1", Reason.MALFORMED),
        ("/a", f"KeyID=k1&{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", f"Signature=x&{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", f"EXPIRES=1&{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", f"%45xpires=1&{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", f"w=1&&{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", "Expires=2000000000&Issued=1900000000" + SIG, Reason.MALFORMED),
        ("/a", "Expires=2000000000&KeyID=k1" + SIG, Reason.MALFORMED),
        ("/a", f"{BLOCK}&Starts" + SIG, Reason.MALFORMED),
        ("/a", f"{BLOCK}&OneTime=1{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Method=PUT&OneTime=yes{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Method=get{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&IP=::ffff:0:0/96x{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&IP=2001:DB8::1{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&IP=10.0.0.1/32{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Sub={SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Sub=a%0Ab{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Method=PUT&ContentType=Image/png{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Method=PUT&MinBytes=9&MaxBytes=8{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&MaxStreams=0{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Method=PUT&MaxUses=1{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Rate=1&MaxServed=1{SIG}", Reason.MALFORMED),
        ("/a", "Expires=-1&KeyID=k1&Issued=0" + SIG, Reason.MALFORMED),
        ("/a", "Expires=1e9&KeyID=k1&Issued=0" + SIG, Reason.MALFORMED),
        ("/a", "Expires=2000000000&KeyID=k%31&Issued=0" + SIG, Reason.MALFORMED),
        ("/a", "Expires=2000000000&KeyID=&Issued=0" + SIG, Reason.MALFORMED),
        ("/", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("a", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a/", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a/./b", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a/%2E%2E/b", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a%00b", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a%FF", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a%2", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a b", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/ä", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a+b", f"{BLOCK}{SIG}", Reason.MALFORMED),
        ("/a", f"{BLOCK}&Signature=" + b64encode(bytes(31)) + "=", Reason.MALFORMED),
    ],
)
def test_malformed_and_missing_tokens(path: str, query: str, expected: Reason) -> None:
    assert reason_of(path, query) is expected


def test_a_well_formed_target_parses_into_claims_and_signed_bytes() -> None:
    link = parse_link("/v/a%20b.mp4", f"w=1&{BLOCK}&Sub=u@x&Signature={b64encode(bytes(32))}")
    assert link.path == "/v/a b.mp4"
    assert link.claims == Claims(
        expires=2_000_000_000, key_id="k1", issued=1_900_000_000, sub="u@x"
    )
    assert link.signed == b"EDGE-TOKEN-V1\n/v/a%20b.mp4\nw=1&" + BLOCK.encode() + b"&Sub=u@x"


def test_a_prefix_token_signs_no_path() -> None:
    link = parse_link("/hls/1/a.ts", f"{BLOCK}&Prefix=/hls/1/{SIG}")
    assert link.signed == b"EDGE-TOKEN-V1\n\n" + BLOCK.encode() + b"&Prefix=/hls/1/"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (Claims(expires=2, key_id="k", issued=1), "Expires=2&KeyID=k&Issued=1"),
        (
            Claims(expires=2, key_id="k", issued=1, prefix="/ü b/", sub="a&b=c"),
            "Expires=2&KeyID=k&Issued=1&Prefix=/%C3%BC%20b/&Sub=a%26b%3Dc",
        ),
        (
            Claims(
                expires=9,
                key_id="k",
                issued=1,
                starts=3,
                method="PUT",
                content_type="image/",
                min_bytes=0,
                max_bytes=5,
                no_overwrite=True,
                one_time=True,
            ),
            "Expires=9&KeyID=k&Issued=1&Starts=3&Method=PUT&ContentType=image/&MinBytes=0"
            "&MaxBytes=5&NoOverwrite=1&OneTime=1",
        ),
    ],
)
def test_claims_encode_in_the_fixed_order(claims: Claims, expected: str) -> None:
    assert encode_claims(claims) == expected


@pytest.mark.parametrize("query", ["a=1", "a", "a=%20&b=", "x=Expires"])
def test_application_parameters_that_cannot_be_confused_are_allowed(query: str) -> None:
    check_app_query(query)


@pytest.mark.parametrize("query", ["keyid=1", "a=1&&b=2", "", "a=1&SIGNATURE=2", "a=\x7f"])
def test_application_parameters_that_could_be_confused_are_refused(query: str) -> None:
    with pytest.raises(Rejected):
        check_app_query(query)


@pytest.mark.parametrize(
    ("method", "bound", "allowed"),
    [
        ("GET", None, True),
        ("HEAD", None, True),
        ("PUT", None, False),
        ("GET", "GET", True),
        ("HEAD", "GET", True),
        ("HEAD", "HEAD", True),
        ("GET", "HEAD", False),
        ("PUT", "PUT", True),
        ("GET", "PUT", False),
        ("HEAD", "PUT", False),
        ("DELETE", None, False),
        ("POST", "GET", False),
    ],
)
def test_method_binding(method: str, bound: str | None, allowed: bool) -> None:
    claims = Claims(expires=2, key_id="k", issued=1, method=bound)
    assert claims.allows_method(method) is allowed


# --- the path form ----------------------------------------------------------------------------

TARGET = f"/hls/ep1/master.m3u8?{BLOCK}&Prefix=/hls/ep1/{SIG}"


def test_the_path_form_is_the_query_moved_into_a_leading_segment() -> None:
    moved = path_form(TARGET)
    assert moved == f"/token={encode_payload(TARGET.partition('?')[2])}/hls/ep1/master.m3u8"
    assert parse_link(moved, "") == parse_link(*TARGET.split("?"))


@pytest.mark.parametrize(
    ("path", "form"),
    [("/token=abc/x", True), ("/token%3Dabc/x", False), ("/x/token=abc/y", False), ("/t", False)],
)
def test_only_a_leading_token_segment_is_the_path_form(path: str, form: bool) -> None:
    assert is_path_form(path) is form


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_the_payload_encoding_round_trips_any_visible_ascii_query(query: str) -> None:
    assert decode_payload(encode_payload(query), "x") == query


@pytest.mark.parametrize(
    "path",
    [
        "/token=" + encode_payload(TARGET.partition("?")[2]),  # no object path
        "/token=/hls/ep1/a.ts",  # empty payload
        "/token=" + encode_payload(TARGET.partition("?")[2]) + "=/hls/ep1/a.ts",  # padding
        "/token=" + b64encode("é".encode()) + "/hls/ep1/a.ts",  # not ASCII
        "/token=" + encode_payload("w=640") + "/hls/ep1/a.ts",  # no token block
    ],
)
def test_a_broken_path_form_is_malformed(path: str) -> None:
    assert reason_of(path, "") is Reason.MALFORMED


def test_a_path_form_target_with_a_query_is_malformed() -> None:
    assert reason_of(path_form(TARGET), "w=1") is Reason.MALFORMED


@pytest.mark.parametrize(
    ("raw_path", "logged"),
    [
        (path_form(TARGET), "/token=<redacted>/hls/ep1/master.m3u8"),
        ("/token=abc", "/token=<redacted>"),
        ("/hls/ep1/master.m3u8", "/hls/ep1/master.m3u8"),
    ],
)
def test_the_token_segment_is_redacted_for_logs(raw_path: str, logged: str) -> None:
    assert strip_path_token(raw_path) == logged


@pytest.mark.parametrize(
    ("raw_path", "logged"),
    [
        ("/TOKEN=abc/a.ts", "/TOKEN=<redacted>/a.ts"),
        ("/Token=abc/a.ts", "/Token=<redacted>/a.ts"),
        ("/token=abc/token=def/a.ts", "/token=<redacted>/token=<redacted>/a.ts"),
        ("/hls/token=abc/a.ts", "/hls/token=<redacted>/a.ts"),
        ("/%74oken=abc/a.ts", "/%74oken=<redacted>/a.ts"),
        ("/token%3Dabc/a.ts", "/token%3D<redacted>/a.ts"),
        ("/token=/a.ts", "/token=<redacted>/a.ts"),
        ("/mytoken=abc/a.ts", "/mytoken=abc/a.ts"),
        ("/tokens/a.ts", "/tokens/a.ts"),
        ("/a%20b/c.ts", "/a%20b/c.ts"),
    ],
)
def test_every_segment_that_reads_token_is_redacted_for_logs(raw_path: str, logged: str) -> None:
    assert strip_path_token(raw_path) == logged


@given(
    st.lists(st.text("abc=/", max_size=4).map(lambda s: s.replace("/", "")), max_size=4),
    st.sampled_from(["token=", "TOKEN=", "tOkEn=", "%54oken=", "t%4Fk%65n=", "token%3d"]),
    st.text(st.characters(blacklist_characters="/", codec="ascii"), min_size=1, max_size=30),
)
def test_no_token_value_survives_in_any_position(before: list[str], name: str, value: str) -> None:
    secret = "S3cr3t" + value
    raw_path = "".join(f"/{s}" for s in before) + f"/{name}{secret}/a.ts"
    logged = strip_path_token(raw_path)
    assert secret not in logged
    assert logged.endswith(f"/{name}<redacted>/a.ts")


# --- response overrides -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/pdf",
        "text/plain; charset=utf-8",
        'text/plain;charset="utf-8"',
        "video/mp4; codecs=avc1.42E01E",
    ],
)
def test_response_content_types_that_are_valid_header_values(value: str) -> None:
    claims = Claims(expires=2, key_id="k", issued=1, response_content_type=value).validate()
    assert parse_link("/a.pdf", encode_claims(claims) + SIG).claims == claims


@pytest.mark.parametrize(
    "value",
    ["text", "text/", "/plain", "text/plain\r\nSet-Cookie: a=b", "text/pl ain", "tëxt/plain", ""],
)
def test_response_content_types_that_could_break_a_header_are_malformed(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        Claims(expires=2, key_id="k", issued=1, response_content_type=value).validate()
    assert caught.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "value",
    [
        'attachment; filename="a\nb.pdf"',
        'attachment; filename="a"b.pdf"',
        "attachment;",
        "attachment; filename=a b.pdf",
        "attachment; filename=" + "a" * 600,
    ],
)
def test_response_dispositions_that_could_break_a_header_are_malformed(value: str) -> None:
    with pytest.raises(Rejected):
        Claims(expires=2, key_id="k", issued=1, response_content_disposition=value).validate()


def test_response_overrides_are_refused_on_upload_tokens() -> None:
    with pytest.raises(Rejected):
        Claims(
            expires=2, key_id="k", issued=1, method="PUT", response_content_type="text/plain"
        ).validate()


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("invoice-2026-11.pdf", 'attachment; filename="invoice-2026-11.pdf"'),
        (
            "Rechnung März.pdf",
            "attachment; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf",
        ),
        (
            'a "quoted" 100%.txt',
            'attachment; filename="a _quoted_ 100_.txt"; '
            "filename*=UTF-8''a%20%22quoted%22%20100%25.txt",
        ),
    ],
)
def test_content_disposition_names_any_file_with_a_valid_header_value(
    filename: str, expected: str
) -> None:
    value = content_disposition(filename)
    assert value == expected
    Claims(expires=2, key_id="k", issued=1, response_content_disposition=value).validate()


@given(st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40))
def test_content_disposition_always_gives_a_valid_override(filename: str) -> None:
    assume("/" not in filename and "\\" not in filename)
    value = content_disposition(filename)
    Claims(expires=2, key_id="k", issued=1, response_content_disposition=value).validate()


@given(st.binary(max_size=64))
def test_every_token_id_has_the_token_id_shape(signature: bytes) -> None:
    assert is_token_id(token_id(signature))


@pytest.mark.parametrize(
    "text",
    ["", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 32 + "\n", "\u0660" * 32, " " + "0" * 31],
)
def test_anything_else_is_not_a_token_id(text: str) -> None:
    assert not is_token_id(text)


@pytest.mark.parametrize(
    ("query", "carried"),
    [
        (BLOCK + SIG, True),
        ("w=640&" + BLOCK, True),
        ("Expires=", True),  # a token, if a malformed one: it is judged, not ignored
        ("w=640", False),
        ("", False),
        ("xExpires=1", False),
        ("expires=1", False),
        ("w=Expires=1", False),
    ],
)
def test_has_token_says_whether_the_query_carries_a_token_block(query: str, carried: bool) -> None:
    assert has_token(query) is carried


@pytest.mark.parametrize(
    ("path", "query", "covers"),
    [
        ("/hls/ep1/a.ts", BLOCK + "&Prefix=/hls/ep1/" + SIG, True),
        ("/hls/ep1/a.ts", BLOCK + "&Prefix=/" + SIG, True),
        ("/hls/ep10/a.ts", BLOCK + "&Prefix=/hls/ep1/" + SIG, False),
        ("/hls/ep1/a.ts", BLOCK + SIG, False),
        ("/hls/ep1/a.ts", BLOCK + "&Prefix=/hls/ep1/", False),  # malformed: no Signature
        ("/hls/ep1//a.ts", BLOCK + "&Prefix=/hls/ep1/" + SIG, False),
    ],
)
def test_an_unverified_prefix_is_read_only_from_a_well_formed_token(
    path: str, query: str, covers: bool
) -> None:
    assert unverified_prefix_covers(path, query) is covers


# --- the parameter table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "limited"),
    [
        ({}, False),
        ({"response_content_type": "text/plain"}, False),
        ({"max_streams": 1}, True),
        ({"max_uses": 1}, True),
        ({"max_served": 1}, True),
        ({"rate": 1}, True),
    ],
)
def test_only_usage_limits_make_a_link_limited_and_they_are_no_response_override(
    extra: dict[str, Any], limited: bool
) -> None:
    claims = Claims(expires=2, key_id="k1", issued=1, **extra).validate()
    assert claims.has_limits is limited
    assert claims.has_response_overrides is ("response_content_type" in extra)


def test_claims_has_one_field_per_row_of_the_table_in_its_order() -> None:
    assert [f.name for f in dataclasses.fields(Claims)] == [p.field for p in PARAMS]


def test_the_signing_options_are_the_tables_keywords_and_the_timing_options() -> None:
    keywords = {p.keyword for p in PARAMS if p.keyword is not None}
    assert set(SignOptions.__annotations__) == keywords | TIMING_OPTIONS


def test_the_parameter_order_is_the_tables_then_signature() -> None:
    assert (*(p.name for p in PARAMS), "Signature") == PARAM_ORDER


READING = st.sampled_from([None, "GET", "HEAD"])
subs = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40)
networks = (
    st.ip_addresses()
    .map(ipaddress.ip_network)
    .filter(lambda n: not (n.version == 6 and n.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))))
)


@st.composite
def any_claims(draw: st.DrawFn) -> Claims:
    """Valid claims of every shape the table allows: reading or uploading, any binding."""
    expires = draw(st.integers(1, MAX_TIME))
    values: dict[str, object] = {
        "expires": expires,
        "key_id": draw(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)),
        "issued": draw(st.integers(0, expires - 1)),
        "starts": draw(st.none() | st.integers(0, expires - 1)),
        "ip": draw(st.none() | networks),
        "prefix": draw(st.sampled_from([None, "/", "/a b/", "/ü/€/"])),
        "sub": draw(st.none() | subs),
    }
    if draw(st.booleans()):
        low = draw(st.none() | st.integers(0, 2**63 - 1))
        values |= {
            "method": "PUT",
            "content_type": draw(st.sampled_from([None, "image/", "application/vnd.api+json"])),
            "min_bytes": low,
            "max_bytes": draw(st.none() | st.integers(low or 0, 2**63 - 1)),
            "no_overwrite": draw(st.booleans()),
            "one_time": draw(st.booleans()),
        }
    else:
        values |= {
            "method": draw(READING),
            "response_content_type": draw(st.sampled_from([None, "text/plain; charset=utf-8"])),
            "response_content_disposition": draw(
                st.none()
                | subs.filter(lambda n: "/" not in n and "\\" not in n).map(content_disposition)
            ),
        }
    return Claims(**values)  # type: ignore[arg-type]


@given(any_claims())
def test_every_valid_claim_set_round_trips_through_the_wire(claims: Claims) -> None:
    raw_path = "/a" if claims.prefix is None else canonical(claims.prefix + "a")
    assert parse_link(raw_path, encode_claims(claims) + SIG).claims == claims


# --- 1.2: step order, names resembling token parameters, application parameters --------------


@pytest.mark.parametrize(
    ("path", "query"),
    [("/videos//a.mp4", ""), ("/a%ZZ", "w=%"), ("/a/../b", "x=<&&y"), ("/a b", "#")],
)
def test_without_any_token_the_reason_is_missing_whatever_else_is_wrong(
    path: str, query: str
) -> None:
    assert reason_of(path, query) is Reason.MISSING


@pytest.mark.parametrize(
    ("part", "resembles"),
    [
        ("ISSUED=1", True),
        ("%49ssued=1", True),
        ("%4beyID=1", True),
        ("Sub", True),
        ("signature=x", True),
        ("I%C3%9Fued=1", False),  # sharp s: Unicode case folding would say Issued
        ("%C5%BFub=1", False),  # long s
        ("%E2%84%AAeyID=1", False),  # Kelvin sign
        ("Pre%EF%AC%81x=1", False),  # fi ligature
        ("Subs=1", False),
        ("x=Expires", False),
        ("%%45xpires=1", False),
    ],
)
def test_a_name_resembles_a_token_parameter_under_ascii_folding_only(
    part: str, resembles: bool
) -> None:
    assert resembles_token_parameter(part) is resembles


@given(st.sampled_from(PARAM_ORDER), st.data())
def test_every_ascii_case_and_escape_spelling_of_a_token_name_resembles_it(
    name: str, data: st.DataObject
) -> None:
    spelled = "".join(
        data.draw(st.sampled_from([c.lower(), c.upper(), f"%{ord(c):02X}", f"%{ord(c):02x}"]))
        for c in name
    )
    assert resembles_token_parameter(f"{spelled}=1")


@pytest.mark.parametrize(
    "query",
    ["a=#", "a=<", 'a="', "a={", "a=}", "a=|", "a=\\", "a=^", "a=`", "a=[", "a=]", "a=%", "a=%G1"],
)
def test_application_parameters_outside_rfc_3986_are_refused(query: str) -> None:
    with pytest.raises(Rejected):
        check_app_query(query)


@pytest.mark.parametrize("query", ["a=!$'()*+,;:@/?", "b=%7e%7E", "c", "I%C3%9Fued=1"])
def test_application_parameters_of_rfc_3986_query_characters_are_allowed(query: str) -> None:
    check_app_query(query)


# --- 1.2: values --------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 3, 31, 33, 63, 65])
def test_a_signature_of_neither_32_nor_64_bytes_is_malformed_before_any_key(length: int) -> None:
    query = f"Expires=2000000000&KeyID=nope&Issued=1900000000&Signature={b64encode(bytes(length))}"
    assert reason_of("/a", query) is Reason.MALFORMED


@given(st.text(min_size=1, max_size=256))
def test_sub_refuses_exactly_the_unicode_control_characters(sub: str) -> None:
    """Category Cc (C0, DEL, C1): what a verifier in any language finds in Unicode's data."""
    assert valid_sub(sub) is not any(unicodedata.category(c) == "Cc" for c in sub)


@pytest.mark.parametrize(
    ("sub", "valid"),
    [("\U0001d11e" * 256, True), ("\U0001d11e" * 257, False), ("a\x85b", False), ("", False)],
)
def test_sub_length_counts_code_points(sub: str, valid: bool) -> None:
    assert valid_sub(sub) is valid


@pytest.mark.parametrize(
    ("written", "canonical_text"),
    [
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # the first of two equal runs
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  # one zero field stays
        ("2001:0DB8::0001", "2001:db8::1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),  # the longest run
        ("0:0:0:0:0:0:0:0", "::"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.7/32", "203.0.113.7"),
    ],
)
def test_ip_bindings_are_written_as_rfc_5952_says(written: str, canonical_text: str) -> None:
    assert format_ip(ip_binding(written)) == canonical_text


@given(networks)
def test_every_written_ip_binding_is_read_back_as_itself(network: IPNetwork) -> None:
    assert canonical_ip(format_ip(network)) == network


@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%25eth0", "FE80::1", "10.0.0.01"])
def test_an_ip_binding_with_a_zone_id_or_another_spelling_is_malformed(value: str) -> None:
    with pytest.raises(Rejected):
        canonical_ip(value)


def test_the_signer_refuses_to_bind_a_zone_id() -> None:
    with pytest.raises(SigningError, match="zone id"):
        ip_binding("fe80::1%eth0")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("image/", True),
        ("application/vnd.api+json", True),
        ("image/" + "a" * 127, True),
        ("image/" + "a" * 128, False),
        ("image/png; q=1", False),
        ("Image/png", False),
        ("image/p*ng", False),
        ("image/.png", False),
        ("image", False),
    ],
)
def test_an_upload_content_type_is_a_pair_of_rfc_6838_restricted_names(
    value: str, valid: bool
) -> None:
    claims = Claims(expires=2, key_id="k", issued=1, method="PUT", content_type=value)
    if valid:
        claims.validate()
    else:
        with pytest.raises(Rejected):
            claims.validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("response_content_type", "text/plain\t; charset=utf-8"),
        ("response_content_type", "text/plain;\tcharset=utf-8"),
        ("response_content_disposition", "attachment;\tfilename=a.pdf"),
    ],
)
def test_a_tab_in_a_response_override_is_malformed(field: str, value: str) -> None:
    with pytest.raises(Rejected):
        Claims(expires=2, key_id="k", issued=1, **{field: value}).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("filename", ["a\x85b.pdf", "a\x9fb.pdf"])
def test_content_disposition_refuses_c1_controls_like_every_control(filename: str) -> None:
    with pytest.raises(SigningError):
        content_disposition(filename)
