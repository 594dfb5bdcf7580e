"""The supervisor's view of its workers, through each worker's own admin app on a Unix socket.

`/readyz` is ready only when every worker is, by the worker's own checks (storage, revocation
staleness, draining), exactly as a single process judges itself. `/metrics` is every worker's
exposition merged into one, each sample labelled `worker="N"`: Prometheus sums them
(`sum without (worker) (...)`), so counters from all workers add up. A cache purge (without
Redis) is forwarded to every worker, each dropping from its own cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.cache.purges import Purge, PurgeFailed, PurgeResult

TIMEOUT: Final = aiohttp.ClientTimeout(total=5)


class Workers:
    def __init__(self, sockets: Mapping[int, Path]) -> None:
        self.sockets = dict(sockets)
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=str(self.sockets[index]))
            session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
            self._sessions[index] = session
        return session

    async def _get(self, index: int, path: str) -> tuple[int, str]:
        try:
            async with self._session(index).get(f"http://worker{path}") as response:
                return response.status, (await response.text()).strip()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 503, "not answering yet"

    async def _post(self, index: int, path: str, body: Any, token: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://worker{path}"
        try:
            async with self._session(index).post(url, json=body, headers=headers) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return 503, None

    async def purge(self, purge: Purge, token: str) -> PurgeResult:
        """Every worker drops what `purge` names; the objects dropped, summed."""
        indexes = sorted(self.sockets)
        answers = await asyncio.gather(
            *(self._post(i, "/admin/purge", purge.describe(), token) for i in indexes)
        )
        dropped: int | None = None
        failed = []
        for index, (status, body) in zip(indexes, answers, strict=True):
            if status != 200 or not isinstance(body, dict):
                failed.append(str(index))
            elif isinstance(body.get("dropped"), int):
                dropped = (dropped or 0) + body["dropped"]
        if failed:
            raise PurgeFailed(f"worker {', '.join(failed)} did not take it (the others did); retry")
        return PurgeResult(dropped, published=False)

    async def readiness(self) -> tuple[int, str]:
        """200 when every worker is ready; else the first worker's reason."""
        for index in sorted(self.sockets):
            status, text = await self._get(index, "/readyz")
            if status != 200:
                return 503, f"worker {index}: {text}"
        return 200, f"ready: {len(self.sockets)} workers"

    async def metrics(self) -> tuple[bytes, str]:
        expositions = {}
        for index in sorted(self.sockets):
            status, text = await self._get(index, "/metrics")
            if status == 200:
                expositions[str(index)] = text + "\n"
        return merge(expositions), CONTENT_TYPE_LATEST

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()


def merge(expositions: Mapping[str, str]) -> bytes:
    """Prometheus text expositions, one per worker, as one with a `worker` label."""
    families: dict[str, Metric] = {}
    for worker, text in expositions.items():
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            merged.samples.extend(
                Sample(s.name, {**s.labels, "worker": worker}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families.values()))
    return generate_latest(registry)


class _Fixed:
    """A collector that yields what it was given."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families
