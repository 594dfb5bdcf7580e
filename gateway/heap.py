"""The garbage collector, set for a server whose start-up allocates most of what it keeps.

Why: after start-up a worker holds about 100,000 long-lived objects (the AWS SDK's models,
aiohttp, the settings), and every full collection walks all of them again: measured under
wrk, one every few seconds, each stopping every request in flight for up to 60 ms. And the
young generation's default threshold (700) is below what the requests in flight hold at
once, so it was collected every few dozen requests for nothing: their objects are freed by
reference counting as each request ends. `settle` moves what start-up made out of the
collector's sight for good (`gc.freeze`), and collects the young generation only once
`YOUNG_THRESHOLD` objects more have been made than freed: cycles (an exception and its
traceback, say) are still collected, a little later.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000


def settle() -> None:
    """Once start-up is done, before serving: collect what start-up left, freeze the rest."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
