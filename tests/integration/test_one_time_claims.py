"""Specification of claims and leases: a one-time link is used once, fleet-wide; a claim is its
holder's to renew and release; a listed multipart upload is abandoned once its lease lapses.

Both stores, each seen by two independent store objects (two gateways, or two workers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.revocation import RevocationStore
from gateway.revocation.redis_store import RedisStore
from gateway.revocation.sqlite_store import SQLiteStore
from tests.polling import eventually, eventually_async
from tests.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.integration

TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[RevocationStore, RevocationStore]]:
    make: Callable[[], RevocationStore]
    if request.param == "sqlite":
        make = lambda: SQLiteStore(tmp_path / "revocations.sqlite3")  # noqa: E731
    else:
        url = request.getfixturevalue("redis").url
        namespace = f"test-{tmp_path.name}"
        make = lambda: RedisStore(url, namespace=namespace)  # noqa: E731
    pair = (make(), make())
    for store in pair:
        await store.open()
    yield pair
    for store in pair:
        await store.close()


def later(seconds: float = 300) -> float:
    return time.time() + seconds


async def test_a_link_is_claimed_once(stores: tuple[RevocationStore, RevocationStore]) -> None:
    first, second = stores

    assert await first.claim_once(TOKEN, later()) is True
    assert await first.claim_once(TOKEN, later()) is False
    assert await second.claim_once(TOKEN, later()) is False


async def test_claims_of_different_links_are_independent(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores

    assert await first.claim_once(TOKEN, later()) is True
    assert await second.claim_once(OTHER, later()) is True


async def test_a_released_claim_can_be_taken_again(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later())

    await first.release(TOKEN)

    assert await second.claim_once(TOKEN, later()) is True


async def test_of_many_concurrent_claims_exactly_one_wins(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores

    results = await asyncio.gather(
        *(store.claim_once(TOKEN, later()) for _ in range(10) for store in (first, second))
    )

    assert results.count(True) == 1


async def test_an_expired_claim_does_not_block_forever(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later(0.05))
    deadline = time.monotonic() + 5

    while not await second.claim_once(TOKEN, later()):
        assert time.monotonic() < deadline, "the claim outlived its link"
        await asyncio.sleep(0.02)


# --- leases: renewed by their holder only, never shortened ---------------------------------


def past(moment: float) -> bool:
    return time.time() > moment


async def test_a_claim_is_renewed_only_by_its_holder(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later())

    assert await second.renew(TOKEN, later()) is False
    assert await first.renew(TOKEN, later()) is True


async def test_a_renewed_claim_outlives_its_first_lease(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    lease = later(0.2)
    await first.claim_once(TOKEN, lease)

    assert await first.renew(TOKEN, later())
    await eventually(lambda: past(lease))

    assert await second.claim_once(TOKEN, later()) is False


async def test_renewing_never_shortens_a_claim(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later())
    shorter = later(0.05)

    assert await first.renew(TOKEN, shorter) is True
    await eventually(lambda: past(shorter))

    assert await second.claim_once(TOKEN, later()) is False


async def test_a_claim_that_lapsed_and_was_taken_cannot_be_renewed(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later(0.05))
    await eventually_async(lambda: second.claim_once(TOKEN, later()), within=5)

    assert await first.renew(TOKEN, later()) is False


async def test_a_claim_is_released_only_by_its_holder(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.claim_once(TOKEN, later())

    await second.release(TOKEN)

    assert await second.claim_once(TOKEN, later()) is False


# --- listed multipart uploads ----------------------------------------------------------------


async def test_a_listed_upload_is_not_abandoned_while_its_lease_lasts(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores

    await first.record_upload("upload-1", "bucket/a.bin", later())

    assert await second.abandoned_uploads() == []


async def test_a_listed_upload_is_abandoned_once_its_lease_lapses(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.record_upload("upload-1", "bucket/a.bin", later(0.05))

    await eventually_async(lambda: listed(second, [("upload-1", "bucket/a.bin")]), within=5)


async def test_a_renewed_upload_lease_keeps_it_from_being_abandoned(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    lease = later(0.2)
    await first.record_upload("upload-1", "bucket/a.bin", lease)

    assert await first.renew("upload:upload-1", later()) is True
    await eventually(lambda: past(lease))

    assert await second.abandoned_uploads() == []


async def test_a_forgotten_upload_is_not_listed(
    stores: tuple[RevocationStore, RevocationStore],
) -> None:
    first, second = stores
    await first.record_upload("upload-1", "bucket/a.bin", later(0.05))
    await first.record_upload("upload-2", "bucket/b.bin", later(0.05))
    both = [("upload-1", "bucket/a.bin"), ("upload-2", "bucket/b.bin")]
    await eventually_async(lambda: listed(second, both), within=5)

    await second.forget_upload("upload-1")

    assert await second.abandoned_uploads() == [("upload-2", "bucket/b.bin")]


async def listed(store: RevocationStore, uploads: list[tuple[str, str]]) -> bool:
    """Whether `store` lists exactly these as abandoned (a lease lapses on the store's clock:
    Redis's, a moment after ours)."""
    return sorted(await store.abandoned_uploads()) == uploads
