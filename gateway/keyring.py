"""The gateway's keyring: loaded at start-up, swapped in whole on reload.

Reloads come from SIGHUP, the admin API, or `watch` noticing that the file changed.
A reload validates the new file completely before it replaces the current keyring; an invalid
file keeps the old one, is logged and counted. Requests read `holder.current` once, so a swap
never mixes two keyrings within one verification.

A gateway only verifies, so a file holding an Ed25519 private key is invalid here (a stolen
gateway configuration would mint links); HMAC secrets are shared by nature and accepted.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from signer import Algorithm, Keyring, KeyringError

log = logging.getLogger("gateway.keyring")


class KeyringHolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fingerprint = _fingerprint(path)  # taken before reading: a change after is seen
        self.current = _load(path)  # at start-up an invalid keyring is fatal
        self.generation = 1
        self.reload_failures = 0
        self.listeners: list[Callable[[KeyringHolder], None]] = []
        self._warn_if_readable()

    def reload(self) -> bool:
        self.fingerprint = _fingerprint(self.path)
        try:
            fresh = _load(self.path)
        except (KeyringError, ValueError) as exc:  # ValueError: a file that is not UTF-8
            self.reload_failures += 1
            log.error("keyring reload failed, keeping generation %d: %s", self.generation, exc)
            self._notify()
            return False
        self.current = fresh
        self.generation += 1
        counts = {status.value: n for status, n in fresh.count_by_status().items()}
        log.info("keyring reloaded: generation %d, keys %s", self.generation, counts)
        self._notify()
        self._warn_if_readable()
        return True

    async def watch(self, interval: float) -> None:
        """Reload whenever the file changes: an atomic rename, a Kubernetes Secret update (a
        symlink swap, hence `stat` through links) or an edit. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if _fingerprint(self.path) != self.fingerprint:
                self.reload()

    def _notify(self) -> None:
        for listener in self.listeners:
            listener(self)

    def _warn_if_readable(self) -> None:
        if not self.current.has_secrets:  # `_load` leaves only HMAC secrets
            return
        try:
            mode = self.path.stat().st_mode
        except OSError:  # replaced again since it was read: the next reload looks again
            return
        if mode & 0o077:
            log.warning(
                "keyring %s holds HMAC secrets and is readable by group or others (mode %o)",
                self.path,
                mode & 0o777,
            )


def _load(path: Path) -> Keyring:
    keyring = Keyring.load(path)
    private = [key.id for key in keyring if key.alg is Algorithm.ED25519 and key.secret is not None]
    if private:
        raise KeyringError(
            f"keyring {path}: holds the Ed25519 private key(s) {', '.join(map(repr, private))}, "
            "which belong on the signing side only; give the gateway the output of "
            "`signer export-public --keyring SIGNING-KEYRING --output GATEWAY-KEYRING` instead"
        )
    return keyring


def _fingerprint(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
