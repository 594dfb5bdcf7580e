"""Specification of `object_key`: request path -> object key (docs/gateway.md).

The key is the configured prefix followed by the path without its leading slash. Paths with a
backslash, a control character, an empty, '.' or '..' segment, or whose key would exceed
1024 UTF-8 bytes, are refused with InvalidKey (answered with 400).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.storage.keys import MAX_KEY_BYTES, InvalidKey, object_key

CONTROL_CHARACTERS = [chr(c) for c in range(0x20)] + ["\x7f"]


@pytest.mark.parametrize(
    ("path", "prefix", "key"),
    [
        ("/a.txt", "", "a.txt"),
        ("/a/b/c.mp4", "", "a/b/c.mp4"),
        ("/a.txt", "videos/", "videos/a.txt"),
        ("/2024/05/clip.mp4", "media/videos/", "media/videos/2024/05/clip.mp4"),
        ("/.hidden", "", ".hidden"),
        ("/...", "", "..."),
        ("/a..b/..c/d..", "", "a..b/..c/d.."),
        ("/with space/and+plus", "", "with space/and+plus"),
        ("/%41%2F", "", "%41%2F"),  # already decoded: a literal percent stays literal
        ("/ünïcödé/日本語.txt", "p/", "p/ünïcödé/日本語.txt"),
        ("/emoji/😀.png", "", "emoji/😀.png"),
        ("/tab\u00a0nbsp/\u2028", "", "tab\u00a0nbsp/\u2028"),  # not ASCII controls
    ],
)
def test_the_key_is_the_prefix_followed_by_the_path_without_its_leading_slash(
    path: str, prefix: str, key: str
) -> None:
    assert object_key(path, prefix) == key


def test_the_prefix_defaults_to_empty() -> None:
    assert object_key("/a/b") == "a/b"


def test_unicode_is_kept_as_is_not_normalised() -> None:
    composed, decomposed = "/\u00e9", "/e\u0301"  # é, and e + combining acute

    assert object_key(composed) == "\u00e9"
    assert object_key(decomposed) == "e\u0301"


def test_invalid_key_is_a_value_error() -> None:
    assert issubclass(InvalidKey, ValueError)


@pytest.mark.parametrize("path", ["", "a.txt", "a/b", "./a", "../a"])
def test_a_path_without_a_leading_slash_is_refused(path: str) -> None:
    with pytest.raises(InvalidKey, match="must name an object"):
        object_key(path)


def test_the_root_path_is_refused() -> None:
    with pytest.raises(InvalidKey, match="must name an object"):
        object_key("/", "prefix/")


@pytest.mark.parametrize("path", ["/a\\b", "/\\", "/a/b\\", "/\\..\\etc"])
def test_a_backslash_is_refused(path: str) -> None:
    with pytest.raises(InvalidKey, match="backslash or a control character"):
        object_key(path)


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_every_ascii_control_character_is_refused(char: str, where: str) -> None:
    path = {"start": f"/{char}a", "middle": f"/a{char}b", "end": f"/a/b{char}"}[where]

    with pytest.raises(InvalidKey, match="backslash or a control character"):
        object_key(path)


@pytest.mark.parametrize(
    "path",
    [
        "//",
        "//a",
        "/a//b",
        "/a/",
        "/a/b/",
        "/.",
        "/./a",
        "/a/.",
        "/a/./b",
        "/..",
        "/../a",
        "/a/..",
        "/a/../b",
        "/a/../../etc/passwd",
    ],
)
def test_empty_dot_and_dot_dot_segments_are_refused(path: str) -> None:
    with pytest.raises(InvalidKey, match=r"empty, '\.' or '\.\.' segment"):
        object_key(path)


# --- the 1024-byte limit, counted in UTF-8 bytes and including the prefix --------------------


@pytest.mark.parametrize(
    ("segment", "prefix"),
    [
        ("a" * 1024, ""),
        ("a" * 1022, "p/"),
        ("é" * 512, ""),  # 2 bytes each
        ("€" * 341 + "a", ""),  # 3 bytes each
        ("😀" * 256, ""),  # 4 bytes each
        ("é" * 511, "p/"),
    ],
    ids=["ascii", "ascii+prefix", "2-byte", "3-byte", "4-byte", "2-byte+prefix"],
)
def test_a_key_of_exactly_1024_bytes_is_accepted(segment: str, prefix: str) -> None:
    key = object_key("/" + segment, prefix)

    assert len(key.encode("utf-8")) == MAX_KEY_BYTES == 1024


@pytest.mark.parametrize(
    ("segment", "prefix"),
    [
        ("a" * 1025, ""),
        ("a" * 1023, "p/"),
        ("é" * 512 + "a", ""),  # 513 characters, 1025 bytes
        ("€" * 342, ""),  # 342 characters, 1026 bytes
        ("😀" * 256 + "a", ""),  # 257 characters, 1025 bytes
        ("é" * 512, "p/"),  # the prefix counts too
    ],
    ids=["ascii", "ascii+prefix", "2-byte", "3-byte", "4-byte", "2-byte+prefix"],
)
def test_a_key_over_1024_bytes_is_refused_even_when_under_1024_characters(
    segment: str, prefix: str
) -> None:
    with pytest.raises(InvalidKey, match="longer than 1024 bytes"):
        object_key("/" + segment, prefix)


# --- properties -------------------------------------------------------------------------------

FORBIDDEN = frozenset(CONTROL_CHARACTERS) | {"\\", "/"}

# Any Unicode scalar value except the separator and the refused characters (no surrogates:
# the token format already refuses text that is not valid Unicode).
segment_chars = st.characters(
    exclude_categories=["Cs"], exclude_characters="".join(sorted(FORBIDDEN))
)
segments = st.text(segment_chars, min_size=1, max_size=12).filter(lambda s: s not in {".", ".."})
paths = st.lists(segments, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))
prefixes = st.one_of(
    st.just(""),
    st.lists(segments, min_size=1, max_size=3).map(lambda parts: "/".join(parts) + "/"),
)
# Anything at all, to check that whatever is accepted obeys the rules.
any_paths = st.one_of(
    paths,
    st.text(max_size=30).map(lambda s: "/" + s),
    st.text(st.sampled_from("/.a\\\x00é"), max_size=12),
)


def is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(path=paths, prefix=prefixes)
def test_any_well_formed_path_maps_to_the_prefix_plus_the_path(path: str, prefix: str) -> None:
    key = object_key(path, prefix)

    assert key == prefix + path[1:]


@given(path=any_paths, prefix=prefixes)
def test_an_accepted_key_stays_under_the_prefix_and_never_climbs(path: str, prefix: str) -> None:
    assume(is_encodable(path))
    try:
        key = object_key(path, prefix)
    except InvalidKey:
        return

    assert key.startswith(prefix)
    assert key[len(prefix) :] == path[1:]
    assert ".." not in key.split("/")
    assert "." not in key[len(prefix) :].split("/")
    assert "" not in key[len(prefix) :].split("/")
    assert not FORBIDDEN.intersection(key[len(prefix) :]) - {"/"}
    assert len(key.encode("utf-8")) <= MAX_KEY_BYTES


@given(first=any_paths, second=any_paths, prefix=prefixes)
def test_different_paths_map_to_different_keys(first: str, second: str, prefix: str) -> None:
    assume(first != second and is_encodable(first) and is_encodable(second))
    try:
        keys = object_key(first, prefix), object_key(second, prefix)
    except InvalidKey:
        return

    assert keys[0] != keys[1]


@given(
    path=paths,
    bad=st.sampled_from(sorted(FORBIDDEN - {"/"})),
    position=st.integers(min_value=1),
)
def test_a_forbidden_character_anywhere_is_refused(path: str, bad: str, position: int) -> None:
    at = 1 + position % len(path)  # after the leading slash
    with pytest.raises(InvalidKey):
        object_key(path[:at] + bad + path[at:])


@given(path=any_paths)
def test_a_path_is_refused_for_its_segments_exactly_when_one_is_empty_dot_or_dot_dot(
    path: str,
) -> None:
    assume(path.startswith("/") and path != "/" and is_encodable(path))
    assume("\\" not in path and not any(c in CONTROL_CHARACTERS for c in path))
    bad = any(segment in ("", ".", "..") for segment in path[1:].split("/"))
    try:
        object_key(path)
        refused = False
    except InvalidKey:
        refused = True
    assert refused == bad
