"""Regenerate docs/vectors/*.json from the format implementation.

Run only when the format changes on purpose (and bump docs/token-format.md's version): the tests
pin these files, so a refactor that changes a single signed byte fails instead of silently
changing the wire format. The keys here are PUBLIC test-vector keys; never use them elsewhere.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

from signer import algorithms
from signer.algorithms import Algorithm
from signer.errors import Rejected
from signer.format import Claims, b64encode, canonical, encode_payload, path_form, string_to_sign
from signer.keys import Key, Keyring, Status
from signer.sign import content_disposition, sign_target
from signer.verify import token_id, verify

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors"
NOW = 1767225600  # 2026-01-01T00:00:00Z, the verification time of every vector unless stated
ISSUED = NOW - 60
EXPIRES = NOW + 3600
DAY = 86400

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


VALID: list[tuple[str, str, str, Claims, dict[str, Any]]] = [
    # (name, decoded path, application query, claims, verification context)
    ("hmac-basic", "/videos/intro.mp4", "", claims(), {}),
    ("ed25519-basic", "/videos/intro.mp4", "", claims("tv-ed25519"), {}),
    ("unicode-and-space", "/docs/Über uns/Prüfung 2026.pdf", "", claims(), {}),
    ("reserved-characters", "/a/b+c&d=e;f,g!h'i(j)k*l$m#n?o[p]q%2Fr", "", claims(), {}),
    ("application-parameters", "/img/cat.jpg", "w=640&fmt=webp", claims(), {}),
    (
        "prefix-hls",
        "/hls/ep1/master.m3u8",
        "",
        claims("tv-ed25519", prefix="/hls/ep1/"),
        {"path": "/hls/ep1/720p/seg001.ts"},
    ),
    (
        "ip-v4-address",
        "/videos/intro.mp4",
        "",
        claims(ip=ipaddress.ip_network("203.0.113.7")),
        {"client_ip": "203.0.113.7"},
    ),
    (
        "ip-v6-network",
        "/videos/intro.mp4",
        "",
        claims(ip=ipaddress.ip_network("2001:db8:aa::/48")),
        {"client_ip": "2001:db8:aa::17"},
    ),
    (
        "starts-and-sub",
        "/videos/intro.mp4",
        "",
        claims(starts=NOW - 10, sub="user 42@example.com"),
        {},
    ),
    ("head-allowed-by-get", "/videos/intro.mp4", "", claims(method="GET"), {"method": "HEAD"}),
    (
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
    (
        "everything",
        "/hls/ep2/master.m3u8",
        "lang=en",
        claims(
            starts=NOW - 100,
            ip=ipaddress.ip_network("198.51.100.0/24"),
            prefix="/hls/ep2/",
            method="GET",
            sub="u-7",
        ),
        {"client_ip": "198.51.100.9"},
    ),
    (
        "response-overrides",
        "/billing/u42/7f3a.pdf",
        "",
        claims(
            response_content_type="application/pdf",
            response_content_disposition='attachment; filename="invoice-2026-11.pdf"',
        ),
        {},
    ),
    (
        "issued-within-skew",
        "/videos/intro.mp4",
        "",
        claims(issued=NOW + 30),  # exactly now + skew: a signer's clock may run a little ahead
        {},
    ),
    (
        "response-disposition-unicode",
        "/billing/u42/7f3b.pdf",
        "",
        claims(response_content_disposition=content_disposition("Rechnung März 2026.pdf")),
        {"method": "HEAD"},
    ),
]


def signed(name: str) -> str:
    for vname, path, query, c, _ in VALID:
        if vname == name:
            return sign_target(canonical(path), query, c, BY_ID[c.key_id])
    raise KeyError(name)


def raw_signed(target_without_signature: str, key_id: str = "tv-hmac") -> str:
    """Sign any bytes by the format's rule, even ones the signer would refuse to produce."""
    path, _, query = target_without_signature.partition("?")
    data = string_to_sign(path, query, prefixed="&Prefix=" in query)
    key = BY_ID[key_id]
    assert key.secret is not None
    signature = b64encode(algorithms.sign(key.alg, key.secret, data))
    return f"{target_without_signature}&Signature={signature}"


BASIC = signed("hmac-basic")
BLOCK = f"Expires={EXPIRES}&KeyID=tv-hmac&Issued={ISSUED}"
HLS = signed("prefix-hls")
HLS_QUERY = HLS.partition("?")[2]
HLS_PAYLOAD = encode_payload(HLS_QUERY)

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
}


def context(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"method": "GET", "client_ip": "192.0.2.10", "now": NOW, "skew": 30, **overrides}


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
        )
    except Rejected as exc:
        return exc.reason.value
    return "valid"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "PUBLIC-test-vector-keyring.json").write_text(KEYRING.dumps())
    valid = []
    for name, path, query, c, extra in VALID:
        target = sign_target(canonical(path), query, c, BY_ID[c.key_id])
        request_path = canonical(extra.get("path", path))
        request = request_path + "?" + target.partition("?")[2]
        ctx = context({k: v for k, v in extra.items() if k != "path"})
        assert judge(request, ctx) == "valid", name
        assert judge(path_form(request), ctx) == "valid", name
        query_signed = target.partition("?")[2].rpartition("&Signature=")[0]
        valid.append(
            {
                "name": name,
                "key_id": c.key_id,
                "path": path,
                "app_query": query,
                "params": dict(p.split("=", 1) for p in query_signed.split("&")[_count(query) :]),
                "string_to_sign": string_to_sign(
                    target.partition("?")[0], query_signed, prefixed=c.prefix is not None
                ).decode("ascii"),
                "signed_target": target,
                "token_id": token_id(_signature(target)),
                "request_target": request,
                "path_form_target": path_form(target),
                "path_form_request_target": path_form(request),
                "verify": ctx,
            }
        )
    invalid = []
    for name, target, overrides in INVALID:
        ctx = context(overrides)
        reason = judge(target, ctx)
        assert reason == EXPECTED[name], (name, reason)
        invalid.append({"name": name, "request_target": target, "verify": ctx, "reason": reason})
    for filename, data in (("valid.json", valid), ("invalid.json", invalid)):
        (OUT / filename).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(valid)} valid and {len(invalid)} invalid vectors to {OUT}")
    for item in invalid:
        print(f"  {item['name']:32} {item['reason']}")


def _count(query: str) -> int:
    return len(query.split("&")) if query else 0


def _signature(target: str) -> bytes:
    from signer.format import b64decode

    return b64decode(target.rpartition("&Signature=")[2], "Signature")


if __name__ == "__main__":
    main()
