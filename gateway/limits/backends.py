"""Which limit store a URL names: the revocation store's URL, so one setting picks both.

sqlite:///var/lib/edge-gateway/revocations.sqlite3    the same file, tables of its own
redis://host:6379/0, rediss://..., unix:///run/redis.sock,
redis+sentinel://h1,h2,h3/service                    the fleet's Redis
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.limits import LimitStore

_REDIS: Final = "gateway.limits.redis_store"
BACKENDS: Final = {
    "sqlite": "gateway.limits.sqlite_store",
    "redis": _REDIS,
    "rediss": _REDIS,
    "unix": _REDIS,
    "redis+sentinel": _REDIS,
}


def open_store(url: str) -> LimitStore:
    """The store named by `url`, not yet opened."""
    module = importlib.import_module(BACKENDS[url.partition("://")[0].lower()])
    store: LimitStore = module.from_url(url)
    return store
