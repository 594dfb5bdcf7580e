"""`make run`: a keyring, a signed link, and what the gateway's verifier says about it."""

from __future__ import annotations

from pathlib import Path

from signer import Algorithm, Keyring, Rejected, Status, new_key, sign_url, verify_url

DEMO = Path("demo")


def main() -> None:
    DEMO.mkdir(exist_ok=True)
    keyring_path = DEMO / "keyring.json"
    if not keyring_path.exists():
        Keyring([new_key("demo-1", Algorithm.ED25519, Status.ACTIVE)]).save(keyring_path)
        print(f"created {keyring_path} (mode 0600) with one Ed25519 key")
    keyring = Keyring.load(keyring_path)
    url = sign_url("http://127.0.0.1:8080/videos/intro.mp4", keyring, expires_in=3600)
    print(f"signed link (valid 1 h):\n  {url}")
    verified = verify_url(url, keyring)
    print(f"verifier: valid, key {verified.claims.key_id!r}, object {verified.path!r}")
    forged = url.replace("intro", "outro")
    try:
        verify_url(forged, keyring)
    except Rejected as exc:
        print(f"verifier on a forged copy: {exc.reason.value}")
    print("try: .venv/bin/signer verify '<link>' --keyring demo/keyring.json")


if __name__ == "__main__":
    main()
