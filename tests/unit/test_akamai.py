"""The Akamai EdgeAuth 2.0 scheme: its token parser, acl matcher and string to sign, held to
Akamai's own `akamai-edgeauth` package; its keyring entries; `signer` explaining a refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from akamai.edgeauth import EdgeAuth
from hypothesis import given
from hypothesis import strategies as st

from signer import Algorithm, KeyringError, Reason, Rejected, Status, new_key
from signer.cli import main
from signer.keys import Keyring, LinkScheme
from signer.schemes import SCHEMES, Ambiguous, LinkRequest, carried_by, detect
from signer.schemes.akamai import (
    FIELDS,
    Token,
    acl_covers,
    acl_prefix,
    escaped,
    parse_token,
    string_to_sign,
    verify,
)

KEY = new_key("akamai-1", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI)
NOW = 1_800_000_000


def hex_of(key: object) -> str:
    secret = getattr(key, "secret", None)
    assert isinstance(secret, bytes)
    return secret.hex()


# --- the parser --------------------------------------------------------------------------------

times = st.integers(1, 10**12 - 2)
texts = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="~"))
values = texts.filter(bool)
acl_paths = st.lists(
    st.text(st.sampled_from("abz019/-._%*"), max_size=12).map(lambda s: "/" + s),
    min_size=1,
    max_size=4,
)


@given(
    exp=times,
    st_offset=st.none() | st.integers(1, 10**6),
    ip=st.none() | values,
    acl=st.none() | acl_paths,
    id_=st.none() | values,
    data=st.none() | values,
    digest=st.sampled_from(["sha256", "sha1", "md5"]),
)
def test_every_token_edgeauth_writes_parses_into_its_fields(
    exp: int,
    st_offset: int | None,
    ip: str | None,
    acl: list[str] | None,
    id_: str | None,
    data: str | None,
    digest: str,
) -> None:
    start = None if st_offset is None or exp - st_offset <= 0 else exp - st_offset
    auth = EdgeAuth(
        key="00" * 16,
        algorithm=digest,
        start_time=start,
        end_time=exp,
        ip=ip,
        session_id=id_,
        payload=data,
    )
    text = auth.generate_url_token("/a") if acl is None else auth.generate_acl_token(acl)
    token = parse_token(text)
    assert (token.exp, token.st, token.ip, token.id, token.data) == (exp, start, ip, id_, data)
    assert token.acl == (None if acl is None else tuple(acl))
    assert token.digest == digest
    assert token.signed + "~hmac=" + token.hmac == text


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
def test_the_parser_refuses_or_accepts_but_never_fails_otherwise(text: str) -> None:
    reason: Reason | None
    try:
        token = parse_token(text)
    except Rejected as exc:
        reason = exc.reason
    else:
        reason = None
        assert text == f"{token.signed}~hmac={token.hmac}"
    assert reason in (None, Reason.MALFORMED)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "visible ASCII"),
        ("exp=2~hmac=" + "0" * 64 + " ", "visible ASCII"),
        ("exp=2", "hmac is missing"),
        ("hmac=" + "0" * 64, "exp is missing"),
        ("exp=2~hmac=" + "0" * 63, "hmac must be"),
        ("exp=2~hmac=" + "A" * 64, "hmac must be"),
        ("exp=02~hmac=" + "0" * 64, "exp must be unix seconds"),
        ("st=3~exp=2~hmac=" + "0" * 64, "st must be before exp"),
        ("exp=2~st=1~hmac=" + "0" * 64, "out of EdgeAuth's order"),
        ("exp=2~exp=2~hmac=" + "0" * 64, "repeated"),
        ("exp=2~url=/a~hmac=" + "0" * 64, "url= is never in a token"),
        ("exp=2~salt=x~hmac=" + "0" * 64, "salt= is never in a token"),
        ("exp=2~kid=1~hmac=" + "0" * 64, "not a field"),
        ("exp=2~id=~hmac=" + "0" * 64, "id is empty"),
        ("exp=2~acl=videos/*~hmac=" + "0" * 64, "starts with '/'"),
        ("exp=2~acl=/a?~hmac=" + "0" * 64, "wildcard '?'"),
        ("exp=2~data=a~b~hmac=" + "0" * 64, "not a field"),
        ("exp=2~acl=" + "!".join(["/a"] * 17) + "~hmac=" + "0" * 64, "more than 16"),
    ],
    ids=[
        "empty",
        "space",
        "no-hmac",
        "no-exp",
        "short-hmac",
        "upper-hmac",
        "leading-zero",
        "st-after-exp",
        "order",
        "repeated",
        "url",
        "salt",
        "unknown",
        "empty-value",
        "relative-acl",
        "question-mark",
        "tilde-in-a-value",
        "seventeen-acls",
    ],
)
def test_a_malformed_token_names_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_token(text)
    assert caught.value.reason is Reason.MALFORMED
    assert said in caught.value.detail


def test_fields_are_edgeauths_in_its_order() -> None:
    assert FIELDS == ("ip", "st", "exp", "acl", "id", "data", "hmac")


# --- the acl matcher ---------------------------------------------------------------------------

patterns = st.text(st.sampled_from("ab/*."), max_size=10).map(lambda s: "/" + s)
paths = st.text(st.sampled_from("ab/."), max_size=12).map(lambda s: "/" + s)


@given(patterns, paths)
def test_an_acl_matches_exactly_what_its_regular_expression_matches(acl: str, path: str) -> None:
    expression = ".*".join(re.escape(piece) for piece in acl.split("*"))
    assert acl_covers(acl, path) is (re.fullmatch(expression, path, re.DOTALL) is not None)


@given(paths)
def test_an_acl_without_a_star_matches_its_path_alone(path: str) -> None:
    assert acl_covers(path, path)
    assert not acl_covers(path, path + "a")


@pytest.mark.parametrize(
    ("acls", "prefix"),
    [
        (("/videos/*",), "/videos/"),
        (("/*",), "/"),
        (("/%C3%BCber/*",), "/über/"),
        (("/videos/a.mp4",), None),
        (("/vid*",), None),
        (("/videos/*/seg*",), None),
        (("/videos/*", "/docs/*"), None),
        (("/videos/%c3%bc/*",), None),
    ],
    ids=["dir", "root", "encoded", "exact", "mid-segment", "mid-path", "several", "lower-escape"],
)
def test_only_a_single_directory_acl_is_a_prefix(acls: tuple[str, ...], prefix: str | None) -> None:
    assert acl_prefix(acls) == prefix


# --- the string to sign, as EdgeAuth computes it -------------------------------------------------

path_texts = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1).map(lambda s: "/" + s)


@given(path_texts, st.booleans(), st.sampled_from(["sha256", "sha1", "md5"]))
def test_the_url_token_hmac_is_edgeauths(path: str, escape_early: bool, digest: str) -> None:
    auth = EdgeAuth(key=hex_of(KEY), algorithm=digest, end_time=NOW, escape_early=escape_early)
    text = auth.generate_url_token(path)
    token = parse_token(text)
    signed = string_to_sign(token, path, escape_early=escape_early).encode()
    assert hmac.new(bytes.fromhex(hex_of(KEY)), signed, getattr(hashlib, digest)).hexdigest() == (
        token.hmac
    )


@given(st.text(st.characters(blacklist_categories=["Cs"])))
def test_escape_early_is_quote_plus_in_lower_case(text: str) -> None:
    assert escaped(text) == re.sub(r"%..", lambda m: m.group().lower(), quote_plus(text))


# --- detection and the registry -------------------------------------------------------------------


def test_the_scheme_is_registered_beside_sigv4() -> None:
    assert set(SCHEMES) >= {"sigv4", "akamai"}


@pytest.mark.parametrize(
    ("query", "scheme"),
    [("__token__=exp=1~hmac=00", "akamai"), ("a=1&__token__=x", "akamai"), ("token=x", None)],
)
def test_a_token_parameter_names_the_scheme(query: str, scheme: str | None) -> None:
    found = detect("/a", query)
    assert (found.name if found else None) == scheme


def test_a_token_beside_a_presigned_url_is_ambiguous() -> None:
    with pytest.raises(Ambiguous):
        detect("/a", "__token__=x&X-Amz-Signature=00")


@pytest.mark.parametrize(
    ("headers", "carried"),
    [
        ({"cookie": ["a=1; hdnts=exp=1~hmac=00"]}, True),
        ({"hdnts": ["exp=1~hmac=00"]}, True),
        ({"cookie": ["__token__=x; hdntsx=1"]}, False),
        ({}, False),
    ],
    ids=["cookie", "header", "other-cookies", "none"],
)
def test_an_hdnts_cookie_or_header_carries_a_token(
    headers: dict[str, list[str]], carried: bool
) -> None:
    found = carried_by(lambda name: headers.get(name.lower(), []))
    assert ("akamai" in [scheme.name for scheme in found]) is carried


# --- verification order: the signature before any claim ------------------------------------------


def request(token: str, path: str = "/videos/a.mp4", method: str = "GET") -> LinkRequest:
    return LinkRequest(method, path, f"__token__={token}")


def test_a_forged_token_gets_no_claim_based_reason() -> None:
    token = EdgeAuth(key="11" * 32, end_time=NOW - 3600).generate_acl_token("/docs/*")
    with pytest.raises(Rejected) as caught:
        verify(Keyring([KEY]), request(token), now=NOW)
    assert (caught.value.reason, caught.value.claims) == (Reason.BAD_SIGNATURE, None)


def test_an_authentic_token_names_its_key_and_subject_when_refused() -> None:
    auth = EdgeAuth(key=hex_of(KEY), end_time=NOW - 3600, session_id="user-1")
    with pytest.raises(Rejected) as caught:
        verify(Keyring([KEY]), request(auth.generate_acl_token("/videos/*")), now=NOW)
    assert caught.value.reason is Reason.EXPIRED
    assert caught.value.claims is not None
    assert (caught.value.claims.key_id, caught.value.claims.sub) == ("akamai-1", "user-1")


@pytest.mark.parametrize(
    ("window", "exp", "issued"), [(None, NOW + 60, NOW + 60 - 86400), (600, NOW + 60, NOW - 540)]
)
def test_without_st_the_token_is_taken_as_issued_one_window_before_exp(
    window: int | None, exp: int, issued: int
) -> None:
    key = new_key(
        "w", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI, window=window
    )
    token = EdgeAuth(key=hex_of(key), end_time=exp).generate_acl_token("/videos/*")
    claims = verify(Keyring([key]), request(token), now=NOW).verified.claims
    assert (claims.issued, claims.starts, claims.prefix, claims.method) == (
        issued,
        None,
        "/videos/",
        "GET",
    )


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"ip": "203.0.113.0/24"}, "ip is not one IPv4 or IPv6 address"),
        ({"session_id": "a\u0007b"}, "Sub must be"),  # escaped early: %07 in the token
    ],
    ids=["ip-network", "control-in-id"],
)
def test_an_authentic_token_with_an_unusable_value_is_malformed(
    options: dict[str, str], said: str
) -> None:
    key = new_key(
        "e", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI, escape_early=True
    )
    auth = EdgeAuth(key=hex_of(key), end_time=NOW + 60, escape_early=True, **options)
    with pytest.raises(Rejected) as caught:
        verify(Keyring([key]), request(auth.generate_acl_token("/v/*"), "/v/a"), now=NOW)
    assert (caught.value.reason, said in caught.value.detail) == (Reason.MALFORMED, True)


def test_every_usable_key_is_tried() -> None:
    others = [
        new_key(f"a{i}", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI)
        for i in range(3)
    ]
    token = EdgeAuth(key=hex_of(KEY), end_time=NOW + 60).generate_url_token("/videos/a.mp4")
    link = verify(Keyring([*others, KEY]), request(token), now=NOW)
    assert link.verified.claims.key_id == "akamai-1"


# --- keyring entries ---------------------------------------------------------------------------


def entry(**fields: object) -> str:
    base: dict[str, object] = {
        "id": "akamai-1",
        "alg": "hmac-sha256",
        "status": "verify",
        "scheme": "akamai",
        "key": "ab" * 16,
    }
    base.update(fields)
    keys = [{k: v for k, v in base.items() if v is not None}]
    return json.dumps({"format": "edge-keyring/1", "keys": keys})


@pytest.mark.parametrize(
    ("fields", "digest", "escape_early", "window"),
    [
        ({}, "sha256", False, None),
        ({"alg": "hmac-sha1", "escape_early": True}, "sha1", True, None),
        ({"alg": "hmac-md5", "window": 600, "key": "AB" * 32}, "md5", False, 600),
    ],
    ids=["sha256", "sha1-escape-early", "md5-window"],
)
def test_an_akamai_entry_keeps_akamais_settings_through_a_reload(
    fields: dict[str, object], digest: str, escape_early: bool, window: int | None
) -> None:
    key = Keyring.loads(entry(**fields)).get("akamai-1")
    assert key is not None
    assert (key.digest, key.escape_early, key.window) == (digest, escape_early, window)
    assert Keyring.loads(Keyring([key]).dumps()).get("akamai-1") == key


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alg": "hmac-sha512"}, "'alg' is one of hmac-sha256, hmac-sha1, hmac-md5"),
        ({"key": "abc"}, "even number"),
        ({"key": "ab" * 15}, "32 or more"),
        ({"key": None}, "needs 'key'"),
        ({"secret": "AAAA"}, "unknown field"),
        ({"region": "us-east-1"}, "unknown field"),
        ({"escape_early": "yes"}, "'escape_early' must be true or false"),
        ({"window": 0}, "'window' must be 1 to"),
        ({"window": 1.5}, "'window' must be whole seconds"),
        ({"status": "active"}, "never 'active'"),
    ],
    ids=[
        "alg",
        "odd-hex",
        "short",
        "no-key",
        "secret",
        "region",
        "escape-type",
        "window-zero",
        "window-float",
        "active",
    ],
)
def test_invalid_akamai_entries_name_the_key_and_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(KeyringError, match=re.escape(message)):
        Keyring.loads(entry(**fields), "keyring test.json")


def test_at_most_four_akamai_keys_are_tried() -> None:
    keys = [
        new_key(f"a{i}", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI)
        for i in range(5)
    ]
    Keyring(keys[:4])
    with pytest.raises(KeyringError, match="more than 4 akamai keys"):
        Keyring(keys)


def test_a_retired_akamai_key_loses_its_key_in_the_export(tmp_path: Path) -> None:
    key = new_key("old", Algorithm.HMAC_SHA256, Status.RETIRED, scheme=LinkScheme.AKAMAI)
    written = json.loads(Keyring([key]).public_export().dumps(public_only=True))["keys"][0]
    assert "key" not in written
    assert written["alg"] == "hmac-sha256"


# --- signer keygen and signer verify ------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def keyring_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "gateway-keyring.json"
    hex_file = tmp_path / "akamai.hex"
    hex_file.write_text("0123456789abcdef" * 4 + "\n")
    argv = ["keygen", "--keyring", str(path), "--key-id", "akamai-1", "--scheme", "akamai"]
    code, out, _ = run(capsys, *argv, "--key-file", str(hex_file), "--digest", "sha1")
    assert code == 0
    assert "0123456789abcdef" not in out
    assert "algorithm='sha1'" in out
    assert json.loads(path.read_text())["keys"][0]["key"] == "0123456789abcdef" * 4
    assert (path.stat().st_mode & 0o777) == 0o600
    return path


def test_keygen_makes_an_akamai_key_when_none_is_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k.json"
    argv = ["keygen", "--keyring", str(path), "--key-id", "a", "--scheme", "akamai"]
    assert run(capsys, *argv, "--escape-early", "--window", "600")[0] == 0
    written = json.loads(path.read_text())["keys"][0]
    assert (written["alg"], written["escape_early"], written["window"]) == (
        "hmac-sha256",
        True,
        600,
    )
    assert len(written["key"]) == 64


def test_keygen_refuses_akamai_options_for_sigv4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keygen", "--keyring", str(tmp_path / "k.json"), "--key-id", "L", "--scheme", "sigv4"]
    assert run(capsys, *argv, "--escape-early")[0] == 2


def sha1_token(acl: str = "/videos/*", **options: object) -> str:
    token: str = EdgeAuth(
        key="0123456789abcdef" * 4, algorithm="sha1", window_seconds=600, **options
    ).generate_acl_token(acl)
    return token


@pytest.mark.parametrize(
    "where",
    [
        lambda t: ["https://media.example.com/videos/a.mp4?__token__=" + t],
        lambda t: ["https://media.example.com/videos/a.mp4", "--header", f"Cookie: hdnts={t}"],
        lambda t: ["https://media.example.com/videos/a.mp4", "--header", f"hdnts: {t}"],
    ],
    ids=["query", "cookie", "header"],
)
def test_verify_accepts_an_akamai_token_in_each_form(
    keyring_file: Path, capsys: pytest.CaptureFixture[str], where: Callable[[str], list[str]]
) -> None:
    code, out, _ = run(
        capsys, "verify", *where(sha1_token(session_id="u1")), "--keyring", str(keyring_file)
    )
    assert code == 0
    assert "valid (akamai): key 'akamai-1', path '/videos/a.mp4'" in out
    assert "prefix       /videos/" in out
    assert "sub          u1" in out


def test_verify_explains_a_bad_signature_with_the_string_signed(
    keyring_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = sha1_token(session_id="u1")
    forged = token.replace("id=u1", "id=u2")
    url = "https://media.example.com/videos/a.mp4"
    code, out, _ = run(
        capsys, "verify", url, "--header", f"Cookie: hdnts={forged}", "--keyring", str(keyring_file)
    )
    assert code == 1
    assert "rejected (akamai): bad_signature" in out
    lines = [line.strip() for line in out.splitlines()]
    assert forged.partition("~hmac=")[0] in lines  # the string the hmac covers
    assert "a sha1 token for acl /videos/*, fields as sent:" in lines
    assert token.rpartition("=")[2] not in out  # never the hmac
    assert "0123456789abcdef" not in out  # never the key


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("exp=1~hmac=" + "0" * 40, "rejected (akamai): bad_signature"),  # never judged expired
        ("exp=1~acl=/a~kid=2~hmac=" + "0" * 40, "malformed_token: 'kid=2' is not a field"),
    ],
    ids=["forged-and-expired", "unknown-field"],
)
def test_verify_says_why_a_token_is_refused(
    keyring_file: Path, capsys: pytest.CaptureFixture[str], token: str, said: str
) -> None:
    url = "https://media.example.com/videos/a.mp4?__token__=" + token
    code, out, _ = run(capsys, "verify", url, "--keyring", str(keyring_file))
    assert (code, said in out) == (1, True)


def test_a_token_dataclass_names_its_digest_by_length() -> None:
    assert Token(signed="exp=1", exp=1, hmac="0" * 40).digest == "sha1"
