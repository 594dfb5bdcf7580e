"""S3 presigned POST (browser form uploads with a policy): the policy's signature and rules.

A backend presigns with boto3/botocore's `generate_presigned_post(Bucket, Key, Fields,
Conditions, ExpiresIn)`, holding a `sigv4` key of the gateway's keyring (as for presigned URLs,
`sigv4_query`). The browser posts a `multipart/form-data` form to `/<bucket>`: the fields, then
the file. The fields carry the policy and its SigV4 signature:

    policy            base64 of the JSON policy: {"expiration": "<ISO 8601>", "conditions": [...]}
    x-amz-algorithm   AWS4-HMAC-SHA256
    x-amz-credential  <key id>/<YYYYMMDD>/<region>/s3/aws4_request
    x-amz-date        <YYYYMMDD>T<HHMMSS>Z
    x-amz-signature   hex HMAC-SHA256 of the base64 policy text, with the SigV4 signing key

The conditions are S3's: `{"field": "value"}` and `["eq", "$field", "value"]` (exact),
`["starts-with", "$field", "prefix"]`, `["content-length-range", min, max]`; every form field
but the exempt ones must be named by a condition. Field names are matched without regard to
case (as S3 does), values exactly. This module is pure: the form's HTTP and multipart reading,
the key mapping and the storage are the gateway's (`gateway/form_upload.py`). Standard library
only, like all of `signer`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from signer.addresses import IPAddress
from signer.errors import Reason, Rejected
from signer.format import Claims
from signer.keys import Keyring
from signer.schemes.sigv4_query import ALGORITHM, amz_time, credential, link_signing_key
from signer.schemes.sigv4_query import WORDS as URL_WORDS
from signer.verify import DEFAULT_SKEW, judge, token_id

#: The label of a POST upload in metrics and the access log.
NAME: Final = "sigv4-post"
POLICY: Final = "policy"
SIGNATURE: Final = "x-amz-signature"
#: The fields that carry the policy and its signature: all of them, or (no policy) none.
AUTH_FIELDS: Final = ("policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", SIGNATURE)
#: Fields no condition needs to name (S3's rule; plus any `x-ignore-*`).
EXEMPT: Final = frozenset({POLICY, SIGNATURE, "file"})
IGNORED_PREFIX: Final = "x-ignore-"
#: The fields the gateway acts on beyond the policy's own: anything else a form may send to S3
#: (acl, x-amz-meta-*, Cache-Control, tagging, ...) asks for something the gateway would not
#: store, so such a form is refused rather than half honoured.
HONOURED: Final = frozenset(
    {
        "key",
        "content-type",
        "success_action_status",
        "success_action_redirect",
        "redirect",
        *AUTH_FIELDS,
    }
)
#: Fields of signatures the gateway does not accept (SigV2, temporary credentials): read, so
#: that `verify` can say why the form is refused.
OTHER_SIGNING: Final = frozenset({"awsaccesskeyid", "signature", "x-amz-security-token"})
#: The content-length-range bound that no policy can raise: S3's own 5 GiB for one POST.
MAX_POST_BYTES: Final = 5 * 1024**3

_EXPIRATION: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?Z"
)
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
_FIELD_NAME: Final = re.compile(r"[\x21-\x7e]{1,128}")

#: S3's words for what a POST client looks for, by the gateway's reason.
WORDS: Final = {
    **URL_WORDS,
    "malformed_token": "InvalidPolicyDocument: the policy or its x-amz-* fields are not a "
    "presigned POST the gateway accepts",
    "missing_token": "AccessDenied: the form carries no policy (anonymous uploads are off)",
    "policy_condition_failed": "AccessDenied: Invalid according to Policy",
    "too_large": "EntityTooLarge: Your proposed upload exceeds the maximum allowed size",
    "too_small": "EntityTooSmall: Your proposed upload is smaller than the minimum allowed size",
    "form_fields_too_large": "MaxPostPreDataLengthExceeded: Your POST request fields preceding "
    "the upload file were too large.",
    "invalid_form": "MalformedPOSTRequest: The body of your POST request is not well-formed "
    "multipart/form-data.",
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a policy. `field` is the form field's lower-case name (`bucket` for the
    bucket); `text` is the condition as the policy wrote it, for the refusal's words."""

    op: str  # "eq", "starts-with" or "content-length-range"
    field: str
    value: str = ""
    low: int = 0
    high: int = 0
    text: str = ""

    def holds(self, fields: Mapping[str, str]) -> bool:
        if self.op == "content-length-range":
            return True  # judged on the file while it streams (`Policy.length_range`)
        sent = fields.get(self.field, "")
        return sent == self.value if self.op == "eq" else sent.startswith(self.value)


@dataclass(frozen=True, slots=True)
class Policy:
    expiration: int  # unix seconds
    conditions: tuple[Condition, ...]

    @property
    def length_range(self) -> tuple[int, int] | None:
        """(min, max) bytes of the file that every content-length-range allows, or None."""
        ranges = [(c.low, c.high) for c in self.conditions if c.op == "content-length-range"]
        if not ranges:
            return None
        return max(low for low, _ in ranges), min(high for _, high in ranges)

    def unmet(self, fields: Mapping[str, str]) -> str | None:
        """Why the form's fields (lower-case names, the bucket as `bucket`, the key with
        `${filename}` replaced) break the policy, in S3's words, or None when they do not: a
        condition that fails, or a field no condition names."""
        for condition in self.conditions:
            if not condition.holds(fields):
                return f"Policy Condition failed: {condition.text}"
        named = {c.field for c in self.conditions}
        extra = sorted(name for name in fields if name not in named and not exempt(name))
        if extra:
            return f"Extra input fields: {', '.join(extra)}"
        return None


@dataclass(frozen=True, slots=True)
class VerifiedPolicy:
    """An authentic, current policy: what it says, and what our tokens would have said."""

    policy: Policy
    claims: Claims
    token_id: str


def exempt(name: str) -> bool:
    """Whether no condition needs to name field `name` (lower case)."""
    return name in EXEMPT or name.startswith(IGNORED_PREFIX) or name == "bucket"


def readable(name: str) -> bool:
    """Whether the gateway reads field `name` (lower case) rather than refuse the form."""
    return name in HONOURED or name in OTHER_SIGNING or name.startswith(IGNORED_PREFIX)


def field_name(name: str) -> str | None:
    """A form field's name as matched (lower case), or None when it is not a usable name."""
    return name.lower() if _FIELD_NAME.fullmatch(name) else None


def present(fields: Mapping[str, str]) -> bool:
    """Whether the form carries a policy at all (any of its fields)."""
    return any(name in fields for name in AUTH_FIELDS)


def parse_policy(text: str) -> Policy:
    """The policy of the base64 `policy` field, or `Rejected(MALFORMED)` naming what is wrong.
    One reading only: strict base64, JSON without repeated names, S3's condition shapes."""
    try:
        document = json.loads(
            base64.b64decode(text.encode("ascii"), validate=True),
            object_pairs_hook=_unique_names,
        )
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise _malformed(f"the policy is not base64 of a JSON document ({exc})") from None
    if not isinstance(document, dict) or set(document) != {"expiration", "conditions"}:
        raise _malformed('the policy must be {"expiration": ..., "conditions": [...]}, only')
    expiration, conditions = document["expiration"], document["conditions"]
    if not isinstance(expiration, str) or not isinstance(conditions, list):
        raise _malformed("the policy's expiration must be a string, its conditions a list")
    return Policy(_expiration(expiration), tuple(_condition(item) for item in conditions))


def signature(signing: bytes, policy: str) -> str:
    """SigV4 for a POST: the base64 policy text is the string to sign."""
    return hmac.digest(signing, policy.encode("ascii"), hashlib.sha256).hex()


def verify(
    keyring: Keyring,
    fields: Mapping[str, str],
    *,
    client_ip: IPAddress | None = None,
    now: float | None = None,
    skew: float = DEFAULT_SKEW,
) -> VerifiedPolicy:
    """Accept the form's policy or raise `Rejected` with its reason: the fields' format, the
    key and its scope, the signature, and only then the policy's content and the time. The
    policy's conditions are the caller's to check (`Policy.unmet`), with the bucket and key."""
    missing = [name for name in AUTH_FIELDS if name not in fields]
    if len(missing) == len(AUTH_FIELDS):
        if "awsaccesskeyid" in fields or "signature" in fields:
            raise _malformed("a SigV2 POST policy (AWSAccessKeyId, signature); sign with s3v4")
        raise Rejected(Reason.MISSING, "the form has no policy")
    if missing:
        raise _malformed(f"the form has no {', '.join(missing)}")
    if "x-amz-security-token" in fields:
        raise _malformed("temporary credentials (x-amz-security-token) are not accepted")
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise _malformed(f"x-amz-algorithm must be {ALGORITHM}")
    key_id, date, region = credential(fields["x-amz-credential"])
    amz_date = fields["x-amz-date"]
    issued = amz_time(amz_date)
    if amz_date[:8] != date:
        raise _malformed("the x-amz-credential date is not the date of x-amz-date")
    sent = fields[SIGNATURE]
    if not _HEX_SIGNATURE.fullmatch(sent):
        raise _malformed("x-amz-signature must be 64 lower-case hex digits")
    signing = link_signing_key(keyring, key_id, date, region)
    text = fields[POLICY]
    if not text.isascii() or not hmac.compare_digest(signature(signing, text), sent):
        raise Rejected(Reason.BAD_SIGNATURE)
    policy = parse_policy(text)
    claims = Claims(
        expires=policy.expiration,
        key_id=key_id,
        issued=issued,
        starts=issued,  # a policy dated in the future is "not valid yet"
        method="PUT",  # what a POST upload does to the object
    ).validate()
    judge(claims, "/", method="PUT", client_ip=client_ip, now=now, skew=skew)
    return VerifiedPolicy(policy, claims, token_id(bytes.fromhex(sent)))


def words(reason: str) -> str | None:
    return WORDS.get(reason)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("a name is repeated")
    return dict(pairs)


def _expiration(value: str) -> int:
    match = _EXPIRATION.fullmatch(value)
    if match is None:
        raise _malformed("the policy's expiration must be YYYY-MM-DDTHH:MM:SS[.fff]Z")
    try:
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise _malformed("the policy's expiration is not a valid time") from None
    return int(moment.timestamp())


def _condition(item: object) -> Condition:
    text = json.dumps(item, ensure_ascii=False)
    if isinstance(item, dict):
        if len(item) != 1:
            raise _malformed(f"a condition object names exactly one field: {text}")
        ((name, value),) = item.items()
        if not isinstance(value, str):
            raise _malformed(f"an exact-match condition's value must be a string: {text}")
        return Condition("eq", _condition_field(name, text, dollar=False), value, text=text)
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise _malformed(f"a condition is an object or a list starting with its operator: {text}")
    op = item[0].lower()
    if op == "content-length-range":
        if len(item) != 3 or not all(_is_count(bound) for bound in item[1:]):
            raise _malformed(f"content-length-range takes two whole numbers: {text}")
        low, high = int(item[1]), int(item[2])
        if low > high or high > MAX_POST_BYTES:
            raise _malformed(f"content-length-range must be min <= max <= 5 GiB: {text}")
        return Condition(op, "", low=low, high=high, text=text)
    if op in ("eq", "starts-with"):
        if len(item) != 3 or not all(isinstance(part, str) for part in item[1:]):
            raise _malformed(f'{op} takes "$field" and a string: {text}')
        return Condition(op, _condition_field(item[1], text, dollar=True), item[2], text=text)
    raise _malformed(f"unknown condition operator {item[0]!r}")


def _condition_field(name: str, text: str, *, dollar: bool) -> str:
    if dollar:
        if not name.startswith("$"):
            raise _malformed(f"a condition names its field as $field: {text}")
        name = name[1:]
    folded = field_name(name)
    if folded is None or folded in EXEMPT:
        raise _malformed(f"a condition names no field a form can hold: {text}")
    return folded


def _is_count(value: object) -> bool:
    """A whole number of bytes: JSON 10, or S3's also accepted "10"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isdigit() and value.isascii()


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
