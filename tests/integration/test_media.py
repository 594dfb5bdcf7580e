"""Media through the gateway, proven with a real media client (ffmpeg) and real S3 (SeaweedFS).

A short clip is made at set-up time with the ffmpeg that `imageio-ffmpeg` ships: an MP4, and an
HLS rendition (master playlist, two variants, one-second segments) whose playlists use relative
URIs, exactly as a packager writes them. The playlists are stored unmodified: one prefix token in
the path form or in a cookie must be enough to play them.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.revocation import Kind, Revocation, from_request
from gateway.token_source import COOKIE_NAME
from signer import path_form
from signer.format import encode_payload
from tests.integration.harness import (
    Keys,
    RunningGateway,
    make_keys,
    s3_gateway_settings,
)
from tests.integration.harness import running_gateway as start_gateway
from tests.servers import S3Server

pytestmark = pytest.mark.integration

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="pip install -e '.[dev]'")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
STREAM = "/hls/ep1/"
OTHER_STREAM = "/hls/ep2/"
TYPES = {".mp4": "video/mp4", ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def make_media(directory: Path) -> Path:
    """clip.mp4 (4 s, moov at the end so reading it needs a seek) and hls/ (two variants)."""
    run = ["-nostdin", "-v", "error", "-y"]
    clip = directory / "clip.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=duration=4:size=320x240:rate=25"]
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
    subprocess.run([FFMPEG, *run, *source, *h264, "-pix_fmt", "yuv420p", str(clip)], check=True)
    hls = directory / "hls"
    hls.mkdir()
    variants = ["-filter_complex", "[0:v]split=2[a][b];[b]scale=160:120[c]", "-map", "[a]"]
    variants += ["-map", "[c]", "-var_stream_map", "v:0 v:1", "-master_pl_name", "master.m3u8"]
    segments = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"]
    segments += ["-hls_segment_filename", "v%v/seg%03d.ts", "v%v/index.m3u8"]
    subprocess.run(
        [FFMPEG, *run, "-i", str(clip), *variants, *h264, *segments], check=True, cwd=hls
    )
    return directory


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Path:
    """The clip on disk, and in the bucket under av/: films/clip.mp4, hls/ep1/..., hls/ep2/..."""
    directory = make_media(tmp_path_factory.mktemp("media"))
    # ep2: another stream, outside ep1's prefix
    upload_media(s3_server, directory, "av", episodes=("ep1", "ep2"))
    return directory


def upload_media(
    s3_server: S3Server, directory: Path, prefix: str, *, episodes: tuple[str, ...] = ("ep1",)
) -> None:
    """`make_media`'s clip as films/clip.mp4 and its HLS rendition as hls/EPISODE/..., for each
    episode, in the bucket under `prefix`/, each with its media type."""
    uploads = {"films/clip.mp4": directory / "clip.mp4"}
    for file in sorted((directory / "hls").rglob("*")):
        if file.is_file():
            relative = file.relative_to(directory / "hls").as_posix()
            for episode in episodes:
                uploads[f"hls/{episode}/{relative}"] = file
    client = s3_server.client()
    for key, file in uploads.items():
        client.put_object(
            Bucket="private",
            Key=f"{prefix}/{key}",
            Body=file.read_bytes(),
            ContentType=TYPES[file.suffix],
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def gw(
    s3_server: S3Server, keys: Keys, media: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch,
        s3_server,
        "s3://private/av",
        keys.gateway_file,
        token_cookie="true",
        cors_origins="https://player.example",
        cors_credentials="true",
    )
    async with start_gateway(settings) as running:
        yield running


async def ffmpeg(*args: str) -> tuple[int, bytes, str]:
    """Run ffmpeg without blocking the gateway's event loop; (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        FFMPEG,
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out, err.decode(errors="replace")


def local(*args: str) -> bytes:
    return subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", *args], check=True, capture_output=True
    ).stdout


def stream_token(keys: Keys, prefix: str = STREAM, **options: Any) -> str:
    """A signed query-form target for the master playlist, authorizing the whole prefix."""
    return keys.sign(prefix + "master.m3u8", prefix=prefix, **options)


def path_url(gw: RunningGateway, target: str) -> str:
    return str(gw.url(path_form(target)))


def ok_count(gw: RunningGateway, status: str) -> float:
    return gw.metric("gateway_requests_total", method="GET", status=status, reason="ok")


# --- MP4: progressive download and seeking --------------------------------------------------


async def test_ffmpeg_reads_the_signed_mp4_byte_for_byte(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    url = str(gw.url(keys.sign("/films/clip.mp4")))
    status, out, err = await ffmpeg(
        "-f", "data", "-i", url, "-map", "0", "-c", "copy", "-f", "data", "-"
    )
    assert status == 0, err
    assert (
        hashlib.sha256(out).digest() == hashlib.sha256((media / "clip.mp4").read_bytes()).digest()
    )


async def test_ffmpeg_seeks_into_the_middle_of_the_signed_mp4_with_range_requests(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    """The moov box is at the end, so ffmpeg must seek there and back (206s), then to 2.5 s;
    the frames it decodes there are the frames decoded from the stored file."""
    url = str(gw.url(keys.sign("/films/clip.mp4")))
    decode = ["-ss", "2.5", "-i"], ["-frames:v", "5", "-f", "framemd5", "-"]
    status, out, err = await ffmpeg(*decode[0], url, *decode[1])
    assert status == 0, err
    assert out == local(*decode[0], str(media / "clip.mp4"), *decode[1])
    assert ok_count(gw, "206") >= 2


# --- HLS: one token for the whole stream ----------------------------------------------------


def hls_md5(media: Path) -> bytes:
    """Every packet of both variants, as played from disk."""
    return local(
        "-i", str(media / "hls" / "master.m3u8"), "-map", "0", "-c", "copy", "-f", "md5", "-"
    )


async def play(*args: str) -> tuple[int, bytes, str]:
    return await ffmpeg(*args, "-map", "0", "-c", "copy", "-f", "md5", "-")


async def test_ffmpeg_plays_the_hls_master_with_one_path_form_token(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    status, out, err = await play("-i", path_url(gw, stream_token(keys)))
    assert status == 0, err
    assert out == hls_md5(media)
    served = ok_count(gw, "200") + ok_count(gw, "206")
    assert served >= 1 + 2 + 8  # the master, two variant playlists, eight segments


async def test_ffmpeg_plays_the_hls_master_with_the_token_cookie(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    """No token in any URL: the cookie alone, as a browser or AVPlayer would send it."""
    payload = encode_payload(stream_token(keys).partition("?")[2])
    # ffmpeg matches a cookie's domain against host:port
    cookie = f"{COOKIE_NAME}={payload}; path={STREAM}; domain=127.0.0.1:{gw.server.port}"
    master = str(gw.url(STREAM + "master.m3u8"))
    status, out, err = await play("-cookies", cookie, "-i", master)
    assert status == 0, err
    assert out == hls_md5(media)


async def test_ffmpeg_plays_the_hls_master_with_the_cookie_set_by_a_query_token(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    """The master is opened with a query token; relative URIs drop the query, and the cookie the
    gateway set for the prefix authorizes every variant playlist and segment."""
    status, out, err = await play("-i", str(gw.url(stream_token(keys))))
    assert status == 0, err
    assert out == hls_md5(media)


async def test_the_cookie_is_http_only_and_scoped_to_the_prefix(
    gw: RunningGateway, keys: Keys
) -> None:
    response, _ = await gw.request("GET", stream_token(keys))
    cookie = response.headers["Set-Cookie"]
    attributes = cookie.split("; ")
    assert attributes[0].startswith(f"{COOKIE_NAME}=")
    assert f"Path={STREAM}" in attributes
    assert {"HttpOnly", "SameSite=Lax"} <= set(attributes)
    assert "Secure" not in attributes  # plain HTTP here; TLS or a trusted proxy adds it
    assert 290 <= int(next(a for a in attributes if a.startswith("Max-Age="))[8:]) <= 300


async def test_only_query_tokens_with_a_prefix_set_a_cookie(gw: RunningGateway, keys: Keys) -> None:
    for target in (keys.sign("/films/clip.mp4"), path_form(stream_token(keys))):
        response, _ = await gw.request("HEAD", target)
        assert response.status == 200
        assert "Set-Cookie" not in response.headers


# --- refusals ---------------------------------------------------------------------------------


def tampered(target: str) -> str:
    return target.replace("Expires=", "Expires=1", 1)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: tampered(stream_token(k)), "bad_signature"),
        (lambda k: stream_token(k, now=time.time() - 3600, expires_in=60), "expired"),
        (
            lambda k: stream_token(k, OTHER_STREAM).replace("/ep2/master", "/ep1/master"),
            "outside_prefix",
        ),
    ],
    ids=["tampered", "expired", "out-of-prefix"],
)
@pytest.mark.parametrize("form", ["path", "cookie"])
async def test_a_bad_stream_token_fails_in_ffmpeg_and_says_why(
    gw: RunningGateway, keys: Keys, make: Any, reason: str, form: str
) -> None:
    target = make(keys)
    if form == "path":
        url, headers, args = path_url(gw, target), {}, []
    else:
        payload = encode_payload(target.partition("?")[2])
        url = str(gw.url(STREAM + "master.m3u8"))
        headers = {"Cookie": f"{COOKIE_NAME}={payload}"}
        args = ["-headers", f"Cookie: {COOKIE_NAME}={payload}\r\n"]
    status, _, _ = await play(*args, "-i", url)
    assert status != 0
    response, body = await gw.request("GET", url.partition(str(gw.url("")))[2], headers)
    assert (response.status, body) == (403, b'{"error":"%s"}\n' % reason.encode())


@pytest.mark.parametrize(
    "segment",
    ["/hls/ep2/v0/seg000.ts", "/hls/ep2/master.m3u8", "/films/clip.mp4", "/hls/ep10/x.ts"],
)
async def test_a_segment_outside_the_prefix_is_refused_even_with_a_valid_stream_token(
    gw: RunningGateway, keys: Keys, segment: str
) -> None:
    token = stream_token(keys)
    query = token.partition("?")[2]
    in_path = path_form(token)
    token_segment = in_path[: in_path.index("/", 1)]
    cookie = {"Cookie": f"{COOKIE_NAME}={encode_payload(query)}"}
    for target, headers in (
        (f"{segment}?{query}", {}),
        (token_segment + segment, {}),
        (segment, cookie),
    ):
        response, body = await gw.request("GET", target, headers)
        assert (response.status, body) == (403, b'{"error":"outside_prefix"}\n'), target


async def test_climbing_out_of_the_prefix_with_dot_dot_is_malformed(
    gw: RunningGateway, keys: Keys
) -> None:
    in_path = path_form(stream_token(keys))
    token_segment = in_path[: in_path.index("/", 1)]
    response, body = await gw.request("GET", token_segment + "/hls/ep1/../ep2/v0/seg000.ts")
    assert (response.status, body) == (403, b'{"error":"malformed_token"}\n')


@pytest.mark.parametrize("revoke", ["token", "sub", "prefix"])
async def test_a_revoked_stream_token_fails_in_every_form(
    gw: RunningGateway, keys: Keys, revoke: str
) -> None:
    """Revoked by its token id, its subject or its prefix: ffmpeg cannot play the stream, and
    the query form, the path form and the cookie all get `revoked`."""
    token = stream_token(keys, sub="viewer-7", now=time.time() - 5)
    query = token.partition("?")[2]
    response, _ = await gw.request("GET", token)
    assert response.status == 200
    entry = {
        "token": from_request("url", token, before=None, now=time.time(), max_lifetime=600, skew=0),
        "sub": Revocation(Kind.SUB, "viewer-7", time.time() + 600, time.time()),
        "prefix": Revocation(Kind.PREFIX, STREAM.rstrip("/"), time.time() + 600, time.time()),
    }[revoke]
    gw.services.revocations.apply(entry)

    status, _, _ = await play("-i", path_url(gw, token))
    assert status != 0
    cookie = {"Cookie": f"{COOKIE_NAME}={encode_payload(query)}"}
    for target, headers in (
        (token, {}),
        (path_form(token), {}),
        (STREAM + "v0/seg000.ts", cookie),
    ):
        response, body = await gw.request("GET", target, headers)
        assert (response.status, body) == (403, b'{"error":"revoked"}\n'), target


# --- browsers: CORS and response overrides ----------------------------------------------------


async def test_a_preflight_for_a_range_request_is_answered_without_a_token(
    gw: RunningGateway,
) -> None:
    headers = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    response, body = await gw.request("OPTIONS", "/hls/ep1/v0/seg000.ts", headers)
    assert (response.status, body) == (204, b"")
    assert response.headers["Access-Control-Allow-Origin"] == "https://player.example"
    assert "range" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_a_ranged_answer_exposes_its_range_headers_to_the_allowed_origin(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    headers = {"Origin": "https://player.example", "Range": "bytes=100-199"}
    response, body = await gw.request("GET", keys.sign("/films/clip.mp4"), headers)
    assert response.status == 206
    assert body == (media / "clip.mp4").read_bytes()[100:200]
    assert response.headers["Access-Control-Allow-Origin"] == "https://player.example"
    exposed = response.headers["Access-Control-Expose-Headers"].split(", ")
    assert {"Content-Range", "Content-Length", "Accept-Ranges", "ETag"} <= set(exposed)


async def test_errors_carry_cors_headers_so_a_page_can_read_the_reason(
    gw: RunningGateway,
) -> None:
    response, _ = await gw.request("GET", "/films/clip.mp4", {"Origin": "https://player.example"})
    assert response.status == 403
    assert response.headers["Access-Control-Allow-Origin"] == "https://player.example"


async def test_another_origin_gets_no_cors_permission(gw: RunningGateway, keys: Keys) -> None:
    headers = {"Origin": "https://evil.example"}
    response, _ = await gw.request("GET", keys.sign("/films/clip.mp4"), headers)
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["Vary"] == "Origin"
    preflight = {**headers, "Access-Control-Request-Method": "GET"}
    response, body = await gw.request("OPTIONS", "/films/clip.mp4", preflight)
    assert (response.status, body) == (403, b'{"error":"cors_refused"}\n')


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_signed_response_overrides_name_the_download(
    gw: RunningGateway, keys: Keys, method: str
) -> None:
    target = keys.sign(
        "/films/clip.mp4",
        response_content_type="application/octet-stream",
        response_content_disposition='attachment; filename="intro-2026.mp4"',
    )
    response, _ = await gw.request(method, target)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="intro-2026.mp4"'
    altered = target.replace("intro-2026", "evil-2026")
    response, _ = await gw.request(method, altered)
    assert response.status == 403
