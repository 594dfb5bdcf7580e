"""What operators see of usage limits and how they reset them: `gateway limits show|reset` and
the admin API's /admin/limits, against a live in-process gateway counting in the embedded store
(the revocation store's SQLite file). The commands run in a thread, as a separate operator would,
while the gateway serves. The same over Redis: tests/integration/test_limits.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from signer import token_id
from signer.format import parse_link
from tests.integration.harness import Keys, RunningGateway, gateway_settings, make_keys
from tests.integration.harness import running_gateway as start

BODY = bytes(range(256)) * 4  # 1024 bytes
ADMIN_TOKEN = "limits-operator-bearer"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = "198.51.100.7"
#: The viewer's lease: `limit_stream_lease` (10 s) from its response, in UTC.
LEASE_LINE = re.compile(
    r"    198\.51\.100\.7  lease until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d{1,2} s\)"
)


@pytest.fixture
async def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "film.mp4").write_bytes(BODY)
    keys = make_keys(tmp_path)
    settings = gateway_settings(
        f"file://{root}",
        keys.gateway_file,
        trusted_proxies="127.0.0.1/32",
        limit_stream_lease="10",
        admin_token=ADMIN_TOKEN,
    )
    # The commands find the store as operators' shells do: the gateway's settings.
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(settings.revocation.db))
    async with start(settings) as gw:
        yield gw, keys


async def fetch(gw: RunningGateway, link: str, client: str = VIEWER) -> int:
    response, _ = await gw.request("GET", link, {"X-Forwarded-For": client})
    return response.status


async def gateway_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def token_of(link: str) -> str:
    path, _, query = link.partition("?")
    return token_id(parse_link(path, query).signature)


async def admin(
    gw: RunningGateway, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{gw.admin.port}{path}"
    async with gw.session.request(method, url, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json()


async def test_show_of_a_url_gives_its_uses_bytes_streams_and_limits(
    site: tuple[RunningGateway, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_streams=1, max_uses=3, max_served=10_000, rate=10**9)
    assert await fetch(gw, link) == 200
    code, out, _ = await gateway_cli(capsys, "limits", "show", link)
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [
        f"link {token_of(link)} (store: sqlite)",
        "  uses      1 of 3",
        "  served    1024 of 10000 bytes",
        "  streams   1 of 1",
    ]
    assert LEASE_LINE.fullmatch(lines[4]), lines[4]
    assert lines[5:] == ["  rate      1000000000 bytes/s"]


async def test_show_by_token_id_as_json_gives_the_counts_without_limits(
    site: tuple[RunningGateway, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=5)
    for _ in range(2):
        assert await fetch(gw, link) == 200
    code, out, _ = await gateway_cli(capsys, "limits", "show", token_of(link), "--json")
    assert code == 0
    assert json.loads(out) == {"token_id": token_of(link), "uses": 2, "served": 0, "streams": []}


@pytest.mark.parametrize("by", ["url", "token id"])
async def test_reset_makes_an_exhausted_link_usable_again(
    site: tuple[RunningGateway, Keys], capsys: pytest.CaptureFixture[str], by: str
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=1, max_streams=1)
    assert await fetch(gw, link) == 200
    assert await fetch(gw, link) == 403
    assert await fetch(gw, link, "203.0.113.9") == 429
    code, out, _ = await gateway_cli(
        capsys, "limits", "reset", link if by == "url" else token_of(link)
    )
    assert code == 0
    assert out == (
        f"reset link {token_of(link)} (uses, bytes served, streams, rate schedule)"
        " (store: sqlite)\n"
    )
    assert await fetch(gw, link, "203.0.113.9") == 200
    assert await fetch(gw, link) == 429  # the other viewer holds the one stream now


async def test_a_subjects_shared_streams_are_shown_and_reset_by_subject(
    site: tuple[RunningGateway, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", sub="household-7", max_streams=1, subject_streams=True)
    assert await fetch(gw, link) == 200
    code, out, _ = await gateway_cli(capsys, "limits", "show", link)
    assert out.splitlines()[3] == "  streams   1 of 1 (of subject 'household-7')"
    code, out, _ = await gateway_cli(capsys, "limits", "show", "--sub", "household-7")
    assert out.splitlines()[:2] == ["subject 'household-7' (store: sqlite)", "  streams   1"]
    assert await fetch(gw, link, "203.0.113.9") == 429
    code, out, _ = await gateway_cli(capsys, "limits", "reset", "--sub", "household-7")
    assert (code, out) == (0, "reset the streams of subject 'household-7' (store: sqlite)\n")
    assert await fetch(gw, link, "203.0.113.9") == 200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["0123456789ABCDEF0123456789abcdef"], "not a token id (32 hex digits) nor a signed link"),
        (["/film.mp4?Expires=1"], "not a token id (32 hex digits) nor a signed link"),
        (["/f.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"], "another scheme's link"),
    ],
)
async def test_what_names_no_link_is_refused_with_exit_status_2(
    site: tuple[RunningGateway, Keys],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, _, err = await gateway_cli(capsys, "limits", "show", *argv)
    assert code == 2
    assert message in err


def test_without_the_stores_file_the_command_fails_and_makes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "elsewhere.sqlite3"
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(missing))
    code = main(["limits", "show", "0123456789abcdef0123456789abcdef"])
    assert code == 1
    assert "no such file" in capsys.readouterr().err
    assert not missing.exists()


async def test_the_admin_api_shows_a_links_usage_by_token_id(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_streams=2, max_served=5000)
    assert await fetch(gw, link) == 200
    status, body = await admin(gw, "GET", f"/admin/limits/{token_of(link)}")
    assert status == 200
    assert (body["token_id"], body["uses"], body["served"]) == (token_of(link), 0, 1024)
    assert [s["client"] for s in body["streams"]] == [VIEWER]


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_the_admin_api_reset_makes_an_exhausted_link_usable_again(
    site: tuple[RunningGateway, Keys], method: str
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=1)
    assert await fetch(gw, link) == 200
    assert await fetch(gw, link) == 403
    status, body = await admin(gw, method, f"/admin/limits/{token_of(link)}")
    assert (status, body) == (200, {"reset": {"token_id": token_of(link)}})
    assert await fetch(gw, link) == 200


async def test_the_admin_api_shows_and_resets_a_subjects_streams(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", sub="u 42/a", max_streams=1, subject_streams=True)
    assert await fetch(gw, link) == 200
    status, body = await admin(gw, "GET", "/admin/limits?sub=u%2042%2Fa")
    assert status == 200
    assert body["subject"] == "u 42/a"
    assert [s["client"] for s in body["streams"]] == [VIEWER]
    assert (await admin(gw, "DELETE", "/admin/limits?sub=u%2042%2Fa"))[0] == 200
    assert await fetch(gw, link, "203.0.113.9") == 200


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/admin/limits/0123456789abcdef0123456789abcdef", {}, 401, "unauthorized"),
        ("/admin/limits/0123456789abcdef0123456789abcdef", {"Authorization": "Bearer x"}, 401,
         "unauthorized"),
        ("/admin/limits/not-a-token-id", None, 400, "invalid_request"),
        ("/admin/limits", None, 400, "invalid_request"),
    ],
)  # fmt: skip
async def test_the_admin_api_refuses_without_the_bearer_token_or_a_target(
    site: tuple[RunningGateway, Keys],
    path: str,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    gw, _ = site
    for method in ("GET", "DELETE"):
        answered, body = await admin(gw, method, path, headers)
        assert (answered, body["error"]) == (status, code)
