"""`make run` (scripts/demo.py): the demo gateway serves its signed links, with the cache on in
a directory under demo/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import settings as settings_module
from scripts import demo
from tests.integration.harness import running_gateway


async def test_the_demo_serves_its_links_from_the_cache_under_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "DEMO", tmp_path / "demo")
    links = demo.prepare()
    environ = demo.environment() | {
        "GATEWAY_LISTEN": "127.0.0.1:0",
        "GATEWAY_ADMIN_LISTEN": "127.0.0.1:0",
        "GATEWAY_ACCESS_LOG": "false",
    }
    settings = settings_module.load(environ=environ)
    assert settings.cache.enabled
    assert settings.cache.directory.is_relative_to(demo.DEMO)

    async with running_gateway(settings) as gw:
        for link in links:
            target = urlsplit(link)
            for _ in range(2):
                response, _ = await gw.request("GET", f"{target.path}?{target.query}")
                assert response.status == 200
        assert gw.metric("gateway_cache_requests_total", state="miss") == len(links)
        assert gw.metric("gateway_cache_requests_total", state="hit") == len(links)
