"""`make run`: the gateway in front of the embedded directory store, with links to try.

Creates ./demo/ (objects, a signing keyring, the gateway's verification export), prints signed
links and `curl` commands, then runs the gateway in the foreground until Ctrl-C, with the edge
cache on (its disk tier in ./demo/cache/).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from signer import Algorithm, Keyring, Status, new_key, sign_url

DEMO = Path("demo").resolve()
HOST = os.environ.get("DEMO_HOST", "127.0.0.1")
PORT = int(os.environ.get("DEMO_PORT", "8080"))
ADMIN_PORT = int(os.environ.get("DEMO_ADMIN_PORT", "9090"))


def prepare() -> list[str]:
    objects = DEMO / "objects"
    (objects / "docs").mkdir(parents=True, exist_ok=True)
    (objects / "hello.txt").write_text("Hello from behind the edge gateway.\n")
    (objects / "docs" / "report 2026.txt").write_text("A private report.\n" * 100)
    signing = DEMO / "keyring.json"
    if not signing.exists():
        Keyring([new_key("demo-1", Algorithm.ED25519, Status.ACTIVE)]).save(signing)
    keyring = Keyring.load(signing)
    keyring.public_export().save(DEMO / "gateway-keyring.json", public_only=True)
    base = f"http://{HOST}:{PORT}"
    return [
        sign_url(f"{base}/hello.txt", keyring, expires_in=3600),
        sign_url(f"{base}/docs/report 2026.txt", keyring, expires_in=3600, sub="demo-user"),
    ]


def environment() -> dict[str, str]:
    """The demo gateway's settings, as `GATEWAY_*` variables (those already set win)."""
    return {
        "GATEWAY_ORIGIN": f"file://{DEMO / 'objects'}",
        "GATEWAY_KEYRING": str(DEMO / "gateway-keyring.json"),
        "GATEWAY_LISTEN": f"{HOST}:{PORT}",
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{ADMIN_PORT}",
        "GATEWAY_REVOCATION_DB": str(DEMO / "revocations.sqlite3"),
        "GATEWAY_CACHE": "true",
        "GATEWAY_CACHE_DIR": str(DEMO / "cache"),
        "GATEWAY_CACHE_DISK_BYTES": str(256 * 1024**2),
    }


def main() -> None:
    hello, report = prepare()
    print(
        f"""
Signed links, valid for one hour (open them in a browser, or use curl):

  curl -i '{hello}'
  curl -i -H 'Range: bytes=0-16' '{report}'

A tampered link is refused with a reason:

  curl -i '{hello.replace("hello", "hellO")}'

More links: .venv/bin/signer sign {f"http://{HOST}:{PORT}/hello.txt"} \\
                --keyring demo/keyring.json --expires-in 600
Revoke the first link (the running gateway refuses it within a second):
  GATEWAY_REVOCATION_DB=demo/revocations.sqlite3 .venv/bin/gateway revoke --url '{hello}'
Health and metrics: curl http://127.0.0.1:{ADMIN_PORT}/healthz  /readyz  /metrics
The edge cache is on (demo/cache/): the second request for a link is a hit
  (`"cache":"hit"` in the access line, gateway_cache_requests_total in /metrics).
Starting the gateway (Ctrl-C to stop) ...
""",
        flush=True,
    )
    gateway = str(Path(sys.executable).with_name("gateway"))
    for name, value in environment().items():
        os.environ.setdefault(name, value)
    os.execv(gateway, [gateway, "serve"])


if __name__ == "__main__":
    main()
