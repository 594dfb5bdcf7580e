"""gateway.leases with a store that misbehaves on cue: what an upload does when its leases
cannot be taken, renewed or given back."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gateway.errors import Refusal, Refused
from gateway.leases import Leases
from tests.polling import eventually

LEASE = 0.3


@dataclass
class Store:
    """Claims in a dict; `renewals` says what each renewal answers (True, False or an error)."""

    renewals: bool | Exception = True
    renewed: int = 0  # renewals asked for
    claims: dict[str, float] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    claim_error: Exception | None = None

    async def claim_once(self, name: str, until: float) -> bool:
        if self.claim_error is not None:
            raise self.claim_error
        if name in self.claims:
            return False
        self.claims[name] = until
        return True

    async def renew(self, name: str, until: float) -> bool:
        self.renewed += 1
        if isinstance(self.renewals, Exception):
            raise self.renewals
        if self.renewals:
            self.claims[name] = max(self.claims[name], until)
        return self.renewals

    async def release(self, name: str) -> None:
        self.released.append(name)

    async def record_upload(self, upload_id: str, location: str, until: float) -> None:
        self.claims["upload:" + upload_id] = until

    async def forget_upload(self, upload_id: str) -> None:
        del self.claims["upload:" + upload_id]


def leases(store: Store) -> Leases:
    return Leases(store, LEASE)  # type: ignore[arg-type]


async def run_past_a_lease(held: Leases, store: Store) -> None:
    """An upload that takes longer than one lease: three renewals (a third of a lease apart),
    where a store that does not renew cuts it after five sixths of a lease."""
    async with held.renewed():
        await held.claim("object:k", Refusal.UPLOAD_IN_PROGRESS)
        await eventually(lambda: store.renewed >= 3)


async def test_renewed_leases_let_a_long_upload_run() -> None:
    store = Store()
    held = leases(store)

    await run_past_a_lease(held, store)

    assert held.names == ["object:k"]


@pytest.mark.parametrize(
    "renewals", [ConnectionError("store down"), False], ids=["store-down", "taken-over"]
)
async def test_leases_that_cannot_be_renewed_stop_the_upload_with_503(
    renewals: bool | Exception,
) -> None:
    store = Store(renewals=renewals)

    with pytest.raises(Refused) as refused:
        await run_past_a_lease(leases(store), store)

    assert refused.value.refusal is Refusal.REVOCATION_STORE_UNAVAILABLE


@pytest.mark.parametrize(
    ("claim_error", "taken", "expected"),
    [
        (None, True, Refusal.TOKEN_IN_USE),
        (ConnectionError("store down"), False, Refusal.REVOCATION_STORE_UNAVAILABLE),
    ],
    ids=["held-elsewhere", "store-down"],
)
async def test_a_claim_not_taken_is_refused(
    claim_error: Exception | None, taken: bool, expected: Refusal
) -> None:
    store = Store(claim_error=claim_error, claims={"t": 1e12} if taken else {})

    with pytest.raises(Refused) as refused:
        await leases(store).claim("t", Refusal.TOKEN_IN_USE)

    assert refused.value.refusal is expected


async def test_release_gives_back_everything_but_a_held_link() -> None:
    store = Store()
    held = leases(store)
    await held.claim("object:k", Refusal.UPLOAD_IN_PROGRESS)
    await held.claim("token", Refusal.TOKEN_IN_USE)
    await held.started("bucket/k", "u1")

    await held.hold("token", 1e12)
    await held.release()

    assert store.released == ["object:k", "upload:u1"]
    assert store.claims["token"] == 1e12


async def test_a_multipart_upload_that_ended_is_no_longer_leased() -> None:
    store = Store()
    held = leases(store)
    await held.started("bucket/k", "u1")

    await held.ended("u1")
    await held.release()

    assert store.released == []
    assert "upload:u1" not in store.claims
