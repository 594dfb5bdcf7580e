"""The gateway's keyring file: only what a verifier needs, and said so when it holds more."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from gateway.keyring import KeyringHolder
from signer import Algorithm, Keyring, KeyringError, Status, new_key
from tests.conftest import NOW

ED25519 = Keyring([new_key("e1", Algorithm.ED25519, Status.ACTIVE, now=NOW)])
HMAC = Keyring([new_key("h1", Algorithm.HMAC_SHA256, Status.ACTIVE, now=NOW)])
STAGED = ED25519.with_key(new_key("e2", Algorithm.ED25519, Status.VERIFY, now=NOW))
RETIRED = STAGED.activated("e2").retired("e1")


def write(path: Path, keyring: Keyring, mode: int, *, public_only: bool = True) -> Path:
    path.write_text(keyring.dumps(public_only=public_only))
    os.chmod(path, mode)
    return path


def private_values(keyring: Keyring) -> list[str]:
    entries = json.loads(keyring.dumps())["keys"]
    return [entry["private"] for entry in entries if "private" in entry]


@pytest.mark.parametrize(("keyring", "named"), [(ED25519, "'e1'"), (STAGED, "'e1', 'e2'"),
                                                (RETIRED, "'e1', 'e2'")])  # fmt: skip
def test_a_keyring_holding_an_ed25519_private_key_is_refused_at_start(
    tmp_path: Path, keyring: Keyring, named: str
) -> None:
    """Private keys belong on the signing side: a gateway holding one could mint links."""
    path = write(tmp_path / "keys.json", keyring, 0o600, public_only=False)
    with pytest.raises(KeyringError, match="signer export-public") as caught:
        KeyringHolder(path)
    assert f"Ed25519 private key(s) {named}" in str(caught.value)
    assert all(value not in str(caught.value) for value in private_values(keyring))


def test_a_reload_to_a_keyring_holding_a_private_key_keeps_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "gateway-keyring.json", ED25519.public_export(), 0o644)
    holder = KeyringHolder(path)
    write(path, STAGED, 0o600, public_only=False)
    with caplog.at_level(logging.ERROR, "gateway.keyring"):
        assert holder.reload() is False
    assert (holder.generation, holder.reload_failures) == (1, 1)
    assert [key.id for key in holder.current] == ["e1"]
    assert "signer export-public" in caplog.text


@pytest.mark.parametrize(
    ("keyring", "mode", "warned"),
    [
        (HMAC, 0o644, True),
        (HMAC, 0o640, True),
        (HMAC, 0o600, False),
        (ED25519.public_export(), 0o644, False),
        (HMAC.with_key(new_key("e1", Algorithm.ED25519, Status.VERIFY)).public_export(), 0o644,
         True),
    ],
)  # fmt: skip
def test_only_a_keyring_with_hmac_secrets_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keyring: Keyring, mode: int, warned: bool
) -> None:
    path = write(tmp_path / "gateway-keyring.json", keyring, mode)
    with caplog.at_level(logging.WARNING, "gateway.keyring"):
        KeyringHolder(path)
    assert ("holds HMAC secrets and is readable by group or others" in caplog.text) is warned


def test_a_reload_warns_about_a_file_that_became_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "gateway-keyring.json", HMAC, 0o600)
    holder = KeyringHolder(path)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, "gateway.keyring"):
        assert holder.reload() is True
    assert "holds HMAC secrets and is readable by group or others (mode 644)" in caplog.text
