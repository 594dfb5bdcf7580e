"""Fixtures for integration tests: real servers, started by the tests themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import S3Server, seaweedfs

PRIVATE_BUCKET = "private"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session, with an empty private bucket "private"."""
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket=PRIVATE_BUCKET)
        yield server
