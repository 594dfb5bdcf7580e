"""`gateway check`: what `nginx -t` does for nginx, for the gateway's whole configuration.

It loads the settings and the keyring, reaches storage with the gateway's own credentials, the
revocation store, and the cache directory, and reports one line per finding, naming the setting
to change. Nothing is started and nothing is written, but a probe file in the cache directory.

    error    the gateway would not start, or would answer 5xx: exit status 1 (2: bad settings)
    warning  it would run, but something is unsafe or unexpected
    ok       what was checked and found right
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.keyring import KeyringHolder
from gateway.observability.redaction import redact_url
from gateway.revocation import snapshot
from gateway.revocation.backends import open_store as open_revocation_store
from gateway.settings import Settings
from gateway.storage import StorageError
from gateway.storage.backends import open_store
from gateway.storage.s3 import S3Store
from signer import KeyringError, Status

#: `revocation_fail_open`: what it does, said whenever it is on.
FAIL_OPEN = "GATEWAY_REVOCATION_FAIL_OPEN"
FAIL_OPEN_RISK = (
    "on: whenever the revocation list is not loaded, verified links are served without "
    "revocation checks (revoked links play)"
)


class Level(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    setting: str  # the GATEWAY_* variable to look at
    message: str

    def line(self) -> str:
        return f"{self.level.value:7} {self.setting}: {self.message}"


async def run(settings: Settings) -> list[Finding]:
    """Every check, in the order the gateway itself would meet the problems."""
    findings = keyring(settings.keyring)
    findings += await storage(settings)
    findings += await revocations(settings)
    findings += cache(settings)
    return findings


def keyring(path: Path) -> list[Finding]:
    setting = "GATEWAY_KEYRING"
    try:
        holder = KeyringHolder(path)
    except (KeyringError, ValueError) as exc:
        reason = str(exc)  # a KeyringError names the file already
        return [
            Finding(Level.ERROR, setting, reason if str(path) in reason else f"{path}: {reason}")
        ]
    counts = holder.current.count_by_status()
    verifying = [k.id for k in holder.current if k.status is not Status.RETIRED]
    retired = [k.id for k in holder.current if k.status is Status.RETIRED]
    findings = [
        Finding(
            Level.OK,
            setting,
            f"{path}: verifies {', '.join(verifying) or 'nothing'}"
            + (f"; retired: {', '.join(retired)}" if retired else ""),
        )
    ]
    if not verifying:
        findings.append(Finding(Level.ERROR, setting, "no key verifies: every link is refused"))
    if counts and holder.current.has_secrets and path.stat().st_mode & 0o077:
        mode = path.stat().st_mode & 0o777
        findings.append(
            Finding(
                Level.WARNING,
                setting,
                f"{path} holds HMAC secrets and is readable by group or others (mode {mode:o})",
            )
        )
    return findings


async def storage(settings: Settings) -> list[Finding]:
    setting = "GATEWAY_ORIGIN"
    store = open_store(settings)
    try:
        await store.start()
        await store.check()
    except StorageError as exc:
        return [Finding(Level.ERROR, setting, f"{settings.origin}: {exc}")]
    finally:
        await store.close()
    region = settings.s3.region
    named = store.bucket_region if isinstance(store, S3Store) else None  # as HeadBucket said
    if named and named != region:
        message = f"the bucket is in {named}, not {region}: every request would fail"
        return [Finding(Level.ERROR, "GATEWAY_S3_REGION", message)]
    findings = [Finding(Level.OK, setting, f"{settings.origin} answers with these credentials")]
    if settings.origin.scheme == "s3":
        anonymous = await _anonymous_read(settings)
        if anonymous is not None:
            findings.append(Finding(Level.WARNING, setting, anonymous))
    return findings


async def _anonymous_read(settings: Settings) -> str | None:
    """Whether the bucket answers requests without credentials: then the gateway protects
    nothing, since anyone can go around it."""
    endpoint = settings.s3.endpoint_url or (
        f"https://s3.{settings.s3.region}.amazonaws.com" if settings.s3.region else None
    )
    if endpoint is None:
        return None
    bucket = f"{endpoint.rstrip('/')}/{settings.origin.bucket}"
    probes = {
        "lists its objects": f"{bucket}?list-type=2&max-keys=1",
        "reads objects": f"{bucket}/{settings.origin.prefix}gateway-check-probe-{os.getpid()}",
    }
    timeout = aiohttp.ClientTimeout(total=settings.timeouts.first_byte)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for what, url in probes.items():
                async with session.get(url, allow_redirects=False) as response:
                    # 404 for a missing key means the read was allowed: denial is 403.
                    if response.status in (200, 404):
                        return f"the bucket {what} for anyone, without credentials"
    except (aiohttp.ClientError, TimeoutError):
        return None
    return None


async def revocations(settings: Settings) -> list[Finding]:
    findings = await _revocation_store(settings)
    if settings.revocation.fail_open:
        findings.append(Finding(Level.WARNING, FAIL_OPEN, FAIL_OPEN_RISK))
    return findings


async def _revocation_store(settings: Settings) -> list[Finding]:
    setting = "GATEWAY_REDIS_URL" if settings.revocation.redis_url else "GATEWAY_REVOCATION_DB"
    if not settings.revocation.redis_url:
        parent = settings.revocation.db.parent
        if not settings.revocation.db.exists() and not (
            parent.is_dir() and os.access(parent, os.W_OK)
        ):
            message = f"{parent} is not a writable directory: cannot create it"
            return [Finding(Level.ERROR, setting, message)]
    store = open_revocation_store(settings.revocation.store_url)
    try:
        async with asyncio.timeout(settings.timeouts.connect):
            await store.open()
            entries = await store.entries()
    except TimeoutError:
        problem = f"{store.name} store: no answer within GATEWAY_CONNECT_TIMEOUT"
        return [_unreachable(settings, setting, problem)]
    except Exception as exc:  # any store failure: say which, without the URL's password
        problem = f"{store.name} store: {type(exc).__name__}: {exc}"
        return [_unreachable(settings, setting, problem)]
    finally:
        await store.close()
    return [Finding(Level.OK, setting, f"{store.name} store answers ({len(entries)} live entries)")]


def _unreachable(settings: Settings, setting: str, problem: str) -> Finding:
    """An unreachable Redis is only a warning when the gateway would serve anyway, so that a
    check before every start (systemd's ExecStartPre) does not keep a gateway down that would
    serve: from a snapshot it would start from (as it does: `services._restore`), or, with
    `revocation_fail_open`, without the list at all (said loudly: revoked links would play).
    The embedded store (no snapshot) stays an error, fail-open or not: the gateway opens it at
    start, and does not start without it."""
    path = settings.revocation.snapshot
    problem = problem.rstrip(".")
    if path is None:
        return Finding(Level.ERROR, setting, problem)
    now = time.time()
    try:
        found = snapshot.read(
            path,
            store=redact_url(settings.revocation.store_url),
            now=now,
            max_age=settings.links.max_lifetime,
        )
    except snapshot.SnapshotError as exc:
        if not settings.revocation.fail_open:
            return Finding(Level.ERROR, setting, f"{problem}; no usable snapshot ({exc})")
        return Finding(
            Level.WARNING,
            setting,
            f"{problem}; without a usable snapshot ({exc}) the gateway would serve verified "
            f"links WITHOUT revocation checks ({FAIL_OPEN}) until the store answers, revoked "
            "links included",
        )
    age = max(0.0, now - found.synced_at)
    return Finding(
        Level.WARNING,
        setting,
        f"{problem}; the gateway would start from its snapshot {path} ({len(found.entries)} "
        f"entries, last in sync {age:.0f}s ago) and catch up once the store answers",
    )


def cache(settings: Settings) -> list[Finding]:
    if not settings.cache.enabled or settings.cache.disk_bytes == 0:
        return []
    setting, directory = "GATEWAY_CACHE_DIR", settings.cache.directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _probe(directory):
            pass
    except OSError as exc:
        return [
            Finding(
                Level.ERROR,
                setting,
                f"{directory} is not writable ({exc.strerror}): the cache would bypass its disk",
            )
        ]
    free = shutil.disk_usage(directory).free
    findings = [Finding(Level.OK, setting, f"{directory} is writable")]
    if free < settings.cache.disk_bytes:
        findings.append(
            Finding(
                Level.WARNING,
                "GATEWAY_CACHE_DISK_BYTES",
                f"{settings.cache.disk_bytes} bytes asked for, {free} free on {directory}",
            )
        )
    return findings


@contextlib.contextmanager
def _probe(directory: Path) -> Iterator[None]:
    fd, path = tempfile.mkstemp(prefix=".gateway-check-", dir=directory)
    try:
        os.write(fd, b"probe")
        yield
    finally:
        os.close(fd)
        os.unlink(path)
