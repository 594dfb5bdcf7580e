"""Which revocation store a URL names: a registry keyed by the URL's scheme.

    sqlite:///var/lib/edge-gateway/revocations.sqlite3    the embedded store (one node)
    redis://host:6379/0, rediss://..., unix:///run/redis.sock    a fleet's shared store
    redis+sentinel://h1:26379,h2:26379/mymaster/0    the same, its primary found by Sentinel

The settings make the URL (`Revocations.store_url`: `redis_url` if set, else the SQLite file
`revocation_db`). A new backend is one module with `from_url(url, *, create)` and one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.revocation import RevocationStore

_REDIS: Final = "gateway.revocation.redis_store"
BACKENDS: Final = {
    "sqlite": "gateway.revocation.sqlite_store",
    "redis": _REDIS,
    "rediss": _REDIS,
    "unix": _REDIS,
    "redis+sentinel": _REDIS,
}
#: How a settings error spells the Sentinel form (its scheme alone says too little).
SENTINEL_FORM: Final = "redis+sentinel://host:26379,host:26379/service/db"


def check_url(url: str) -> None:
    """ValueError if the backend of `url` finds it malformed (before anything connects)."""
    module = importlib.import_module(BACKENDS[url.partition("://")[0].lower()])
    check = getattr(module, "check_url", None)
    if check is not None:
        check(url)


def open_store(url: str, *, create: bool = True) -> RevocationStore:
    """The store named by `url`, not yet opened. With `create=False` a store that does not
    exist yet (an embedded file never written) is refused when opened, rather than made empty:
    an operator command must not silently revoke into a database no gateway reads."""
    module = importlib.import_module(BACKENDS[url.partition("://")[0].lower()])
    store: RevocationStore = module.from_url(url, create=create)
    return store
