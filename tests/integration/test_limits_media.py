"""Usage limits with a real player: ffmpeg (imageio-ffmpeg) through the gateway from real S3
(SeaweedFS). An HLS player's overlapping playlist and segment requests from one address are one
stream under MaxStreams=1, while another client (127.0.0.2, a second loopback address) is
refused; a seeking MP4 player's Range requests are one use under MaxUses=1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from signer import path_form
from tests.integration.harness import Keys, RunningGateway, make_keys, s3_gateway_settings
from tests.integration.harness import running_gateway as start_gateway
from tests.integration.test_media import ffmpeg, local, make_media, upload_media
from tests.polling import eventually
from tests.servers import S3Server

pytestmark = pytest.mark.integration

STREAM = "/hls/ep1/"
OTHER_ADDRESS = "127.0.0.2"  # loopback too: the player is 127.0.0.1


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Path:
    """The clip and its HLS rendition, in the bucket under limited-av/."""
    directory = make_media(tmp_path_factory.mktemp("media"))
    upload_media(s3_server, directory, "limited-av")
    return directory


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def gw(
    s3_server: S3Server, keys: Keys, media: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch, s3_server, "s3://private/limited-av", keys.gateway_file
    )
    async with start_gateway(settings) as running:
        yield running


async def from_other_address(gw: RunningGateway, target: str) -> tuple[int, bytes]:
    """A GET from 127.0.0.2: another client address, as the gateway sees its peer."""
    connector = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(gw.url(target)) as response,
    ):
        return response.status, await response.read()


def served(gw: RunningGateway, status: str, reason: str = "ok") -> float:
    return gw.metric("gateway_requests_total", method="GET", status=status, reason=reason)


def bodies(gw: RunningGateway) -> float:
    """Answers with a body (ffmpeg asks for `bytes=0-` even of a whole file: 206s)."""
    return served(gw, "200") + served(gw, "206")


async def test_an_hls_player_is_one_stream_and_another_address_is_refused_meanwhile(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    # the path form, so that the playlists' relative URIs carry the token
    target = path_form(keys.sign(STREAM + "master.m3u8", prefix=STREAM, max_streams=1))
    url = str(gw.url(target))
    play = ["-readrate", "2", "-i", url, "-map", "0", "-c", "copy", "-f", "md5", "-"]
    player = asyncio.create_task(ffmpeg(*play))
    # the master, both variant playlists and a first segment: the player holds the stream
    await eventually(lambda: bodies(gw) >= 4 or player.done(), within=60)
    refused = await from_other_address(gw, target)
    playing = not player.done()
    status, out, err = await player
    assert refused == (429, b'{"error":"too_many_streams"}\n')
    assert playing, "the player was done before the other address asked"
    assert status == 0, err
    every_packet = ["-i", str(media / "hls" / "master.m3u8"), "-map", "0", "-c", "copy"]
    assert out == local(*every_packet, "-f", "md5", "-")
    assert bodies(gw) >= 1 + 2 + 8  # the master, two variant playlists, eight segments
    assert served(gw, "429", "too_many_streams") == 1  # the other address only


async def test_a_seeking_mp4_player_uses_one_use_for_all_its_range_requests(
    gw: RunningGateway, keys: Keys, media: Path
) -> None:
    """The moov box is at the end, so ffmpeg reads from byte 0, seeks there, then to 2.5 s:
    several Range requests, one viewing. The budget of one download is spent by it, and only."""
    target = keys.sign("/films/clip.mp4", max_uses=1)
    decode = ["-ss", "2.5", "-i"], ["-frames:v", "5", "-f", "framemd5", "-"]
    status, out, err = await ffmpeg(*decode[0], str(gw.url(target)), *decode[1])
    assert status == 0, err
    assert out == local(*decode[0], str(media / "clip.mp4"), *decode[1])
    assert bodies(gw) >= 2  # the moov and the seek (the first read is cut short by them)
    assert await from_other_address(gw, target) == (403, b'{"error":"uses_exhausted"}\n')
