"""The prepared HMAC both link verification and the SigV4 signer use."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from signer.algorithms import HmacSha256


@given(key=st.binary(max_size=200), messages=st.lists(st.binary(max_size=300), max_size=3))
def test_a_prepared_hmac_is_hmac_sha256_for_every_message(
    key: bytes, messages: list[bytes]
) -> None:
    prepared = HmacSha256(key)
    for message in messages:  # the prepared state is reused, never consumed
        expected = hmac.new(key, message, hashlib.sha256)
        assert prepared.digest(message) == expected.digest()
        assert prepared.hexdigest(message) == expected.hexdigest()


@given(key=st.binary(max_size=100), message=st.binary(max_size=200), flip=st.integers(0, 255))
def test_a_prepared_hmac_matches_exactly_its_own_digest(
    key: bytes, message: bytes, flip: int
) -> None:
    prepared = HmacSha256(key)
    good = hmac.digest(key, message, hashlib.sha256)
    changed = bytearray(good)
    changed[flip % 32] ^= 1 + flip // 32
    assert prepared.matches(good, message)
    assert not prepared.matches(bytes(changed), message)
    assert not prepared.matches(good[:-1], message)
