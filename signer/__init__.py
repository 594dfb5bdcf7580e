"""Issue and verify CDN-style signed links for the edge gateway.

    from signer import Keyring, sign_url
    keyring = Keyring.load("keyring.json")
    url = sign_url("https://media.example.com/videos/intro.mp4", keyring, expires_in=3600)

Depends only on the standard library and `cryptography`.
"""

from signer.algorithms import Algorithm
from signer.errors import KeyringError, Reason, Rejected, SignerError, SigningError
from signer.format import FORMAT_VERSION, Claims, path_form
from signer.keys import Key, Keyring, Status, new_key
from signer.sign import (
    DEFAULT_MAX_LIFETIME,
    SignOptions,
    content_disposition,
    sign_path,
    sign_target,
    sign_url,
)
from signer.verify import DEFAULT_SKEW, Verified, is_token_id, token_id, verify, verify_url

__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_SKEW",
    "FORMAT_VERSION",
    "Algorithm",
    "Claims",
    "Key",
    "Keyring",
    "KeyringError",
    "Reason",
    "Rejected",
    "SignOptions",
    "SignerError",
    "SigningError",
    "Status",
    "Verified",
    "content_disposition",
    "is_token_id",
    "new_key",
    "path_form",
    "sign_path",
    "sign_target",
    "sign_url",
    "token_id",
    "verify",
    "verify_url",
]
