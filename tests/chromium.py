"""A real browser for tests: headless Chromium loading a page, and the DOM it left behind.

Pages under test write what happened (player events, errors, an upload's answer) into the
DOM; `Chromium.dump_dom` loads a page with a virtual-time budget and returns the DOM as
serialised when the budget ran out. Virtual time skips idle waits (timers, retry back-offs)
but does not advance playback, so pages report `loadedmetadata`, `seeked` and fragments
loaded, never a growing `currentTime`; and they pace virtual time until they are done (PACE).

Chromium is Debian's `chromium-headless-shell` (or `chromium`), and hls.js the release pinned
in scripts/bootstrap.sh, which installs both; the tests that need them skip without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"
HOW_TO_INSTALL = "run `sh scripts/bootstrap.sh python3` as root (see README, Development)"

#: As checked on this closed network: without the background-networking flags Chromium keeps
#: trying to reach Google's services, and every such connection is refused.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)


#: Virtual time jumps ahead whenever the page's thread is idle, even while the media pipeline
#: works on threads of its own: on a busy machine a seek outlasted a 15 s budget. It stands
#: still while a fetch is pending, and so does the media pipeline, which waits on timers of the
#: page's thread (a fetch held open stalled a seek until it was answered). So until it calls
#: `finish()`, a page with PACE lets a few ms of virtual time pass per round trip to its own
#: site (which must answer GET /tick), a pace that follows the machine's; then the rest of the
#: budget passes at once. A page that never finishes spends the 60 s budget in some 4,000 round
#: trips (8 s here): what the slowest page may take before it is judged.
PACE = """<script>
let finished = false;
const finish = () => { finished = true; };
(async () => {
  while (!finished) {
    await fetch("/tick");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
})();
</script>
"""


def chromium_binary() -> str | None:
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


def pinned_hls_js() -> tuple[Path, str]:
    """Where bootstrap caches the pinned hls.js, and the SHA-256 it must have."""
    text = BOOTSTRAP.read_text()
    version = re.search(r"^HLS_VERSION=(\S+)$", text, re.MULTILINE)
    digest = re.search(r"^HLS_SHA256=([0-9a-f]{64})$", text, re.MULTILINE)
    assert version is not None, "bootstrap.sh pins no hls.js version"
    assert digest is not None, "bootstrap.sh pins no hls.js hash"
    return REPO / ".cache" / f"hls.js-{version[1]}" / "hls.min.js", digest[1]


def hls_js() -> Path | None:
    """The pinned hls.js if it is cached and intact."""
    path, digest = pinned_hls_js()
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        return None
    return path


@dataclass(frozen=True)
class Chromium:
    binary: str
    profiles: Path  # a new empty --user-data-dir for each run goes under it

    async def dump_dom(self, url: str, budget_ms: int = 60_000, limit: float = 90) -> str:
        """The page's DOM once `budget_ms` of virtual time has passed; AssertionError if
        Chromium fails or takes more than `limit` real seconds."""
        profile = self.profiles / f"profile-{len(list(self.profiles.iterdir()))}"
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(limit):
                out, err = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise AssertionError(f"Chromium took more than {limit} s on {url}") from None
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode()


def element_text(dom: str, element_id: str) -> str:
    """The text of the element with `element_id` in a dumped DOM ('' if it is absent)."""
    match = re.search(rf'<(\w+) id="{element_id}"[^>]*>(.*?)</\1>', dom, re.DOTALL)
    return "" if match is None else html.unescape(match[2])


def lines(dom: str, element_id: str) -> list[str]:
    """The lines a page logged into the element with `element_id`."""
    return element_text(dom, element_id).splitlines()
