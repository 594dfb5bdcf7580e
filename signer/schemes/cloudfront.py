"""CloudFront signed URLs and signed cookies, verified the way CloudFront verifies them.

A backend keeps signing with its CloudFront key pair (botocore's `CloudFrontSigner`, or any
SDK); the gateway's keyring holds the public key under the key-pair id (`cloudfront` keys):

    URL      /<path>?Expires=<unix>&Signature=<sig>&Key-Pair-Id=<id>        canned policy
             /<path>?Policy=<policy>&Signature=<sig>&Key-Pair-Id=<id>       custom policy
             [&Hash-Algorithm=SHA256]                                       SHA-1 otherwise
    cookies  CloudFront-Expires or CloudFront-Policy, CloudFront-Signature,
             CloudFront-Key-Pair-Id [, CloudFront-Hash-Algorithm]

The signature is RSA (PKCS #1 v1.5) over the policy's bytes: for a canned policy the one JSON
text CloudFront builds from the requested URL and `Expires`, for a custom policy the text the
`Policy` carries (in CloudFront's base64: `+/=` written `-~_`). A custom policy's `Resource` is
the URL it covers, exactly or, ending in `/*`, every path under a prefix; its conditions are
`DateLessThan` (expiry), `DateGreaterThan` (start) and `IpAddress` (a CIDR). Anything the
gateway could not hold a request to exactly (another wildcard, an unknown field, a second
statement) is refused whole, never half honoured. Parsing is pure; `verify` needs the keyring
and the clock. No botocore on this path: `cryptography` verifies the RSA signature.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from signer.addresses import IPNetwork
from signer.algorithms import rsa_public
from signer.errors import Reason, Rejected
from signer.format import (
    IPV4_MAPPED,
    KEY_ID,
    MAX_TIME,
    Claims,
    check_path,
    check_prefix,
    decode,
    resembles_token_parameter,
)
from signer.keys import Keyring, LinkScheme, Status
from signer.schemes.base import MAX_LINK_LIFETIME, LinkRequest, SchemeLink, unstated_issue
from signer.verify import DEFAULT_SKEW, Verified, judge, token_id

NAME: Final = "cloudfront"
EXPIRES, POLICY, SIGNATURE, KEY_PAIR_ID, HASH_ALGORITHM = (
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
)
PARAMS: Final = (EXPIRES, POLICY, SIGNATURE, KEY_PAIR_ID, HASH_ALGORITHM)
#: The cookie of each parameter: the same values, the cookie form of one link.
COOKIES: Final = {f"CloudFront-{name}": name for name in PARAMS}
#: `Hash-Algorithm` values; SHA-1 when absent, as CloudFront.
HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "SHA1": hashes.SHA1,
    "SHA256": hashes.SHA256,
}
#: A canned policy names the URL with its scheme, which the gateway cannot know behind a
#: TLS-terminating proxy: both are tried (a second RSA check only for a link that fails).
URL_SCHEMES: Final = ("https", "http")
#: Our token's parameters CloudFront's links use as well: alone they make no token of ours.
SHARED_NAMES: Final = frozenset({EXPIRES, SIGNATURE})

#: CloudFront's words for the refusals a client of its signed links looks for, by reason.
ACCESS_DENIED: Final = "AccessDenied: Access denied"
WORDS: Final = {
    "bad_signature": ACCESS_DENIED,
    "wrong_method": ACCESS_DENIED,
    "expired": ACCESS_DENIED,
    "not_yet_valid": ACCESS_DENIED,
    "outside_prefix": ACCESS_DENIED,
    "ip_mismatch": ACCESS_DENIED,
    "revoked": ACCESS_DENIED,
    "lifetime_exceeded": ACCESS_DENIED,
    "unknown_key": "InvalidKey: Unknown Key",
    "retired_key": "InvalidKey: Unknown Key",
    "malformed_token": "MalformedPolicy: Malformed Policy",
}

_DETECT: Final = re.compile(r"(?:^|&)key-pair-id=", re.IGNORECASE)
_FOLDED: Final = {name.casefold(): name for name in PARAMS}
_TARGET: Final = re.compile(r"[\x21-\x7e]*")
_CF_BASE64: Final = re.compile(r"(?:[A-Za-z0-9~-]{4})*(?:[A-Za-z0-9~-]{2}__|[A-Za-z0-9~-]{3}_)?")
_TIME: Final = re.compile(r"0|[1-9][0-9]{0,11}")
_TO_STANDARD: Final = str.maketrans("-~_", "+/=")
_TO_CLOUDFRONT: Final = str.maketrans("+/=", "-~_")
#: A Resource: scheme (`http*` is both), host, path, and at most one trailing `*`.
_RESOURCE: Final = re.compile(
    r"(https|http|http\*)://([A-Za-z0-9.\-]+(?::[0-9]{1,5})?)(/[^*?]*)(\*?)"
)
_SOURCE_IP: Final = re.compile(r"[0-9a-fA-F.:]+(?:/[0-9]{1,3})?")


def b64encode(data: bytes) -> str:
    """CloudFront's base64: the standard alphabet and padding, with `+/=` written `-~_`."""
    return base64.b64encode(data).decode("ascii").translate(_TO_CLOUDFRONT)


def b64decode(text: str, what: str) -> bytes:
    """Strict CloudFront base64: padded, no other character, no stray low bits (the one
    spelling `b64encode` writes), so no second spelling of a signature or policy exists."""
    if not _CF_BASE64.fullmatch(text):
        raise _malformed(f"{what} is not in CloudFront's base64 (A-Z a-z 0-9 - ~, padded with _)")
    try:
        data = base64.b64decode(text.translate(_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not in CloudFront's base64") from None
    if b64encode(data) != text:
        raise _malformed(f"{what} is not in CloudFront's canonical base64")
    return data


@dataclass(frozen=True, slots=True)
class Resource:
    """What a policy's `Resource` covers: a host and either one path or every path under a
    prefix (both decoded). The scheme is not kept: the gateway cannot know the client's."""

    host: str  # lower case, with the port if the URL names one
    path: str | None = None
    prefix: str | None = None

    def covers(self, host: str | None) -> bool:
        return host is not None and host.lower() == self.host


@dataclass(frozen=True, slots=True)
class Policy:
    """A custom policy's one statement."""

    resource: Resource
    expires: int  # DateLessThan
    starts: int | None = None  # DateGreaterThan
    ip: IPNetwork | None = None  # IpAddress


@dataclass(frozen=True, slots=True)
class Signed:
    """A well-formed CloudFront link (URL or cookies), not yet checked against key or clock."""

    key_pair_id: str
    signature: bytes
    hash_name: str  # a key of HASHES
    cookies: bool  # came as the cookie trio, not in the query
    expires: int | None = None  # canned: Expires
    policy: Policy | None = None  # custom: the parsed Policy
    policy_bytes: bytes | None = None  # custom: what was signed, as received

    @property
    def token_id(self) -> str:
        return token_id(self.signature)

    @property
    def expiry(self) -> int:
        if self.policy is not None:
            return self.policy.expires
        assert self.expires is not None
        return self.expires


def detects(raw_query: str) -> bool:
    """A query naming `Key-Pair-Id` (any case) is a CloudFront link, well formed or not."""
    return _DETECT.search(raw_query) is not None


def carried(header: Callable[[str], Sequence[str]]) -> bool:
    """Whether the Cookie headers carry any of CloudFront's cookies."""
    return any(name in COOKIES for name, _ in _cookie_pairs(header("Cookie")))


def carries_edge_token(raw_query: str) -> bool:
    """Whether a CloudFront URL's query also carries a parameter of our own token's (KeyID,
    Issued, ...): `Expires` and `Signature` alone are CloudFront's."""
    for part in raw_query.split("&"):
        name = part.partition("=")[0]
        if name not in SHARED_NAMES and resembles_token_parameter(part):
            return True
    return False


def parse(raw_query: str, header: Callable[[str], Sequence[str]]) -> Signed:
    """The link in the query, else in the cookies; `Rejected(MALFORMED)` naming what is wrong."""
    if not _TARGET.fullmatch(raw_query):
        raise _malformed("the query has characters outside visible ASCII")
    if detects(raw_query):
        return _signed(_query_values(raw_query), cookies=False)
    if raw_query:
        raise _malformed("a request with CloudFront cookies has a query the gateway does not serve")
    return _signed(_cookie_values(header("Cookie")), cookies=True)


def parse_policy(text: bytes) -> Policy:
    """A custom policy: one statement, a Resource, DateLessThan, optionally DateGreaterThan and
    IpAddress, and nothing else; `Rejected(MALFORMED)` naming what is wrong."""
    try:
        document = json.loads(
            text.decode("utf-8"),
            object_pairs_hook=_unique,
            parse_float=_not_a_float,
            parse_constant=_not_a_float,
        )
    except UnicodeDecodeError:
        raise _malformed("the policy is not UTF-8") from None
    except (ValueError, RecursionError):
        raise _malformed("the policy is not JSON") from None
    statements = _only(document, {"Statement"}, "the policy")["Statement"]
    if not isinstance(statements, list) or len(statements) != 1:
        raise _malformed("the policy's Statement must be a list of one statement")
    statement = _only(statements[0], {"Resource", "Condition"}, "the statement")
    condition = _only(
        statement["Condition"],
        {"DateLessThan", "DateGreaterThan", "IpAddress"},
        "the Condition",
        needed={"DateLessThan"},
    )
    resource = statement["Resource"]
    if not isinstance(resource, str):
        raise _malformed("the Resource must be a string")
    starts = None
    if "DateGreaterThan" in condition:
        starts = _epoch(condition["DateGreaterThan"], "DateGreaterThan")
    ip = _source_ip(condition["IpAddress"]) if "IpAddress" in condition else None
    return Policy(
        parse_resource(resource), _epoch(condition["DateLessThan"], "DateLessThan"), starts, ip
    )


def parse_resource(text: str) -> Resource:
    """`http(s)://host/path` exactly, or `.../prefix/*`: every path under a prefix that ends on
    a segment boundary. `http*://` stands for both schemes. Other wildcards are refused."""
    match = _RESOURCE.fullmatch(text)
    if match is None:
        if "*" in text or "?" in text:
            raise _malformed(
                "the Resource has a wildcard other than one trailing '*' (or http*://), or a "
                "query: the gateway can hold a request only to one URL or a path prefix"
            )
        raise _malformed("the Resource must be http(s)://host/path")
    _, host, raw_path, star = match.groups()
    path = decode(raw_path, "the Resource path")
    if star:
        return Resource(host.lower(), prefix=check_prefix(path))
    return Resource(host.lower(), path=check_path(path, "the Resource path"))


def canned_policy(url: str, expires: int) -> bytes:
    """The policy a canned link signs, byte for byte as CloudFront (and botocore) build it."""
    resource = json.dumps(url)
    text = (
        f'{{"Statement":[{{"Resource":{resource},'
        f'"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}'
    )
    return text.encode("ascii")


def verify(
    keyring: Keyring, request: LinkRequest, *, now: float | None = None, skew: float = DEFAULT_SKEW
) -> SchemeLink:
    """Accept the link or raise `Rejected` with its reason: the format first, then the key,
    then the signature, then the URL the policy names, and only then its conditions."""
    link = parse(request.raw_query, request.header)
    path = _request_path(request.raw_path)
    key = keyring.get(link.key_pair_id)
    if key is None or key.scheme is not LinkScheme.CLOUDFRONT:
        if not any(k.scheme is LinkScheme.CLOUDFRONT for k in keyring):
            raise Rejected(
                Reason.UNKNOWN_KEY, "no cloudfront key in the keyring: CloudFront links are off"
            )
        raise Rejected(Reason.UNKNOWN_KEY, f"no cloudfront key {link.key_pair_id!r} in the keyring")
    if key.status is Status.RETIRED or key.public is None:
        raise Rejected(Reason.RETIRED_KEY, f"key {link.key_pair_id!r} is retired")
    public = rsa_public(key.public)
    if len(link.signature) != public.key_size // 8:
        raise _malformed(f"the Signature is not {public.key_size // 8} bytes (the key's size)")
    check = _checker(public, link.signature, HASHES[link.hash_name]())
    if link.policy is None:
        if request.host is None:
            raise _malformed("the request has no Host, which a canned policy's URL names")
        assert link.expires is not None
        urls = [f"{scheme}://{request.host}{request.raw_path}" for scheme in URL_SCHEMES]
        if not any(check(canned_policy(url, link.expires)) for url in urls):
            raise Rejected(Reason.BAD_SIGNATURE)
        policy = Policy(Resource(request.host.lower(), path=path), link.expires)  # as signed
    else:
        assert link.policy_bytes is not None
        if not check(link.policy_bytes):
            raise Rejected(Reason.BAD_SIGNATURE)
        policy = link.policy
        resource = policy.resource
        if not resource.covers(request.host):
            raise Rejected(
                Reason.BAD_SIGNATURE,
                f"the policy's Resource is for the host {resource.host!r}, not {request.host!r}",
            )
        if resource.path is not None and resource.path != path:
            raise Rejected(Reason.BAD_SIGNATURE, "the policy's Resource names another path")
    claims, issued_from = _claims(link.key_pair_id, policy, request.lifetime, now, skew)
    judge(claims, path, method=request.method, client_ip=request.client_ip, now=now, skew=skew)
    verified = Verified(path=path, claims=claims, token_id=link.token_id)
    return SchemeLink(verified, issued_from=issued_from)


def explain(request: LinkRequest) -> list[str]:
    """The policy that was signed (rebuilt from the URL for a canned one), for `signer verify`;
    never the key, never the signature."""
    link = parse(request.raw_query, request.header)
    where = "cookies" if link.cookies else "URL"
    if link.policy_bytes is not None:
        head = f"the custom policy the {where} carries (between the lines):"
        text = link.policy_bytes.decode("utf-8", "replace")
    else:
        assert link.expires is not None
        host = request.host or "<no Host>"
        url = f"{URL_SCHEMES[0]}://{host}{request.raw_path}"
        head = "the canned policy, rebuilt from the requested URL (between the lines):"
        text = canned_policy(url, link.expires).decode("ascii")
    return [
        head,
        "---",
        text,
        "---",
        f"signed with RSA and {link.hash_name} by key pair {link.key_pair_id!r}"
        + ("" if link.policy_bytes is not None else "; http:// was tried as well"),
        "check that the backend signed this policy with the private key of that key pair,",
        "and that a canned link is used on the very URL (host and path) it was signed for",
    ]


class CloudFront:
    """The `cloudfront` entry of the scheme registry (`signer.schemes`)."""

    name = NAME
    detected_by = (KEY_PAIR_ID,)

    def detects(self, raw_query: str) -> bool:
        return detects(raw_query)

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        return carried(header)

    def verify(
        self, keyring: Keyring, request: LinkRequest, *, now: float | None, skew: float
    ) -> SchemeLink:
        return verify(keyring, request, now=now, skew=skew)

    def explain(self, request: LinkRequest) -> list[str]:
        return explain(request)

    def revocation(self, raw_path: str, raw_query: str) -> tuple[str, int]:
        link = parse(raw_query, _no_cookies)
        return link.token_id, link.expiry

    def words(self, reason: str) -> str | None:
        return WORDS.get(reason)


CLOUDFRONT: Final = CloudFront()


def _no_cookies(name: str) -> Sequence[str]:
    return ()


def _claims(
    key_id: str, policy: Policy, lifetime: float, now: float | None, skew: float
) -> tuple[Claims, str | None]:
    """The claims our token would have, GET (and so HEAD) only, and what the issue time was
    counted from: the start is the issue time; without one the link states none."""

    def claims(issued: int) -> Claims:
        return Claims(
            expires=policy.expires,
            key_id=key_id,
            issued=issued,
            starts=policy.starts,
            ip=policy.ip,
            prefix=policy.resource.prefix,
            method="GET",
        ).validate()

    if policy.starts is not None:
        return claims(policy.starts), None
    current = time.time() if now is None else now
    found = unstated_issue(policy.expires, lifetime, claims, now=current, skew=skew)
    return found, MAX_LINK_LIFETIME


def _checker(
    public: RSAPublicKey, signature: bytes, algorithm: hashes.HashAlgorithm
) -> Callable[[bytes], bool]:
    """Whether `signature` is the key's over some bytes: one policy, or each canned URL."""

    def check(data: bytes) -> bool:
        try:
            public.verify(signature, data, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            return False
        return True

    return check


def _request_path(raw_path: str) -> str:
    if not _TARGET.fullmatch(raw_path):
        raise _malformed("the path has characters outside visible ASCII")
    return check_path(decode(raw_path, "path"))


def _query_values(raw_query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, equals, value = part.partition("=")
        if not equals:
            raise _malformed("the query has an empty parameter or one without '='")
        if name not in COOKIES.values():
            if name.casefold() in _FOLDED:
                raise _malformed(f"{_FOLDED[name.casefold()]} must be spelled as CloudFront does")
            raise _malformed("the query has a parameter besides CloudFront's")
        if name in values:
            raise _malformed(f"{name} is repeated")
        values[name] = value
    return values


def _cookie_values(headers: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for cookie, value in _cookie_pairs(headers):
        name = COOKIES.get(cookie)
        if name is None:
            continue
        if name in values:
            raise _malformed(f"{cookie} is sent twice (two cookie paths?): which one is unknown")
        values[name] = value
    return values


def _cookie_pairs(headers: Sequence[str]) -> Iterator[tuple[str, str]]:
    for header in headers:
        for pair in header.split(";"):
            name, equals, value = pair.strip().partition("=")
            if equals:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                yield name, value


def _signed(values: dict[str, str], *, cookies: bool) -> Signed:
    prefix = "CloudFront-" if cookies else ""
    for name in (KEY_PAIR_ID, SIGNATURE):
        if not values.get(name):
            raise _malformed(f"{prefix}{name} is missing")
    key_pair_id = values[KEY_PAIR_ID]
    if not KEY_ID.fullmatch(key_pair_id):
        raise _malformed(f"{prefix}{KEY_PAIR_ID} must be 1-64 of A-Z a-z 0-9 . _ -")
    hash_name = values.get(HASH_ALGORITHM, "SHA1")
    if hash_name not in HASHES:
        raise _malformed(f"{prefix}{HASH_ALGORITHM} must be SHA1 or SHA256")
    signature = b64decode(values[SIGNATURE], f"{prefix}{SIGNATURE}")
    if (EXPIRES in values) == (POLICY in values):
        raise _malformed(f"give {prefix}{EXPIRES} (canned) or {prefix}{POLICY} (custom), one")
    if EXPIRES in values:
        raw = values[EXPIRES]
        if not _TIME.fullmatch(raw):
            raise _malformed(f"{prefix}{EXPIRES} must be unix seconds without leading zeros")
        return Signed(key_pair_id, signature, hash_name, cookies, expires=int(raw))
    text = b64decode(values[POLICY], f"{prefix}{POLICY}")
    return Signed(
        key_pair_id, signature, hash_name, cookies, policy=parse_policy(text), policy_bytes=text
    )


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _malformed("the policy names a field twice")
    return dict(pairs)


def _not_a_float(text: str) -> NoReturn:
    raise _malformed("the policy has a number that is not an integer")


def _only(
    value: object, allowed: set[str], what: str, *, needed: set[str] | None = None
) -> dict[str, Any]:
    """`value` as a JSON object whose fields are among `allowed`, with all of them (or at
    least those `needed`)."""
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise _malformed(f"{what} has a field the gateway does not know: {sorted(unknown)[0]!r}")
    missing = (allowed if needed is None else needed) - set(value)
    if missing:
        raise _malformed(f"{what} has no {sorted(missing)[0]}")
    return value


def _epoch(value: object, what: str) -> int:
    moment = _only(value, {"AWS:EpochTime"}, what)["AWS:EpochTime"]
    if type(moment) is not int or not 0 <= moment <= MAX_TIME:
        raise _malformed(f"{what} must be unix seconds (an integer)")
    return moment


def _source_ip(value: object) -> IPNetwork:
    text = _only(value, {"AWS:SourceIp"}, "IpAddress")["AWS:SourceIp"]
    if not isinstance(text, str) or not _SOURCE_IP.fullmatch(text):
        raise _malformed("AWS:SourceIp must be an IPv4 or IPv6 address or CIDR")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise _malformed("AWS:SourceIp must be an address or a network without host bits") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        raise _malformed("AWS:SourceIp is an IPv4-mapped IPv6 network; write it as IPv4")
    return network


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
