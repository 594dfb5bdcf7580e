"""The presigned POST policy verifier accepts exactly what botocore's `generate_presigned_post`
signs, and judges a form's fields by S3's condition rules."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from signer import Algorithm, Keyring, Reason, Rejected, Status, new_key, token_id
from signer.format import b64encode
from signer.keys import LinkScheme
from signer.schemes import scheme_words
from signer.schemes.sigv4_post import (
    NAME,
    WORDS,
    Policy,
    field_name,
    parse_policy,
    readable,
    signature,
    verify,
)
from signer.schemes.sigv4_query import link_signing_key

KEY = new_key("GWLINKS01", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4)
EU_KEY = new_key(
    "GWLINKSEU", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4, region="eu-west-1"
)
EDGE_KEY = new_key("edge-1", Algorithm.ED25519, Status.ACTIVE)
KEYRING = Keyring([EDGE_KEY, KEY, EU_KEY])
NOW = datetime(2026, 12, 1, 14, 0, 59, tzinfo=UTC)
CLIENTS: dict[str, Any] = {}


def presigned_post(
    key: str = "uploads/${filename}",
    fields: dict[str, str] | None = None,
    conditions: list[Any] | None = None,
    expires_in: int = 600,
    signing_key: Any = KEY,
) -> dict[str, str]:
    """botocore's fields for a POST, signed at NOW."""
    client: Any = CLIENTS.get(signing_key.id)
    if client is None:  # made once per key: making one takes longer than presigning
        assert signing_key.secret is not None
        client = CLIENTS[signing_key.id] = botocore.session.get_session().create_client(
            "s3",
            region_name=signing_key.region or "us-east-1",
            endpoint_url="http://127.0.0.1:8080",
            aws_access_key_id=signing_key.id,
            aws_secret_access_key=b64encode(signing_key.secret),
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
        patch.setattr("botocore.signers.get_current_datetime", lambda: NOW)
        post = client.generate_presigned_post(
            "media", key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )
    signed: dict[str, str] = post["fields"]
    return signed


def lower(fields: Mapping[str, str]) -> dict[str, str]:
    """The fields as the gateway reads them: names lower-cased."""
    return {name.lower(): value for name, value in fields.items()}


def at(offset: float = 0) -> float:
    return NOW.timestamp() + offset


# --- botocore's policies verify, and their fields meet their conditions ----------------------

FIELD_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    key=st.from_regex(r"[a-z0-9/._-]{1,40}", fullmatch=True),
    content_type=st.sampled_from(["image/png", "video/mp4", "application/pdf"]),
    low=st.integers(0, 10**6),
    span=st.integers(0, 10**9),
    status=st.sampled_from(["200", "201", "204"]),
    note=FIELD_VALUES,
    expires_in=st.integers(1, 7 * 86400),
    eu=st.booleans(),
)
def test_any_policy_botocore_signs_verifies_and_its_fields_meet_it(
    key: str,
    content_type: str,
    low: int,
    span: int,
    status: str,
    note: str,
    expires_in: int,
    eu: bool,
) -> None:
    fields = {"Content-Type": content_type, "success_action_status": status, "x-ignore-n": note}
    conditions: list[Any] = [
        ["content-length-range", low, low + span],
        {"Content-Type": content_type},
        ["eq", "$success_action_status", status],
    ]
    signed = presigned_post(key, fields, conditions, expires_in, EU_KEY if eu else KEY)

    checked = verify(KEYRING, lower(signed), now=at())

    assert checked.claims.key_id == (EU_KEY if eu else KEY).id
    assert checked.claims.expires - checked.claims.issued == expires_in
    assert checked.token_id == token_id(bytes.fromhex(signed["x-amz-signature"]))
    assert checked.policy.length_range == (low, low + span)
    assert checked.policy.unmet({**lower(signed), "bucket": "media"}) is None


def test_the_signature_is_hmac_of_the_base64_policy_with_the_sigv4_key() -> None:
    signed = presigned_post()
    date = signed["x-amz-date"][:8]
    signing = link_signing_key(KEYRING, KEY.id, date, "us-east-1")
    assert signature(signing, signed["policy"]) == signed["x-amz-signature"]


# --- refused: what is wrong with the policy or its fields -----------------------------------


def tampered_policy(signed: dict[str, str]) -> str:
    document = json.loads(base64.b64decode(signed["policy"]))
    document["conditions"][0] = ["content-length-range", 0, 10**9]
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: {**f, "policy": tampered_policy(f)}, Reason.BAD_SIGNATURE),
        (lambda f: {**f, "policy": "é" + f["policy"]}, Reason.BAD_SIGNATURE),
        (lambda f: {**f, "x-amz-signature": "0" * 64}, Reason.BAD_SIGNATURE),
        (lambda f: {**f, "x-amz-signature": "0" * 63}, Reason.MALFORMED),
        (lambda f: {**f, "x-amz-algorithm": "AWS4-HMAC-SHA1"}, Reason.MALFORMED),
        (lambda f: {**f, "x-amz-credential": "GWLINKS01/20261201/us-east-1/s3"}, Reason.MALFORMED),
        (lambda f: {**f, "x-amz-date": "20261202T000000Z"}, Reason.MALFORMED),
        (lambda f: {**f, "x-amz-date": "2026-12-01"}, Reason.MALFORMED),
        (
            lambda f: {**f, "x-amz-credential": f["x-amz-credential"].replace("GWLINKS01", "NO")},
            Reason.UNKNOWN_KEY,
        ),
        (
            lambda f: {
                **f,
                "x-amz-credential": f["x-amz-credential"].replace("GWLINKS01", "edge-1"),
            },
            Reason.UNKNOWN_KEY,
        ),
        (lambda f: {k: v for k, v in f.items() if k != "policy"}, Reason.MALFORMED),
        (lambda f: {"key": f["key"]}, Reason.MISSING),
        (lambda f: {"key": f["key"], "awsaccesskeyid": "a", "signature": "b"}, Reason.MALFORMED),
        (lambda f: {**f, "x-amz-security-token": "t"}, Reason.MALFORMED),
    ],
    ids=[
        "policy",
        "policy-not-ascii",
        "signature",
        "signature-short",
        "algorithm",
        "credential-shape",
        "date-of-another-day",
        "date-shape",
        "unknown-key",
        "our-token-key",
        "no-policy",
        "nothing",
        "sigv2",
        "temporary-credentials",
    ],
)
def test_a_tampered_form_is_refused_with_its_reason(tamper: Any, reason: Reason) -> None:
    signed = lower(presigned_post())
    with pytest.raises(Rejected) as refused:
        verify(KEYRING, tamper(signed), now=at())
    assert refused.value.reason is reason


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(600 + 30, Reason.EXPIRED), (-31, Reason.NOT_YET_VALID)],
    ids=["past-the-expiration-and-skew", "before-x-amz-date-and-skew"],
)
def test_a_policy_outside_its_time_is_refused(offset: float, reason: Reason) -> None:
    with pytest.raises(Rejected) as refused:
        verify(KEYRING, lower(presigned_post()), now=at(offset))
    assert refused.value.reason is reason
    assert refused.value.claims is not None  # authentic: its key id may be logged


@pytest.mark.parametrize("offset", [-30, 0, 600 + 29])
def test_a_policy_within_its_time_and_the_skew_is_accepted(offset: float) -> None:
    assert verify(KEYRING, lower(presigned_post()), now=at(offset)).claims.key_id == KEY.id


def test_a_retired_key_is_refused() -> None:
    signed = lower(presigned_post())
    with pytest.raises(Rejected) as refused:
        verify(KEYRING.retired(KEY.id), signed, now=at())
    assert refused.value.reason is Reason.RETIRED_KEY


# --- the policy document: one reading only -------------------------------------------------


def encoded(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


GOOD_EXPIRATION = "2026-12-01T15:00:00Z"


@pytest.mark.parametrize(
    "policy",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        encoded([]),
        encoded({"expiration": GOOD_EXPIRATION}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [], "more": 1}),
        base64.b64encode(
            b'{"expiration": "2026-12-01T15:00:00Z", "conditions": [], "conditions": []}'
        ).decode(),
        encoded({"expiration": "2026-12-01 15:00:00", "conditions": []}),
        encoded({"expiration": "2026-13-01T15:00:00Z", "conditions": []}),
        encoded({"expiration": 1796132737, "conditions": []}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": {}}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [{"a": "1", "b": "2"}]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [{"a": 1}]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["eq", "key", "a"]]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["eq", "$key"]]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["in", "$key", "a"]]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["content-length-range", 5, 1]]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["content-length-range", -1, 1]]}),
        encoded(
            {"expiration": GOOD_EXPIRATION, "conditions": [["content-length-range", 0, 6 * 2**30]]}
        ),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["content-length-range", 0, 1.5]]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [{"policy": "x"}]}),
        encoded({"expiration": GOOD_EXPIRATION, "conditions": [["eq", "$file", ""]]}),
    ],
    ids=[
        "not-base64",
        "not-json",
        "not-an-object",
        "no-conditions",
        "another-member",
        "a-member-twice",
        "expiration-shape",
        "expiration-not-a-date",
        "expiration-a-number",
        "conditions-not-a-list",
        "object-with-two-fields",
        "object-value-not-a-string",
        "field-without-dollar",
        "operator-short",
        "unknown-operator",
        "range-reversed",
        "range-negative",
        "range-above-5-gib",
        "range-not-whole",
        "condition-on-the-policy",
        "condition-on-the-file",
    ],
)
def test_a_policy_document_s3_would_not_read_is_malformed(policy: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse_policy(policy)
    assert refused.value.reason is Reason.MALFORMED


@given(st.binary(max_size=200))
def test_any_policy_text_parses_or_is_malformed_never_another_error(data: bytes) -> None:
    reason = Reason.MALFORMED
    try:
        parse_policy(base64.b64encode(data).decode())
    except Rejected as exc:
        reason = exc.reason
    assert reason is Reason.MALFORMED


def test_fractional_seconds_and_string_bounds_are_read_as_s3_reads_them() -> None:
    policy = parse_policy(
        encoded(
            {
                "expiration": "2026-12-01T15:00:00.500Z",
                "conditions": [["content-length-range", "1", "9"]],
            }
        )
    )
    assert (policy.expiration, policy.length_range) == (int(NOW.timestamp()) + 3541, (1, 9))


# --- conditions: what the fields must say ---------------------------------------------------


def policy(*conditions: object) -> Policy:
    return parse_policy(encoded({"expiration": GOOD_EXPIRATION, "conditions": list(conditions)}))


@pytest.mark.parametrize(
    ("conditions", "fields", "unmet"),
    [
        ([{"key": "a.png"}], {"key": "a.png"}, None),
        ([{"key": "a.png"}], {"key": "a.PNG"}, 'Policy Condition failed: {"key": "a.png"}'),
        ([["eq", "$Key", "a"]], {"key": "a"}, None),
        ([["starts-with", "$key", "up/"]], {"key": "up/a"}, None),
        ([["starts-with", "$key", "up/"]], {"key": "down/a"}, "Policy Condition failed: "),
        ([["starts-with", "$x-amz-meta-a", ""]], {}, None),
        ([{"content-type": "image/png"}], {"content-type": "image/png"}, None),
        ([{"Content-Type": "image/png"}], {"content-type": "image/png"}, None),
        ([{"bucket": "media"}], {"bucket": "other"}, 'Policy Condition failed: {"bucket": '),
        ([], {"key": "a"}, "Extra input fields: key"),
        ([{"key": "a"}], {"key": "a", "x-ignore-me": "1", "policy": "p"}, None),
        ([{"key": "a"}], {"key": "a", "redirect": "r", "acl": "p"}, "Extra input fields: acl, "),
        ([["content-length-range", 1, 2]], {}, None),
    ],
    ids=[
        "exact",
        "exact-is-case-sensitive",
        "eq-names-any-case",
        "starts-with",
        "starts-with-fails",
        "absent-field-is-empty",
        "content-type",
        "content-type-named-in-another-case",
        "bucket",
        "field-not-named",
        "exempt-fields",
        "two-fields-not-named",
        "size-judged-while-streaming",
    ],
)
def test_the_fields_are_judged_by_every_condition(
    conditions: list[object], fields: dict[str, str], unmet: str | None
) -> None:
    found = policy(*conditions).unmet(fields)
    if unmet is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(unmet)


def test_every_content_length_range_bounds_the_file() -> None:
    found = policy(["content-length-range", 0, 100], ["content-length-range", 10, 1000])
    assert found.length_range == (10, 100)
    assert policy().length_range is None


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("Content-Type", True),
        ("success_action_redirect", True),
        ("x-ignore-anything", True),
        ("x-amz-security-token", True),  # read, then refused by verify with its reason
        ("acl", False),
        ("x-amz-meta-owner", False),
        ("Cache-Control", False),
        ("bucket", False),
    ],
)
def test_the_gateway_reads_only_fields_it_honours(name: str, read: bool) -> None:
    folded = field_name(name)
    assert folded is not None
    assert readable(folded) is read


@pytest.mark.parametrize("name", ["", "a b", "é", "x" * 129])
def test_a_field_name_outside_visible_ascii_is_not_usable(name: str) -> None:
    assert field_name(name) is None


@pytest.mark.parametrize(
    "reason", ["bad_signature", "expired", "policy_condition_failed", "too_large"]
)
def test_refusals_of_a_post_carry_s3s_words(reason: str) -> None:
    assert scheme_words(NAME, reason) == WORDS[reason]


def test_a_lifetime_is_what_the_policy_says_from_x_amz_date() -> None:
    signed = lower(presigned_post(expires_in=3600))
    claims = verify(KEYRING, signed, now=at()).claims
    assert (claims.issued, claims.expires) == (int(NOW.timestamp()), int(NOW.timestamp()) + 3600)
    assert claims.method == "PUT"
    assert (NOW + timedelta(seconds=3600)).strftime("%Y-%m-%dT%H:%M:%SZ") in base64.b64decode(
        signed["policy"]
    ).decode()
