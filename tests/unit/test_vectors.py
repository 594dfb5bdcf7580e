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

from gateway.storage.keys import InvalidKey, object_key
from scripts import generate_vectors
from signer import (
    DEFAULT_MAX_LIFETIME,
    Key,
    Keyring,
    KeyringError,
    Rejected,
    SigningError,
    Status,
    content_disposition,
    sign_path,
    sign_target,
    token_id,
    verify,
)
from signer.format import Claims, canonical, decode, parse_link, path_form
from signer.params import BY_NAME, PARAMS, TEXT_CODEC, sign_options
from signer.sign import signing_times

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
KEYRING = Keyring.load(VECTORS / "PUBLIC-test-vector-keyring.json")


def _load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


VALID = _load("valid.json")
INVALID = _load("invalid.json")
UNSIGNABLE = _load("unsignable.json")
DISPOSITIONS = _load("content-disposition.json")
KEYRINGS = _load("keyrings.json")
WINDOWS = _load("window.json")
#: The valid vectors of format 1.1, kept as published: links of 1.1 signers.
VALID_1_1 = _load("1.1/valid.json")


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
        max_lifetime=ctx.get("max_lifetime"),
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
    signed = sign_target(canonical(vector["path_decoded"]), vector["app_query_wire"], claims, key)
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


@pytest.mark.parametrize("vector", VALID_1_1, ids=lambda v: v["name"])
def test_links_of_1_1_signers_still_verify(vector: dict[str, Any]) -> None:
    _verify(vector["request_target"], {**vector["verify"], "max_lifetime": DEFAULT_MAX_LIFETIME})
    _verify(vector["path_form_request_target"], vector["verify"])


def test_the_committed_vectors_are_what_the_generator_writes() -> None:
    """The generator is the reference implementation's own statement of the vectors."""
    for filename, data in generate_vectors.build().items():
        assert (VECTORS / filename).read_text(encoding="utf-8") == generate_vectors.dumps(data)


def test_the_valid_vectors_use_every_parameter_of_the_table() -> None:
    used = {name for vector in VALID for name in vector["params_decoded"]}
    assert used == {p.name for p in PARAMS}


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_decoded_and_wire_forms_are_labelled_and_agree(vector: dict[str, Any]) -> None:
    assert canonical(vector["path_decoded"]) == vector["path_wire"]
    assert vector["signed_target"].startswith(vector["path_wire"] + "?" + vector["app_query_wire"])
    assert list(vector["params_wire"]) == list(vector["params_decoded"])
    for name, wire in vector["params_wire"].items():
        text = vector["params_decoded"][name]
        assert text == (decode(wire, name) if BY_NAME[name].codec is TEXT_CODEC else wire)
    block = "&".join(f"{k}={v}" for k, v in vector["params_wire"].items())
    assert vector["string_to_sign"].endswith(block)


def _single(key_id: str) -> Keyring:
    """The vector keyring's key as the active one of its own keyring (the signer signs with the
    active key; the vectors use a `verify` key too)."""
    key = KEYRING.get(key_id)
    assert key is not None
    return Keyring([Key(key.id, key.alg, Status.ACTIVE, key.created, key.secret, key.public)])


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_the_public_signing_call_on_the_decoded_inputs_gives_the_published_url(
    vector: dict[str, Any],
) -> None:
    """What another language does: decoded path, wire application query, decoded parameters."""
    target = sign_path(
        vector["path_decoded"],
        _single(vector["key_id"]),
        query=vector["app_query_wire"],
        max_lifetime=vector["verify"]["max_lifetime"],
        **sign_options(vector["params_decoded"]),
    )
    assert target == vector["signed_target"]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_valid_vectors_are_accepted_in_their_other_spellings(vector: dict[str, Any]) -> None:
    """A path-form target with a bare '?' has no query: nothing unsigned rides along."""
    assert vector["also_accepted"]
    for target in vector["also_accepted"]:
        _verify(target, vector["verify"])


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["name"])
def test_the_gateway_refuses_exactly_the_valid_tokens_whose_path_is_no_object_key(
    vector: dict[str, Any],
) -> None:
    def gateway(path: str) -> str | None:
        try:
            object_key(path)
        except InvalidKey:
            return "invalid_path"
        return None

    assert gateway(vector["path_decoded"]) == vector.get("gateway_refuses")


@pytest.mark.parametrize("vector", UNSIGNABLE, ids=lambda v: v["name"])
def test_the_signer_refuses_what_no_verifier_would_accept(vector: dict[str, Any]) -> None:
    with pytest.raises(SigningError):
        sign_path(
            vector["path_decoded"],
            _single(vector["key_id"]),
            query=vector["app_query_wire"],
            max_lifetime=vector["max_lifetime"],
            **sign_options(vector["params_decoded"]),
        )


@pytest.mark.parametrize("vector", DISPOSITIONS, ids=lambda v: repr(v["filename"]))
def test_content_disposition_writes_the_published_bytes(vector: dict[str, Any]) -> None:
    if vector["value"] is None:
        with pytest.raises(SigningError):
            content_disposition(vector["filename"], inline=vector["inline"])
    else:
        assert content_disposition(vector["filename"], inline=vector["inline"]) == vector["value"]


@pytest.mark.parametrize("vector", KEYRINGS, ids=lambda v: v["name"])
def test_keyring_files_load_as_published(vector: dict[str, Any]) -> None:
    text = json.dumps(vector["document"])
    if not vector["valid"]:
        with pytest.raises(KeyringError):
            Keyring.loads(text)
        return
    keyring = Keyring.loads(text)
    assert [key.id for key in keyring] == vector["keys"]
    assert (keyring.active.id if keyring.active else None) == vector["active"]


@pytest.mark.parametrize("vector", WINDOWS, ids=lambda v: v["name"])
def test_signing_windows_round_issued_and_expires_as_published(vector: dict[str, Any]) -> None:
    def times() -> tuple[int, int]:
        return signing_times(
            vector["now"],
            expires_in=vector["expires_in"],
            expires_at=vector["expires_at"],
            window=vector["window"],
            max_lifetime=vector["max_lifetime"],
        )

    if vector.get("refused"):
        with pytest.raises(SigningError):
            times()
    else:
        assert times() == (vector["issued"], vector["expires"])
