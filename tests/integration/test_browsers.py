"""The product's main clients, for real: pages in headless Chromium playing and uploading.

Each page is served from another loopback origin than the gateway's (another port), so every
request it makes to the gateway is cross-origin and CORS is exercised as on a real site. The
pages write what happened into the DOM (player events, a visible error, the upload's answer),
read back with `--dump-dom` (tests/chromium.py); the gateway's metrics tell what it answered.

Media is made at set-up time with the ffmpeg that `imageio-ffmpeg` ships: an H.264 baseline MP4
with its index at the front (faststart, as served for progressive playback), large enough that
Chromium does not buffer all of it before a seek, and a short HLS rendition with two variants.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from signer import path_form, sign_url
from tests.chromium import (
    HOW_TO_INSTALL,
    PACE,
    REPO,
    Chromium,
    chromium_binary,
    hls_js,
    lines,
    pinned_hls_js,
)
from tests.chromium import element_text as text_of
from tests.integration import test_s3_presigned as presigned
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    keyring_file,
    make_keys,
    s3_gateway_settings,
)
from tests.integration.harness import running_gateway as start_gateway
from tests.polling import eventually
from tests.servers import S3Server

pytestmark = pytest.mark.integration

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="pip install -e '.[dev]'")

CLIP_SECONDS = 20
SEEK_TO = 15
HLS_SEGMENTS = 6
STREAM = "/hls/ep1/"
MASTER = STREAM + "master.m3u8"
FILM = "/films/clip.mp4"
UPLOADS = "/uploads/user-42/"


def make_media(objects: Path) -> None:
    """films/clip.mp4 (20 s, 3 Mbit/s: some 7 MB) and hls/ep1/ (6 s, two variants, 1 s
    segments, playlists with relative URIs as a packager writes them)."""
    ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    h264 = ["-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-g", "25"]
    h264 += ["-pix_fmt", "yuv420p"]
    films = objects / "films"
    films.mkdir(parents=True)
    source = ["-f", "lavfi", "-i", f"testsrc2=duration={CLIP_SECONDS}:size=640x360:rate=25"]
    progressive = ["-b:v", "3M", "-movflags", "+faststart"]
    subprocess.run([*ffmpeg, *source, *h264, *progressive, str(films / "clip.mp4")], check=True)
    stream = objects / STREAM.strip("/")
    stream.mkdir(parents=True)
    source = ["-f", "lavfi", "-i", f"testsrc=duration={HLS_SEGMENTS}:size=320x240:rate=25"]
    variants = ["-filter_complex", "[0:v]split=2[a][b];[b]scale=160:120[c]", "-map", "[a]"]
    variants += ["-map", "[c]", "-var_stream_map", "v:0 v:1", "-master_pl_name", "master.m3u8"]
    segments = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"]
    segments += ["-hls_segment_filename", "v%v/seg%03d.ts", "v%v/index.m3u8"]
    subprocess.run(
        [*ffmpeg, *source, *variants, *h264, *segments],
        check=True,
        cwd=stream,
    )
    (objects / UPLOADS.strip("/")).mkdir(parents=True)


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("objects")
    make_media(directory)
    return directory


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(f"needs chromium-headless-shell (Debian package): {HOW_TO_INSTALL}")
    profiles = tmp_path / "chromium"
    profiles.mkdir()
    return Chromium(binary, profiles)


# --- the page origin --------------------------------------------------------------------------


class PageSite:
    """The site a player or upload page comes from: its pages, hls.js, and what its backend
    answers the pages: /mark/NAME (the page reached a point: the test records what the gateway
    had answered by then), /tick (tests.chromium.PACE) and the README's /api/upload-link."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self.marks: dict[str, float] = {}
        self.mark: Callable[[], float] = lambda: 0.0
        self.upload_link: Callable[[str], str] = lambda name: ""
        app = web.Application()
        app.router.add_get("/tick", self._tick)
        app.router.add_get("/pages/{name}", self._page)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/mark/{name}", self._mark)
        app.router.add_post("/api/upload-link", self._upload_link)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def page(self, name: str, markup: str) -> str:
        self.pages[name] = markup
        return f"{self.origin}/pages/{name}"

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.pages[request.match_info["name"]], content_type="text/html")

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.files[request.match_info["name"]])

    async def _mark(self, request: web.Request) -> web.Response:
        self.marks[request.match_info["name"]] = self.mark()
        return web.Response(status=204)

    async def _tick(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _upload_link(self, request: web.Request) -> web.Response:
        return web.json_response({"url": self.upload_link(request.query["name"])})


@pytest.fixture
async def site() -> AsyncIterator[PageSite]:
    site = PageSite()
    await site.server.start_server()
    try:
        yield site
    finally:
        await site.server.close()


@asynccontextmanager
async def gateway(objects: Path, keys: Keys, allowed_origin: str) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(
        f"file://{objects}",
        keys.gateway_file,
        cors_origins=allowed_origin,
        cors_credentials="true",
        token_cookie="true",
    )
    async with start_gateway(settings) as running:
        yield running


@pytest.fixture
async def gw(objects: Path, keys: Keys, site: PageSite) -> AsyncIterator[RunningGateway]:
    """A gateway that lets the page's origin read its answers, with credentials (cookies)."""
    async with gateway(objects, keys, site.origin) as running:
        yield running


def answers(gw: RunningGateway, method: str = "GET") -> Counter[tuple[str, str]]:
    """How many answers to `method` the gateway counted, by (status, reason)."""
    counted: Counter[tuple[str, str]] = Counter()
    for family in gw.services.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "gateway_requests_total" and sample.labels["method"] == method:
                counted[sample.labels["status"], sample.labels["reason"]] += int(sample.value)
    return counted


def statuses(gw: RunningGateway, method: str = "GET") -> set[str]:
    """The statuses the gateway answered `method` with. A request Chromium dropped before the
    gateway chose its answer (it does, on seeking) is counted with status 0 and no reason:
    it had no answer, so it is left out."""
    return {status for status, _ in answers(gw, method)} - {"0"}


def heads_sent(gw: RunningGateway) -> float:
    """Response heads the gateway has sent to GETs so far, answers still streaming included."""
    return gw.metric("gateway_time_to_first_byte_seconds_count", method="GET")


async def settled(gw: RunningGateway) -> None:
    """Wait until the answers Chromium cut short by exiting are counted too."""
    await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0)


# --- the pages --------------------------------------------------------------------------------

#: What every player page shares: PACE; `log` writes a player event into #events; `refused`
#: shows a person why the link does not play, reading the gateway's JSON reason (errors carry
#: CORS headers, so a page on another origin can read it).
COMMON = (
    """<!doctype html><meta charset="utf-8"><title>player</title>
<pre id="events"></pre><p id="error" role="alert"></p>
<script>
const mark = (name) => fetch("/mark/" + name);
const log = (line) => { document.getElementById("events").textContent += line + "\\n"; };
async function refused(src) {
  let reason;
  try { reason = (await (await fetch(src)).json()).error; } catch (e) { reason = String(e); }
  document.getElementById("error").textContent = "This video cannot be played: " + reason;
  finish();
}
</script>
"""
    + PACE
)


def mp4_page(src: str, seek_to: float | None = None) -> str:
    then = "finish();" if seek_to is None else f"video.currentTime = {seek_to};"
    return (
        COMMON
        + f"""<video id="video" controls preload="metadata" crossorigin="anonymous" muted
       src="{src}"></video>
<script>
const video = document.getElementById("video");
video.addEventListener("loadedmetadata", async () => {{
  await mark("loadedmetadata");
  log("loadedmetadata " + video.duration);
  {then}
}});
video.addEventListener("seeked", async () => {{
  await mark("seeked");
  log("seeked " + video.currentTime);
  finish();
}});
video.addEventListener("error", () => {{ log("error " + video.error.code); refused(video.src); }});
</script>"""
    )


def hls_page(src: str, config: str = "{}") -> str:
    """The README's hls.js player (Safari's native branch left out: this is Chromium). Its
    transmuxer runs on the page's thread: in a worker, virtual time runs ahead of it and the
    budget is spent before the second fragment is buffered."""
    return (
        COMMON
        + f"""<video id="video" controls muted></video>
<script src="/files/hls.min.js"></script>
<script>
const src = "{src}";
const video = document.getElementById("video");
const hls = new Hls({{ enableWorker: false, ...{config} }});
hls.on(Hls.Events.MANIFEST_PARSED, (event, data) => log("manifest " + data.levels.length));
hls.on(Hls.Events.FRAG_LOADED, (event, data) => log("fragment " + data.frag.sn));
hls.on(Hls.Events.BUFFER_EOS, () => {{ log("buffered to the end"); finish(); }});
hls.on(Hls.Events.ERROR, (event, data) => {{
  if (data.fatal) {{ log("error " + data.details); refused(data.url || src); }}
}});
hls.loadSource(src);
hls.attachMedia(video);
</script>"""
    )


WITH_CREDENTIALS = "{xhrSetup: (xhr) => { xhr.withCredentials = true; }}"


def with_hls_js(site: PageSite) -> PageSite:
    """`site` serving the pinned hls.js; the test skips without it."""
    script = hls_js()
    if script is None:
        wanted = pinned_hls_js()[0].relative_to(REPO)
        pytest.skip(f"needs the pinned hls.js in {wanted} (fetched with npm): {HOW_TO_INSTALL}")
    site.files["hls.min.js"] = script.read_bytes()
    return site


@pytest.fixture
def hls_site(site: PageSite) -> PageSite:
    return with_hls_js(site)


def site_for(player: str, site: PageSite) -> PageSite:
    return with_hls_js(site) if player == "hls" else site


def fragments(events: list[str]) -> set[int]:
    return {int(line.split()[1]) for line in events if line.startswith("fragment ")}


def tampered(target: str) -> str:
    return target.replace("Expires=", "Expires=1", 1)


# --- MP4 in <video>: the query form, and seeking ---------------------------------------------


async def test_a_video_on_another_origin_plays_the_query_form_mp4_and_seeks_with_a_new_range(
    chromium: Chromium, site: PageSite, gw: RunningGateway, keys: Keys
) -> None:
    """Chromium reads the metadata with a Range request; the seek far into the clip, past what
    it buffered, makes it send a new one: the gateway had sent more 206 heads by `seeked`
    than by `loadedmetadata`, and answered nothing but 206s."""
    site.mark = lambda: heads_sent(gw)
    url = site.page("film.html", mp4_page(str(gw.url(keys.sign(FILM))), seek_to=SEEK_TO))

    events = lines(await chromium.dump_dom(url), "events")
    await settled(gw)

    assert events == [f"loadedmetadata {CLIP_SECONDS}", f"seeked {SEEK_TO}"]
    assert site.marks["seeked"] > site.marks["loadedmetadata"] >= 1
    assert statuses(gw) == {"206"}


async def test_without_a_seek_the_video_needs_no_second_range_request(
    chromium: Chromium, site: PageSite, gw: RunningGateway, keys: Keys
) -> None:
    """The other side of the test above: what it counts is the seek's doing."""
    url = site.page("film.html", mp4_page(str(gw.url(keys.sign(FILM)))))

    events = lines(await chromium.dump_dom(url), "events")
    await settled(gw)

    assert events == [f"loadedmetadata {CLIP_SECONDS}"]
    assert sum(answers(gw).values()) == 1


# --- HLS with hls.js: the path form, and the cookie form -------------------------------------


async def test_hls_js_plays_the_path_form_prefix_stream(
    chromium: Chromium, hls_site: PageSite, gw: RunningGateway, keys: Keys
) -> None:
    """One path-form token for the prefix: the master, a variant playlist and every segment
    (hls.js buffers the whole 6 s stream), all by the relative URIs in the playlists."""
    src = str(gw.url(path_form(keys.sign(MASTER, prefix=STREAM))))
    url = hls_site.page("stream.html", hls_page(src))

    events = lines(await chromium.dump_dom(url), "events")
    await settled(gw)

    assert events[0] == "manifest 2"
    assert fragments(events) == set(range(HLS_SEGMENTS))
    assert not [line for line in events if line.startswith("error")]
    counted = answers(gw)
    assert set(counted) == {("200", "ok")}
    assert counted["200", "ok"] >= 1 + 1 + HLS_SEGMENTS  # master, a variant, its segments


async def test_hls_js_with_credentials_plays_the_cookie_form(
    chromium: Chromium, hls_site: PageSite, gw: RunningGateway, keys: Keys
) -> None:
    """hls.js opens the query-form master (withCredentials); its answer sets the prefix
    cookie, which alone authorizes the variant playlists and segments: their URIs carry no
    token. Credentialed CORS: the exact origin is allowed, with Allow-Credentials. (The page
    and the gateway differ by port only: one site, so the SameSite=Lax cookie goes along.)"""
    src = str(gw.url(keys.sign(MASTER, prefix=STREAM)))
    url = hls_site.page("cookie.html", hls_page(src, WITH_CREDENTIALS))

    events = lines(await chromium.dump_dom(url), "events")
    await settled(gw)

    assert events[0] == "manifest 2"
    assert fragments(events) == set(range(HLS_SEGMENTS))
    counted = answers(gw)
    assert set(counted) == {("200", "ok")}
    assert counted["200", "ok"] >= 1 + 1 + HLS_SEGMENTS


async def test_hls_js_without_credentials_cannot_play_the_cookie_form(
    chromium: Chromium, hls_site: PageSite, gw: RunningGateway, keys: Keys
) -> None:
    """The other side of the test above: without withCredentials the browser neither keeps
    the cookie nor sends it, so the variant playlist has no token."""
    src = str(gw.url(keys.sign(MASTER, prefix=STREAM)))
    url = hls_site.page("cookie.html", hls_page(src))

    dom = await chromium.dump_dom(url)
    await settled(gw)

    events = lines(dom, "events")
    assert events[0] == "manifest 2"
    assert events[-1] == "error levelLoadError"
    assert fragments(events) == set()
    assert text_of(dom, "error") == "This video cannot be played: missing_token"
    assert answers(gw)["403", "missing_token"] >= 1


@pytest.mark.parametrize("player", ["mp4", "hls"])
async def test_a_page_on_an_origin_the_gateway_does_not_allow_cannot_read_the_media(
    chromium: Chromium, site: PageSite, objects: Path, keys: Keys, player: str
) -> None:
    """The gateway answers, but without Access-Control-Allow-Origin for this page's origin,
    and Chromium keeps the answer from the player: CORS is really in play in these tests."""
    site = site_for(player, site)
    async with gateway(objects, keys, "http://127.0.0.1:1") as gw:
        if player == "mp4":
            page, failed = mp4_page(str(gw.url(keys.sign(FILM)))), "error 4"  # SRC_NOT_SUPPORTED
        else:
            src = str(gw.url(path_form(keys.sign(MASTER, prefix=STREAM))))
            page, failed = hls_page(src), "error manifestLoadError"
        url = site.page("player.html", page)

        events = lines(await chromium.dump_dom(url), "events")
        await settled(gw)

        assert events == [failed]
        assert statuses(gw) <= {"200", "206"}


# --- a tampered link: a visible error ---------------------------------------------------------


@pytest.mark.parametrize("player", ["mp4", "hls"])
async def test_a_tampered_link_shows_a_visible_error_with_the_reason(
    chromium: Chromium, site: PageSite, gw: RunningGateway, keys: Keys, player: str
) -> None:
    """The player fails, and the page tells the person why, in words read from the gateway."""
    site = site_for(player, site)
    if player == "mp4":
        src = str(gw.url(tampered(keys.sign(FILM))))
        page, played = mp4_page(src), "loadedmetadata"
    else:
        src = str(gw.url(path_form(tampered(keys.sign(MASTER, prefix=STREAM)))))
        page, played = hls_page(src), "manifest"
    url = site.page("tampered.html", page)

    dom = await chromium.dump_dom(url)
    await settled(gw)

    assert text_of(dom, "error") == "This video cannot be played: bad_signature"
    assert not [line for line in lines(dom, "events") if line.startswith(played)]
    assert set(answers(gw)) == {("403", "bad_signature")}


# --- the README's upload page -----------------------------------------------------------------


def readme_upload_page() -> str:
    """The `fetch` PUT page exactly as README.md shows it."""
    readme = (REPO / "README.md").read_text()
    blocks: list[str] = re.findall(r"```html\n(.*?)```", readme, re.DOTALL)
    (page,) = [block for block in blocks if 'method: "PUT"' in block]
    return page


def pick_a_file(name: str) -> str:
    """What a person does on the page: pick a file (the site's /files/NAME) in the input; the
    page is finished once the answer shows."""
    return (
        PACE
        + f"""<script>
new MutationObserver(finish).observe(document.getElementById("result"), {{ childList: true }});
(async () => {{
  const bytes = await (await fetch("/files/{name}")).blob();
  const picked = new DataTransfer();
  picked.items.add(new File([bytes], "{name}", {{ type: "image/png" }}));
  const input = document.getElementById("file");
  input.files = picked.files;
  input.dispatchEvent(new Event("change"));
}})();
</script>"""
    )


def upload_page(site: PageSite, gw: RunningGateway, keys: Keys, name: str, data: bytes) -> str:
    """The README's page, its backend signing as the README does, and `data` to pick."""
    site.files[name] = data
    site.upload_link = lambda name: sign_url(
        str(gw.url(UPLOADS + name)),
        keys.signing,
        expires_in=600,
        method="PUT",
        content_type="image/",
        max_bytes=10 * 2**20,
        no_overwrite=True,
        one_time=True,
    )
    return site.page("upload.html", readme_upload_page() + pick_a_file(name))


def png(seed: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(seed).digest() * 8192  # 256 KiB


async def test_the_readme_upload_page_puts_a_file_through_the_gateway(
    chromium: Chromium, site: PageSite, gw: RunningGateway, keys: Keys, objects: Path
) -> None:
    """The page asks its backend for a link, then PUTs the file from another origin: a
    preflight (the Content-Type is not a simple one), then the upload; the page shows the
    gateway's answer, and the object holds the file's bytes."""
    avatar = png(b"avatar")
    url = upload_page(site, gw, keys, "avatar.png", avatar)

    dom = await chromium.dump_dom(url)
    await settled(gw)

    assert text_of(dom, "result") == f"stored {UPLOADS}avatar.png ({len(avatar)} bytes)"
    assert (objects / UPLOADS.strip("/") / "avatar.png").read_bytes() == avatar
    assert answers(gw, "OPTIONS") == {("204", "preflight"): 1}
    assert answers(gw, "PUT") == {("201", "ok"): 1}


async def test_the_readme_upload_page_shows_the_gateways_refusal(
    chromium: Chromium, site: PageSite, gw: RunningGateway, keys: Keys, objects: Path
) -> None:
    """The link forbids overwriting, and the name is taken: the page shows why, and the
    object already there is untouched."""
    taken = objects / UPLOADS.strip("/") / "taken.png"
    taken.write_bytes(b"already here")
    url = upload_page(site, gw, keys, "taken.png", png(b"taken"))

    dom = await chromium.dump_dom(url)
    await settled(gw)

    assert text_of(dom, "result") == "refused: object_exists"
    assert taken.read_bytes() == b"already here"
    assert answers(gw, "PUT") == {("412", "object_exists"): 1}


# --- S3 presigned uploads: an HTML form POST with a policy, and a fetch PUT --------------------

S3_PREFIX = "browser/"


@pytest.fixture
async def s3_gw(
    s3_server: S3Server, site: PageSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    """A gateway in front of SeaweedFS with a `sigv4` link key, letting the page's origin read
    its answers."""
    keyring = keyring_file(tmp_path, presigned.LINK)
    origin = f"s3://{PRIVATE_BUCKET}/{S3_PREFIX}"
    settings = s3_gateway_settings(
        monkeypatch, s3_server, origin, keyring, cors_origins=site.origin
    )
    async with start_gateway(settings) as running:
        yield running


def stored_object(s3_server: S3Server, key: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of an object under the gateway's prefix, or None."""
    client = s3_server.client()
    try:
        found = client.get_object(Bucket=PRIVATE_BUCKET, Key=S3_PREFIX + key)
    except client.exceptions.NoSuchKey:
        return None
    return found["ContentType"], found["Body"].read()


def form_page(url: str, fields: dict[str, str], name: str) -> str:
    """A plain HTML form with the backend's policy fields and a file input; a person picks
    `name` (the site's /files/NAME) and presses the button: the browser posts the form."""
    hidden = "\n".join(
        f'  <input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return f"""<!doctype html><meta charset="utf-8"><title>form upload</title>
<form id="form" action="{html.escape(url)}" method="post" enctype="multipart/form-data">
{hidden}
  <input id="file" type="file" name="file">
  <button>Upload</button>
</form>
<script>
(async () => {{
  const bytes = await (await fetch("/files/{name}")).blob();
  const picked = new DataTransfer();
  picked.items.add(new File([bytes], "{name}", {{ type: "image/png" }}));
  document.getElementById("file").files = picked.files;
  document.getElementById("form").requestSubmit();
}})();
</script>"""


#: Where the gateway sends the browser after the upload: the page shows what S3's redirect
#: told it (bucket, key, etag).
DONE_PAGE = """<!doctype html><meta charset="utf-8"><title>done</title><pre id="result"></pre>
<script>
const query = new URLSearchParams(location.search);
document.getElementById("result").textContent =
  ["bucket", "key", "etag"].map((name) => name + "=" + query.get(name)).join("\\n");
</script>"""


def post_policy(
    gw: RunningGateway, max_bytes: int, extra: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The issue's policy, signed by botocore: the URL and fields a backend hands its page."""
    fields = {"Content-Type": "image/png", **(extra or {})}
    conditions: list[object] = [
        ["content-length-range", 1, max_bytes],
        ["starts-with", "$key", "uploads/"],
        *({name: value} for name, value in fields.items()),
    ]
    client = presigned.presigner(f"http://127.0.0.1:{gw.server.port}")
    post = client.generate_presigned_post(
        PRIVATE_BUCKET, "uploads/${filename}", Fields=fields, Conditions=conditions, ExpiresIn=600
    )
    return post["url"], post["fields"]


async def test_an_html_form_posts_a_file_with_a_policy_and_follows_the_redirect(
    chromium: Chromium, site: PageSite, s3_gw: RunningGateway, s3_server: S3Server
) -> None:
    """A form on another origin posts the policy and the file (a navigation: no CORS); the
    gateway stores it under `uploads/${filename}` and redirects to the site's page, which
    shows the bucket, key and ETag S3's redirect carries."""
    photo = png(b"form")
    site.files["photo.png"] = photo
    done = site.page("done.html", DONE_PAGE)
    url, fields = post_policy(s3_gw, 2**20, {"success_action_redirect": done})

    dom = await chromium.dump_dom(site.page("form.html", form_page(url, fields, "photo.png")))

    found = stored_object(s3_server, "uploads/photo.png")
    assert found == ("image/png", photo)
    etag = s3_server.client().head_object(
        Bucket=PRIVATE_BUCKET, Key=f"{S3_PREFIX}uploads/photo.png"
    )["ETag"]
    assert lines(dom, "result") == [
        f"bucket={PRIVATE_BUCKET}",
        "key=uploads/photo.png",
        f"etag={etag}",
    ]
    assert answers(s3_gw, "POST") == {("303", "ok"): 1}


async def test_an_html_form_with_a_file_too_large_shows_the_refusal_and_stores_nothing(
    chromium: Chromium, site: PageSite, s3_gw: RunningGateway, s3_server: S3Server
) -> None:
    """The file (256 KiB) is above the policy's content-length-range (64 KiB): the upload is
    aborted while it streams and the browser shows the gateway's answer."""
    site.files["large.png"] = png(b"large")
    url, fields = post_policy(s3_gw, 64 * 1024)

    dom = await chromium.dump_dom(site.page("form.html", form_page(url, fields, "large.png")))

    assert '"error":"too_large"' in html.unescape(dom)
    assert stored_object(s3_server, "uploads/large.png") is None
    assert answers(s3_gw, "POST") == {("413", "too_large"): 1}


FETCH_PUT_PAGE = """<!doctype html><meta charset="utf-8"><title>fetch put</title>
<pre id="result"></pre>
<script>
(async () => {
  const body = await (await fetch("/files/photo.jpg")).blob();
  let shown;
  try {
    const headers = { "Content-Type": "image/jpeg" };
    const answer = await fetch(URL, { method: "PUT", headers, body });
    shown = answer.status + " " + (await answer.json()).size;
  } catch (error) {
    shown = String(error);
  }
  document.getElementById("result").textContent = shown;
})();
</script>"""


async def test_a_fetch_put_with_a_botocore_presigned_url_stores_the_jpeg(
    chromium: Chromium, site: PageSite, s3_gw: RunningGateway, s3_server: S3Server
) -> None:
    """The seeds' example: `fetch(url, {method: 'PUT', headers: {'Content-Type':
    'image/jpeg'}, body})` from another origin, with the URL of botocore's
    `generate_presigned_url('put_object', ContentType='image/jpeg')`: a preflight, then the
    upload; the object is stored with that type."""
    photo = b"\xff\xd8\xff\xe0" + hashlib.sha256(b"jpeg").digest() * 4096
    site.files["photo.jpg"] = photo
    client = presigned.presigner(f"http://127.0.0.1:{s3_gw.server.port}")
    url = client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": PRIVATE_BUCKET,
            "Key": "uploads/fetched.jpg",
            "ContentType": "image/jpeg",
        },
        ExpiresIn=600,
    )
    page = FETCH_PUT_PAGE.replace("URL", json.dumps(url), 1)

    dom = await chromium.dump_dom(site.page("put.html", page))

    assert text_of(dom, "result") == f"201 {len(photo)}"
    assert stored_object(s3_server, "uploads/fetched.jpg") == ("image/jpeg", photo)
    assert answers(s3_gw, "OPTIONS") == {("204", "preflight"): 1}
    assert answers(s3_gw, "PUT") == {("201", "ok"): 1}


FETCH_POST_PAGE = """<!doctype html><meta charset="utf-8"><title>fetch post</title>
<pre id="result"></pre>
<script>
(async () => {
  const form = new FormData();
  for (const [name, value] of Object.entries(FIELDS)) form.append(name, value);
  form.append("file", new File([await (await fetch("/files/photo.png")).blob()], "via-fetch.png"));
  let shown;
  try {
    const answer = await fetch(URL, { method: "POST", headers: HEADERS, body: form });
    const xml = new DOMParser().parseFromString(await answer.text(), "application/xml");
    shown = answer.status + " " + xml.querySelector("Key").textContent;
  } catch (error) {
    shown = String(error);
  }
  document.getElementById("result").textContent = shown;
})();
</script>"""


async def test_a_fetch_post_of_form_data_reads_s3s_xml_answer_across_origins(
    chromium: Chromium, site: PageSite, s3_gw: RunningGateway, s3_server: S3Server
) -> None:
    """A FormData POST is a simple request (no preflight); the page reads the 201's XML
    because the gateway's answer allows its origin."""
    photo = png(b"fetch-post")
    site.files["photo.png"] = photo
    url, fields = post_policy(s3_gw, 2**20, {"success_action_status": "201"})
    page = fetch_post_page(fields, url, {})

    dom = await chromium.dump_dom(site.page("post.html", page))

    assert text_of(dom, "result") == "201 uploads/via-fetch.png"
    assert stored_object(s3_server, "uploads/via-fetch.png") == ("image/png", photo)
    assert answers(s3_gw, "OPTIONS") == {}


def fetch_post_page(fields: dict[str, str], url: str, headers: dict[str, str]) -> str:
    """FETCH_POST_PAGE posting the policy's `fields` to `url` with request `headers`."""
    # The placeholders in turn, FIELDS last: what is filled in is never taken for one.
    filled = {"URL": url, "HEADERS": headers, "FIELDS": fields}
    page = FETCH_POST_PAGE
    for placeholder, value in filled.items():
        page = page.replace(placeholder, json.dumps(value), 1)
    return page


async def test_a_fetch_post_with_a_custom_header_is_preflighted_and_stores_the_file(
    chromium: Chromium, site: PageSite, s3_gw: RunningGateway, s3_server: S3Server
) -> None:
    """A header that is not CORS-safelisted (here `If-None-Match`, one the policy allows)
    makes the same POST preflighted: the preflight to the bucket's URL allows POST, then the
    form is posted, and the page reads the 201's XML."""
    photo = png(b"preflighted-post")
    site.files["photo.png"] = photo
    url, fields = post_policy(s3_gw, 2**20, {"success_action_status": "201"})
    page = fetch_post_page(fields, url, {"If-None-Match": "*"})

    dom = await chromium.dump_dom(site.page("post.html", page))

    assert text_of(dom, "result") == "201 uploads/via-fetch.png"
    assert stored_object(s3_server, "uploads/via-fetch.png") == ("image/png", photo)
    assert answers(s3_gw, "OPTIONS") == {("204", "preflight"): 1}
    assert answers(s3_gw, "POST") == {("201", "ok"): 1}
