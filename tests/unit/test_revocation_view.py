"""The in-memory revocation view: what the request path consults for every verified link."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.revocation.entries import Kind, Revocation
from gateway.revocation.view import RevocationView
from signer.format import Claims
from tests.conftest import NOW

DIGEST = "0123456789abcdef0123456789abcdef"
OTHER_DIGEST = "f" * 32
UNTIL = NOW + 86400.0


def claims(*, issued: int = NOW, sub: str | None = "user-42", key_id: str = "k1") -> Claims:
    return Claims(expires=issued + 300, key_id=key_id, issued=issued, sub=sub)


def view_of(*entries: Revocation) -> RevocationView:
    view = RevocationView()
    view.merge(entries)
    return view


def scoped(kind: Kind, value: str, before: float, until: float = UNTIL) -> Revocation:
    return Revocation(kind, value, until, before)


# -- matching ------------------------------------------------------------------------------------


def test_an_empty_view_revokes_nothing() -> None:
    assert RevocationView().revoked(claims(), DIGEST, "/videos/a.mp4") is None


def test_a_revoked_token_is_revoked_whatever_its_claims() -> None:
    view = view_of(Revocation(Kind.TOKEN, DIGEST, UNTIL))
    assert view.revoked(claims(sub=None, issued=NOW + 999), DIGEST, "/x") is Kind.TOKEN


def test_another_token_is_not_revoked() -> None:
    view = view_of(Revocation(Kind.TOKEN, DIGEST, UNTIL))
    assert view.revoked(claims(), OTHER_DIGEST, "/x") is None


@pytest.mark.parametrize(
    ("issued", "revoked"),
    [(NOW - 3600, True), (NOW - 1, True), (NOW, True), (NOW + 1, False), (NOW + 3600, False)],
)
@pytest.mark.parametrize(
    ("kind", "value"), [(Kind.SUB, "user-42"), (Kind.KEY_ID, "k1"), (Kind.PREFIX, "/videos")]
)
def test_scoped_kinds_match_links_issued_at_or_before_their_bound(
    kind: Kind, value: str, issued: int, revoked: bool
) -> None:
    view = view_of(scoped(kind, value, before=NOW))
    found = view.revoked(claims(issued=issued), OTHER_DIGEST, "/videos/a.mp4")
    assert found is (kind if revoked else None)


def test_a_subject_revocation_does_not_match_another_subject() -> None:
    view = view_of(scoped(Kind.SUB, "user-42", before=NOW))
    assert view.revoked(claims(sub="user-4"), DIGEST, "/a") is None
    assert view.revoked(claims(sub="user-420"), DIGEST, "/a") is None


def test_a_subject_revocation_does_not_match_links_without_a_subject() -> None:
    view = view_of(scoped(Kind.SUB, "user-42", before=NOW))
    assert view.revoked(claims(sub=None), DIGEST, "/a") is None


def test_a_key_revocation_does_not_match_another_key() -> None:
    view = view_of(scoped(Kind.KEY_ID, "k1", before=NOW))
    assert view.revoked(claims(key_id="k2"), DIGEST, "/a") is None


@pytest.mark.parametrize(
    "path",
    ["/videos/ab", "/videos/ab/x", "/videos/ab/x/y.mp4", "/videos/ab/ab"],
)
def test_a_prefix_covers_itself_and_everything_under_it(path: str) -> None:
    view = view_of(scoped(Kind.PREFIX, "/videos/ab", before=NOW))
    assert view.revoked(claims(), DIGEST, path) is Kind.PREFIX


@pytest.mark.parametrize(
    "path",
    [
        "/videos/abc/x",
        "/videos/abc",
        "/videos/a",
        "/videos/a/b",
        "/videos",
        "/videos/x/videos/ab",
        "/other/videos/ab",
        "/Videos/ab/x",
        "/videos/ab.mp4",
    ],
)
def test_a_prefix_matches_only_at_path_segment_boundaries(path: str) -> None:
    view = view_of(scoped(Kind.PREFIX, "/videos/ab", before=NOW))
    assert view.revoked(claims(), DIGEST, path) is None


@pytest.mark.parametrize("path", ["/a", "/videos/ab/x", "/ü/€.mp4"])
def test_the_root_prefix_covers_every_path(path: str) -> None:
    view = view_of(scoped(Kind.PREFIX, "/", before=NOW))
    assert view.revoked(claims(), DIGEST, path) is Kind.PREFIX


DEEP = "/p" + "/s" * 3999  # 4,000 segments: what a client holding a Prefix link may send


@pytest.mark.parametrize(
    ("prefix", "path", "revoked"),
    [
        (DEEP.rsplit("/", 1)[0], DEEP, True),
        (DEEP, DEEP, True),
        (DEEP + "/x", DEEP, False),
        (DEEP.rsplit("/", 1)[0] + "/t", DEEP, False),
        ("/p", DEEP, True),
        ("/q", DEEP, False),
    ],
)
def test_prefixes_match_at_any_depth(prefix: str, path: str, revoked: bool) -> None:
    view = view_of(scoped(Kind.PREFIX, prefix, before=NOW))
    assert view.revoked(claims(), DIGEST, path) is (Kind.PREFIX if revoked else None)


def peak_bytes(call: Callable[[], object]) -> int:
    """The most memory `call` held at once, beyond what was held before it."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


@pytest.mark.parametrize(
    "revoked_prefix",
    ["/p", DEEP.rsplit("/", 1)[0] + "/t"],  # the walk stops at once / goes to the last segment
    ids=["shallow", "deep"],
)
def test_a_deep_path_costs_memory_in_proportion_to_its_length(revoked_prefix: str) -> None:
    """Without timing: every prefix of DEEP spelled out is about 16 million characters; the
    walk by segment holds one segment at a time."""
    view = view_of(scoped(Kind.PREFIX, revoked_prefix, before=NOW - 1))
    link = claims(issued=NOW)  # issued after the bound: nothing matches, every segment is tried
    assert view.revoked(link, DIGEST, DEEP) is None
    assert peak_bytes(lambda: view.revoked(link, DIGEST, DEEP)) < 4 * len(DEEP)


def test_a_link_matching_several_entries_is_reported_as_one_of_them() -> None:
    view = view_of(
        Revocation(Kind.TOKEN, DIGEST, UNTIL),
        scoped(Kind.SUB, "user-42", NOW),
        scoped(Kind.KEY_ID, "k1", NOW),
        scoped(Kind.PREFIX, "/a", NOW),
    )
    assert view.revoked(claims(), DIGEST, "/a/b") is Kind.TOKEN
    assert view.revoked(claims(), OTHER_DIGEST, "/a/b") is Kind.SUB
    assert view.revoked(claims(sub=None), OTHER_DIGEST, "/a/b") is Kind.KEY_ID
    assert view.revoked(claims(sub=None, key_id="k2"), OTHER_DIGEST, "/a/b") is Kind.PREFIX


# -- adding and merging --------------------------------------------------------------------------


def test_applying_the_same_thing_twice_covers_the_union() -> None:
    view = RevocationView()
    view.apply(scoped(Kind.SUB, "u", before=NOW - 100, until=NOW + 900))
    view.apply(scoped(Kind.SUB, "u", before=NOW - 200, until=NOW + 1000))
    assert view.entries() == [scoped(Kind.SUB, "u", before=NOW - 100, until=NOW + 1000)]
    assert view.revoked(claims(sub="u", issued=NOW - 150), DIGEST, "/a") is Kind.SUB


def test_a_token_applied_twice_is_kept_until_the_later_expiry() -> None:
    view = RevocationView()
    view.apply(Revocation(Kind.TOKEN, DIGEST, NOW + 20.0))
    view.apply(Revocation(Kind.TOKEN, DIGEST, NOW + 10.0))
    assert view.entries() == [Revocation(Kind.TOKEN, DIGEST, NOW + 20.0)]


def test_a_resync_only_adds_what_the_view_does_not_know() -> None:
    view = view_of(Revocation(Kind.TOKEN, DIGEST, UNTIL))
    view.merge([scoped(Kind.SUB, "u", NOW)])
    assert sorted(e.kind for e in view.entries()) == [Kind.SUB, Kind.TOKEN]


def test_entries_lists_one_entry_per_kind_and_value() -> None:
    applied = [
        Revocation(Kind.TOKEN, DIGEST, UNTIL),
        scoped(Kind.SUB, "k1", NOW),
        scoped(Kind.KEY_ID, "k1", NOW),
        scoped(Kind.PREFIX, "/k1", NOW),
    ]
    assert sorted(view_of(*applied).entries(), key=lambda e: e.field) == sorted(
        applied, key=lambda e: e.field
    )


def test_counts_are_kept_per_kind() -> None:
    view = view_of(
        Revocation(Kind.TOKEN, DIGEST, UNTIL),
        Revocation(Kind.TOKEN, OTHER_DIGEST, UNTIL),
        scoped(Kind.SUB, "a", NOW),
        scoped(Kind.SUB, "a", NOW - 1),
        scoped(Kind.PREFIX, "/a", NOW),
    )
    counts = {kind: view.count(kind) for kind in Kind}
    assert counts == {Kind.TOKEN: 2, Kind.SUB: 1, Kind.KEY_ID: 0, Kind.PREFIX: 1}
    assert len(view) == 4


# -- expiry --------------------------------------------------------------------------------------


def test_sweep_drops_entries_at_their_until_and_keeps_the_rest() -> None:
    view = view_of(
        Revocation(Kind.TOKEN, DIGEST, NOW + 10.0),
        Revocation(Kind.TOKEN, OTHER_DIGEST, NOW + 11.0),
        scoped(Kind.SUB, "a", NOW - 100, until=NOW + 9.0),
        scoped(Kind.PREFIX, "/a", NOW - 100, until=NOW + 11.0),
    )
    assert view.sweep(NOW + 10.0) == 2
    assert sorted(e.field for e in view.entries()) == ["prefix:/a", f"token:{OTHER_DIGEST}"]


def test_a_swept_entry_no_longer_revokes() -> None:
    view = view_of(scoped(Kind.KEY_ID, "k1", NOW, until=NOW + 5.0))
    view.sweep(NOW + 5.0)
    assert view.revoked(claims(issued=NOW - 1), DIGEST, "/a") is None


def test_a_swept_prefix_leaves_the_prefixes_above_and_below_it() -> None:
    view = view_of(
        scoped(Kind.PREFIX, "/a", NOW, until=NOW + 5.0),
        scoped(Kind.PREFIX, "/a/b/c", NOW, until=NOW + 5.0),
        scoped(Kind.PREFIX, "/a/b", NOW, until=NOW + 9.0),
    )
    assert view.sweep(NOW + 5.0) == 2
    assert view.revoked(claims(), DIGEST, "/a/b/c/d") is Kind.PREFIX
    assert view.revoked(claims(), DIGEST, "/a/x") is None
    view.sweep(NOW + 9.0)
    assert view.revoked(claims(), DIGEST, "/a/b/c/d") is None


def test_sweep_of_an_empty_or_current_view_drops_nothing() -> None:
    assert RevocationView().sweep(NOW) == 0
    assert view_of(Revocation(Kind.TOKEN, DIGEST, UNTIL)).sweep(NOW) == 0


# -- sync state ----------------------------------------------------------------------------------


def test_a_view_never_synced_is_infinitely_stale() -> None:
    view = RevocationView()
    assert math.isinf(view.lag())
    assert not view.first_sync.is_set()


def test_marking_a_sync_resets_the_lag_and_signals_the_first_sync() -> None:
    view = RevocationView()
    view.mark_synced()
    assert 0 <= view.lag() < 1
    assert view.first_sync.is_set()


# -- properties: the view agrees with a plain reference model --------------------------------------

TIMES = st.integers(min_value=NOW - 50, max_value=NOW + 50)
SMALL_SUBS = st.sampled_from(["a", "b", "ab"])
SMALL_KEYS = st.sampled_from(["k1", "k2"])
SMALL_DIGESTS = st.sampled_from(["0" * 32, "1" * 32, "2" * 32])
SEGMENTS = st.sampled_from(["a", "b", "ab", "a.b"])
PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p))
PREFIXES = st.one_of(st.just("/"), PATHS)
ENTRIES = st.one_of(
    st.builds(lambda v: Revocation(Kind.TOKEN, v, UNTIL), SMALL_DIGESTS),
    st.builds(lambda v, b: scoped(Kind.SUB, v, b), SMALL_SUBS, TIMES),
    st.builds(lambda v, b: scoped(Kind.KEY_ID, v, b), SMALL_KEYS, TIMES),
    st.builds(lambda v, b: scoped(Kind.PREFIX, v, b), PREFIXES, TIMES),
)
CLAIMS = st.builds(
    lambda issued, sub, key_id: claims(issued=issued, sub=sub, key_id=key_id),
    TIMES,
    st.none() | SMALL_SUBS,
    SMALL_KEYS,
)


def covers(entry: Revocation, link: Claims, token: str, path: str) -> bool:
    """The specification, one entry at a time, written as plainly as possible."""
    if entry.kind is Kind.TOKEN:
        return token == entry.value
    assert entry.before is not None
    if link.issued > entry.before:
        return False
    if entry.kind is Kind.SUB:
        return link.sub == entry.value
    if entry.kind is Kind.KEY_ID:
        return link.key_id == entry.value
    return entry.value == "/" or path == entry.value or path.startswith(entry.value + "/")


@given(st.lists(ENTRIES, max_size=12), CLAIMS, SMALL_DIGESTS, PATHS)
def test_revoked_agrees_with_the_reference_model(
    entries: list[Revocation], link: Claims, token: str, path: str
) -> None:
    found = view_of(*entries).revoked(link, token, path)
    matching = {e.kind for e in entries if covers(e, link, token, path)}
    if matching:
        assert found in matching
    else:
        assert found is None


@given(st.lists(ENTRIES, max_size=12), st.lists(ENTRIES, max_size=12))
def test_merge_is_commutative(first: list[Revocation], second: list[Revocation]) -> None:
    one, two = view_of(*first), view_of(*second)
    one.merge(second)
    two.merge(first)
    assert sorted(one.entries(), key=repr) == sorted(two.entries(), key=repr)


@given(st.lists(ENTRIES, max_size=12))
def test_merge_is_idempotent(entries: list[Revocation]) -> None:
    view = view_of(*entries)
    before = sorted(view.entries(), key=repr)
    view.merge(view.entries())
    view.merge(entries)
    assert sorted(view.entries(), key=repr) == before


@given(st.lists(ENTRIES, max_size=12), CLAIMS, SMALL_DIGESTS, PATHS)
def test_the_view_of_a_union_revokes_what_either_part_revokes(
    entries: list[Revocation], link: Claims, token: str, path: str
) -> None:
    half = len(entries) // 2
    whole = view_of(*entries).revoked(link, token, path) is not None
    parts = (
        view_of(*entries[:half]).revoked(link, token, path) is not None
        or view_of(*entries[half:]).revoked(link, token, path) is not None
    )
    assert whole == parts


@given(st.lists(ENTRIES, max_size=12))
def test_entries_agree_with_pairwise_merging(entries: list[Revocation]) -> None:
    expected: dict[str, Revocation] = {}
    for entry in entries:
        expected[entry.field] = (
            expected[entry.field].merged(entry) if entry.field in expected else entry
        )
    assert sorted(view_of(*entries).entries(), key=repr) == sorted(expected.values(), key=repr)


UNTILS = st.integers(min_value=NOW, max_value=NOW + 20).map(float)


@given(
    st.lists(
        st.builds(lambda v, u: Revocation(Kind.TOKEN, v, u), SMALL_DIGESTS, UNTILS)
        | st.builds(lambda v, u: scoped(Kind.PREFIX, v, NOW, u), PREFIXES, UNTILS),
        max_size=12,
    ),
    UNTILS,
)
def test_sweep_keeps_exactly_the_entries_that_outlive_now(
    entries: list[Revocation], now: float
) -> None:
    view = view_of(*entries)
    live = sorted((e for e in view.entries() if e.until > now), key=repr)
    dropped = view.sweep(now)
    assert sorted(view.entries(), key=repr) == live
    assert dropped + len(view) == len(view_of(*entries))


@given(
    st.lists(st.builds(lambda v, u: scoped(Kind.PREFIX, v, NOW, u), PREFIXES, UNTILS), max_size=12),
    UNTILS,
    PATHS,
)
def test_after_a_sweep_the_view_still_agrees_with_the_reference_model(
    entries: list[Revocation], now: float, path: str
) -> None:
    view = view_of(*entries)
    view.sweep(now)
    live = [e for e in entries if e.until > now]
    found = view.revoked(claims(), DIGEST, path)
    assert (found is Kind.PREFIX) == any(covers(e, claims(), DIGEST, path) for e in live)
