"""The gateway's keyring: loaded at start-up, swapped in whole on reload.

A reload validates the new file completely before it replaces the current keyring; an invalid
file keeps the old one, is logged and counted. Requests read `holder.current` once, so a swap
never mixes two keyrings within one verification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from signer import Keyring, KeyringError

log = logging.getLogger("gateway.keyring")


class KeyringHolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = Keyring.load(path)  # at start-up an invalid keyring is fatal
        self.generation = 1
        self.reload_failures = 0
        self.listeners: list[Callable[[KeyringHolder], None]] = []
        self._warn_if_readable()

    def reload(self) -> bool:
        try:
            fresh = Keyring.load(self.path)
        except KeyringError as exc:
            self.reload_failures += 1
            log.error("keyring reload failed, keeping generation %d: %s", self.generation, exc)
            self._notify()
            return False
        self.current = fresh
        self.generation += 1
        counts = {status.value: n for status, n in fresh.count_by_status().items()}
        log.info("keyring reloaded: generation %d, keys %s", self.generation, counts)
        self._notify()
        return True

    def _notify(self) -> None:
        for listener in self.listeners:
            listener(self)

    def _warn_if_readable(self) -> None:
        if not self.current.has_secrets:
            return
        mode = self.path.stat().st_mode
        if mode & 0o077:
            log.warning(
                "keyring %s holds HMAC secrets and is readable by group or others (mode %o)",
                self.path,
                mode & 0o777,
            )
