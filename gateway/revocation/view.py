"""The gateway's in-memory view of the revocation list: what the request path consults.

A check is a handful of dict lookups (one per kind, plus one per path segment for prefixes),
whatever the number of entries, and never waits on a store. Prefixes are indexed by segment (a
tree), so a path costs one lookup of each of its segments, stopping at the first segment no
entry goes below: linear in the path's length, however deep the path a client chose. Stores
feed the view (`apply`, `merge`); the view forgets entries on its own once they can no longer
match (`sweep`). A view starts empty and not `loaded`: an empty list and a list not read yet
look alike, so the request path asks `loaded` before trusting a miss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator

from gateway.revocation.entries import Kind, Revocation, path_segments
from signer.format import Claims


class _PrefixNode:
    """One segment of the prefix index: the (before, until) of the prefix that ends here, if
    one is revoked, and the segments below it."""

    __slots__ = ("below", "entry")

    def __init__(self) -> None:
        self.below: dict[str, _PrefixNode] = {}
        self.entry: tuple[float, float] | None = None


class RevocationView:
    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}  # token id -> until
        # value -> (before, until) for the issue-time kinds
        self._scoped: dict[Kind, dict[str, tuple[float, float]]] = {
            Kind.SUB: {},
            Kind.KEY_ID: {},
            Kind.PREFIX: {},
        }
        self._prefix_root = _PrefixNode()  # the same prefix entries, by segment
        self.synced_at: float | None = None  # time.monotonic() of the last confirmed sync
        self.first_sync = asyncio.Event()
        # A whole copy of the list is in: a store's first sync, or a snapshot (`restore`).
        self.loaded = False
        # Set by a sync that brought something new (or was a full resync): a snapshot is due.
        self.changed = asyncio.Event()
        self._dirty = False

    def revoked(self, claims: Claims, token: str, path: str) -> Kind | None:
        """The kind of the first entry that matches this verified link, if any."""
        if token in self._tokens:
            return Kind.TOKEN
        issued = claims.issued
        subs = self._scoped[Kind.SUB]
        if subs and claims.sub is not None:
            entry = subs.get(claims.sub)
            if entry is not None and issued <= entry[0]:
                return Kind.SUB
        keys = self._scoped[Kind.KEY_ID]
        if keys:
            entry = keys.get(claims.key_id)
            if entry is not None and issued <= entry[0]:
                return Kind.KEY_ID
        if self._scoped[Kind.PREFIX]:
            node: _PrefixNode | None = self._prefix_root
            segments = path_segments(path)
            while node is not None:
                if node.entry is not None and issued <= node.entry[0]:
                    return Kind.PREFIX
                segment = next(segments, None)
                node = None if segment is None else node.below.get(segment)
        return None

    def apply(self, entry: Revocation) -> None:
        """Add one entry, merged with any entry for the same thing (the union covers both)."""
        self._dirty = True
        if entry.kind is Kind.TOKEN:
            self._tokens[entry.value] = max(entry.until, self._tokens.get(entry.value, 0.0))
            return
        assert entry.before is not None
        table = self._scoped[entry.kind]
        old = table.get(entry.value)
        if old is None:
            table[entry.value] = (entry.before, entry.until)
        else:
            table[entry.value] = (max(old[0], entry.before), max(old[1], entry.until))
        if entry.kind is Kind.PREFIX:
            self._prefix_node(entry.value).entry = table[entry.value]

    def _prefix_node(self, prefix: str) -> _PrefixNode:
        node = self._prefix_root
        for segment in path_segments(prefix):
            node = node.below.setdefault(segment, _PrefixNode())
        return node

    def _unindex_prefix(self, prefix: str) -> None:
        """Forget a prefix, and the branch that led only to it."""
        segments = list(path_segments(prefix))
        trail = [self._prefix_root]
        for segment in segments:
            trail.append(trail[-1].below[segment])
        trail[-1].entry = None
        for depth in range(len(segments), 0, -1):  # from the deepest node up
            if trail[depth].entry is not None or trail[depth].below:
                break
            del trail[depth - 1].below[segments[depth - 1]]

    def merge(self, entries: Iterable[Revocation]) -> None:
        """A full resync. Entries are never withdrawn, only expire, so a resync adds: what this
        view knows stays enforced even if the store lost it."""
        for entry in entries:
            self.apply(entry)

    def entries(self) -> list[Revocation]:
        out = [Revocation(Kind.TOKEN, value, until) for value, until in self._tokens.items()]
        for kind, table in self._scoped.items():
            out.extend(
                Revocation(kind, value, until, before) for value, (before, until) in table.items()
            )
        return out

    def copied(self) -> Iterator[Revocation]:
        """The entries as they are now, built as they are iterated (in a thread, by a snapshot
        writer): only the tables are copied here, a small part of the cost of `entries`."""
        tokens = self._tokens.copy()
        scoped = [(kind, table.copy()) for kind, table in self._scoped.items()]

        def build() -> Iterator[Revocation]:
            for value, until in tokens.items():
                yield Revocation(Kind.TOKEN, value, until)
            for kind, table in scoped:
                for value, (before, until) in table.items():
                    yield Revocation(kind, value, until, before)

        return build()

    def sweep(self, now: float | None = None) -> int:
        """Drop entries whose links have all expired; returns how many."""
        current = time.time() if now is None else now
        dropped = 0
        expired = [value for value, until in self._tokens.items() if until <= current]
        for value in expired:
            del self._tokens[value]
        dropped += len(expired)
        for kind, table in self._scoped.items():
            gone = [value for value, (_, until) in table.items() if until <= current]
            for value in gone:
                del table[value]
                if kind is Kind.PREFIX:
                    self._unindex_prefix(value)
            dropped += len(gone)
        return dropped

    def count(self, kind: Kind) -> int:
        return len(self._tokens) if kind is Kind.TOKEN else len(self._scoped[kind])

    def __len__(self) -> int:
        return len(self._tokens) + sum(len(t) for t in self._scoped.values())

    def mark_synced(self, *, full: bool = False) -> None:
        """The store confirmed this view is current (`full`: by a complete read of it)."""
        self.synced_at = time.monotonic()
        self.loaded = True
        self.first_sync.set()
        if full or self._dirty:
            self.changed.set()
        self._dirty = False

    def restore(self, entries: Iterable[Revocation], synced_at: float) -> None:
        """Start from a snapshot of a view last in sync at `synced_at` (unix seconds): its
        entries, and its age as the lag, so readiness judges it like a view that lost its
        store then. Not a sync of the store: `first_sync` stays unset."""
        self.merge(entries)
        self._dirty = False
        then = time.monotonic() - max(0.0, time.time() - synced_at)
        if self.synced_at is None or then > self.synced_at:
            self.synced_at = then
        self.loaded = True

    def synced_wall(self) -> float | None:
        """Unix time of the last confirmed sync (None: never), for a snapshot."""
        return None if self.synced_at is None else time.time() - self.lag()

    def lag(self) -> float:
        """Seconds since the view was last confirmed in sync with its store (inf: never)."""
        if self.synced_at is None:
            return float("inf")
        return time.monotonic() - self.synced_at
