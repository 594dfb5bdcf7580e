"""The objects a cache run adds to gateway_load's (64 of 4 KiB, the large one, the 4x one):
many small new ones for the cold runs, uploaded concurrently (one at a time, SeaweedFS takes
a few hundred a second here), and objects of one slice or less to fill a memory tier."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from typing import Final

import aiobotocore.session
from aiobotocore.config import AioConfig

from benchmarks.gateway_load.objects import BUCKET, StoredObject
from tests.servers import S3Server

UPLOADS_AT_ONCE: Final = 64


async def _put_all(s3: S3Server, objects: Sequence[tuple[str, bytes]]) -> None:
    session = aiobotocore.session.get_session()
    config = AioConfig(
        s3={"addressing_style": "path"},
        max_pool_connections=UPLOADS_AT_ONCE,
        retries={"max_attempts": 3, "mode": "standard"},
        proxies={},
    )
    async with session.create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=config,
    ) as client:
        gate = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def put(key: str, body: bytes) -> None:
            async with gate:
                await client.put_object(Bucket=BUCKET, Key=key, Body=body)

        await asyncio.gather(*(put(key, body) for key, body in objects))


def upload_many(s3: S3Server, prefix: str, count: int, size: int) -> list[StoredObject]:
    """`count` objects of `size` random bytes each, as PREFIX-I.bin."""
    bodies = [(f"{prefix}-{i}.bin", os.urandom(size)) for i in range(count)]
    asyncio.run(_put_all(s3, bodies))
    return [StoredObject(key, size, hashlib.sha256(body).hexdigest()) for key, body in bodies]
