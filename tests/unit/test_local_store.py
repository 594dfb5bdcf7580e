"""Specification of `LocalStore`: a directory behaving like an object store.

Sizes, ranges, validators and 404s follow S3's semantics; nothing outside the root directory is
ever an object, whatever symlinks inside it point at.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http.ranges import ByteRange, parse_range
from gateway.storage import NotFound, ObjectMeta, OriginError, RangeNotSatisfiable, StorageError
from gateway.storage.local import LocalBody, LocalStore
from tests.descriptors import open_files_under

CHUNK = 4  # small, so every body is read in several chunks
DIGITS = b"0123456789"
MTIME_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "objects"
    directory.mkdir()
    return directory


@pytest.fixture
def store(root: Path) -> LocalStore:
    return LocalStore(root, chunk_size=CHUNK)


def put(root: Path, key: str, content: bytes, mtime_ns: int = MTIME_NS) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


async def read_all(body: LocalBody) -> bytes:
    try:
        return b"".join([chunk async for chunk in body.chunks()])
    finally:
        await body.release()


# --- head and get -------------------------------------------------------------------------------


async def test_head_reports_size_type_and_last_modified(root: Path, store: LocalStore) -> None:
    put(root, "docs/readme.txt", DIGITS)

    meta = await store.head("docs/readme.txt")

    assert meta.size == 10
    assert meta.content_type == "text/plain"
    assert meta.content_encoding is None
    assert meta.last_modified == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


async def test_last_modified_is_whole_seconds_in_utc(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", b"x")

    modified = (await store.head("a.bin")).last_modified

    assert modified is not None
    assert modified.tzinfo is UTC
    assert modified.microsecond == 0


async def test_the_etag_is_a_quoted_strong_validator(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)

    etag = (await store.head("a.bin")).etag

    assert etag is not None
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert len(etag) > 2
    assert not etag.startswith("W/")


async def test_the_etag_is_stable_across_calls(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)

    first = await store.head("a.bin")
    second = await store.head("a.bin")
    body = await store.get("a.bin", None)
    await body.release()

    assert first.etag == second.etag == body.meta.etag


@pytest.mark.parametrize(
    ("content", "mtime_ns"),
    [
        (b"0123456780", MTIME_NS + 1),  # same size, modified a nanosecond later
        (b"01234", MTIME_NS),  # different size, same modification time
    ],
    ids=["newer", "resized"],
)
async def test_the_etag_changes_when_the_file_changes(
    root: Path, store: LocalStore, content: bytes, mtime_ns: int
) -> None:
    put(root, "a.bin", DIGITS)
    before = (await store.head("a.bin")).etag

    put(root, "a.bin", content, mtime_ns)

    assert (await store.head("a.bin")).etag != before


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("a.txt", "text/plain"),
        ("page.html", "text/html"),
        ("data.json", "application/json"),
        ("picture.png", "image/png"),
        ("dir.with.dots/file.pdf", "application/pdf"),
        ("no-extension", "application/octet-stream"),
        ("unknown.zz-not-a-type", "application/octet-stream"),
    ],
)
async def test_the_content_type_is_guessed_from_the_name(
    root: Path, store: LocalStore, key: str, content_type: str
) -> None:
    put(root, key, b"x")

    assert (await store.head(key)).content_type == content_type


@pytest.mark.parametrize("key", ["backup.tar.gz", "drawing.svgz", "log.txt.br", "x.bz2"])
async def test_a_compressed_file_is_served_as_its_bytes_without_a_content_encoding(
    root: Path, store: LocalStore, key: str
) -> None:
    put(root, key, b"x")

    assert (await store.head(key)).content_encoding is None


async def test_get_without_a_range_streams_the_whole_object(root: Path, store: LocalStore) -> None:
    put(root, "a/b/c.bin", DIGITS)

    body = await store.get("a/b/c.bin", None)

    assert body.range is None
    assert body.meta == await store.head("a/b/c.bin")
    assert await read_all(body) == DIGITS


async def test_chunks_are_at_most_the_chunk_size(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)

    body = await store.get("a.bin", None)
    chunks = [chunk async for chunk in body.chunks()]
    await body.release()

    assert chunks == [b"0123", b"4567", b"89"]


async def test_an_empty_object_has_no_chunks(root: Path, store: LocalStore) -> None:
    put(root, "empty.txt", b"")

    body = await store.get("empty.txt", None)

    assert body.meta.size == 0
    assert await read_all(body) == b""


@pytest.mark.parametrize(
    "key", ["ünïcödé/日本語.txt", "with space.txt", "%41.txt", ".hidden", "a..b"]
)
async def test_keys_are_file_names_verbatim(root: Path, store: LocalStore, key: str) -> None:
    put(root, key, DIGITS)

    assert await read_all(await store.get(key, None)) == DIGITS


# --- ranges -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=2-5", 2, 5),
        ("bytes=9-9", 9, 9),
        ("bytes=0-9", 0, 9),
        ("bytes=7-", 7, 9),
        ("bytes=5-1000", 5, 9),
        ("bytes=-3", 7, 9),
        ("bytes=-10", 0, 9),
        ("bytes=-100", 0, 9),
    ],
)
async def test_a_range_reads_exactly_those_bytes(
    root: Path, store: LocalStore, header: str, start: int, end: int
) -> None:
    put(root, "digits.bin", DIGITS)

    body = await store.get("digits.bin", parse_range(header))

    assert body.range == ByteRange(start, end, 10)
    assert body.meta.size == 10  # the full size, not the range's
    assert await read_all(body) == DIGITS[start : end + 1]


@pytest.mark.parametrize(
    ("content", "header"),
    [
        (DIGITS, "bytes=10-"),
        (DIGITS, "bytes=10-20"),
        (DIGITS, "bytes=1000-"),
        (DIGITS, "bytes=-0"),
        (b"", "bytes=0-"),
        (b"", "bytes=0-0"),
        (b"", "bytes=-1"),
    ],
)
async def test_an_unsatisfiable_range_raises_with_the_size(
    root: Path, store: LocalStore, content: bytes, header: str
) -> None:
    put(root, "a.bin", content)

    with pytest.raises(RangeNotSatisfiable) as error:
        await store.get("a.bin", parse_range(header))

    assert error.value.size == len(content)
    assert open_files_under(root) == 0  # nothing was left open


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.binary(max_size=64),
    chunk_size=st.integers(min_value=1, max_value=16),
    first=st.integers(min_value=0, max_value=80),
    length=st.none() | st.integers(min_value=1, max_value=80),
    suffix=st.booleans(),
)
def test_any_range_reads_the_same_bytes_as_slicing(
    tmp_path: Path,
    content: bytes,
    chunk_size: int,
    first: int,
    length: int | None,
    suffix: bool,
) -> None:
    if suffix:
        header = f"bytes=-{first}"
        wanted = content[max(0, len(content) - first) :] if first else b""
    else:
        last = "" if length is None else str(first + length - 1)
        header = f"bytes={first}-{last}"
        wanted = content[first:] if length is None else content[first : first + length]
    (tmp_path / "object").write_bytes(content)
    store = LocalStore(tmp_path, chunk_size=chunk_size)

    async def read() -> bytes | int:
        try:
            return await read_all(await store.get("object", parse_range(header)))
        except RangeNotSatisfiable as error:
            return error.size

    result = asyncio.run(read())

    if wanted:
        assert result == wanted
    else:  # nothing to send: 416 with the current size
        assert result == len(content)
    assert open_files_under(tmp_path) == 0


# --- what is not an object ------------------------------------------------------------------------


async def call(store: LocalStore, operation: str, key: str) -> ObjectMeta | LocalBody:
    if operation == "head":
        return await store.head(key)
    return await store.get(key, None)


OPERATIONS = pytest.mark.parametrize("operation", ["head", "get"])


@OPERATIONS
@pytest.mark.parametrize("key", ["missing.txt", "missing/dir/file.txt", "a.txt/child"])
async def test_a_missing_key_is_not_found(
    root: Path, store: LocalStore, operation: str, key: str
) -> None:
    put(root, "a.txt", DIGITS)

    with pytest.raises(NotFound):
        await call(store, operation, key)
    assert open_files_under(root) == 0


@OPERATIONS
async def test_a_directory_is_not_found(root: Path, store: LocalStore, operation: str) -> None:
    put(root, "dir/inside.txt", DIGITS)

    with pytest.raises(NotFound):
        await call(store, operation, "dir")


@OPERATIONS
@pytest.mark.parametrize("key", ["", "."])
async def test_the_root_itself_is_not_found(
    root: Path, store: LocalStore, operation: str, key: str
) -> None:
    with pytest.raises(NotFound):
        await call(store, operation, key)


@OPERATIONS
async def test_a_symlink_to_a_file_outside_the_root_is_not_found(
    tmp_path: Path, root: Path, store: LocalStore, operation: str
) -> None:
    secret = put(tmp_path, "secret.txt", b"secret")
    (root / "link.txt").symlink_to(secret)

    with pytest.raises(NotFound):
        await call(store, operation, "link.txt")


@OPERATIONS
async def test_a_file_under_a_symlinked_directory_outside_the_root_is_not_found(
    tmp_path: Path, root: Path, store: LocalStore, operation: str
) -> None:
    put(tmp_path, "outside/secret.txt", b"secret")
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)

    with pytest.raises(NotFound):
        await call(store, operation, "linked/secret.txt")


@OPERATIONS
async def test_a_symlink_to_a_sibling_directory_sharing_the_roots_name_is_not_found(
    tmp_path: Path, root: Path, store: LocalStore, operation: str
) -> None:
    # "/tmp/x/objects-evil/..." starts with the text "/tmp/x/objects" but is not inside it.
    put(tmp_path, "objects-evil/secret.txt", b"secret")
    (root / "link.txt").symlink_to(tmp_path / "objects-evil" / "secret.txt")

    with pytest.raises(NotFound):
        await call(store, operation, "link.txt")


@OPERATIONS
@pytest.mark.parametrize("key", ["../secret.txt", "a/../../secret.txt", "../objects-evil/x"])
async def test_a_key_that_climbs_out_of_the_root_is_not_found(
    tmp_path: Path, root: Path, store: LocalStore, operation: str, key: str
) -> None:
    # Keys are checked by `object_key` first; the store does not rely on it.
    put(tmp_path, "secret.txt", b"secret")
    put(tmp_path, "objects-evil/x", b"secret")
    (root / "a").mkdir()

    with pytest.raises(NotFound):
        await call(store, operation, key)


@OPERATIONS
async def test_an_absolute_key_is_not_found(
    tmp_path: Path, store: LocalStore, operation: str
) -> None:
    secret = put(tmp_path, "secret.txt", b"secret")

    with pytest.raises(NotFound):
        await call(store, operation, str(secret))


@OPERATIONS
async def test_a_dangling_symlink_is_not_found(
    root: Path, store: LocalStore, operation: str
) -> None:
    (root / "dangling.txt").symlink_to(root / "gone.txt")

    with pytest.raises(NotFound):
        await call(store, operation, "dangling.txt")


async def test_a_symlink_inside_the_root_is_not_followed(root: Path, store: LocalStore) -> None:
    """A link could lead a Prefix token for one directory into another, so none is followed."""
    put(root, "private/real.txt", DIGITS)
    (root / "public").mkdir()
    (root / "public" / "alias.txt").symlink_to(root / "private" / "real.txt")
    (root / "public" / "dir").symlink_to(root / "private")

    for key in ("public/alias.txt", "public/dir/real.txt"):
        with pytest.raises(NotFound):
            await store.head(key)
        with pytest.raises(NotFound):
            await store.get(key, None)


async def test_a_root_reached_through_a_symlink_still_serves_its_files(tmp_path: Path) -> None:
    put(tmp_path, "real/a.txt", DIGITS)
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    store = LocalStore(tmp_path / "alias", chunk_size=CHUNK)

    await store.start()

    assert await read_all(await store.get("a.txt", None)) == DIGITS


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_an_unreadable_file_is_an_origin_error(root: Path, store: LocalStore) -> None:
    put(root, "locked.txt", DIGITS).chmod(0)

    with pytest.raises(OriginError):
        await store.get("locked.txt", None)


async def test_a_file_that_shrinks_while_read_is_an_origin_error(
    root: Path, store: LocalStore
) -> None:
    path = put(root, "a.bin", DIGITS)
    body = await store.get("a.bin", None)
    path.write_bytes(b"01234")  # truncated in place

    with pytest.raises(OriginError, match="shrank"):
        await read_all(body)
    assert open_files_under(root) == 0


def test_every_failure_is_a_storage_error() -> None:
    for error in (NotFound, RangeNotSatisfiable, OriginError):
        assert issubclass(error, StorageError)


# --- open bodies: each holds its file open until released -----------------------------------------


async def test_a_get_holds_its_file_open_until_it_is_released(
    root: Path, store: LocalStore
) -> None:
    put(root, "a.bin", DIGITS)
    assert open_files_under(root) == 0

    first = await store.get("a.bin", None)
    second = await store.get("a.bin", parse_range("bytes=0-1"))
    assert open_files_under(root) == 2

    await first.release()
    assert open_files_under(root) == 1

    await second.release()
    assert open_files_under(root) == 0


async def test_release_is_idempotent(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)
    body = await store.get("a.bin", None)

    for _ in range(3):
        await body.release()

    assert open_files_under(root) == 0


async def test_a_body_may_be_released_before_it_is_read(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)
    body = await store.get("a.bin", None)
    chunks = body.chunks()
    assert await anext(chunks) == b"0123"

    await body.release()
    await chunks.aclose()

    assert open_files_under(root) == 0


async def test_head_opens_no_body(root: Path, store: LocalStore) -> None:
    put(root, "a.bin", DIGITS)

    await store.head("a.bin")

    assert open_files_under(root) == 0


# --- start, check, close --------------------------------------------------------------------------


async def test_start_on_an_existing_directory_succeeds(store: LocalStore) -> None:
    await store.start()
    await store.check()
    await store.close()


Lifecycle = Callable[[LocalStore], Awaitable[None]]


@pytest.mark.parametrize("step", [LocalStore.start, LocalStore.check], ids=["start", "check"])
async def test_a_missing_directory_is_an_origin_error_naming_it(
    tmp_path: Path, step: Lifecycle
) -> None:
    missing = tmp_path / "nowhere"
    store = LocalStore(missing, chunk_size=CHUNK)

    with pytest.raises(OriginError, match=re.escape(str(missing))):
        await step(store)


async def test_a_file_as_the_root_is_an_origin_error(tmp_path: Path) -> None:
    store = LocalStore(put(tmp_path, "file.txt", b"x"), chunk_size=CHUNK)

    with pytest.raises(OriginError):
        await store.start()


async def test_check_fails_once_the_directory_is_removed(root: Path, store: LocalStore) -> None:
    await store.start()
    await asyncio.to_thread(root.rmdir)

    with pytest.raises(OriginError):
        await store.check()
