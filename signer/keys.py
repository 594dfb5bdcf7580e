"""The keyring: keys by id, each with an algorithm, its material and a status.

File format (JSON, `"format": "edge-keyring/1"`), documented in docs/keyring.md:

    {"format": "edge-keyring/1", "keys": [
      {"id": "k2", "alg": "ed25519", "status": "active", "created": 1767139200,
       "private": "<base64url seed>", "public": "<base64url>"},
      {"id": "k1", "alg": "hmac-sha256", "status": "verify", "created": 1764547200,
       "secret": "<base64url>"}]}

Statuses: `active` signs new links (at most one; signing needs one), `verify` is still accepted
(the overlap during rotation), `retired` is refused. A keyring is immutable; every change returns
a new one, so the gateway can swap a reloaded keyring in whole.

A key with a `scheme` verifies another system's links instead of our tokens (`signer.schemes`):

    {"id": "GWLINKS01", "alg": "hmac-sha256", "scheme": "sigv4", "region": "us-east-1",
     "status": "verify", "created": 1767139200, "secret": "<base64url>"}

It never signs or verifies our tokens (so it is never `active`): the backends sign with it.
A `secure_link` key holds an nginx `secure_link_md5` expression, secret and all, instead of
`alg` and `secret` (docs/nginx-secure-link.md):

    {"id": "nginx-media", "scheme": "secure_link", "status": "verify", "created": 1767139200,
     "expression": "$secure_link_expires$uri$remote_addr <secret>"}
An `akamai` key holds Akamai's hex key as it is, and Akamai's settings (docs/akamai.md):

    {"id": "akamai-1", "alg": "hmac-sha1", "scheme": "akamai", "status": "verify",
     "created": 1767139200, "key": "<even number of hex digits>", "escape_early": true}
A `cloudfront` key is the public half of a CloudFront key pair, its id the key-pair id, its
`public` the DER SubjectPublicKeyInfo in base64url (docs/cloudfront.md):

    {"id": "K2JCJMDEHXQW5F", "alg": "rsa-pkcs1", "scheme": "cloudfront", "status": "verify",
     "created": 1767139200, "public": "<base64url DER>"}
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from signer.algorithms import (
    ED25519_KEY_BYTES,
    HMAC_SECRET_BYTES,
    RSA_MIN_BITS,
    Algorithm,
    LinkAlgorithm,
    Verifier,
    ed25519_public,
    generate,
    rsa_public,
    verifier,
)
from signer.errors import KeyringError, Rejected
from signer.format import KEY_ID, b64decode, b64encode
from signer.nginx import ExpressionError, parse_expression

KEYRING_FORMAT = "edge-keyring/1"


class Status(enum.StrEnum):
    ACTIVE = "active"
    VERIFY = "verify"
    RETIRED = "retired"


class LinkScheme(enum.StrEnum):
    """Another system's signed links a key verifies (`signer.schemes`); None: our tokens."""

    SIGV4 = "sigv4"  # S3 presigned URLs: the key id is the access key id (docs/s3-presigned.md)
    SECURE_LINK = "secure_link"  # nginx secure_link MD5 links (docs/nginx-secure-link.md)
    AKAMAI = "akamai"  # Akamai EdgeAuth 2.0 tokens: tried in turn, no key id (docs/akamai.md)
    CLOUDFRONT = "cloudfront"  # CloudFront signed URLs and cookies: the id is the key-pair id


#: The credential scope region of a `sigv4` key without one: botocore's default.
DEFAULT_REGION = "us-east-1"
_REGION = re.compile(r"[a-z0-9-]{1,32}")
#: Akamai's HMAC variants (its "algorithm"), as the entry's `alg` names them.
AKAMAI_DIGESTS = ("sha256", "sha1", "md5")
#: An `akamai` key's `window` when the entry has none: one day.
DEFAULT_AKAMAI_WINDOW = 86400
#: Akamai keys tried per token (it carries no key id), so at most this many are not retired.
MAX_AKAMAI_KEYS = 4
#: Akamai's key: hex digits, even in number; at least 16 bytes here.
_AKAMAI_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){16,}")
_AKAMAI_FIELDS = frozenset(
    ("id", "alg", "status", "created", "comment", "scheme", "key", "escape_early", "window")
)


@dataclass(frozen=True)
class Key:
    """One key. `secret` is the HMAC secret or the Ed25519 seed; it never appears in a repr.

    A `secure_link` key's `secret` is its expression (UTF-8), which holds nginx's secret; its
    `alg` is HMAC-SHA256 only as the kind of material (a shared secret, exported and written
    like one): the file has no `alg` for it, nginx fixes MD5.
    """

    id: str
    alg: Algorithm | LinkAlgorithm
    status: Status
    created: int
    secret: bytes | None = field(default=None, repr=False)
    public: bytes | None = None
    scheme: LinkScheme | None = None
    region: str | None = None  # `sigv4` only
    digest: str | None = None  # `akamai` only: one of AKAMAI_DIGESTS (sha256 when None)
    escape_early: bool = False  # `akamai` only: Akamai's "Escape token inputs"
    window: int | None = None  # `akamai` only: assumed lifetime of a token without `st`

    @property
    def can_sign(self) -> bool:
        return self.secret is not None

    @property
    def can_verify(self) -> bool:
        return self.secret is not None if self.alg is Algorithm.HMAC_SHA256 else bool(self.public)

    def verifier(self) -> Verifier:
        if isinstance(self.alg, LinkAlgorithm):
            raise ValueError(f"a {self.alg} key verifies {self.scheme} links, not our tokens")
        return verifier(self.alg, secret=self.secret, public=self.public)

    @property
    def expression(self) -> str | None:
        """A `secure_link` key's `secure_link_md5` expression (it holds the secret)."""
        if self.scheme is not LinkScheme.SECURE_LINK or self.secret is None:
            return None
        return self.secret.decode()

    def to_json(self, *, public_only: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id,
            "alg": self.alg.value,
            "status": self.status.value,
            "created": self.created,
        }
        if self.scheme is LinkScheme.SECURE_LINK:
            del entry["alg"]
            entry["scheme"] = self.scheme.value
            if self.expression is not None:
                entry["expression"] = self.expression
            return entry
        if self.scheme is not None:
            entry["scheme"] = self.scheme.value
        if self.region is not None:
            entry["region"] = self.region
        if self.scheme is LinkScheme.AKAMAI:
            entry["alg"] = f"hmac-{self.digest or AKAMAI_DIGESTS[0]}"
            if self.escape_early:
                entry["escape_early"] = True
            if self.window is not None:
                entry["window"] = self.window
        if self.status is Status.RETIRED and public_only:
            return entry
        if self.scheme is LinkScheme.AKAMAI:
            if self.secret is not None:
                entry["key"] = self.secret.hex()
        elif self.alg is Algorithm.HMAC_SHA256:
            if self.secret is not None:
                entry["secret"] = b64encode(self.secret)
        else:
            if self.secret is not None and not public_only:
                entry["private"] = b64encode(self.secret)
            if self.public is not None:
                entry["public"] = b64encode(self.public)
        return entry


def new_key(
    key_id: str,
    alg: Algorithm,
    status: Status,
    *,
    now: float | None = None,
    scheme: LinkScheme | None = None,
    region: str | None = None,
    digest: str | None = None,
    escape_early: bool = False,
    window: int | None = None,
    secret: bytes | None = None,
) -> Key:
    """A new key; `secret` imports existing HMAC material (an Akamai key) instead of a fresh
    one."""
    made, public = generate(alg)
    created = int(time.time() if now is None else now)
    key = Key(
        key_id,
        alg,
        status,
        created,
        made if secret is None else secret,
        public,
        scheme,
        region,
        digest,
        escape_early,
        window,
    )
    return _checked(key, f"key {key_id!r}")


def secure_link_key(
    key_id: str, expression: str, status: Status = Status.VERIFY, *, now: float | None = None
) -> Key:
    """A `secure_link` key for an nginx `secure_link_md5` expression (validated here)."""
    created = int(time.time() if now is None else now)
    key = Key(key_id, Algorithm.HMAC_SHA256, status, created, expression.encode(), None)
    return _checked(replace(key, scheme=LinkScheme.SECURE_LINK), f"key {key_id!r}")


def cloudfront_key(key_id: str, public_der: bytes, *, now: float | None = None) -> Key:
    """A `cloudfront` key: the public half of a CloudFront key pair (DER SubjectPublicKeyInfo),
    by its key-pair id. Its private half stays with the backends that sign."""
    created = int(time.time() if now is None else now)
    key = Key(
        key_id, LinkAlgorithm.RSA, Status.VERIFY, created, None, public_der, LinkScheme.CLOUDFRONT
    )
    return _checked(key, f"key {key_id!r}")


class Keyring:
    """An immutable, validated set of keys, ordered as in the file."""

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: dict[str, Key] = {}
        for key in keys:
            if key.id in self._keys:
                raise KeyringError(f"key id {key.id!r} appears twice")
            if key.scheme is not None and key.status is Status.ACTIVE:
                raise KeyringError(f"key {key.id!r}: a {key.scheme} key is never 'active'")
            self._keys[key.id] = key
        active = [key.id for key in self._keys.values() if key.status is Status.ACTIVE]
        if len(active) > 1:
            raise KeyringError(f"more than one active key: {', '.join(active)}")
        akamai = [k.id for k in self if k.scheme is LinkScheme.AKAMAI and k.status is Status.VERIFY]
        if len(akamai) > MAX_AKAMAI_KEYS:
            raise KeyringError(
                f"more than {MAX_AKAMAI_KEYS} akamai keys to try ({', '.join(akamai)}): retire some"
            )
        self._verifiers: dict[str, Verifier] = {
            key.id: key.verifier()
            for key in self._keys.values()
            if key.status is not Status.RETIRED and key.can_verify and key.scheme is None
        }

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring({', '.join(f'{k.id}:{k.status.value}' for k in self)})"

    def get(self, key_id: str) -> Key | None:
        return self._keys.get(key_id)

    def verifier_for(self, key_id: str) -> Verifier | None:
        """The prepared verifier of a usable token key; None when unknown, retired, public-less
        or a key of another scheme."""
        return self._verifiers.get(key_id)

    @property
    def active(self) -> Key | None:
        return next((key for key in self if key.status is Status.ACTIVE), None)

    def signing_key(self) -> Key:
        key = self.active
        if key is None:
            raise KeyringError("the keyring has no active key (signer keygen or signer activate)")
        if not key.can_sign:
            raise KeyringError(f"active key {key.id!r} has no private material (a public export?)")
        return key

    def count_by_status(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        for key in self:
            counts[key.status] += 1
        return counts

    # Changes: each returns a new keyring.

    def with_key(self, key: Key) -> Keyring:
        if key.id in self._keys:
            raise KeyringError(f"key id {key.id!r} already exists")
        keys = list(self)
        if key.status is Status.ACTIVE:
            keys = [_demoted(k) for k in keys]
        return Keyring([*keys, key])

    def activated(self, key_id: str) -> Keyring:
        """Make `key_id` the signing key; the previous active key stays accepted as `verify`."""
        target = self._require(key_id)
        if target.status is Status.RETIRED:
            raise KeyringError(f"key {key_id!r} is retired; generate a new key instead")
        if not target.can_sign:
            raise KeyringError(f"key {key_id!r} has no private material here")
        return Keyring(
            replace(k, status=Status.ACTIVE) if k.id == key_id else _demoted(k) for k in self
        )

    def retired(self, key_id: str) -> Keyring:
        target = self._require(key_id)
        if target.status is Status.ACTIVE:
            raise KeyringError(f"key {key_id!r} is active; rotate or activate another key first")
        return Keyring(replace(k, status=Status.RETIRED) if k.id == key_id else k for k in self)

    def public_export(self) -> Keyring:
        """What a gateway needs: no Ed25519 private keys, no material for retired keys."""
        exported = []
        for key in self:
            if key.status is Status.RETIRED:
                exported.append(replace(key, secret=None, public=None))
            elif key.alg is Algorithm.ED25519:
                exported.append(replace(key, secret=None))
            else:
                exported.append(key)
        return Keyring(exported)

    @property
    def has_secrets(self) -> bool:
        return any(key.secret is not None for key in self)

    def _require(self, key_id: str) -> Key:
        key = self.get(key_id)
        if key is None:
            raise KeyringError(f"no key {key_id!r} in the keyring")
        return key

    # Serialisation.

    def dumps(self, *, public_only: bool = False) -> str:
        document = {
            "format": KEYRING_FORMAT,
            "keys": [key.to_json(public_only=public_only) for key in self],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def loads(cls, text: str, source: str = "keyring") -> Keyring:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyringError(
                f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"{source}: 'format' must be {KEYRING_FORMAT!r}")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise KeyringError(f"{source}: 'keys' must be a list")
        keys = [_parse_entry(entry, f"{source}: keys[{i}]") for i, entry in enumerate(entries)]
        try:
            return cls(keys)
        except KeyringError as exc:
            raise KeyringError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyringError(f"keyring {os.fspath(path)}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise KeyringError(f"keyring {os.fspath(path)}: not UTF-8 text") from None
        return cls.loads(text, f"keyring {os.fspath(path)}")

    def save(self, path: str | os.PathLike[str], *, public_only: bool = False) -> None:
        """Write atomically (temp file + rename); 0600 whenever the file holds a secret."""
        text = self.dumps(public_only=public_only)
        held = ("secret", "private", "expression", "key")
        secret = any(name in e for e in json.loads(text)["keys"] for name in held)
        write_atomically(Path(path), text, 0o600 if secret else 0o644)


def write_atomically(path: Path, text: str, mode: int) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _demoted(key: Key) -> Key:
    return replace(key, status=Status.VERIFY) if key.status is Status.ACTIVE else key


def _parse_entry(entry: object, where: str) -> Key:
    if not isinstance(entry, dict):
        raise KeyringError(f"{where}: must be an object")
    key_id = entry.get("id")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise KeyringError(f"{where}: 'id' must be 1-64 of A-Z a-z 0-9 . _ -")
    where = f"{where} (id {key_id!r})"
    if entry.get("scheme") == LinkScheme.SECURE_LINK.value:
        return _parse_secure_link(entry, key_id, where)
    if entry.get("scheme") == LinkScheme.AKAMAI.value:
        return _parse_akamai(entry, key_id, where)
    alg = _algorithm(entry.get("alg"), where)
    status, created = _status_and_created(entry, where)
    scheme = None
    if "scheme" in entry:
        try:
            scheme = LinkScheme(str(entry["scheme"]))
        except ValueError:
            raise KeyringError(
                f"{where}: 'scheme' must be one of {', '.join(LinkScheme)}"
            ) from None
    region = entry.get("region")
    if region is not None and not isinstance(region, str):
        raise KeyringError(f"{where}: 'region' must be a string")
    allowed = {"id", "alg", "status", "created", "comment"}
    if alg is LinkAlgorithm.RSA:
        allowed |= {"public", "scheme"}
    else:
        allowed |= {"secret"} if alg is Algorithm.HMAC_SHA256 else {"private", "public"}
    allowed |= {"scheme", "region"} if scheme is LinkScheme.SIGV4 else set()
    unknown = set(entry) - allowed
    if unknown:
        kind = f"{alg} {scheme}" if scheme is not None else alg
        raise KeyringError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for {kind}")
    secret_field = "secret" if alg is Algorithm.HMAC_SHA256 else "private"
    secret = _material(entry, secret_field, where)
    public = _material(entry, "public", where)
    return _checked(Key(key_id, alg, status, created, secret, public, scheme, region), where)


def _status_and_created(entry: dict[str, Any], where: str) -> tuple[Status, int]:
    try:
        status = Status(str(entry.get("status")))
    except ValueError:
        raise KeyringError(f"{where}: 'status' must be one of {', '.join(Status)}") from None
    created = entry.get("created", 0)
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise KeyringError(f"{where}: 'created' must be unix seconds")
    comment = entry.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise KeyringError(f"{where}: 'comment' must be a string")
    return status, created


def _parse_secure_link(entry: dict[str, Any], key_id: str, where: str) -> Key:
    """A `secure_link` entry: an expression in place of `alg` and `secret`."""
    if "alg" in entry:
        raise KeyringError(f"{where}: a secure_link key has no 'alg' (nginx's is MD5)")
    unknown = set(entry) - {"id", "scheme", "status", "created", "comment", "expression"}
    if unknown:
        raise KeyringError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))} for a secure_link key"
        )
    status, created = _status_and_created(entry, where)
    expression = entry.get("expression")
    if expression is not None and not isinstance(expression, str):
        raise KeyringError(f"{where}: 'expression' must be a string")
    secret = None if expression is None else expression.encode()
    key = Key(key_id, Algorithm.HMAC_SHA256, status, created, secret, None)
    return _checked(replace(key, scheme=LinkScheme.SECURE_LINK), where)


def _parse_akamai(entry: dict[str, Any], key_id: str, where: str) -> Key:
    """An `akamai` entry: Akamai's own settings, its key in Akamai's hex."""
    digests = [f"hmac-{name}" for name in AKAMAI_DIGESTS]
    alg = entry.get("alg")
    if alg not in digests:
        raise KeyringError(f"{where}: an akamai key's 'alg' is one of {', '.join(digests)}")
    unknown = set(entry) - _AKAMAI_FIELDS
    if unknown:
        raise KeyringError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for akamai")
    status, created = _status_and_created(entry, where)
    escape_early = entry.get("escape_early", False)
    if not isinstance(escape_early, bool):
        raise KeyringError(f"{where}: 'escape_early' must be true or false")
    window = entry.get("window")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)):
        raise KeyringError(f"{where}: 'window' must be whole seconds")
    hex_key = entry.get("key")
    if hex_key is not None and not (isinstance(hex_key, str) and _AKAMAI_KEY.fullmatch(hex_key)):
        raise KeyringError(f"{where}: 'key' must be an even number (32 or more) of hex digits")
    secret = None if hex_key is None else bytes.fromhex(hex_key)
    digest = str(alg).removeprefix("hmac-")
    key = Key(
        key_id,
        Algorithm.HMAC_SHA256,
        status,
        created,
        secret,
        None,
        LinkScheme.AKAMAI,
        None,
        digest,
        escape_early,
        window,
    )
    return _checked(key, where)


def _algorithm(value: object, where: str) -> Algorithm | LinkAlgorithm:
    for kind in (Algorithm, LinkAlgorithm):
        try:
            return kind(str(value))
        except ValueError:
            continue
    names = ", ".join([*Algorithm, *LinkAlgorithm])
    raise KeyringError(f"{where}: 'alg' must be one of {names}")


def _material(entry: dict[str, Any], name: str, where: str) -> bytes | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyringError(f"{where}: {name!r} must be a base64url string")
    try:
        return b64decode(value, name)
    except Rejected:
        raise KeyringError(f"{where}: {name!r} must be base64url without padding") from None


def _checked_secure_link(key: Key, where: str) -> Key:
    if key.region is not None:
        raise KeyringError(f"{where}: 'region' belongs to a sigv4 key only")
    expression = key.expression
    if expression is None:
        if key.status is not Status.RETIRED:
            raise KeyringError(f"{where}: a secure_link key not retired needs 'expression'")
        return key
    try:
        parse_expression(expression)
    except ExpressionError as exc:
        raise KeyringError(f"{where}: 'expression': {exc}") from None
    return key


def _check_akamai(key: Key, where: str) -> None:
    if key.region is not None:
        raise KeyringError(f"{where}: 'region' belongs to a sigv4 key only")
    if key.digest is not None and key.digest not in AKAMAI_DIGESTS:
        raise KeyringError(f"{where}: an akamai key's digest is one of {', '.join(AKAMAI_DIGESTS)}")
    if key.window is not None and not 0 < key.window <= 10**9:
        raise KeyringError(f"{where}: 'window' must be 1 to 1000000000 seconds")
    if key.secret is not None and len(key.secret) < 16:
        raise KeyringError(f"{where}: 'key' must be at least 16 bytes (32 hex digits)")
    if key.secret is None and key.status is not Status.RETIRED:
        raise KeyringError(f"{where}: an akamai key that is not retired needs 'key'")


def _checked(key: Key, where: str) -> Key:
    """Material lengths and consistency; messages name the field, never its value."""
    if key.scheme is LinkScheme.CLOUDFRONT or key.alg is LinkAlgorithm.RSA:
        return _checked_cloudfront(key, where)
    if key.scheme is not None:
        if key.alg is not Algorithm.HMAC_SHA256:
            raise KeyringError(f"{where}: a {key.scheme} key is 'alg' {Algorithm.HMAC_SHA256}")
        if key.status is Status.ACTIVE:
            raise KeyringError(
                f"{where}: a {key.scheme} key is 'verify' or 'retired', never 'active' "
                "(backends sign with it, not this keyring)"
            )
        if key.region is not None and not _REGION.fullmatch(key.region):
            raise KeyringError(f"{where}: 'region' must be 1-32 of a-z 0-9 -")
        if key.scheme is LinkScheme.SECURE_LINK:
            return _checked_secure_link(key, where)
    elif key.region is not None:
        raise KeyringError(f"{where}: 'region' belongs to a sigv4 key only")
    if key.scheme is LinkScheme.AKAMAI:
        _check_akamai(key, where)
        return replace(key, digest=key.digest or AKAMAI_DIGESTS[0])
    if key.digest is not None or key.escape_early or key.window is not None:
        raise KeyringError(f"{where}: 'escape_early', 'window' and hmac-sha1/md5 are akamai's")
    if key.alg is Algorithm.HMAC_SHA256:
        if key.secret is not None and len(key.secret) < HMAC_SECRET_BYTES:
            raise KeyringError(f"{where}: 'secret' must be at least {HMAC_SECRET_BYTES} bytes")
        if key.secret is None and key.status is not Status.RETIRED:
            raise KeyringError(f"{where}: an HMAC key that is not retired needs 'secret'")
        return key
    for name, value in (("private", key.secret), ("public", key.public)):
        if value is not None and len(value) != ED25519_KEY_BYTES:
            raise KeyringError(f"{where}: {name!r} must be {ED25519_KEY_BYTES} bytes")
    if key.secret is not None:
        derived = ed25519_public(key.secret)
        if key.public is not None and key.public != derived:
            raise KeyringError(f"{where}: 'public' does not match 'private'")
        key = replace(key, public=derived)
    if key.public is None and key.status is not Status.RETIRED:
        raise KeyringError(f"{where}: an Ed25519 key that is not retired needs 'public'")
    return key


def _checked_cloudfront(key: Key, where: str) -> Key:
    """A CloudFront key: 'alg' rsa-pkcs1, an RSA public key of at least 2048 bits, never active."""
    if key.scheme is not LinkScheme.CLOUDFRONT or key.alg is not LinkAlgorithm.RSA:
        raise KeyringError(
            f"{where}: a cloudfront key is 'alg' rsa-pkcs1, and such a key is cloudfront's"
        )
    if key.status is Status.ACTIVE:
        raise KeyringError(
            f"{where}: a cloudfront key is 'verify' or 'retired', never 'active' "
            "(backends sign with its private half, not this keyring)"
        )
    if key.secret is not None:
        raise KeyringError(f"{where}: a cloudfront key holds only the public key")
    if key.public is None:
        if key.status is not Status.RETIRED:
            raise KeyringError(f"{where}: a cloudfront key that is not retired needs 'public'")
        return key
    try:
        bits = rsa_public(key.public).key_size
    except ValueError:
        raise KeyringError(
            f"{where}: 'public' must be an RSA public key (DER SubjectPublicKeyInfo)"
        ) from None
    if bits < RSA_MIN_BITS:
        raise KeyringError(f"{where}: 'public' must be an RSA key of at least {RSA_MIN_BITS} bits")
    return key
