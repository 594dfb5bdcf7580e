#!/usr/bin/env python3
"""The container's HEALTHCHECK: exit 0 when the admin listener answers /healthz with 200.

Reads the port from GATEWAY_ADMIN_LISTEN (as the gateway does) and asks on loopback, so it
follows the setting; standard library only, and no proxy from the environment is used.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_ADMIN_LISTEN = "127.0.0.1:9090"


def admin_url(listen: str) -> str:
    host, _, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (all interfaces: ask on loopback)
        host = "127.0.0.1" if host != "::" else "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def main() -> int:
    url = admin_url(os.environ.get("GATEWAY_ADMIN_LISTEN", DEFAULT_ADMIN_LISTEN))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            healthy = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
