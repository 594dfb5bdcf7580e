"""The one rule for a link that states no issue time (`signer.schemes.base.unstated_issue`),
held to what the revocation list does with the issue time it derives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.revocation.entries import Kind, from_request
from gateway.revocation.view import RevocationView
from signer import Reason, Rejected
from signer.format import MAX_TIME, Claims
from signer.schemes.base import unstated_issue
from signer.verify import judge

DAY = 86400


def derived(expires: int, lifetime: float, now: float, skew: float) -> tuple[Claims, bool]:
    """The claims the rule gives (refused or not), and whether it accepted the link."""
    found: Claims | None
    try:
        found = unstated_issue(
            expires,
            lifetime,
            lambda issued: Claims(expires=expires, key_id="k", issued=issued).validate(),
            now=now,
            skew=skew,
        )
        verdict = "ok"
    except Rejected as refused:
        found, verdict = refused.claims, refused.reason.value
    assert verdict in ("ok", Reason.LIFETIME_EXCEEDED.value)
    assert found is not None  # refused too: authentic, so the logs may name its key
    return found, verdict == "ok"


@given(
    expires=st.integers(1, MAX_TIME),
    lifetime=st.floats(1, 400 * DAY),
    ahead=st.floats(-400 * DAY, 400 * DAY),
    skew=st.sampled_from([0.0, 1.0, 30.0]),
)
def test_a_link_is_accepted_exactly_when_a_revocation_of_its_key_then_covers_it(
    expires: int, lifetime: float, ahead: float, skew: float
) -> None:
    """Accepted at `now` iff a key revocation made then (its bound `now` plus the skew, as for a
    stated issue time) refuses it; its lifetime is never beyond `lifetime`; and the entry of any
    revocation that covers it is kept until the link has expired."""
    now = max(0.0, expires - ahead)
    claims, accepted = derived(expires, lifetime, now, skew)
    assert claims.expires - claims.issued <= lifetime  # step 10a never refuses it
    view = RevocationView()
    entry = from_request(
        "key_id", "k", before=now + skew, now=now, max_lifetime=lifetime, skew=skew
    )
    view.apply(entry)
    assert (view.revoked(claims, "t", "/a") is Kind.KEY_ID) == accepted
    if accepted:
        assert entry.until >= claims.expires + skew  # refused `expired` before it is dropped
        with pytest.raises(Rejected) as later:
            judge(claims, "/a", method="GET", client_ip=None, now=entry.until, skew=skew)
        assert later.value.reason is Reason.EXPIRED


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(600, True), (630, True), (631, False)],
    ids=["the-lifetime", "the-lifetime-and-skew", "a-second-more"],
)
def test_an_expiry_further_than_the_lifetime_and_skew_is_lifetime_exceeded(
    ahead: int, accepted: bool
) -> None:
    now = 1_800_000_000
    claims, verdict = derived(now + ahead, 600, now, 30)
    assert (claims.issued, verdict) == (now + ahead - 600, accepted)
