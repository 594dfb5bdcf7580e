"""The one search that spares `detect` asking every scheme: it lets through every query some
scheme detects, and screens out the links of ours."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer import Algorithm, Keyring, Status, new_key, sign_path
from signer.schemes import SCHEMES, _screen, detect

NOW = 1_767_225_600
KEYRING = Keyring([new_key("k1", Algorithm.HMAC_SHA256, Status.ACTIVE, now=NOW)])
#: Every name a scheme looks for or might be confused with, and their pieces.
NAMES = [
    "X-Amz-Algorithm",
    "x-amz-credential",
    "X-AMZ-SIGNATURE",
    "X-Amz-Date",
    "md5",
    "MD5",
    "expires",
    "Expires",
    "__token__",
    "__TOKEN__",
    "Key-Pair-Id",
    "key-pair-id",
    "Policy",
    "Signature",
    "KeyID",
    "hdnts",
]
parts = st.one_of(
    st.sampled_from(NAMES).map(lambda name: f"{name}=v"),
    st.sampled_from(NAMES),
    st.text("&=-_aKkmd5x\u212a\u017f", max_size=12),
)


def screened(raw_query: str) -> bool:
    screen = _screen(tuple(SCHEMES.values()))
    assert screen.names is not None
    return not (screen.names.search(raw_query) or screen.first.match(raw_query))


@given(st.lists(parts, max_size=5).map("&".join))
def test_a_query_any_scheme_detects_is_never_screened_out(raw_query: str) -> None:
    if any(scheme.detects(raw_query) for scheme in SCHEMES.values()):
        assert not screened(raw_query)


@pytest.mark.parametrize(
    "options", [{}, {"prefix": "/v/", "ip": "203.0.113.0/24", "sub": "u", "method": "GET"}]
)
@pytest.mark.parametrize("query", ["", "lang=en&md=5"])
def test_a_link_of_ours_asks_no_scheme(
    options: dict[str, Any], query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = sign_path("/v/a.mp4", KEYRING, query=query, expires_in=60, now=NOW, **options)
    raw_path, _, raw_query = target.partition("?")
    for scheme in SCHEMES.values():
        monkeypatch.setattr(scheme, "detects", _never_asked)
    assert screened(raw_query)
    assert detect(raw_path, raw_query) is None


def _never_asked(raw_query: str) -> bool:
    raise AssertionError("a scheme was asked")
