"""The fast parse (one pattern) and the step-by-step parse agree: whatever the fast one accepts,
the other accepts with the same Link; every valid link takes the fast one."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer import Algorithm, Keyring, Rejected, Status, new_key, sign_path
from signer.format import (
    SIGNATURE_LENGTHS,
    Claims,
    Link,
    _parse_fast,
    _parse_slow,
    _unwrap_path_form,
    b64encode,
    canonical,
    encode_claims,
    is_path_form,
    path_form,
)
from tests.unit.test_format import any_claims

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
NOW = 1_767_225_600
KEYRINGS = {alg: Keyring([new_key(f"k-{alg.value}", alg, Status.ACTIVE)]) for alg in Algorithm}


def _targets(name: str, *fields: str) -> list[str]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return [v[f] for v in vectors for f in fields if f in v]


VALID = _targets(
    "valid.json", "signed_target", "request_target", "path_form_target", "path_form_request_target"
) + _targets("1.1/valid.json", "signed_target", "request_target")
INVALID = _targets("invalid.json", "request_target")


def both(target: str) -> tuple[Link | None, Link | None]:
    """(fast, step by step) for a request target, each None where it gives up or refuses."""
    raw_path, _, raw_query = target.partition("?")
    carried = is_path_form(raw_path)
    if carried:
        try:
            raw_path, raw_query = _unwrap_path_form(raw_path, raw_query)
        except Rejected:
            return None, None
    fast = _parse_fast(raw_path, raw_query)
    try:
        slow = _parse_slow(
            raw_path, raw_query, carried=carried, signature_lengths=SIGNATURE_LENGTHS
        )
    except Rejected:
        slow = None
    if fast is not None:
        assert fast == slow
    return fast, slow


@pytest.mark.parametrize("target", VALID)
def test_every_valid_vector_takes_the_fast_path(target: str) -> None:
    fast, _ = both(target)
    assert fast is not None


@pytest.mark.parametrize("target", INVALID)
def test_the_fast_path_accepts_no_invalid_vector_the_other_refuses(target: str) -> None:
    both(target)


@given(any_claims(), st.sampled_from(["", "a=1&", "b=%7e&c&", "I%C3%9Fued=1&"]))
def test_any_valid_claim_set_takes_the_fast_path(claims: Claims, app: str) -> None:
    raw_path = "/a" if claims.prefix is None else canonical(claims.prefix + "a")
    query = f"{app}{encode_claims(claims)}&Signature={b64encode(bytes(64))}"
    fast, _ = both(f"{raw_path}?{query}")
    assert fast is not None
    assert fast.claims == claims


#: Characters that change how a target is read: separators, escapes, case, digits, base64.
_EDITS = st.text("&=%?/.-_+~ 0aAfFzZ9\x00\x7f\xe9eEkKiIsS", min_size=1, max_size=3)


@settings(max_examples=600)
@given(
    alg=st.sampled_from(list(Algorithm)),
    options=st.sampled_from(
        [
            {},
            {"sub": "user 42"},
            {"prefix": "/v/", "ip": "203.0.113.0/24", "starts_at": NOW - 10},
            {"method": "PUT", "max_bytes": 10, "content_type": "image/"},
            {"max_uses": 3, "method": "GET", "response_content_type": "text/plain"},
        ]
    ),
    query=st.sampled_from(["", "lang=en"]),
    form=st.booleans(),
    data=st.data(),
)
def test_no_edit_of_a_link_makes_the_two_parses_disagree(
    alg: Algorithm, options: dict[str, Any], query: str, form: bool, data: st.DataObject
) -> None:
    target = sign_path("/v/a.mp4", KEYRINGS[alg], query=query, expires_in=60, now=NOW, **options)
    target = path_form(target) if form else target
    start = data.draw(st.integers(0, len(target)), label="start")
    end = data.draw(st.integers(start, min(len(target), start + 3)), label="end")
    edit = data.draw(st.just("") | _EDITS, label="edit")
    both(target[:start] + edit + target[end:])


@pytest.mark.parametrize("alg", list(Algorithm))
@pytest.mark.parametrize("last", sorted(string.ascii_letters + string.digits + "-_=+/"))
def test_only_a_canonical_last_signature_character_takes_the_fast_path(
    alg: Algorithm, last: str
) -> None:
    target = sign_path("/a", KEYRINGS[alg], expires_in=60, now=NOW)
    for changed in (target[:-1] + last, target + last, target[:-2] + last):
        both(changed)
