"""`--limits`: what a usage limit costs a request (issue 20: "a limited link costs at most one
round trip to Redis per request; measure it").

Two one-worker gateways in front of the same bucket: one counting in the embedded store (the
revocation SQLite file), one in Valkey (`redis_url`, started on loopback like the tests'). Each
is loaded with 4 KiB objects through unlimited links and through limited ones (MaxUses far
above what a run uses: every request is judged and counted, one store call, and none is
refused), in alternating rounds like the main benchmark, so that drift on a shared host falls
on both. The figures: req/s, p50 and p99 of each, and what the limit added.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import uvloop

from benchmarks.gateway_load.measure import client_session, wrong_answers
from benchmarks.gateway_load.objects import (
    BUCKET,
    SMALL_OBJECTS,
    SMALL_SIZE,
    Signer,
    StoredObject,
    ensure_bucket,
    links,
    write_targets,
)
from benchmarks.gateway_load.processes import Peer, gateway_settings
from benchmarks.gateway_load.run import SMALL_CONNECTIONS, Loader, Profile, Row
from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.redis_server import redis_server
from tests.servers import S3Server, gateway_serve

STORES: Final = ("sqlite", "redis")
KINDS: Final = ("unlimited", "limited")
USES: Final = 10**12  # MaxUses no run comes near: counted on every request, never refused


@dataclass
class LimitResults:
    profile: Profile
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)  # (store, kind) -> runs
    wrong: dict[str, list[str]] = field(default_factory=dict)


def upload_small(s3: S3Server) -> tuple[list[StoredObject], dict[str, bytes]]:
    client = s3.client()
    ensure_bucket(client, BUCKET)
    objects, bodies = [], {}
    for i in range(SMALL_OBJECTS):
        key = f"limits/4k-{i}.bin"
        body = os.urandom(SMALL_SIZE)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        objects.append(StoredObject(key, SMALL_SIZE, hashlib.sha256(body).hexdigest()))
        bodies[key] = body
    return objects, bodies


@contextlib.contextmanager
def limit_gateways(
    workdir: Path, s3: S3Server, keyring_file: Path, extra: dict[str, str]
) -> Iterator[dict[str, Peer]]:
    """A one-worker gateway per store, ready; a Valkey for the second."""
    with contextlib.ExitStack() as stack:
        redis_dir = workdir / "valkey"
        redis_dir.mkdir()
        redis = stack.enter_context(redis_server(redis_dir))
        found = {}
        for store in STORES:
            settings = gateway_settings(s3, keyring_file, 1, extra)
            if store == "redis":
                settings["redis_url"] = redis.url
            else:
                settings["revocation_db"] = str(workdir / "limits.sqlite3")
            gateway = stack.enter_context(
                gateway_serve(workdir, settings, env=s3.env(), name=f"gateway-{store}")
            )
            found[store] = Peer(store, "gateway", gateway.url(""), pid=gateway.pid)
        yield found


def run_limits(
    workdir: Path, s3: S3Server, profile: Profile, extra: dict[str, str] | None = None
) -> LimitResults:
    results = LimitResults(profile)
    objects, bodies = upload_small(s3)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = workdir / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)

    def signer(limited: bool) -> Signer:
        uses = {"max_uses": USES} if limited else {}
        return lambda obj, expires: sign_path(
            "/" + obj.key,
            keyring,
            expires_at=expires,
            **uses,  # type: ignore[arg-type]
        )

    with limit_gateways(workdir, s3, keyring_file, dict(extra or {})) as found:
        targets: dict[tuple[str, str], Path] = {}
        paths: dict[tuple[str, str], Peer] = {}
        for store, gateway in found.items():
            for kind in KINDS:
                name = f"{store}-{kind}"  # a Loader's lists are per (scheme, kind)
                made = links(signer(kind == "limited"), objects, profile.links)
                targets[(name, "small")] = write_targets(workdir / f"targets-{name}.txt", made)
                paths[(store, kind)] = Peer(name, name, gateway.base_url, pid=gateway.pid)
                results.rows[(store, kind)] = Row(name)
        results.wrong = uvloop.run(_check(paths, targets, bodies, objects))
        assert s3.process is not None
        loader = Loader(s3.process.pid, targets)
        for index in range(profile.rounds):
            order = KINDS if index % 2 == 0 else tuple(reversed(KINDS))
            for store in STORES:
                for kind in order:
                    peer = paths[(store, kind)]
                    load = loader.load(peer, "small", SMALL_CONNECTIONS, profile.seconds)
                    results.rows[(store, kind)].runs.append(loader.measure(peer, load, "small"))
    return results


async def _check(
    paths: dict[tuple[str, str], Peer],
    targets: dict[tuple[str, str], Path],
    bodies: dict[str, bytes],
    objects: list[StoredObject],
) -> dict[str, list[str]]:
    """Before timing: the first answers of each list compared byte for byte."""
    wrong: dict[str, list[str]] = {}
    async with client_session() as session:
        for peer in paths.values():
            first = targets[(peer.scheme, "small")].read_text().splitlines()[:8]
            requests: list[tuple[str, dict[str, str]]] = [
                (peer.base_url + target, {}) for target in first
            ]
            expected = [bodies[objects[i % len(objects)].key] for i in range(len(first))]
            problems = await wrong_answers(session, requests, expected)
            if problems:
                wrong[peer.name] = problems
    return wrong


def limits_report(results: LimitResults) -> list[str]:
    """One row per store and kind; what the limit added, per store."""
    from benchmarks.gateway_load.report import failure, table

    found = [["store", "links", "req/s", "p50 ms", "p99 ms", "added p50", "added p99", "req/s"]]
    for store in STORES:
        base = results.rows[(store, "unlimited")]
        for kind in KINDS:
            row = results.rows[(store, kind)]
            if row.failed:
                found.append([store, kind, failure(row), "", "", "", "", ""])
                continue
            cells = [store, kind, f"{row.rate:,.0f}", f"{row.p50 * 1e3:.2f}"]
            cells.append(f"{row.p99 * 1e3:.2f}")
            if kind == "limited" and not base.failed:
                cells += [
                    f"{(row.p50 - base.p50) * 1e3:+.2f}",
                    f"{(row.p99 - base.p99) * 1e3:+.2f}",
                    f"x{row.rate / base.rate:.2f}",
                ]
            else:
                cells += ["", "", ""]
            found.append(cells)
    lines = [
        f"usage limits: 4 KiB objects, wrk -c{SMALL_CONNECTIONS}, one gateway worker per store,"
        f" {results.profile.rounds} x {results.profile.seconds} s per row",
        *table(found),
    ]
    for name, problems in results.wrong.items():
        lines.append(f"  WRONG ANSWERS through {name}: " + "; ".join(problems[:3]))
    return lines


def limits_exit_status(results: LimitResults) -> int:
    failed = results.wrong or any(row.failed for row in results.rows.values())
    return 2 if failed else 0
