"""The keyring: statuses, rotation, files and secrecy."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from signer import Algorithm, Keyring, KeyringError, Status, new_key
from signer.keys import LinkScheme
from tests.conftest import NOW


def ring(*specs: tuple[str, Algorithm, Status]) -> Keyring:
    return Keyring(new_key(i, a, s, now=NOW) for i, a, s in specs)


def test_adding_an_active_key_demotes_the_previous_one_to_verify() -> None:
    keyring = ring(("k1", Algorithm.ED25519, Status.ACTIVE))
    keyring = keyring.with_key(new_key("k2", Algorithm.HMAC_SHA256, Status.ACTIVE, now=NOW))
    assert [(k.id, k.status) for k in keyring] == [("k1", Status.VERIFY), ("k2", Status.ACTIVE)]


def test_activating_a_staged_key_swaps_roles() -> None:
    keyring = ring(
        ("k1", Algorithm.ED25519, Status.ACTIVE), ("k2", Algorithm.ED25519, Status.VERIFY)
    )
    swapped = keyring.activated("k2")
    assert [(k.id, k.status) for k in swapped] == [("k1", Status.VERIFY), ("k2", Status.ACTIVE)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.retired("k1"), "is active"),
        (lambda r: r.retired("nope"), "no key 'nope'"),
        (lambda r: r.activated("nope"), "no key 'nope'"),
        (lambda r: r.retired("k2").activated("k2"), "is retired"),
        (lambda r: r.with_key(new_key("k1", Algorithm.ED25519, Status.VERIFY)), "already exists"),
    ],
)
def test_invalid_changes_are_refused_with_a_reason(
    change: Callable[[Keyring], Keyring], message: str
) -> None:
    keyring = ring(
        ("k1", Algorithm.ED25519, Status.ACTIVE), ("k2", Algorithm.ED25519, Status.VERIFY)
    )
    with pytest.raises(KeyringError, match=message):
        change(keyring)


def test_two_active_keys_are_refused() -> None:
    with pytest.raises(KeyringError, match="more than one active"):
        ring(("a", Algorithm.ED25519, Status.ACTIVE), ("b", Algorithm.ED25519, Status.ACTIVE))


def test_a_keyring_without_an_active_key_cannot_sign() -> None:
    with pytest.raises(KeyringError, match="no active key"):
        ring(("k1", Algorithm.ED25519, Status.VERIFY)).signing_key()


def test_retired_keys_have_no_verifier() -> None:
    keyring = ring(
        ("k1", Algorithm.ED25519, Status.ACTIVE), ("k2", Algorithm.HMAC_SHA256, Status.VERIFY)
    ).retired("k2")
    assert keyring.verifier_for("k2") is None
    assert keyring.verifier_for("k1") is not None


def test_files_holding_secrets_are_written_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring(("k1", Algorithm.HMAC_SHA256, Status.ACTIVE)).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_public_export_of_ed25519_keys_has_no_private_material(tmp_path: Path) -> None:
    keyring = ring(
        ("k1", Algorithm.ED25519, Status.VERIFY), ("k2", Algorithm.ED25519, Status.ACTIVE)
    ).retired("k1")
    path = tmp_path / "public.json"
    keyring.public_export().save(path, public_only=True)
    document = json.loads(path.read_text())
    assert all("private" not in entry and "secret" not in entry for entry in document["keys"])
    assert "public" not in document["keys"][0]  # retired: no material at all
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    reloaded = Keyring.load(path)
    assert reloaded.verifier_for("k2") is not None
    with pytest.raises(KeyringError, match="no private material"):
        reloaded.signing_key()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    keyring = ring(
        ("k1", Algorithm.ED25519, Status.ACTIVE), ("k2", Algorithm.HMAC_SHA256, Status.VERIFY)
    )
    keyring.save(tmp_path / "k.json")
    loaded = Keyring.load(tmp_path / "k.json")
    assert list(loaded) == list(keyring)


def test_secrets_never_appear_in_reprs() -> None:
    keyring = ring(("k1", Algorithm.HMAC_SHA256, Status.ACTIVE))
    key = keyring.signing_key()
    assert key.secret is not None
    from signer.format import b64encode

    for text in (repr(key), repr(keyring), str(key)):
        assert b64encode(key.secret) not in text
        assert repr(key.secret) not in text


def _entry(**overrides: object) -> str:
    entry = {"id": "k1", "alg": "hmac-sha256", "status": "active", "created": 0, "secret": "A" * 43}
    entry.update(overrides)
    entry = {k: v for k, v in entry.items() if v is not None}
    return json.dumps({"format": "edge-keyring/1", "keys": [entry]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"format": "other", "keys": []}', "'format' must be"),
        ('{"format": "edge-keyring/1"}', "'keys' must be a list"),
        (_entry(id="bad id"), "'id' must be"),
        (_entry(alg="rsa"), r"keys\[0\] \(id 'k1'\): 'alg' must be one of"),
        (_entry(status="live"), "'status' must be one of"),
        (_entry(created=-1), "'created' must be unix seconds"),
        (_entry(secret="AAAA"), "'secret' must be at least 32 bytes"),
        (_entry(secret="A" * 43 + "="), "'secret' must be base64url"),
        (_entry(secret=None), "needs 'secret'"),
        (_entry(alg="ed25519", secret=None, public="AAAA"), "'public' must be 32 bytes"),
        (_entry(alg="ed25519", secret=None), "needs 'public'"),
        (_entry(alg="ed25519"), "unknown field"),
        (
            _entry(alg="ed25519", secret=None, private="A" * 43, public="AQEB" * 10 + "AQE"),
            "does not match",
        ),
        (_entry(extra=1), "unknown field"),
    ],
)
def test_invalid_files_name_the_key_and_field(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.loads(text, "keyring test.json")
    assert "A" * 20 not in str(caught.value)


def test_an_unreadable_file_is_a_keyring_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.load(tmp_path / "missing.json")


# --- keys of another scheme: S3 presigned URLs ------------------------------------------------


def test_a_sigv4_key_survives_export_and_reload_with_its_scheme_and_region(tmp_path: Path) -> None:
    link = new_key(
        "GWLINKS01",
        Algorithm.HMAC_SHA256,
        Status.VERIFY,
        scheme=LinkScheme.SIGV4,
        region="eu-west-1",
    )
    path = tmp_path / "gateway.json"
    Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE), link]).public_export().save(
        path, public_only=True
    )
    entry = json.loads(path.read_text())["keys"][1]
    assert {k: entry[k] for k in ("id", "scheme", "region", "status")} == {
        "id": "GWLINKS01",
        "scheme": "sigv4",
        "region": "eu-west-1",
        "status": "verify",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the backends' shared secret
    assert Keyring.load(path).get("GWLINKS01") == link


def test_a_sigv4_key_never_signs_or_verifies_our_tokens() -> None:
    link = new_key("GWLINKS01", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.SIGV4)
    keyring = Keyring([link])
    assert keyring.verifier_for("GWLINKS01") is None
    with pytest.raises(KeyringError, match="no active key"):
        keyring.signing_key()
    with pytest.raises(KeyringError, match="never 'active'"):
        keyring.activated("GWLINKS01")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scheme": "fastly"}, "'scheme' must be one of sigv4"),
        ({"status": "active"}, "never 'active'"),
        ({"alg": "ed25519", "secret": None, "public": "A" * 43}, "is 'alg' hmac-sha256"),
        ({"region": "EU West"}, "'region' must be 1-32 of"),
        ({"region": 5}, "'region' must be a string"),
        ({"scheme": None, "region": "us-east-1"}, "unknown field"),
    ],
    ids=["unknown-scheme", "active", "ed25519", "region-spelling", "region-type", "region-alone"],
)
def test_invalid_sigv4_entries_name_the_key_and_field(
    overrides: dict[str, object], message: str
) -> None:
    text = _entry(**{"scheme": "sigv4", "status": "verify", **overrides})
    with pytest.raises(KeyringError, match=message):
        Keyring.loads(text, "keyring test.json")
