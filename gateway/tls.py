"""TLS on the public listener: one server context, its certificate reloaded when the files change.

A single gateway on a VM should not need a second proxy for TLS. The context allows TLS 1.2 and
1.3 only, with the standard library's modern default ciphers (forward secrecy, AEAD) and no
compression or renegotiation. An ACME client renewing the certificate replaces the files; the
watcher notices (size, mtime, inode, through symlinks) and loads the new chain into the same
context, so new handshakes get the new certificate without a restart and connections already
open carry on. A renewal that does not load (a key not matching its certificate, a file half
written) is logged and the old certificate kept, as a bad keyring is.

What TLS costs: bytes are encrypted in user space, so the zero-copy relay (splice) and the
cache's sendfile do not apply to TLS clients; they are streamed through Python instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("gateway.tls")


def _fingerprint(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    marks = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            marks.append((0, 0, 0))
            continue
        marks.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(marks)


class CertificateHolder:
    """The public listener's SSL context and the files it was loaded from."""

    def __init__(self, certificate: Path, key: Path) -> None:
        self.certificate, self.key = certificate, key
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        self.context.set_alpn_protocols(["http/1.1"])
        self.fingerprint = _fingerprint((certificate, key))
        self.context.load_cert_chain(certificate, key)  # at start-up a bad pair is fatal
        self.generation = 1
        self.reload_failures = 0

    def reload(self) -> bool:
        self.fingerprint = _fingerprint((self.certificate, self.key))
        try:
            self.context.load_cert_chain(self.certificate, self.key)
        except (OSError, ssl.SSLError) as exc:
            self.reload_failures += 1
            log.error("certificate reload failed, keeping the current one: %s", exc)
            return False
        self.generation += 1
        log.info("certificate reloaded from %s (generation %d)", self.certificate, self.generation)
        return True

    async def watch(self, interval: float) -> None:
        """Reload whenever either file changes. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if _fingerprint((self.certificate, self.key)) != self.fingerprint:
                self.reload()
