"""Why a link is refused, and the exceptions that carry it.

    SignerError                 misuse of the signing side (bad arguments, bad keyring)
    ├── KeyringError            a keyring file or entry is invalid; the message names the field
    └── SigningError            a link cannot be issued as asked (lifetime, prefix, key)
    Rejected                    a link presented for verification is refused; holds a Reason

`Reason` values are stable, short and safe to show to clients, put in logs and use as a metric
label: every rejection in the project maps to exactly one of them, here and nowhere else.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signer.format import Claims


class Reason(enum.StrEnum):
    """Why a link was refused. The value is the stable wire/log/metric code."""

    MISSING = "missing_token"
    MALFORMED = "malformed_token"
    UNKNOWN_KEY = "unknown_key"
    RETIRED_KEY = "retired_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    WRONG_METHOD = "wrong_method"
    OUTSIDE_PREFIX = "outside_prefix"
    IP_MISMATCH = "ip_mismatch"
    LIFETIME_EXCEEDED = "lifetime_exceeded"
    REVOKED = "revoked"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    Reason.MISSING: "the URL carries no token (Expires, KeyID, Issued, ..., Signature)",
    Reason.MALFORMED: "the token is not well formed (see docs/token-format.md)",
    Reason.UNKNOWN_KEY: "the KeyID is not in the keyring",
    Reason.RETIRED_KEY: "the KeyID names a retired key",
    Reason.BAD_SIGNATURE: "the signature does not match the signed string",
    Reason.EXPIRED: "the link has expired",
    Reason.NOT_YET_VALID: "the link is not valid yet (Starts is in the future)",
    Reason.ISSUED_IN_FUTURE: "the link's Issued time is in the future (beyond the clock skew)",
    Reason.IP_MISMATCH: "the client address is outside the link's IP binding",
    Reason.WRONG_METHOD: "the request method is not the one the link allows",
    Reason.OUTSIDE_PREFIX: "the path is outside the link's Prefix",
    Reason.LIFETIME_EXCEEDED: "the link's lifetime (Expires - Issued) exceeds the verifier's bound",
    Reason.REVOKED: "the link has been revoked",
}


class SignerError(Exception):
    """Base class for errors on the signing side."""


class KeyringError(SignerError):
    """A keyring is unusable; the message says which key and field, never the secret."""


class SigningError(SignerError):
    """A link cannot be issued with the given arguments."""


class Rejected(Exception):
    """A presented link is refused.

    `detail` is for operators (logs, `signer verify`); it never contains a signature or a key.
    `claims` is set only when the signature was authentic, so that logs can name the key id and
    subject of a genuine-but-refused link without trusting a forged one.
    """

    def __init__(self, reason: Reason, detail: str = "", claims: Claims | None = None) -> None:
        super().__init__(f"{reason.value}: {detail or reason.explanation}")
        self.reason = reason
        self.detail = detail or reason.explanation
        self.claims = claims
