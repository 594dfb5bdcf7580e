"""`make run`: the gateway in front of the embedded directory store, with links to try.

Creates ./demo/ (objects, a signing keyring, the gateway's verification export), prints signed
links and `curl` commands, then runs the gateway in the foreground until Ctrl-C.
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
Starting the gateway (Ctrl-C to stop) ...
""",
        flush=True,
    )
    gateway = str(Path(sys.executable).with_name("gateway"))
    os.environ.setdefault("GATEWAY_REVOCATION_DB", str(DEMO / "revocations.sqlite3"))
    os.execv(
        gateway,
        [
            gateway,
            "serve",
            "--origin",
            f"file://{DEMO / 'objects'}",
            "--keyring",
            str(DEMO / "gateway-keyring.json"),
            "--listen",
            f"{HOST}:{PORT}",
            "--admin-listen",
            f"127.0.0.1:{ADMIN_PORT}",
        ],
    )


if __name__ == "__main__":
    main()
