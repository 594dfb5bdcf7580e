"""Specification of `LocalStore` uploads: written aside, renamed into place, or nothing at all."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from gateway.storage import AlreadyExists, InvalidObjectKey, NotFound
from gateway.storage.local import LocalStore, LocalUpload


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "objects"
    directory.mkdir()
    return directory


@pytest.fixture
def store(root: Path) -> LocalStore:
    return LocalStore(root, chunk_size=4096)


def files(root: Path) -> dict[str, bytes]:
    """Every file under the root, hidden ones included."""
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


async def upload(
    store: LocalStore, key: str, pieces: list[bytes], *, no_overwrite: bool = False
) -> LocalUpload:
    sink = await store.begin_upload(key, content_type="text/plain", no_overwrite=no_overwrite)
    for piece in pieces:
        await sink.write(piece)
    return sink


@pytest.mark.parametrize(
    "pieces",
    [[], [b""], [b"one piece"], [b"a", b"b", b"c"], [b"x" * (LocalUpload.BLOCK + 1), b"tail"]],
    ids=["nothing", "empty", "one", "several", "over-a-block"],
)
async def test_a_completed_upload_is_the_object_with_its_size_and_etag(
    root: Path, store: LocalStore, pieces: list[bytes]
) -> None:
    sink = await upload(store, "in/dir/new.txt", pieces)

    stored = await sink.complete()

    content = b"".join(pieces)
    assert files(root) == {"in/dir/new.txt": content}
    meta = await store.head("in/dir/new.txt")
    assert (stored.size, stored.etag) == (len(content), meta.etag)


async def test_nothing_is_visible_under_the_key_before_completion(
    root: Path, store: LocalStore
) -> None:
    (root / "old.txt").write_bytes(b"old")

    sink = await upload(store, "old.txt", [b"x" * (LocalUpload.BLOCK + 1)])

    assert (root / "old.txt").read_bytes() == b"old"
    await sink.abort()


async def test_an_aborted_upload_leaves_nothing_behind(root: Path, store: LocalStore) -> None:
    sink = await upload(store, "new.txt", [b"x" * (LocalUpload.BLOCK + 1)])

    await sink.abort()
    await sink.abort()  # idempotent

    assert files(root) == {}
    with pytest.raises(NotFound):
        await store.head("new.txt")


async def test_an_upload_replaces_an_existing_object_atomically(
    root: Path, store: LocalStore
) -> None:
    (root / "same.txt").write_bytes(b"old")

    await (await upload(store, "same.txt", [b"new"])).complete()

    assert files(root) == {"same.txt": b"new"}


async def test_no_overwrite_refuses_an_existing_object_and_leaves_it_alone(
    root: Path, store: LocalStore
) -> None:
    (root / "taken.txt").write_bytes(b"old")
    sink = await upload(store, "taken.txt", [b"new"], no_overwrite=True)

    with pytest.raises(AlreadyExists):
        await sink.complete()

    assert files(root) == {"taken.txt": b"old"}


async def test_of_two_racing_no_overwrite_uploads_exactly_one_wins(
    root: Path, store: LocalStore
) -> None:
    sinks = [await upload(store, "race.txt", [b"%d" % i], no_overwrite=True) for i in range(8)]

    results = await asyncio.gather(*(s.complete() for s in sinks), return_exceptions=True)

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException))
    assert list(files(root)) == ["race.txt"]


async def test_an_upload_through_a_symlink_out_of_the_root_is_refused(
    root: Path, store: LocalStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")

    with pytest.raises(InvalidObjectKey):
        await store.begin_upload("link/escape.txt", content_type="text/plain", no_overwrite=False)

    assert list(outside.iterdir()) == []


async def test_an_upload_cancelled_while_its_file_is_made_leaves_nothing_behind(
    root: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shutdown deadline can cancel a handler while a thread creates its temporary file."""
    making, go_on, made = threading.Event(), threading.Event(), threading.Event()
    create = store._create_temporary

    def held(key: str) -> tuple[str, int, str]:
        making.set()
        go_on.wait()
        try:
            return create(key)
        finally:
            made.set()

    monkeypatch.setattr(store, "_create_temporary", held)
    task = asyncio.ensure_future(
        store.begin_upload("new.txt", content_type="text/plain", no_overwrite=False)
    )
    await asyncio.to_thread(making.wait)
    task.cancel()
    go_on.set()

    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(made.wait)  # the file was made, whatever the task saw
    assert files(root) == {}
