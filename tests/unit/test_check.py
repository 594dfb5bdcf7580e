"""`gateway check` where no real server can play the part, and the docs' lines of its output.

AWS names a bucket's region in HeadBucket's answer (`x-amz-bucket-region`), and botocore
follows its 301 to that region by itself; SeaweedFS names none and accepts any region. So a
scripted server answers as AWS does. The mistakes docs/operations.md shows are each one line
that a test here or in tests/integration/test_check.py asserts, through `documented`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway import check
from gateway.settings import Settings, load

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
CHECK_TESTS = (Path(__file__), ROOT / "tests" / "integration" / "test_check.py")
SHOWN_ROOT = "/srv/gateway"  # the docs' directory for a test's tmp_path
MISTAKES = "The common mistakes, as it reports them"


def documented_lines() -> list[str]:
    """The indented block under MISTAKES in docs/operations.md, one line per finding."""
    lines = OPERATIONS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MISTAKES))
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return block


def documented(fragment: str) -> str:
    """The one line of the docs' mistakes that contains `fragment`."""
    (line,) = [line for line in documented_lines() if fragment in line]
    return line


def as_shown(line: str, tmp_path: Path, **values: str) -> str:
    """A line of real output with the test's own paths (and `values`) as the docs show them."""
    line = line.replace(str(tmp_path), SHOWN_ROOT)
    for actual, shown in values.items():
        line = line.replace(actual, shown)
    return line


def test_every_mistake_the_docs_show_is_a_line_a_test_asserts() -> None:
    used = [
        fragment
        for path in CHECK_TESTS
        for fragment in re.findall(r'documented\(\s*"([^"]+)"\s*\)', path.read_text())
    ]
    claimed = {line: [f for f in used if f in line] for line in documented_lines()}
    assert len(claimed) >= 10
    assert {line: len(found) for line, found in claimed.items()} == dict.fromkeys(claimed, 1)


class AwsLike:
    """Answers every request (keep-alive) with `status` and `headers`, as AWS answers a
    HeadBucket for a bucket in `x-amz-bucket-region`."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.head = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n".encode() + b"".join(
            f"{name}: {value}\r\n".encode() for name, value in headers.items()
        )

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(self.head + b"\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Endpoint = Callable[[int, dict[str, str]], Awaitable[str]]


@pytest.fixture
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Endpoint]:
    """Starts AWS-like endpoints; the store signs with made-up credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-made-at-test-time")
    servers: list[asyncio.Server] = []

    async def start(status: int, headers: dict[str, str]) -> str:
        server = await asyncio.start_server(AwsLike(status, headers).answer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def storage_lines(url: str, tmp_path: Path) -> list[str]:
    settings = load(
        environ={
            "GATEWAY_ORIGIN": "s3://media/",
            "GATEWAY_S3_ENDPOINT_URL": url,
            "GATEWAY_S3_REGION": "us-east-1",
            "GATEWAY_KEYRING": str(tmp_path / "keyring.json"),
            "GATEWAY_CONNECT_TIMEOUT": "2",
            "GATEWAY_FIRST_BYTE_TIMEOUT": "5",
        }
    )
    return [finding.line() for finding in await check.storage(settings)]


async def test_a_bucket_in_another_region_is_an_error_naming_both_regions(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    """What botocore gets after following AWS's 301 itself: a 200 from the bucket's region."""
    url = await endpoint(200, {"x-amz-bucket-region": "eu-central-1"})

    lines = await storage_lines(url, tmp_path)

    assert lines == [documented("the bucket is in eu-central-1, not us-east-1")]


async def test_a_redirect_to_another_region_names_it(endpoint: Endpoint, tmp_path: Path) -> None:
    url = await endpoint(301, {"x-amz-bucket-region": "eu-central-1"})

    (line,) = await storage_lines(url, tmp_path)

    assert line.startswith("error   GATEWAY_ORIGIN: s3://media/: HeadBucket failed: 301 ")
    assert line.endswith("(GATEWAY_S3_REGION): it is in eu-central-1")


async def test_a_bucket_in_the_configured_region_answers(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    url = await endpoint(200, {"x-amz-bucket-region": "us-east-1"})

    lines = await storage_lines(url, tmp_path)

    assert lines[0] == "ok      GATEWAY_ORIGIN: s3://media/ answers with these credentials"


def revocation_settings(tmp_path: Path, **environ: str) -> Settings:
    """The embedded revocation store in `tmp_path`, with `environ` added."""
    return load(
        environ={
            "GATEWAY_ORIGIN": f"file://{tmp_path}",
            "GATEWAY_KEYRING": str(tmp_path / "keyring.json"),
            "GATEWAY_REVOCATION_DB": str(tmp_path / "revocations.sqlite3"),
            **environ,
        }
    )


@pytest.mark.parametrize(
    ("fail_open", "warned"), [("false", False), ("true", True)], ids=["off", "on"]
)
async def test_fail_open_on_is_a_warning_even_with_a_store_that_answers(
    tmp_path: Path, fail_open: str, warned: bool
) -> None:
    settings = revocation_settings(tmp_path, GATEWAY_REVOCATION_FAIL_OPEN=fail_open)

    lines = [finding.line() for finding in await check.revocations(settings)]

    store = "ok      GATEWAY_REVOCATION_DB: sqlite store answers (0 live entries)"
    risk = check.Finding(check.Level.WARNING, check.FAIL_OPEN, check.FAIL_OPEN_RISK).line()
    assert lines == ([store, risk] if warned else [store])


async def test_fail_open_does_not_excuse_an_embedded_store_the_gateway_cannot_open(
    tmp_path: Path,
) -> None:
    """The gateway opens the SQLite file at start and does not start without it."""
    (tmp_path / "a-file").write_text("")
    settings = revocation_settings(
        tmp_path,
        GATEWAY_REVOCATION_DB=str(tmp_path / "a-file" / "revocations.sqlite3"),
        GATEWAY_REVOCATION_FAIL_OPEN="true",
    )

    findings = await check.revocations(settings)

    assert [(f.level, f.setting) for f in findings] == [
        (check.Level.ERROR, "GATEWAY_REVOCATION_DB"),
        (check.Level.WARNING, "GATEWAY_REVOCATION_FAIL_OPEN"),
    ]
