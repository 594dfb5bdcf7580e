"""Links signed by the JavaScript signer (docs/examples/edge-signer.mjs) are accepted by a live
gateway: an in-process gateway over a local directory, links signed by `node`, fetched over
loopback. The signer knows only the format document; the gateway only the format."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signer import Algorithm, content_disposition
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)

pytestmark = pytest.mark.integration

SIGNER = Path(__file__).resolve().parents[2] / "docs" / "examples" / "edge-signer.mjs"
NODE = shutil.which("node")
OBJECTS = {
    "videos/intro.mp4": b"an mp4",
    "hls/ep1/master.m3u8": b"#EXTM3U",
    "hls/ep1/720p/seg001.ts": b"a segment",
    "docs/Über uns.txt": "Grüße".encode(),
    "billing/7f3a.pdf": b"%PDF-1.7",
}


@pytest.fixture(params=list(Algorithm), ids=lambda a: a.value)
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Keys:
    if NODE is None:
        pytest.skip("node is not installed (Debian package nodejs; scripts/bootstrap.sh)")
    return make_keys(tmp_path, request.param)


@pytest.fixture
def signing_file(keys: Keys, tmp_path: Path) -> Path:
    """The backend's keyring (with the private keys), as the JavaScript signer reads it."""
    path = tmp_path / "signing-keyring.json"
    keys.signing.save(path)
    return path


@pytest.fixture
async def gw(keys: Keys, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    root = tmp_path / "objects"
    for name, body in OBJECTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    (root / "uploads").mkdir()
    async with running_gateway(gateway_settings(f"file://{root}", keys.gateway_file)) as running:
        yield running


async def node_sign(keyring: Path, url: str, *flags: str) -> str:
    """`node edge-signer.mjs sign URL --keyring FILE FLAGS...`: the signed URL it prints."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(SIGNER),
        "sign",
        url,
        "--keyring",
        str(keyring),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


@pytest.mark.parametrize(
    ("url", "flags", "method", "request_path", "body"),
    [
        ("/videos/intro.mp4", [], "GET", None, b"an mp4"),
        ("/videos/intro.mp4?w=640&fmt=webp", [], "GET", None, b"an mp4"),
        ("/docs/%C3%9Cber%20uns.txt", ["--sub", "user 42@example.com"], "GET", None, "Grüße"),
        ("/videos/intro.mp4", ["--ip", "::ffff:127.0.0.1"], "GET", None, b"an mp4"),
        ("/videos/intro.mp4", ["--ip", "127.0.0.0/8", "--window", "300"], "GET", None, b"an mp4"),
        ("/videos/intro.mp4", ["--method", "HEAD"], "HEAD", None, b""),
        (
            "/hls/ep1/master.m3u8",
            ["--prefix", "/hls/ep1/", "--path-form"],
            "GET",
            "/hls/ep1/720p/seg001.ts",
            b"a segment",
        ),
        (
            "/hls/ep1/master.m3u8",
            ["--prefix", "/hls/ep1/", "--starts-at", "1000000000", "--expires-in", "60"],
            "GET",
            "/hls/ep1/720p/seg001.ts",
            b"a segment",
        ),
    ],
    ids=[
        "plain",
        "application-parameters",
        "unicode-path-and-sub",
        "ipv4-mapped-ip-written-as-ipv4",
        "ip-network-and-window",
        "head-only",
        "path-form-prefix-child",
        "query-prefix-child-with-starts",
    ],
)
async def test_a_link_the_javascript_signer_issues_is_served(
    gw: RunningGateway,
    signing_file: Path,
    url: str,
    flags: list[str],
    method: str,
    request_path: str | None,
    body: bytes | str,
) -> None:
    if "--expires-in" not in flags:
        flags = [*flags, "--expires-in", "300"]
    signed = await node_sign(signing_file, url, *flags)
    if request_path is not None:  # a relative URI resolved against the link, or the same token
        signed = signed.replace("/hls/ep1/master.m3u8", request_path)
    response, received = await gw.request(method, signed)
    expected = body.encode() if isinstance(body, str) else body
    assert (response.status, received) == (200, expected)


async def test_a_download_name_the_javascript_signer_signs_is_answered(
    gw: RunningGateway, signing_file: Path
) -> None:
    signed = await node_sign(
        signing_file,
        "/billing/7f3a.pdf",
        "--expires-in",
        "300",
        "--download-as",
        "Rechnung März.pdf",
    )
    response, received = await gw.request("GET", signed)
    assert (response.status, received) == (200, b"%PDF-1.7")
    assert response.headers["Content-Disposition"] == content_disposition("Rechnung März.pdf")


async def test_an_upload_link_the_javascript_signer_issues_stores_the_object(
    gw: RunningGateway, signing_file: Path
) -> None:
    put = await node_sign(
        signing_file,
        "/uploads/u1/note.txt",
        *("--expires-in", "300", "--method", "PUT", "--content-type", "text/"),
        *("--min-bytes", "1", "--max-bytes", "100", "--no-overwrite", "--one-time"),
    )
    headers = {"Content-Type": "text/plain"}
    async with gw.session.put(gw.url(put), data=b"a note", headers=headers) as response:
        assert response.status == 201
    read = await node_sign(signing_file, "/uploads/u1/note.txt", "--expires-in", "300")
    response, received = await gw.request("GET", read)
    assert (response.status, received) == (200, b"a note")
