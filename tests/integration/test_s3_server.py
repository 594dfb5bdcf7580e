"""The S3 server the integration tests run against: it stores objects, and it is private."""

from __future__ import annotations

import os
import secrets
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.servers import GRPC_OFFSET, S3Server, free_port, seaweedfs

pytestmark = pytest.mark.integration

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def anonymous_get(url: str) -> int:
    try:
        with DIRECT.open(url, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_the_private_bucket_exists(s3_server: S3Server) -> None:
    s3_server.client().head_bucket(Bucket="private")


def test_an_object_put_with_the_client_reads_back(s3_server: S3Server) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="smoke")
    body = os.urandom(100_000)
    client.put_object(Bucket="smoke", Key="dir/object.bin", Body=body)
    assert client.get_object(Bucket="smoke", Key="dir/object.bin")["Body"].read() == body


def test_an_anonymous_get_is_refused(s3_server: S3Server) -> None:
    s3_server.client().put_object(Bucket="private", Key="secret.txt", Body=b"secret")
    assert anonymous_get(f"{s3_server.endpoint_url}/private/secret.txt") == 403


def test_a_wrong_secret_is_refused(s3_server: S3Server) -> None:
    impostor = S3Server(s3_server.endpoint_url, s3_server.access_key, secrets.token_urlsafe(30))
    with pytest.raises(ClientError) as raised:
        impostor.client().list_objects_v2(Bucket="private")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_env_gives_child_processes_the_credentials(s3_server: S3Server) -> None:
    assert s3_server.env() == {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


def test_free_port_leaves_room_for_grpc() -> None:
    port = free_port(grpc_offset=GRPC_OFFSET)
    assert port < 55000
    for candidate in (port, port + GRPC_OFFSET):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", candidate))


@pytest.mark.parametrize("ending", ["leaving the context", "kill"])
def test_an_ended_server_is_gone(tmp_path: Path, ending: str) -> None:
    with seaweedfs(tmp_path) as server:
        assert server.process is not None
        pid = server.process.pid
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        if ending == "kill":
            server.kill()
            assert server.process is None
    assert server.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert refuses_connections(port)


def test_several_buckets_each_take_writes(s3_server: S3Server) -> None:
    """Each bucket claims its own volumes; the server must have room for every test's."""
    client = s3_server.client()
    for index in range(4):
        bucket = f"room-{index}-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
