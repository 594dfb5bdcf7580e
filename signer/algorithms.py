"""HMAC-SHA256 and Ed25519 behind one small interface.

The algorithm is a property of the key, chosen by the keyring; nothing in a token selects it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: Returns True when `signature` is valid for `data`. Built once per key, called per request.
Verifier = Callable[[bytes, bytes], bool]

HMAC_SECRET_BYTES = 32
ED25519_KEY_BYTES = 32


class Algorithm(enum.StrEnum):
    HMAC_SHA256 = "hmac-sha256"
    ED25519 = "ed25519"

    @property
    def signature_length(self) -> int:
        return 32 if self is Algorithm.HMAC_SHA256 else 64


def generate(alg: Algorithm) -> tuple[bytes, bytes | None]:
    """A new (secret, public) pair; public is None for HMAC."""
    if alg is Algorithm.HMAC_SHA256:
        return secrets.token_bytes(HMAC_SECRET_BYTES), None
    seed = secrets.token_bytes(ED25519_KEY_BYTES)
    return seed, ed25519_public(seed)


def ed25519_public(seed: bytes) -> bytes:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(alg: Algorithm, secret: bytes, data: bytes) -> bytes:
    if alg is Algorithm.HMAC_SHA256:
        return hmac.digest(secret, data, hashlib.sha256)
    return Ed25519PrivateKey.from_private_bytes(secret).sign(data)


def verifier(alg: Algorithm, *, secret: bytes | None, public: bytes | None) -> Verifier:
    """Prepare everything that does not depend on the request, so verification is one call."""
    length = alg.signature_length
    if alg is Algorithm.HMAC_SHA256:
        if secret is None:
            raise ValueError("an HMAC key needs its secret to verify")
        key = secret

        def verify_hmac(signature: bytes, data: bytes) -> bool:
            expected = hmac.digest(key, data, hashlib.sha256)
            return hmac.compare_digest(expected, signature)

        return verify_hmac

    if public is None:
        raise ValueError("an Ed25519 key needs its public key to verify")
    public_key = Ed25519PublicKey.from_public_bytes(public)

    def verify_ed25519(signature: bytes, data: bytes) -> bool:
        if len(signature) != length:
            return False
        try:
            public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return verify_ed25519
