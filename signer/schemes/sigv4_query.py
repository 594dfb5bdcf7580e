"""S3 presigned URLs (query-string SigV4), verified the way S3 verifies them.

A backend presigns against the gateway with boto3/botocore (`signature_version="s3v4"`,
path-style addressing), holding a `sigv4` key of the gateway's keyring as its credentials:

    /<bucket>/<key>?[response-content-disposition=…&response-content-type=…&]
      X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<key id>%2F<YYYYMMDD>%2F<region>%2Fs3%2F
      aws4_request&X-Amz-Date=<YYYYMMDD>T<HHMMSS>Z&X-Amz-Expires=<1..604800>
      &X-Amz-SignedHeaders=host[;content-type]&X-Amz-Signature=<64 hex>

The signature covers S3's canonical request: the method, the path as sent, every query
parameter but the signature (sorted), the signed headers (`host` always), and the literal
`UNSIGNED-PAYLOAD`. Path and query must be in the one percent-encoding the AWS SDKs produce
(RFC 3986 unreserved characters bare, everything else `%XX` in upper case), so no two targets
on the wire stand for the same signed value. Parsing is pure; `verify` needs the keyring and
the clock. Standard library only, so the hot path never imports botocore.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, unquote

from signer.errors import Reason, Rejected
from signer.format import METHODS, Claims, b64encode, check_path
from signer.keys import DEFAULT_REGION, Keyring, LinkScheme, Status
from signer.schemes.base import LinkRequest, SchemeLink
from signer.verify import DEFAULT_SKEW, Verified, judge, token_id

NAME: Final = "sigv4"
ALGORITHM: Final = "AWS4-HMAC-SHA256"
SERVICE: Final = "s3"
TERMINATOR: Final = "aws4_request"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
#: S3's own bound on X-Amz-Expires: seven days.
MAX_EXPIRES: Final = 604800

SIGNATURE: Final = "X-Amz-Signature"
AUTH_PARAMS: Final = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        SIGNATURE,
    }
)
#: Signed query overrides that become the response's headers.
OVERRIDES: Final = ("response-content-type", "response-content-disposition")
#: Headers a link may sign: what the gateway can hold a request to. Any other signed header
#: (x-amz-meta-*, x-amz-acl, content-md5, range, ...) asks for something the gateway would not
#: do, so such a link is refused rather than half honoured.
SIGNABLE_HEADERS: Final = frozenset({"host", "content-type"})

_DETECT: Final = re.compile(r"(?:^|&)x-amz-(?:algorithm|credential|signature)=", re.IGNORECASE)
_AMZ_DATE: Final = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")
_EXPIRES: Final = re.compile(r"[1-9][0-9]{0,5}")
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the keyring's rule (signer.format)
_HEADER_NAME: Final = re.compile(r"[a-z0-9-]+")
_TARGET: Final = re.compile(r"[\x21-\x7e]*")
_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9\-._~]*")
_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9\-._~/]*")
_AUTH_FOLDED: Final = frozenset(name.casefold() for name in AUTH_PARAMS)

#: S3's words for the refusals a client of presigned URLs looks for, by the gateway's reason.
WORDS: Final = {
    "bad_signature": "SignatureDoesNotMatch: The request signature we calculated does not match "
    "the signature you provided. Check your key and signing method.",
    "wrong_method": "SignatureDoesNotMatch: The request signature we calculated does not match "
    "the signature you provided. Check your key and signing method.",
    "expired": "AccessDenied: Request has expired",
    "not_yet_valid": "AccessDenied: Request is not valid yet",
    "unknown_key": "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in "
    "our records.",
    "retired_key": "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in "
    "our records.",
    "malformed_token": "AuthorizationQueryParametersError: the X-Amz-* query parameters are "
    "not a presigned URL the gateway accepts",
    "revoked": "AccessDenied: Access Denied",
    "lifetime_exceeded": "AccessDenied: Access Denied",
    "wrong_bucket": "AccessDenied: Access Denied",
    "not_found": "NoSuchKey: The specified key does not exist.",
}


@dataclass(frozen=True, slots=True)
class Presigned:
    """A well-formed presigned URL, not yet checked against any key, header or clock."""

    raw_path: str  # as sent: the canonical URI
    bucket: str
    path: str  # the decoded object path after the bucket: `/<key>`
    key_id: str
    date: str  # YYYYMMDD, of the credential scope and X-Amz-Date alike
    region: str
    amz_date: str
    issued: int  # X-Amz-Date as unix seconds
    expires: int  # issued + X-Amz-Expires
    signed_headers: tuple[str, ...]
    signature: str  # 64 lower-case hex digits
    canonical_query: str
    response_content_type: str | None
    response_content_disposition: str | None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{SERVICE}/{TERMINATOR}"

    @property
    def token_id(self) -> str:
        return token_id(bytes.fromhex(self.signature))

    def claims(self, method: str) -> Claims:
        """What the link says, as our token would say it; `method` is the one it is signed for
        (the method is part of the canonical request, so a link allows exactly one)."""
        return Claims(
            expires=self.expires,
            key_id=self.key_id,
            issued=self.issued,
            starts=self.issued,  # a link dated in the future is "not valid yet"
            method=method,
            response_content_type=self.response_content_type,
            response_content_disposition=self.response_content_disposition,
        ).validate()


def detects(raw_query: str) -> bool:
    """A query naming X-Amz-Algorithm, X-Amz-Credential or X-Amz-Signature (any case) is a
    SigV4 link, whether or not the rest is well formed."""
    return _DETECT.search(raw_query) is not None


def parse(raw_path: str, raw_query: str) -> Presigned:
    """Split and validate a presigned target as received (still percent-encoded), or raise
    `Rejected(MALFORMED)` naming what is wrong."""
    if not _TARGET.fullmatch(raw_path) or not _TARGET.fullmatch(raw_query):
        raise _malformed("the request target has characters outside visible ASCII")
    bucket, path = _split_path(_decode(raw_path, "the path", _PLAIN_PATH, "/"))
    values: dict[str, str] = {}
    signed: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        raw_name, equals, raw_value = part.partition("=")
        if not raw_name or not equals:
            raise _malformed("the query has an empty parameter or one without '='")
        name = _decode(raw_name, "a parameter name", _PLAIN_VALUE, "")
        if name in values:
            raise _malformed(f"{name} is repeated")
        values[name] = _decode(raw_value, name, _PLAIN_VALUE, "")
        if name != SIGNATURE:
            signed.append((raw_name, raw_value))
    _check_names(values)
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise _malformed(f"X-Amz-Algorithm must be {ALGORITHM}")
    key_id, date, region = credential(values["X-Amz-Credential"])
    amz_date = values["X-Amz-Date"]
    issued = amz_time(amz_date)
    if amz_date[:8] != date:
        raise _malformed("the X-Amz-Credential date is not the date of X-Amz-Date")
    lifetime = values["X-Amz-Expires"]
    if not _EXPIRES.fullmatch(lifetime) or int(lifetime) > MAX_EXPIRES:
        raise _malformed(f"X-Amz-Expires must be 1 to {MAX_EXPIRES} seconds (7 days), as in S3")
    signature = values[SIGNATURE]
    if not _HEX_SIGNATURE.fullmatch(signature):
        raise _malformed("X-Amz-Signature must be 64 lower-case hex digits")
    return Presigned(
        raw_path=raw_path,
        bucket=bucket,
        path=path,
        key_id=key_id,
        date=date,
        region=region,
        amz_date=amz_date,
        issued=issued,
        expires=issued + int(lifetime),
        signed_headers=_signed_headers(values["X-Amz-SignedHeaders"]),
        signature=signature,
        canonical_query="&".join(f"{name}={value}" for name, value in sorted(signed)),
        response_content_type=values.get("response-content-type"),
        response_content_disposition=values.get("response-content-disposition"),
    )


def canonical_request(link: Presigned, method: str, headers: dict[str, str]) -> str:
    """S3's canonical request for `link` sent with `method` and these signed header values
    (already trimmed, by lower-case name)."""
    canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in link.signed_headers)
    return "\n".join(
        (
            method,
            link.raw_path,
            link.canonical_query,
            canonical_headers,
            ";".join(link.signed_headers),
            UNSIGNED_PAYLOAD,
        )
    )


def string_to_sign(link: Presigned, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{link.amz_date}\n{link.scope}\n{digest}"


@functools.lru_cache(maxsize=64)
def signing_key(secret_access_key: str, date: str, region: str) -> bytes:
    """SigV4's derived key: the same for every link of one key, day and region, so cached."""
    key = f"AWS4{secret_access_key}".encode()
    for part in (date, region, SERVICE, TERMINATOR):
        key = hmac.digest(key, part.encode(), hashlib.sha256)
    return key


def link_signing_key(keyring: Keyring, key_id: str, date: str, region: str) -> bytes:
    """The signing key of a credential scope, from the keyring's `sigv4` key `key_id`, or
    `Rejected`: no such key (the scheme is off without any), retired, or another region.
    Presigned URLs and POST policies (`sigv4_post`) alike."""
    key = keyring.get(key_id)
    if key is None or key.scheme is not LinkScheme.SIGV4:
        if not any(k.scheme is LinkScheme.SIGV4 for k in keyring):
            raise Rejected(Reason.UNKNOWN_KEY, "no sigv4 key in the keyring: SigV4 links are off")
        raise Rejected(Reason.UNKNOWN_KEY, f"no sigv4 key {key_id!r} in the keyring")
    if key.status is Status.RETIRED or key.secret is None:
        raise Rejected(Reason.RETIRED_KEY, f"key {key_id!r} is retired")
    own = key.region or DEFAULT_REGION
    if region != own:
        raise _malformed(f"the credential's region is {region!r}, the key's {own!r}")
    return signing_key(b64encode(key.secret), date, own)


def signature(signing: bytes, link: Presigned, method: str, headers: dict[str, str]) -> str:
    text = string_to_sign(link, canonical_request(link, method, headers))
    return hmac.digest(signing, text.encode("utf-8"), hashlib.sha256).hex()


def header_values(link: Presigned, request: LinkRequest, *, strict: bool = True) -> dict[str, str]:
    """The signed headers' values as the canonical request takes them (SigV4's trimall);
    `host` is the host the client asked for, lower-cased as the SDKs sign it. Not `strict`
    (explaining, not verifying): a header not sent is empty, one sent twice is joined."""
    values = {}
    for name in link.signed_headers:
        if name == "host":
            sent: list[str] = [request.host.lower()] if request.host else []
        else:
            sent = list(request.header(name))
        if strict and not sent:
            if name == "host":
                raise _malformed("the request has no Host, which the link signs")
            raise Rejected(Reason.BAD_SIGNATURE, f"the link signs {name}, which was not sent")
        if strict and len(sent) > 1:
            raise _malformed(f"the request sends {name}, which the link signs, more than once")
        values[name] = ",".join(" ".join(value.split()) for value in sent)
    return values


def verify(
    keyring: Keyring, request: LinkRequest, *, now: float | None = None, skew: float = DEFAULT_SKEW
) -> SchemeLink:
    """Accept the presigned URL or raise `Rejected` with its reason: the format first, then
    the key and its scope, then the signature, and only then the time."""
    link = parse(request.raw_path, request.raw_query)
    if request.method not in METHODS:
        raise _malformed(f"a presigned URL is for {', '.join(METHODS)}")
    signing = link_signing_key(keyring, link.key_id, link.date, link.region)
    headers = header_values(link, request)
    if not hmac.compare_digest(signature(signing, link, request.method, headers), link.signature):
        for other in METHODS:
            if other != request.method and hmac.compare_digest(
                signature(signing, link, other, headers), link.signature
            ):
                detail = f"the link is signed for {other}"
                raise Rejected(Reason.WRONG_METHOD, detail, _as(link, other))
        raise Rejected(Reason.BAD_SIGNATURE)
    claims = link.claims(request.method)
    judge(claims, link.path, method=request.method, client_ip=request.client_ip, now=now, skew=skew)
    return SchemeLink(Verified(path=link.path, claims=claims, token_id=link.token_id), link.bucket)


def explain(request: LinkRequest) -> list[str]:
    """The canonical request and string to sign, as S3's SignatureDoesNotMatch shows them."""
    link = parse(request.raw_path, request.raw_query)
    headers = header_values(link, request, strict=False)
    canonical = canonical_request(link, request.method, headers)
    return [
        "the canonical request was (between the lines):",
        "---",
        *canonical.split("\n"),
        "---",
        "and the string to sign:",
        "---",
        *string_to_sign(link, canonical).split("\n"),
        "---",
    ]


class SigV4Query:
    """The `sigv4` entry of the scheme registry (`signer.schemes`)."""

    name = NAME
    detected_by = ("X-Amz-Algorithm", "X-Amz-Credential", SIGNATURE)

    def detects(self, raw_query: str) -> bool:
        return detects(raw_query)

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        return False  # a presigned URL travels in its query only

    def verify(
        self, keyring: Keyring, request: LinkRequest, *, now: float | None, skew: float
    ) -> SchemeLink:
        return verify(keyring, request, now=now, skew=skew)

    def explain(self, request: LinkRequest) -> list[str]:
        return explain(request)

    def revocation(self, raw_path: str, raw_query: str) -> tuple[str, int]:
        link = parse(raw_path, raw_query)
        return link.token_id, link.expires

    def words(self, reason: str) -> str | None:
        return WORDS.get(reason)


SIGV4: Final = SigV4Query()


def _as(link: Presigned, method: str) -> Claims | None:
    """The claims of an authentic link signed for `method`, if they are valid at all."""
    try:
        return link.claims(method)
    except Rejected:
        return None


def _decode(raw: str, what: str, plain: re.Pattern[str], safe: str) -> str:
    """Decode once, insisting on the SDKs' encoding: `quote(text, safe)` must give `raw` back."""
    if plain.fullmatch(raw):
        return raw
    text = _decoded(raw, safe)
    if text is None:
        raise _malformed(f"{what} is not UTF-8 in S3's canonical percent-encoding")
    return text


@functools.lru_cache(maxsize=4096)
def _decoded(raw: str, safe: str) -> str | None:
    """`raw` decoded if it is the canonical encoding of UTF-8 text, else None. Cached: the
    credential, the signed headers and the overrides repeat from link to link."""
    try:
        text = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return text if quote(text, safe=safe) == raw else None


def _split_path(path: str) -> tuple[str, str]:
    """Path-style `/<bucket>/<key>`: the bucket, and the object path `/<key>`."""
    bucket, slash, key = path[1:].partition("/") if path.startswith("/") else ("", "", "")
    if not bucket or not slash:
        raise _malformed("the path must be /<bucket>/<key> (path-style addressing)")
    return bucket, check_path("/" + key)


def _check_names(values: dict[str, str]) -> None:
    for name in AUTH_PARAMS:
        if name not in values:
            raise _malformed(f"{name} is missing")
    if "X-Amz-Security-Token" in values:
        raise _malformed("temporary credentials (X-Amz-Security-Token) are not accepted")
    for name in values:
        if name in AUTH_PARAMS or name in OVERRIDES:
            continue
        if name.casefold() in _AUTH_FOLDED:
            raise _malformed(f"{name} must be spelled as S3 spells it")
        raise _malformed(f"the parameter {name} is not one the gateway serves")


def credential(value: str) -> tuple[str, str, str]:
    parts = value.split("/")
    if len(parts) != 5:
        raise _malformed("X-Amz-Credential must be <key id>/<date>/<region>/s3/aws4_request")
    key_id, date, region, service, terminator = parts
    if not _KEY_ID.fullmatch(key_id):
        raise _malformed("the access key id must be 1-64 of A-Z a-z 0-9 . _ -")
    if service != SERVICE or terminator != TERMINATOR:
        raise _malformed(f"the credential scope must end in /{SERVICE}/{TERMINATOR}")
    if not region:
        raise _malformed("the credential scope has no region")
    return key_id, date, region


def amz_time(value: str) -> int:
    match = _AMZ_DATE.fullmatch(value)
    if match is None:
        raise _malformed("X-Amz-Date must be YYYYMMDDTHHMMSSZ")
    try:
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise _malformed("X-Amz-Date is not a valid time") from None
    return int(moment.timestamp())


def _signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise _malformed("X-Amz-SignedHeaders must be lower-case names separated by ';'")
    if list(names) != sorted(set(names)):
        raise _malformed("X-Amz-SignedHeaders must be sorted, each name once")
    if "host" not in names:
        raise _malformed("X-Amz-SignedHeaders must include host")
    for name in names:
        if name not in SIGNABLE_HEADERS:
            raise _malformed(f"the link signs {name}, a header the gateway does not serve")
    return names


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
