"""The published test vectors: the wire format, pinned byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signer import Keyring, Rejected, sign_target, token_id, verify
from signer.format import Claims, canonical, parse_link, path_form

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
KEYRING = Keyring.load(VECTORS / "PUBLIC-test-vector-keyring.json")
VALID: list[dict[str, Any]] = json.loads((VECTORS / "valid.json").read_text())
INVALID: list[dict[str, Any]] = json.loads((VECTORS / "invalid.json").read_text())


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verify(target: str, ctx: dict[str, Any]) -> None:
    path, _, query = target.partition("?")
    verify(
        KEYRING,
        method=ctx["method"],
        raw_path=path,
        raw_query=query,
        client_ip=ipaddress.ip_address(ctx["client_ip"]),
        now=ctx["now"],
        skew=ctx["skew"],
    )


def _entry(key_id: str) -> dict[str, Any]:
    entries = json.loads((VECTORS / "PUBLIC-test-vector-keyring.json").read_text())["keys"]
    return next(e for e in entries if e["id"] == key_id)


def test_vectors_cover_both_algorithms_and_every_reason() -> None:
    from signer import Reason

    assert {v["key_id"] for v in VALID} >= {"tv-hmac", "tv-ed25519"}
    assert {v["reason"] for v in INVALID} == {r.value for r in Reason} - {"revoked"}


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_signing_the_inputs_gives_the_published_url(vector: dict[str, Any]) -> None:
    link = parse_link(*vector["signed_target"].split("?", 1))
    key = KEYRING.get(vector["key_id"])
    assert key is not None
    claims = Claims(**{f: getattr(link.claims, f) for f in Claims.__dataclass_fields__})
    signed = sign_target(canonical(vector["path"]), vector["app_query"], claims, key)
    assert signed == vector["signed_target"]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_string_to_sign_matches_the_published_bytes(vector: dict[str, Any]) -> None:
    link = parse_link(*vector["signed_target"].split("?", 1))
    assert link.signed == vector["string_to_sign"].encode("ascii")


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_signature_is_the_documented_primitive_over_the_string_to_sign(
    vector: dict[str, Any],
) -> None:
    """An independent computation from the keyring JSON, as another language would do it."""
    entry = _entry(vector["key_id"])
    message = vector["string_to_sign"].encode("ascii")
    signature = _b64(vector["signed_target"].rpartition("&Signature=")[2])
    if entry["alg"] == "hmac-sha256":
        assert signature == hmac.new(_b64(entry["secret"]), message, hashlib.sha256).digest()
    else:
        Ed25519PublicKey.from_public_bytes(_b64(entry["public"])).verify(signature, message)
    assert hashlib.sha256(signature).hexdigest()[:32] == vector["token_id"]
    assert token_id(signature) == vector["token_id"]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_valid_vectors_verify(vector: dict[str, Any]) -> None:
    _verify(vector["request_target"], vector["verify"])


@pytest.mark.parametrize("vector", INVALID, ids=lambda v: v["name"])
def test_invalid_vectors_are_rejected_with_their_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as caught:
        _verify(vector["request_target"], vector["verify"])
    assert caught.value.reason.value == vector["reason"]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_the_path_form_is_the_signed_query_moved_into_the_path(vector: dict[str, Any]) -> None:
    assert path_form(vector["signed_target"]) == vector["path_form_target"]
    assert path_form(vector["request_target"]) == vector["path_form_request_target"]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_valid_vectors_verify_in_the_path_form(vector: dict[str, Any]) -> None:
    _verify(vector["path_form_request_target"], vector["verify"])
