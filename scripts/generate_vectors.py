"""Regenerate docs/vectors/*.json from the format implementation.

Run only when the format changes on purpose (and bump docs/token-format.md's version): the tests
pin these files, so a refactor that changes a single signed byte fails instead of silently
changing the wire format. The keys here are PUBLIC test-vector keys; never use them elsewhere.

Every parameter's decoded and wire forms come from the parameter table (`signer.params`), and
the generator refuses to write a set of valid vectors that leaves a parameter unused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.storage.keys import InvalidKey, object_key
from signer import algorithms
from signer.algorithms import Algorithm
from signer.errors import KeyringError, Rejected, SigningError
from signer.format import (
    Claims,
    b64decode,
    b64encode,
    canonical,
    encode_payload,
    path_form,
    string_to_sign,
)
from signer.keys import Key, Keyring, Status
from signer.params import PARAMS, TEXT_CODEC, sign_options
from signer.sign import DEFAULT_MAX_LIFETIME, content_disposition, sign_path, sign_target
from signer.sign import signing_times as rounded_times
from signer.verify import token_id, verify

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors"
NOW = 1767225600  # 2026-01-01T00:00:00Z, the verification time of every vector unless stated
ISSUED = NOW - 60
EXPIRES = NOW + 3600
DAY = 86400
WEEK = 7 * DAY

HMAC_SECRET = hashlib.sha256(b"PUBLIC TEST VECTOR hmac-sha256 key").digest()
ED_SEED = hashlib.sha256(b"PUBLIC TEST VECTOR ed25519 key").digest()
RETIRED_SECRET = hashlib.sha256(b"PUBLIC TEST VECTOR retired key").digest()

KEYS = [
    Key("tv-hmac", Algorithm.HMAC_SHA256, Status.ACTIVE, ISSUED, HMAC_SECRET),
    Key(
        "tv-ed25519",
        Algorithm.ED25519,
        Status.VERIFY,
        ISSUED,
        ED_SEED,
        algorithms.ed25519_public(ED_SEED),
    ),
    Key("tv-retired", Algorithm.HMAC_SHA256, Status.RETIRED, ISSUED, RETIRED_SECRET),
]
KEYRING = Keyring(KEYS)
BY_ID = {key.id: key for key in KEYS}


def claims(key_id: str = "tv-hmac", **extra: Any) -> Claims:
    values: dict[str, Any] = {"expires": EXPIRES, "key_id": key_id, "issued": ISSUED}
    values.update(extra)
    return Claims(**values)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@dataclass
class Case:
    """A valid vector: what to sign, and the request under which the link MUST be accepted."""

    name: str
    path: str  # decoded
    query: str  # application parameters, as on the wire
    claims: Claims
    context: dict[str, Any] = field(default_factory=dict)  # "path": a request path to use
    gateway_refuses: str | None = None  # a valid token whose path is no object key


SUB_256 = "\U0001d11e" * 256  # 256 code points, 512 UTF-16 units, 1024 UTF-8 bytes
KEY_1024 = "/" + "\u00fc" * 512  # an object key of exactly 1024 UTF-8 bytes

VALID: list[Case] = [
    Case("hmac-basic", "/videos/intro.mp4", "", claims()),
    Case("ed25519-basic", "/videos/intro.mp4", "", claims("tv-ed25519")),
    Case("unicode-and-space", "/docs/Über uns/Prüfung 2026.pdf", "", claims()),
    Case("reserved-characters", "/a/b+c&d=e;f,g!h'i(j)k*l$m#n?o[p]q%2Fr", "", claims()),
    Case("application-parameters", "/img/cat.jpg", "w=640&fmt=webp", claims()),
    Case(
        "prefix-hls",
        "/hls/ep1/master.m3u8",
        "",
        claims("tv-ed25519", prefix="/hls/ep1/"),
        {"path": "/hls/ep1/720p/seg001.ts"},
    ),
    Case(
        "ip-v4-address",
        "/videos/intro.mp4",
        "",
        claims(ip=net("203.0.113.7")),
        {"client_ip": "203.0.113.7"},
    ),
    Case(
        "ip-v6-network",
        "/videos/intro.mp4",
        "",
        claims(ip=net("2001:db8:aa::/48")),
        {"client_ip": "2001:db8:aa::17"},
    ),
    Case(
        "starts-and-sub",
        "/videos/intro.mp4",
        "",
        claims(starts=NOW - 10, sub="user 42@example.com"),
    ),
    Case("head-allowed-by-get", "/videos/intro.mp4", "", claims(method="GET"), {"method": "HEAD"}),
    Case(
        "put-upload",
        "/uploads/u42/avatar.png",
        "",
        claims(
            method="PUT",
            content_type="image/",
            min_bytes=1,
            max_bytes=10_485_760,
            no_overwrite=True,
            one_time=True,
        ),
        {"method": "PUT"},
    ),
    Case(
        "everything",
        "/hls/ep2/master.m3u8",
        "lang=en",
        claims(
            starts=NOW - 100,
            ip=net("198.51.100.0/24"),
            prefix="/hls/ep2/",
            method="GET",
            sub="u-7",
        ),
        {"client_ip": "198.51.100.9"},
    ),
    Case(
        "response-overrides",
        "/billing/u42/7f3a.pdf",
        "",
        claims(
            response_content_type="application/pdf",
            response_content_disposition='attachment; filename="invoice-2026-11.pdf"',
        ),
    ),
    Case(
        "issued-within-skew",
        "/videos/intro.mp4",
        "",
        claims(issued=NOW + 30),  # exactly now + skew: a signer's clock may run a little ahead
    ),
    Case(
        "response-disposition-unicode",
        "/billing/u42/7f3b.pdf",
        "",
        claims(response_content_disposition=content_disposition("Rechnung März 2026.pdf")),
        {"method": "HEAD"},
    ),
    # --- 1.2 ---
    Case("prefix-root", "/videos/intro.mp4", "", claims(prefix="/"), {"path": "/any/thing.ts"}),
    Case(
        "ip-v6-rfc5952-first-longest-run",
        "/videos/intro.mp4",
        "",
        claims(ip=net("2001:db8:0:0:1:0:0:1")),  # written 2001:db8::1:0:0:1
        {"client_ip": "2001:db8::1:0:0:1"},
    ),
    Case(
        "ip-v6-rfc5952-single-zero-field",
        "/videos/intro.mp4",
        "",
        claims(ip=net("2001:db8:0:1:1:1:1:1")),  # one zero field is not compressed
        {"client_ip": "2001:db8:0:1:1:1:1:1"},
    ),
    Case("sub-256-code-points", "/videos/intro.mp4", "", claims(sub=SUB_256)),
    Case(
        "application-parameters-rfc3986",
        "/img/cat.jpg",
        "a=!$'()*+,;:@/?&b=%7e%7E&c",
        claims(),
    ),
    Case(
        "application-parameters-non-ascii-names",
        "/img/cat.jpg",
        # sharp s, long s, Kelvin sign, fi ligature: Unicode case folding would make these
        # Issued, Sub, KeyID and Prefix; ASCII folding (the rule) does not: ordinary parameters.
        "I%C3%9Fued=1&%C5%BFub=2&%E2%84%AAeyID=3&Pre%EF%AC%81x=4",
        claims(),
    ),
    Case(
        "put-upload-exact-type-largest-body",
        "/uploads/u42/data.json",
        "",
        claims(
            method="PUT",
            content_type="application/vnd.api+json",
            min_bytes=0,
            max_bytes=2**63 - 1,
        ),
        {"method": "PUT"},
    ),
    Case(
        "response-type-with-parameter",
        "/docs/readme.txt",
        "",
        claims(method="HEAD", response_content_type='text/plain; charset="utf-8"'),
        {"method": "HEAD"},
    ),
    Case("lifetime-at-the-bound", "/videos/intro.mp4", "", claims(expires=ISSUED + WEEK)),
    Case("object-key-1024-bytes", KEY_1024, "", claims()),
    Case("object-key-1025-bytes", KEY_1024 + "x", "", claims(), gateway_refuses="invalid_path"),
    Case("object-key-backslash", "/a\\b.txt", "", claims(), gateway_refuses="invalid_path"),
    Case("object-key-c0-control", "/a\x01b.txt", "", claims(), gateway_refuses="invalid_path"),
    Case("object-key-delete", "/a\x7fb.txt", "", claims(), gateway_refuses="invalid_path"),
    Case("object-key-c1-control", "/a\x85b.txt", "", claims()),  # only C0 and DEL are refused
    # --- 1.3: usage limits (§12) ---
    Case(
        "usage-limits",
        "/trial/film.mp4",
        "",
        claims(max_streams=1, max_uses=3, max_served=2**31, rate=1_000_000),
    ),
    Case(
        "usage-limits-with-prefix",
        "/hls/ep3/master.m3u8",
        "",
        claims(prefix="/hls/ep3/", sub="u-9", max_streams=2, rate=1_000_000),
        {"path": "/hls/ep3/720p/seg002.ts", "method": "HEAD"},
    ),
    # --- 1.4: MaxStreams of a subject (§12) ---
    Case(
        "subject-streams",
        "/series/ep4.mp4",
        "",
        claims(sub="household-7", max_streams=2, subject_streams=True),
    ),
]


def signed(name: str) -> str:
    for case in VALID:
        if case.name == name:
            return sign_target(
                canonical(case.path), case.query, case.claims, BY_ID[case.claims.key_id]
            )
    raise KeyError(name)


def raw_signed(target_without_signature: str, key_id: str = "tv-hmac") -> str:
    """Sign any bytes by the format's rule, even ones the signer would refuse to produce."""
    path, _, query = target_without_signature.partition("?")
    data = string_to_sign(path, query, prefixed="&Prefix=" in query)
    key = BY_ID[key_id]
    assert key.secret is not None
    assert isinstance(key.alg, algorithms.Algorithm)  # a token key, never a link scheme's
    signature = b64encode(algorithms.sign(key.alg, key.secret, data))
    return f"{target_without_signature}&Signature={signature}"


BASIC = signed("hmac-basic")
BLOCK = f"Expires={EXPIRES}&KeyID=tv-hmac&Issued={ISSUED}"
PUT_BLOCK = f"{BLOCK}&Method=PUT"
HLS = signed("prefix-hls")
HLS_QUERY = HLS.partition("?")[2]
HLS_PAYLOAD = encode_payload(HLS_QUERY)
TAB_TYPE = "text/plain\t;\tcharset=utf-8"
ESCAPED_QUOTE = 'attachment; filename="a\\b"'

INVALID: list[tuple[str, str, dict[str, Any]]] = [
    # (name, request target, context overrides); the expected reason is computed and recorded
    ("no-token", "/videos/intro.mp4", {}),
    ("no-token-with-query", "/videos/intro.mp4?w=640", {}),
    ("signature-missing", f"/videos/intro.mp4?{BLOCK}", {}),
    ("lower-case-hex-escape", raw_signed(f"/docs/a%c3%bc.pdf?{BLOCK}"), {}),
    ("needless-escape", raw_signed(f"/videos/%69ntro.mp4?{BLOCK}"), {}),
    ("encoded-slash", raw_signed(f"/videos%2Fintro.mp4?{BLOCK}"), {}),
    ("dot-dot-segment", raw_signed(f"/hls/ep1/../secret.mp4?{BLOCK}"), {}),
    ("empty-segment", raw_signed(f"/videos//intro.mp4?{BLOCK}"), {}),
    ("duplicate-parameter", raw_signed(f"/v.mp4?{BLOCK}&Issued={ISSUED}"), {}),
    ("out-of-order", raw_signed(f"/v.mp4?KeyID=tv-hmac&Expires={EXPIRES}&Issued={ISSUED}"), {}),
    ("unknown-parameter-in-block", raw_signed(f"/v.mp4?{BLOCK}&Color=red"), {}),
    ("parameter-after-signature", BASIC + "&w=1", {}),
    ("token-name-in-other-case", raw_signed(f"/v.mp4?expires=1&{BLOCK}"), {}),
    ("leading-zero", raw_signed(f"/v.mp4?Expires=0{EXPIRES}&KeyID=tv-hmac&Issued={ISSUED}"), {}),
    (
        "issued-after-expires",
        raw_signed(f"/v.mp4?Expires={ISSUED}&KeyID=tv-hmac&Issued={EXPIRES}"),
        {},
    ),
    ("unknown-method", raw_signed(f"/v.mp4?{BLOCK}&Method=DELETE"), {}),
    ("ip-with-host-bits", raw_signed(f"/v.mp4?{BLOCK}&IP=10.1.2.3/8"), {}),
    ("ip-ipv4-mapped", raw_signed(f"/v.mp4?{BLOCK}&IP=::ffff:cb00:7100/120"), {}),
    ("prefix-without-slash", raw_signed(f"/hls/ep1/a.ts?{BLOCK}&Prefix=/hls/ep1"), {}),
    ("upload-constraint-without-put", raw_signed(f"/v.mp4?{BLOCK}&MaxBytes=10"), {}),
    ("signature-with-padding", BASIC + "=", {}),
    ("signature-stray-bits", BASIC[:-1] + chr(ord(BASIC[-1]) ^ 1), {}),
    ("signature-wrong-length", BASIC.rpartition("=")[0] + "=AAAA", {}),
    ("unknown-key", raw_signed(f"/v.mp4?Expires={EXPIRES}&KeyID=nope&Issued={ISSUED}"), {}),
    (
        "retired-key",
        raw_signed(f"/v.mp4?Expires={EXPIRES}&KeyID=tv-retired&Issued={ISSUED}", "tv-retired"),
        {},
    ),
    ("tampered-path", BASIC.replace("intro", "intrO"), {}),
    ("tampered-expires", BASIC.replace(f"Expires={EXPIRES}", f"Expires={EXPIRES + 1}"), {}),
    (
        "algorithm-confusion",
        raw_signed(f"/v.mp4?Expires={EXPIRES}&KeyID=tv-ed25519&Issued={ISSUED}", "tv-hmac"),
        {},
    ),
    ("expired", BASIC, {"now": EXPIRES + 30}),
    (
        "issued-in-future",
        sign_target(
            "/videos/intro.mp4",
            "",
            claims(expires=NOW + 30 * DAY, issued=NOW + 30 * DAY - 3600),
            BY_ID["tv-hmac"],
        ),
        {},
    ),
    (
        "issued-just-past-skew",
        sign_target("/v.mp4", "", claims(issued=NOW + 31), BY_ID["tv-hmac"]),
        {},
    ),
    ("not-yet-valid", signed("starts-and-sub"), {"now": NOW - 10 - 31}),
    ("ip-mismatch", signed("ip-v4-address"), {"client_ip": "203.0.113.8"}),
    ("ip-version-mismatch", signed("ip-v6-network"), {"client_ip": "203.0.113.7"}),
    ("wrong-method", BASIC, {"method": "PUT"}),
    ("put-token-used-for-get", signed("put-upload"), {"method": "GET"}),
    ("outside-prefix", signed("prefix-hls").replace("/hls/ep1/master", "/hls/ep2/master"), {}),
    (
        "prefix-is-not-a-string-prefix",
        signed("prefix-hls").replace("/hls/ep1/master", "/hls/ep10/master"),
        {},
    ),
    ("response-type-without-subtype", raw_signed(f"/v.pdf?{BLOCK}&ResponseContentType=text"), {}),
    (
        "response-header-injection",
        raw_signed(f"/v.pdf?{BLOCK}&ResponseContentType=text%2Fplain%0D%0ASet-Cookie%3A%20a%3Db"),
        {},
    ),
    (
        "response-override-with-put",
        raw_signed(f"/v.pdf?{BLOCK}&Method=PUT&ResponseContentDisposition=attachment"),
        {"method": "PUT"},
    ),
    ("path-form-with-query", path_form(HLS) + "?w=1", {}),
    ("path-form-without-object-path", f"/token={HLS_PAYLOAD}", {}),
    ("path-form-empty-payload", "/token=/hls/ep1/master.m3u8", {}),
    ("path-form-padded-payload", f"/token={HLS_PAYLOAD}==/hls/ep1/master.m3u8", {}),
    ("path-form-no-token-block", f"/token={encode_payload('w=640')}/hls/ep1/master.m3u8", {}),
    (
        "path-form-tampered",
        path_form(HLS.replace(f"Expires={EXPIRES}", f"Expires={EXPIRES + 1}")),
        {},
    ),
    ("path-form-expired", path_form(HLS), {"now": EXPIRES + 30}),
    (
        "path-form-outside-prefix",
        path_form(HLS.replace("/hls/ep1/master", "/hls/ep10/master")),
        {},
    ),
    (
        "path-form-dot-dot-segment",
        path_form(HLS.replace("/hls/ep1/master", "/hls/ep1/../ep2/master")),
        {},
    ),
    # --- 1.2: the lifetime bound (§6 step 10a) ---
    (
        "lifetime-exceeded",
        sign_target("/v.mp4", "", claims(expires=ISSUED + WEEK + 1), BY_ID["tv-hmac"]),
        {},
    ),
    ("lifetime-exceeds-a-configured-bound", BASIC, {"max_lifetime": 3600}),
    # --- 1.2: step order (no token first, whatever else is wrong) ---
    ("no-token-empty-segment", "/videos//intro.mp4", {}),
    ("no-token-broken-escapes", "/v%ZZ.mp4?a=%&b=%G1", {}),
    ("no-token-but-a-token-name", "/videos/intro.mp4?expires=1", {}),
    ("no-token-but-a-bare-token-name", "/videos/intro.mp4?w=1&Signature", {}),
    # --- 1.2: names resembling a token parameter (ASCII case folding after %XX decoding) ---
    ("token-name-upper-case", raw_signed(f"/v.mp4?ISSUED=1&{BLOCK}"), {}),
    ("token-name-percent-encoded", raw_signed(f"/v.mp4?%49ssued=1&{BLOCK}"), {}),
    ("token-name-lower-case-escape", raw_signed(f"/v.mp4?%4beyID=1&{BLOCK}"), {}),
    ("token-name-without-value", raw_signed(f"/v.mp4?Sub&{BLOCK}"), {}),
    # --- 1.2: signature length at step 2 ---
    ("signature-empty", f"/v.mp4?{BLOCK}&Signature=", {}),
    (
        "unknown-key-short-signature",
        f"/v.mp4?Expires={EXPIRES}&KeyID=nope&Issued={ISSUED}&Signature=AAAA",
        {},
    ),
    # --- 1.2: application parameters are RFC 3986 query characters ---
    ("app-parameter-number-sign", raw_signed(f"/v.mp4?a=#1&{BLOCK}"), {}),
    ("app-parameter-lone-percent", raw_signed(f"/v.mp4?a=%&{BLOCK}"), {}),
    ("app-parameter-bad-escape", raw_signed(f"/v.mp4?a=%G1&{BLOCK}"), {}),
    ("app-parameter-brace", raw_signed(f"/v.mp4?a={{}}&{BLOCK}"), {}),
    ("app-parameter-double-quote", raw_signed(f'/v.mp4?a="&{BLOCK}'), {}),
    ("app-parameter-less-than", raw_signed(f"/v.mp4?a=<b&{BLOCK}"), {}),
    ("app-parameter-empty", raw_signed(f"/v.mp4?a=1&&{BLOCK}"), {}),
    # --- 1.2: Sub ---
    ("sub-c1-control", raw_signed(f"/v.mp4?{BLOCK}&Sub=a%C2%85b"), {}),
    ("sub-c0-control", raw_signed(f"/v.mp4?{BLOCK}&Sub=a%09b"), {}),
    ("sub-257-code-points", raw_signed(f"/v.mp4?{BLOCK}&Sub={canonical(SUB_256 + 'x')}"), {}),
    ("sub-empty", raw_signed(f"/v.mp4?{BLOCK}&Sub="), {}),
    # --- 1.2: Prefix ---
    ("prefix-without-leading-slash", raw_signed(f"/videos/a.ts?{BLOCK}&Prefix=videos/"), {}),
    ("prefix-with-empty-segment", raw_signed(f"/a/b/c.ts?{BLOCK}&Prefix=/a//"), {}),
    ("prefix-with-dot-segment", raw_signed(f"/a/b/c.ts?{BLOCK}&Prefix=/a/./"), {}),
    # --- 1.2: upload ContentType (RFC 6838 restricted names, lower case, no parameters) ---
    (
        "content-type-with-parameter",
        raw_signed(f"/u.png?{PUT_BLOCK}&ContentType={canonical('image/png; charset=x')}"),
        {"method": "PUT"},
    ),
    (
        "content-type-upper-case",
        raw_signed(f"/u.png?{PUT_BLOCK}&ContentType=Image/png"),
        {"method": "PUT"},
    ),
    (
        "content-type-not-a-restricted-name",
        raw_signed(f"/u.png?{PUT_BLOCK}&ContentType={canonical('image/p*ng')}"),
        {"method": "PUT"},
    ),
    (
        "content-type-starting-with-a-symbol",
        raw_signed(f"/u.png?{PUT_BLOCK}&ContentType=image/.png"),
        {"method": "PUT"},
    ),
    (
        "max-bytes-out-of-range",
        raw_signed(f"/u.png?{PUT_BLOCK}&MaxBytes={2**63}"),
        {"method": "PUT"},
    ),
    ("flag-zero", raw_signed(f"/u.png?{PUT_BLOCK}&NoOverwrite=0"), {"method": "PUT"}),
    # --- 1.2: response overrides are printable ASCII (spaces, never a tab) ---
    (
        "response-type-with-tab",
        raw_signed(f"/v.txt?{BLOCK}&ResponseContentType={canonical(TAB_TYPE)}"),
        {},
    ),
    (
        "response-disposition-backslash-in-quotes",
        raw_signed(f"/v.txt?{BLOCK}&ResponseContentDisposition={canonical(ESCAPED_QUOTE)}"),
        {},
    ),
    # --- 1.2: IP spelling (RFC 5952, no zone id) ---
    ("ip-zone-id", raw_signed(f"/v.mp4?{BLOCK}&IP=fe80::1%eth0"), {}),
    ("ip-zone-id-encoded", raw_signed(f"/v.mp4?{BLOCK}&IP=fe80::1%25eth0"), {}),
    ("ip-not-rfc5952", raw_signed(f"/v.mp4?{BLOCK}&IP=2001:db8:0:0:1:0:0:1"), {}),
    ("ip-single-zero-field-compressed", raw_signed(f"/v.mp4?{BLOCK}&IP=2001:db8::1:1:1:1:1"), {}),
    ("ip-upper-case", raw_signed(f"/v.mp4?{BLOCK}&IP=2001:DB8::1"), {}),
    ("ip-v4-leading-zero", raw_signed(f"/v.mp4?{BLOCK}&IP=203.0.113.07"), {}),
    ("ip-v4-with-slash-32", raw_signed(f"/v.mp4?{BLOCK}&IP=203.0.113.7/32"), {}),
    # --- 1.3: usage limits (§12) ---
    ("limit-zero", raw_signed(f"/v.mp4?{BLOCK}&MaxStreams=0"), {}),
    ("limit-with-put", raw_signed(f"/u.png?{PUT_BLOCK}&MaxUses=3"), {"method": "PUT"}),
    ("limit-out-of-order", raw_signed(f"/v.mp4?{BLOCK}&Rate=1000&MaxServed=10"), {}),
    ("rate-leading-zero", raw_signed(f"/v.mp4?{BLOCK}&Rate=01000"), {}),
    # --- 1.4: SubjectStreams ---
    (
        "subject-streams-without-sub",
        raw_signed(f"/v.mp4?{BLOCK}&MaxStreams=1&SubjectStreams=1"),
        {},
    ),
    (
        "subject-streams-without-max-streams",
        raw_signed(f"/v.mp4?{BLOCK}&Sub=u&SubjectStreams=1"),
        {},
    ),
    (
        "subject-streams-zero",
        raw_signed(f"/v.mp4?{BLOCK}&Sub=u&MaxStreams=1&SubjectStreams=0"),
        {},
    ),
]


#: The reason each invalid vector must give; the generator refuses to write anything else.
EXPECTED = {
    "no-token": "missing_token",
    "no-token-with-query": "missing_token",
    "signature-missing": "malformed_token",
    "lower-case-hex-escape": "malformed_token",
    "needless-escape": "malformed_token",
    "encoded-slash": "malformed_token",
    "dot-dot-segment": "malformed_token",
    "empty-segment": "malformed_token",
    "duplicate-parameter": "malformed_token",
    "out-of-order": "malformed_token",
    "unknown-parameter-in-block": "malformed_token",
    "parameter-after-signature": "malformed_token",
    "token-name-in-other-case": "malformed_token",
    "leading-zero": "malformed_token",
    "issued-after-expires": "malformed_token",
    "unknown-method": "malformed_token",
    "ip-with-host-bits": "malformed_token",
    "ip-ipv4-mapped": "malformed_token",
    "prefix-without-slash": "malformed_token",
    "upload-constraint-without-put": "malformed_token",
    "signature-with-padding": "malformed_token",
    "signature-stray-bits": "malformed_token",
    "signature-wrong-length": "malformed_token",
    "unknown-key": "unknown_key",
    "retired-key": "retired_key",
    "tampered-path": "bad_signature",
    "tampered-expires": "bad_signature",
    "algorithm-confusion": "malformed_token",
    "expired": "expired",
    "not-yet-valid": "not_yet_valid",
    "issued-in-future": "issued_in_future",
    "issued-just-past-skew": "issued_in_future",
    "ip-mismatch": "ip_mismatch",
    "ip-version-mismatch": "ip_mismatch",
    "wrong-method": "wrong_method",
    "put-token-used-for-get": "wrong_method",
    "outside-prefix": "outside_prefix",
    "prefix-is-not-a-string-prefix": "outside_prefix",
    "response-type-without-subtype": "malformed_token",
    "response-header-injection": "malformed_token",
    "response-override-with-put": "malformed_token",
    "path-form-with-query": "malformed_token",
    "path-form-without-object-path": "malformed_token",
    "path-form-empty-payload": "malformed_token",
    "path-form-padded-payload": "malformed_token",
    "path-form-no-token-block": "malformed_token",
    "path-form-tampered": "bad_signature",
    "path-form-expired": "expired",
    "path-form-outside-prefix": "outside_prefix",
    "path-form-dot-dot-segment": "malformed_token",
    "lifetime-exceeded": "lifetime_exceeded",
    "lifetime-exceeds-a-configured-bound": "lifetime_exceeded",
    "no-token-empty-segment": "missing_token",
    "no-token-broken-escapes": "missing_token",
    "no-token-but-a-token-name": "malformed_token",
    "no-token-but-a-bare-token-name": "malformed_token",
    "token-name-upper-case": "malformed_token",
    "token-name-percent-encoded": "malformed_token",
    "token-name-lower-case-escape": "malformed_token",
    "token-name-without-value": "malformed_token",
    "signature-empty": "malformed_token",
    "unknown-key-short-signature": "malformed_token",
    "app-parameter-number-sign": "malformed_token",
    "app-parameter-lone-percent": "malformed_token",
    "app-parameter-bad-escape": "malformed_token",
    "app-parameter-brace": "malformed_token",
    "app-parameter-double-quote": "malformed_token",
    "app-parameter-less-than": "malformed_token",
    "app-parameter-empty": "malformed_token",
    "sub-c1-control": "malformed_token",
    "sub-c0-control": "malformed_token",
    "sub-257-code-points": "malformed_token",
    "sub-empty": "malformed_token",
    "prefix-without-leading-slash": "malformed_token",
    "prefix-with-empty-segment": "malformed_token",
    "prefix-with-dot-segment": "malformed_token",
    "content-type-with-parameter": "malformed_token",
    "content-type-upper-case": "malformed_token",
    "content-type-not-a-restricted-name": "malformed_token",
    "content-type-starting-with-a-symbol": "malformed_token",
    "max-bytes-out-of-range": "malformed_token",
    "flag-zero": "malformed_token",
    "response-type-with-tab": "malformed_token",
    "response-disposition-backslash-in-quotes": "malformed_token",
    "ip-zone-id": "malformed_token",
    "ip-zone-id-encoded": "malformed_token",
    "ip-not-rfc5952": "malformed_token",
    "ip-single-zero-field-compressed": "malformed_token",
    "ip-upper-case": "malformed_token",
    "ip-v4-leading-zero": "malformed_token",
    "ip-v4-with-slash-32": "malformed_token",
    "limit-zero": "malformed_token",
    "limit-with-put": "malformed_token",
    "limit-out-of-order": "malformed_token",
    "rate-leading-zero": "malformed_token",
    "subject-streams-without-sub": "malformed_token",
    "subject-streams-without-max-streams": "malformed_token",
    "subject-streams-zero": "malformed_token",
}

BASE = {"Expires": str(EXPIRES), "KeyID": "tv-hmac", "Issued": str(ISSUED)}
PUT = {**BASE, "Method": "PUT"}

#: Inputs a signer MUST refuse (decoded parameters by wire name, as in valid.json).
UNSIGNABLE: list[tuple[str, str, str, dict[str, str], str]] = [
    # (name, decoded path, application query, parameters, why)
    ("path-with-dot-segment", "/a/./b.mp4", "", BASE, "a '.' segment (§4)"),
    ("path-with-empty-segment", "/a//b.mp4", "", BASE, "an empty segment (§4)"),
    ("path-without-object", "/", "", BASE, "no segment (§4)"),
    ("path-with-nul", "/a\x00b.mp4", "", BASE, "NUL (§4)"),
    ("path-not-under-prefix", "/hls/ep2/a.ts", "", {**BASE, "Prefix": "/hls/ep1/"}, "§5"),
    ("prefix-without-leading-slash", "/videos/a.ts", "", {**BASE, "Prefix": "videos/"}, "§2"),
    ("prefix-with-empty-segment", "/a//b/c.ts", "", {**BASE, "Prefix": "/a//"}, "§2"),
    ("prefix-without-trailing-slash", "/hls/ep1/a.ts", "", {**BASE, "Prefix": "/hls/ep1"}, "§2"),
    ("sub-empty", "/v.mp4", "", {**BASE, "Sub": ""}, "1-256 code points (§2)"),
    ("sub-c1-control", "/v.mp4", "", {**BASE, "Sub": "a\x85b"}, "a control character (§2)"),
    ("sub-257-code-points", "/v.mp4", "", {**BASE, "Sub": SUB_256 + "x"}, "§2"),
    ("ip-zone-id", "/v.mp4", "", {**BASE, "IP": "fe80::1%eth0"}, "a zone id (§2)"),
    ("ip-host-bits", "/v.mp4", "", {**BASE, "IP": "10.1.2.3/8"}, "host bits set (§2)"),
    ("method-unknown", "/v.mp4", "", {**BASE, "Method": "DELETE"}, "§2"),
    ("starts-at-expires", "/v.mp4", "", {**BASE, "Starts": str(EXPIRES)}, "§2"),
    (
        "lifetime-over-the-bound",
        "/v.mp4",
        "",
        {**BASE, "Expires": str(ISSUED + WEEK + 1)},
        "Expires - Issued over the signer's (and gateway's default) bound of 7 days (§6, 10a)",
    ),
    ("lifetime-not-positive", "/v.mp4", "", {**BASE, "Expires": str(ISSUED)}, "§2"),
    ("upload-constraint-without-put", "/v.mp4", "", {**BASE, "MaxBytes": "10"}, "§2"),
    (
        "override-with-put",
        "/v.pdf",
        "",
        {**PUT, "ResponseContentType": "text/plain"},
        "response overrides are for reading methods (§2)",
    ),
    ("content-type-with-parameter", "/u.png", "", {**PUT, "ContentType": "image/png; q=1"}, "§2"),
    ("content-type-upper-case", "/u.png", "", {**PUT, "ContentType": "Image/png"}, "§2"),
    ("min-over-max", "/u.png", "", {**PUT, "MinBytes": "9", "MaxBytes": "8"}, "§2"),
    ("max-bytes-out-of-range", "/u.png", "", {**PUT, "MaxBytes": str(2**63)}, "§2"),
    (
        "response-type-with-tab",
        "/v.txt",
        "",
        {**BASE, "ResponseContentType": "text/plain\t; charset=utf-8"},
        "printable ASCII only (§10)",
    ),
    (
        "response-type-too-long",
        "/v.txt",
        "",
        {**BASE, "ResponseContentType": "text/" + "x" * 508},
        "at most 512 characters (§10)",
    ),
    ("app-parameter-number-sign", "/v.mp4", "a=#1", BASE, "RFC 3986 query characters (§4)"),
    ("app-parameter-resembling", "/v.mp4", "ISSUED=1", BASE, "resembles a token name (§4)"),
    ("app-parameter-empty", "/v.mp4", "a=1&&b=2", BASE, "an empty parameter (§4)"),
    # --- 1.3: usage limits ---
    ("limit-zero", "/v.mp4", "", {**BASE, "MaxUses": "0"}, "a usage limit is at least 1 (§12)"),
    ("limit-with-put", "/u.png", "", {**PUT, "MaxStreams": "1"}, "limits are for reading (§2)"),
    # --- 1.4: SubjectStreams ---
    (
        "subject-streams-without-sub",
        "/v.mp4",
        "",
        {**BASE, "MaxStreams": "1", "SubjectStreams": "1"},
        "a subject's streams need a Sub (§12)",
    ),
]

CONTENT_DISPOSITIONS: list[tuple[str, bool]] = [
    ("invoice-2026-11.pdf", False),
    ("report.pdf", True),
    ("Rechnung März 2026.pdf", False),
    ('a "quoted" 100%.txt', False),
    ("\U0001d11e score.pdf", False),  # one code point outside the BMP: one '_'
    ("nai\u0308ve.txt", False),  # a combining mark is a code point of its own
    ("日本語.pdf", False),
    ("~!#$&+-.^_`|.txt", False),
    ("a;b=c,d.txt", False),
    ("", False),
    ("a/b.txt", False),
    ("a\\b.txt", False),
    ("tab\there.txt", False),
    ("a\x85b.txt", False),
    ("a\x7fb.txt", False),
]


def _b64(data: bytes) -> str:
    return b64encode(data)


_ED_PUBLIC = algorithms.ed25519_public(ED_SEED)
_HMAC_ENTRY = {"id": "h", "alg": "hmac-sha256", "status": "active", "secret": _b64(HMAC_SECRET)}
_ED_ENTRY = {
    "id": "e",
    "alg": "ed25519",
    "status": "active",
    "private": _b64(ED_SEED),
    "public": _b64(_ED_PUBLIC),
}


def _ring(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"format": "edge-keyring/1", "keys": list(entries), **top}


KEYRINGS: list[tuple[str, dict[str, Any]]] = [
    ("hmac-without-created", _ring(_HMAC_ENTRY)),
    (
        "ed25519-with-created-and-comment",
        _ring({**_ED_ENTRY, "created": 1767225540, "comment": "ops"}),
    ),
    ("ed25519-private-only", _ring({k: v for k, v in _ED_ENTRY.items() if k != "public"})),
    (
        "public-only-verify",
        _ring({"id": "e", "alg": "ed25519", "status": "verify", "public": _b64(_ED_PUBLIC)}),
    ),
    ("retired-without-material", _ring({"id": "r", "alg": "hmac-sha256", "status": "retired"})),
    ("unknown-top-level-field-ignored", _ring(_HMAC_ENTRY, note="top-level fields are ignored")),
    ("comment-not-a-string", _ring({**_HMAC_ENTRY, "comment": 5})),
    ("unknown-field", _ring({**_HMAC_ENTRY, "note": "x"})),
    ("secret-on-an-ed25519-key", _ring({**_ED_ENTRY, "secret": _b64(HMAC_SECRET)})),
    ("public-on-an-hmac-key", _ring({**_HMAC_ENTRY, "public": _b64(_ED_PUBLIC)})),
    ("created-negative", _ring({**_HMAC_ENTRY, "created": -1})),
    ("created-not-an-integer", _ring({**_HMAC_ENTRY, "created": 1.5})),
    ("created-boolean", _ring({**_HMAC_ENTRY, "created": True})),
    ("hmac-secret-of-31-bytes", _ring({**_HMAC_ENTRY, "secret": _b64(HMAC_SECRET[:31])})),
    ("hmac-without-secret", _ring({k: v for k, v in _HMAC_ENTRY.items() if k != "secret"})),
    ("ed25519-public-mismatch", _ring({**_ED_ENTRY, "public": _b64(bytes(32))})),
    (
        "ed25519-private-of-31-bytes",
        _ring({"id": "e", "alg": "ed25519", "status": "active", "private": _b64(ED_SEED[:31])}),
    ),
    ("padded-base64", _ring({**_HMAC_ENTRY, "secret": _b64(HMAC_SECRET) + "="})),
    ("two-active-keys", _ring(_HMAC_ENTRY, {**_ED_ENTRY})),
    ("duplicate-id", _ring(_HMAC_ENTRY, {**_HMAC_ENTRY, "status": "verify"})),
    ("bad-id", _ring({**_HMAC_ENTRY, "id": "k 1"})),
    ("unknown-alg", _ring({**_HMAC_ENTRY, "alg": "hmac-sha512"})),
    ("unknown-status", _ring({**_HMAC_ENTRY, "status": "paused"})),
    ("wrong-format", {**_ring(_HMAC_ENTRY), "format": "edge-keyring/2"}),
    ("keys-not-a-list", {"format": "edge-keyring/1", "keys": {}}),
]

WINDOWS: list[tuple[str, float, int | None, int | None, int | None]] = [
    # (name, now, window, expires_in, expires_at)
    ("window-start", NOW, 300, 3600, None),
    ("window-middle", NOW + 150.5, 300, 3600, None),
    ("window-last-second", NOW + 299.9, 300, 3600, None),
    ("next-window", NOW + 300, 300, 3600, None),
    ("window-with-expires-at", NOW + 100, 300, None, NOW + 7200),
    ("no-window", NOW + 150.5, None, 3600, None),
    ("window-of-one-second", NOW + 150.5, 1, 3600, None),
    ("window-over-the-lifetime-bound", NOW, 300, WEEK, None),
    ("window-zero", NOW, 0, 3600, None),
    ("window-negative", NOW, -300, 3600, None),
]


def context(overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "GET",
        "client_ip": "192.0.2.10",
        "now": NOW,
        "skew": 30,
        "max_lifetime": DEFAULT_MAX_LIFETIME,
        **overrides,
    }


def judge(target: str, ctx: dict[str, Any]) -> str:
    path, _, query = target.partition("?")
    try:
        verify(
            KEYRING,
            method=ctx["method"],
            raw_path=path,
            raw_query=query,
            client_ip=ipaddress.ip_address(ctx["client_ip"]),
            now=ctx["now"],
            skew=ctx["skew"],
            max_lifetime=ctx["max_lifetime"],
        )
    except Rejected as exc:
        return exc.reason.value
    return "valid"


def gateway_judge(decoded_path: str) -> str | None:
    """What the gateway answers for a verified path: None, or its refusal (empty prefix)."""
    try:
        object_key(decoded_path)
    except InvalidKey:
        return "invalid_path"
    return None


def parameters(c: Claims) -> tuple[dict[str, str], dict[str, str]]:
    """(decoded, wire) texts of the parameters `c` carries, by name, from the table."""
    decoded, wire = {}, {}
    for param in PARAMS:
        value = getattr(c, param.field)
        if value is param.codec.absent:
            continue
        wire[param.name] = param.codec.encode(value)
        decoded[param.name] = value if param.codec is TEXT_CODEC else wire[param.name]
    return decoded, wire


def valid_vectors() -> list[dict[str, Any]]:
    valid = []
    used: set[str] = set()
    for case in VALID:
        key = BY_ID[case.claims.key_id]
        target = sign_target(canonical(case.path), case.query, case.claims, key)
        request_path = canonical(case.context.get("path", case.path))
        request = request_path + "?" + target.partition("?")[2]
        ctx = context({k: v for k, v in case.context.items() if k != "path"})
        assert judge(request, ctx) == "valid", case.name
        assert judge(path_form(request), ctx) == "valid", case.name
        assert judge(path_form(request) + "?", ctx) == "valid", case.name
        assert gateway_judge(case.path) == case.gateway_refuses, case.name
        decoded, wire = parameters(case.claims)
        used |= decoded.keys()
        # The public signing call, from the decoded texts alone, gives the same bytes.
        options = sign_options(decoded)
        single = Keyring([Key(key.id, key.alg, Status.ACTIVE, key.created, key.secret, key.public)])
        assert (
            sign_path(case.path, single, query=case.query, max_lifetime=WEEK, **options) == target
        )
        query_signed = target.partition("?")[2].rpartition("&Signature=")[0]
        vector: dict[str, Any] = {
            "name": case.name,
            "key_id": case.claims.key_id,
            "path_decoded": case.path,
            "path_wire": canonical(case.path),
            "app_query_wire": case.query,
            "params_decoded": decoded,
            "params_wire": wire,
            "string_to_sign": string_to_sign(
                target.partition("?")[0], query_signed, prefixed=case.claims.prefix is not None
            ).decode("ascii"),
            "signed_target": target,
            "token_id": token_id(b64decode(target.rpartition("&Signature=")[2], "Signature")),
            "request_target": request,
            "path_form_target": path_form(target),
            "path_form_request_target": path_form(request),
            "also_accepted": [path_form(request) + "?"],
            "verify": ctx,
        }
        if case.gateway_refuses:
            vector["gateway_refuses"] = case.gateway_refuses
        valid.append(vector)
    unused = {p.name for p in PARAMS} - used
    assert not unused, f"no valid vector uses {sorted(unused)}"
    return valid


def unsignable_vectors() -> list[dict[str, Any]]:
    out = []
    for name, path, query, params, why in UNSIGNABLE:
        key = BY_ID[params["KeyID"]]
        single = Keyring([Key(key.id, key.alg, Status.ACTIVE, key.created, key.secret, key.public)])
        try:
            sign_path(path, single, query=query, **sign_options(params))
        except SigningError:
            pass
        else:
            raise AssertionError(f"{name}: the signer signed it")
        out.append(
            {
                "name": name,
                "key_id": params["KeyID"],
                "path_decoded": path,
                "app_query_wire": query,
                "params_decoded": params,
                "max_lifetime": DEFAULT_MAX_LIFETIME,
                "why": why,
            }
        )
    return out


def disposition_vectors() -> list[dict[str, Any]]:
    out = []
    for filename, inline in CONTENT_DISPOSITIONS:
        try:
            value: str | None = content_disposition(filename, inline=inline)
        except SigningError:
            value = None
        else:
            claims(response_content_disposition=value).validate()
        out.append({"filename": filename, "inline": inline, "value": value})
    return out


def keyring_vectors() -> list[dict[str, Any]]:
    out = []
    for name, document in KEYRINGS:
        try:
            keyring = Keyring.loads(json.dumps(document))
        except KeyringError:
            out.append({"name": name, "document": document, "valid": False})
            continue
        active = keyring.active
        out.append(
            {
                "name": name,
                "document": document,
                "valid": True,
                "keys": [key.id for key in keyring],
                "active": None if active is None else active.id,
            }
        )
    return out


def window_vectors() -> list[dict[str, Any]]:
    out = []
    for name, now, window, expires_in, expires_at in WINDOWS:
        entry: dict[str, Any] = {
            "name": name,
            "now": now,
            "window": window,
            "expires_in": expires_in,
            "expires_at": expires_at,
            "max_lifetime": DEFAULT_MAX_LIFETIME,
        }
        try:
            issued, expires = rounded_times(
                now, expires_in=expires_in, expires_at=expires_at, window=window
            )
        except SigningError:
            entry["refused"] = True
        else:
            entry.update(issued=issued, expires=expires)
        out.append(entry)
    return out


def build() -> dict[str, Any]:
    """Every vector file's content, by file name; asserts each expectation on the way."""
    invalid = []
    for name, target, overrides in INVALID:
        ctx = context(overrides)
        reason = judge(target, ctx)
        assert reason == EXPECTED[name], (name, reason)
        invalid.append({"name": name, "request_target": target, "verify": ctx, "reason": reason})
    return {
        "PUBLIC-test-vector-keyring.json": json.loads(KEYRING.dumps()),
        "valid.json": valid_vectors(),
        "invalid.json": invalid,
        "unsignable.json": unsignable_vectors(),
        "content-disposition.json": disposition_vectors(),
        "keyrings.json": keyring_vectors(),
        "window.json": window_vectors(),
    }


def dumps(data: object) -> str:
    """JSON as written to the files: non-ASCII text as it is, but DEL and the C1 controls
    escaped (editors take U+0085 for a line break)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for filename, data in build().items():
        (OUT / filename).write_text(dumps(data), encoding="utf-8")
        print(f"wrote {len(data):3} entries to {OUT / filename}")


if __name__ == "__main__":
    main()
