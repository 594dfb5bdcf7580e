"""Fixtures for integration tests: real servers, started by the tests themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import S3Server, seaweedfs

PRIVATE_BUCKET = "private"
PUBLIC_BUCKET = "public"  # readable without credentials: what `gateway check` warns about


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session, with an empty private bucket "private"
    (and a bucket "public" that anyone may read)."""
    with seaweedfs(tmp_path_factory.mktemp("s3"), anonymous_read=[PUBLIC_BUCKET]) as server:
        server.client().create_bucket(Bucket=PRIVATE_BUCKET)
        server.client().create_bucket(Bucket=PUBLIC_BUCKET)
        yield server
