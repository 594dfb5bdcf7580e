"""nginx `secure_link` links: the expression parser, nginx's readings, the verdicts, the keyring
entry and `signer`. (That the gateway and real nginx agree: tests/integration/test_secure_link.py.)
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from signer import Algorithm, KeyringError, Rejected, Status, new_key, sign_url, verify_url
from signer.cli import main
from signer.keys import Keyring, LinkScheme, secure_link_key
from signer.nginx import (
    EXPIRES,
    MAX_TIME_T,
    VARIABLES,
    ExpressionError,
    decode_md5,
    normalize_uri,
    parse_expires,
    parse_expression,
)
from signer.schemes import SCHEMES, Ambiguous, LinkRequest, detect
from signer.schemes.secure_link import explain_keys, verify

SECRET = "not-a-real-secret-but-long-enough"
BOUND = f"$secure_link_expires$uri$remote_addr {SECRET}"
UNBOUND = f"$secure_link_expires$uri {SECRET}"
NOW = 1_800_000_000
CLIENT = ipaddress.ip_address("203.0.113.7")


def md5_arg(text: str) -> str:
    digest = hashlib.md5(text.encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(expires: int | str, uri: str = "/docs/a.txt", client: str = "203.0.113.7") -> str:
    """The query a backend makes for BOUND, by plain substitution."""
    return f"md5={md5_arg(f'{expires}{uri}{client} {SECRET}')}&expires={expires}"


def keyring(*expressions: str, status: Status = Status.VERIFY) -> Keyring:
    return Keyring(
        secure_link_key(f"n{i}", text, status) for i, text in enumerate(expressions or (BOUND,))
    )


def judged(
    keys: Keyring,
    raw_query: str,
    *,
    path: str = "/docs/a.txt",
    method: str = "GET",
    client: ipaddress.IPv4Address | ipaddress.IPv6Address | None = CLIENT,
    now: float = NOW,
    max_lifetime: float = 86400,
) -> str:
    """The verdict: 'ok:<key id>' or the reason."""
    request = LinkRequest(method, path, raw_query, client_ip=client, max_lifetime=max_lifetime)
    try:
        found = verify(keys, request, now=now)
    except Rejected as exc:
        return exc.reason.value
    return f"ok:{found.verified.claims.key_id}"


# --- the expression ---------------------------------------------------------------------------

LITERAL = st.text(st.characters(blacklist_characters="$", codec="utf-8"), min_size=1, max_size=12)
VARIABLE = st.sampled_from(VARIABLES)


NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, list[tuple[bool, str]]]:
    """An expression as an operator writes it ($name or ${name}, any case) and its parts."""
    names = draw(st.permutations([*draw(st.lists(VARIABLE, max_size=4)), EXPIRES]))
    parts: list[tuple[bool, str]] = []
    for name in names:
        if draw(st.booleans()):
            parts.append((False, draw(LITERAL)))
        parts.append((True, name))
    parts.append((False, draw(LITERAL)))
    text = ""
    for i, (var, value) in enumerate(parts):
        if not var:
            text += value
            continue
        spelt = "".join(c.upper() if draw(st.booleans()) else c for c in value)
        following = parts[i + 1][1] if not parts[i + 1][0] else ""
        # a name runs on over name characters: then only the bracketed form ends it
        bracketed = draw(st.booleans()) or bool(NAME_CHAR.match(following))
        text += f"${{{spelt}}}" if bracketed else f"${spelt}"
    return text, parts


def merged(parts: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for var, text in parts:
        if out and not var and not out[-1][0]:
            out[-1] = (False, out[-1][1] + text)
        else:
            out.append((var, text))
    return out


@given(expressions())
def test_an_expression_parses_into_its_literals_and_variables(
    case: tuple[str, list[tuple[bool, str]]],
) -> None:
    text, parts = case
    assert list(parse_expression(text).parts) == merged(parts)


@given(LITERAL, st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True))
def test_an_unknown_variable_is_named_and_the_secret_is_not(literal: str, name: str) -> None:
    assume(name.lower() not in VARIABLES)
    secret = f"s3cr3t:{literal}"
    with pytest.raises(ExpressionError, match=rf"unknown variable \${name} ") as caught:
        parse_expression(f"$secure_link_expires${{{name}}}${{uri}}{secret}")
    assert "s3cr3t:" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$secure_link_expires$uri$ x", "without a variable name"),
        ("$secure_link_expires${uri x", "closing bracket"),
        ("$secure_link_expires${} x", "without a variable name"),
        ("$secure_link_expires$1 x", "regex capture"),
        ("$uri$remote_addr secret", r"\$secure_link_expires is missing"),
        ("$secure_link_expires$uri", "no literal text"),
        ("$secure_link_expires$host secret", r"unknown variable \$host"),
        ("$secure_link_expires$uri_x secret", r"unknown variable \$uri_x"),
    ],
    ids=[
        "dollar-alone",
        "unclosed-bracket",
        "empty-bracket",
        "capture",
        "no-expiry",
        "no-secret",
        "unknown",
        "name-runs-on",
    ],
)
def test_an_expression_nginx_or_the_gateway_refuses(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse_expression(text)


def test_an_expression_never_shows_its_literal_text() -> None:
    expression = parse_expression(BOUND)
    assert SECRET not in repr(expression)
    assert expression.shape == "$secure_link_expires$uri$remote_addr" + "*" * len(f" {SECRET}")


# --- nginx's readings of the arguments and the path --------------------------------------------


@given(st.binary(min_size=16, max_size=16), st.sampled_from(["", "=", "==", "=x", "=%"]))
def test_the_md5_argument_reads_as_nginx_reads_it(digest: bytes, padding: str) -> None:
    text = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert decode_md5(text + padding) == digest


@given(st.binary(min_size=16, max_size=16), st.integers(0, 15))
def test_the_low_bits_of_the_last_character_are_ignored_as_by_nginx(
    digest: bytes, low: int
) -> None:
    text = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = text[:-1] + alphabet[alphabet.index(text[-1]) | low]
    assert decode_md5(variant) == digest


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A" * 21,
        "A" * 23,
        "A" * 22 + "===",
        "A" * 21 + "+",
        "A" * 21 + "/",
        "A" * 22 + ",",
        "A" * 21 + "%",
    ],
    ids=["empty", "short", "long", "over-24", "plus", "slash", "comma", "percent"],
)
def test_an_md5_argument_nginx_refuses(text: str) -> None:
    assert decode_md5(text) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("0001800000000", 1_800_000_000),
        (str(MAX_TIME_T), MAX_TIME_T),
        ("0", None),
        ("000", None),
        ("", None),
        ("+1", None),
        ("1e9", None),
        (str(MAX_TIME_T + 1), None),
        (" 1", None),
    ],
)
def test_the_expires_argument_reads_as_ngx_atotm(text: str, value: int | None) -> None:
    assert parse_expires(text) == value


@pytest.mark.parametrize(
    ("raw", "uri"),
    [
        ("/docs/a.txt", b"/docs/a.txt"),
        ("/docs%2Fa.txt", b"/docs/a.txt"),
        ("/docs/%41.txt", b"/docs/A.txt"),
        ("/docs/x/../a.txt", b"/docs/a.txt"),
        ("/docs/x/%2e%2E/a.txt", b"/docs/a.txt"),
        ("/docs%2Fx%2F..%2Fa.txt", b"/docs/a.txt"),
        ("/docs//a.txt", b"/docs/a.txt"),
        ("/docs/./a.txt", b"/docs/a.txt"),
        ("/docs/.", b"/docs/"),
        ("/docs/x/..", b"/docs/"),
        ("/a%3Fb", b"/a?b"),
        ("/a%25b", b"/a%b"),
        ("/a%252F", b"/a%2F"),
        ("/a+b%20c", b"/a+b c"),
        ("/%FF", b"/\xff"),
        ("/..", None),
        ("/../a", None),
        ("/a/%2e%2e/%2e%2e/b", None),
        ("/a%00", None),
        ("/a%2", None),
        ("/a%zz", None),
        ("docs", None),
    ],
)
def test_uri_is_nginxs_decoded_normalised_path(raw: str, uri: bytes | None) -> None:
    assert normalize_uri(raw) == uri


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_query", "scheme"),
    [
        ("md5=x&expires=1", "secure_link"),
        ("a=1&expires=1&md5=x", "secure_link"),
        ("md5=x", None),
        ("expires=1", None),
        ("MD5=x&EXPIRES=1", None),
        ("xmd5=x&expires=1", None),
        ("md5=x&Expires=1&KeyID=k&Issued=1&Signature=abc", None),
    ],
    ids=["both", "anywhere", "md5-alone", "expires-alone", "upper-case", "suffix", "our-token"],
)
def test_a_secure_link_is_a_query_with_md5_and_expires(raw_query: str, scheme: str | None) -> None:
    found = detect("/docs/a.txt", raw_query)
    assert (found.name if found else None) == scheme


@pytest.mark.parametrize(
    ("path", "raw_query"),
    [
        ("/docs/a.txt", "md5=x&expires=1&Expires=1&KeyID=k&Issued=1&Signature=abc"),
        ("/token=abc/docs/a.txt", "md5=x&expires=1"),
        ("/docs/a.txt", "md5=x&expires=1&X-Amz-Signature=abc"),
    ],
    ids=["our-query-token", "our-path-token", "sigv4"],
)
def test_a_secure_link_with_another_schemes_link_is_ambiguous(path: str, raw_query: str) -> None:
    with pytest.raises(Ambiguous):
        detect(path, raw_query)


# --- the verdicts --------------------------------------------------------------------------------


def test_a_link_a_backend_made_is_accepted_with_its_claims() -> None:
    request = LinkRequest("GET", "/docs%2Fa.txt", query(NOW + 60), client_ip=CLIENT)
    found = verify(keyring(), request, now=NOW).verified
    assert (found.path, found.claims.key_id, found.claims.expires) == (
        "/docs/a.txt",
        "n0",
        NOW + 61,
    )
    assert found.claims.ip == ipaddress.ip_network("203.0.113.7/32")


@pytest.mark.parametrize(
    ("now", "verdict"),
    [(NOW + 59, "ok:n0"), (NOW + 60.999, "ok:n0"), (NOW + 61, "expired"), (NOW + 90, "expired")],
    ids=["before", "within-the-last-second", "the-second-after", "no-skew"],
)
def test_a_link_is_valid_through_the_second_it_names(now: float, verdict: str) -> None:
    """nginx: expired when expires < now (whole seconds), with no allowance for skew."""
    assert judged(keyring(), query(NOW + 60), now=now) == verdict


@pytest.mark.parametrize(
    ("keys", "raw_query", "client", "verdict"),
    [
        (keyring(UNBOUND, BOUND), query(NOW + 60), CLIENT, "ok:n1"),
        (keyring(BOUND), query(NOW + 60, client="203.0.113.8"), CLIENT, "bad_signature"),
        (keyring(UNBOUND), query(NOW + 60), None, "bad_signature"),
        (keyring(BOUND), query(NOW + 60), None, "ip_mismatch"),
        (keyring(BOUND), query(NOW + 60).replace("md5=", "md5=A", 1), CLIENT, "malformed_token"),
        (keyring(BOUND), query(NOW + 60) + "&md5=x", CLIENT, "malformed_token"),
        (keyring(BOUND), query(NOW + 60) + "&Md5=x", CLIENT, "malformed_token"),
        (keyring(BOUND), query(NOW + 60) + "&v=2", CLIENT, "ok:n0"),
        (keyring(BOUND), query(NOW + 86400 + 60), CLIENT, "lifetime_exceeded"),
        (keyring(BOUND), query(MAX_TIME_T), CLIENT, "lifetime_exceeded"),
        (keyring(BOUND, status=Status.RETIRED), query(NOW + 60), CLIENT, "unknown_key"),
        (
            Keyring([new_key("e", Algorithm.ED25519, Status.ACTIVE)]),
            query(NOW + 60),
            CLIENT,
            "unknown_key",
        ),
    ],
    ids=[
        "second-key-of-two",
        "other-client",
        "unbound-key-unknown-client",
        "bound-key-unknown-client",
        "md5-too-long",
        "md5-repeated",
        "md5-spelt-otherwise",
        "extra-parameter-ignored",
        "beyond-max-lifetime",
        "beyond-any-time",
        "only-retired",
        "no-secure-link-key",
    ],
)
def test_the_verdict_on_a_link(
    keys: Keyring,
    raw_query: str,
    client: ipaddress.IPv4Address | None,
    verdict: str,
) -> None:
    assert judged(keys, raw_query, client=client) == verdict


@pytest.mark.parametrize(
    "path", ["/docs/", "/docs/x/..", "/docs/%FF", "/../docs/a.txt", "/docs/a%00"]
)
def test_a_path_that_names_no_object_is_malformed(path: str) -> None:
    assert judged(keyring(), query(NOW + 60), path=path) == "malformed_token"


def test_a_link_of_a_retired_key_that_is_still_known_is_retired_key() -> None:
    keys = Keyring([secure_link_key("old", BOUND, Status.RETIRED), secure_link_key("new", UNBOUND)])
    assert judged(keys, query(NOW + 60)) == "retired_key"


@pytest.mark.parametrize(("method", "verdict"), [("HEAD", "ok:n0"), ("PUT", "wrong_method")])
def test_a_link_reads_with_get_and_head_only(method: str, verdict: str) -> None:
    assert judged(keyring(), query(NOW + 60), method=method) == verdict


def test_the_link_is_taken_as_issued_as_early_as_its_lifetime_allows() -> None:
    """So a revocation by key or prefix at T covers every link still valid at T."""
    request = LinkRequest("GET", "/docs/a.txt", query(NOW + 60), client_ip=CLIENT, max_lifetime=600)
    claims = verify(keyring(), request, now=NOW).verified.claims
    assert claims.issued == NOW + 61 - 600


@pytest.mark.parametrize("padding", ["==", "=x"])
def test_every_spelling_of_one_link_is_the_one_link_to_revoke(padding: str) -> None:
    scheme = SCHEMES["secure_link"]
    original = query(NOW + 60)
    respelt = original.replace("&", f"{padding}&")
    assert respelt != original
    assert scheme.revocation("/docs%2Fa.txt", respelt) == scheme.revocation("/docs/a.txt", original)


def test_explaining_a_bad_hash_masks_the_secret() -> None:
    request = LinkRequest(
        "GET", "/docs/a.txt", query(NOW + 60, client="192.0.2.1"), client_ip=CLIENT
    )
    lines = explain_keys(keyring(), request)
    assert f"{NOW + 60}/docs/a.txt203.0.113.7{'*' * len(f' {SECRET}')}" in lines
    assert all(SECRET not in line for line in lines)


# --- the keyring entry ---------------------------------------------------------------------------


def test_a_secure_link_key_survives_save_and_reload_in_a_0600_file(tmp_path: Path) -> None:
    key = secure_link_key("nginx-media", BOUND, now=NOW)
    path = tmp_path / "gateway.json"
    Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE), key]).public_export().save(
        path, public_only=True
    )
    entry = json.loads(path.read_text())["keys"][1]
    assert entry == {
        "id": "nginx-media",
        "status": "verify",
        "created": NOW,
        "scheme": "secure_link",
        "expression": BOUND,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the expression holds nginx's secret
    assert Keyring.load(path).get("nginx-media") == key
    assert SECRET not in repr(key)


def test_a_retired_secure_link_key_loses_its_expression_on_export() -> None:
    exported = Keyring([secure_link_key("old", BOUND, Status.RETIRED)]).public_export()
    assert "expression" not in json.loads(exported.dumps())["keys"][0]
    assert not exported.has_secrets


def _entry(**fields: object) -> str:
    entry: dict[str, object] = {
        "id": "n1",
        "scheme": "secure_link",
        "status": "verify",
        "expression": BOUND,
    }
    entry.update(fields)
    entry = {k: v for k, v in entry.items() if v is not None}
    return json.dumps({"format": "edge-keyring/1", "keys": [entry]})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"expression": "$secure_link_expires$host secret"},
            r"'expression': unknown variable \$host",
        ),
        ({"expression": "$uri secret"}, r"\$secure_link_expires is missing"),
        ({"expression": 5}, "'expression' must be a string"),
        ({"expression": None}, "needs 'expression'"),
        ({"alg": "hmac-sha256"}, "has no 'alg'"),
        ({"secret": "A" * 43}, "unknown field"),
        ({"region": "us-east-1"}, "unknown field"),
        ({"status": "active"}, "never 'active'"),
    ],
    ids=["unknown-variable", "no-expiry", "type", "missing", "alg", "secret", "region", "active"],
)
def test_an_invalid_secure_link_entry_names_the_key_and_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.loads(_entry(**fields), "keyring test.json")
    assert "(id 'n1')" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_secure_link_key_never_verifies_our_tokens() -> None:
    keys = Keyring([secure_link_key("n1", BOUND)])
    assert keys.verifier_for("n1") is None


# --- signer ---------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def gateway_keyring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path / "gateway.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(BOUND + "\n"))
    argv = ["keygen", "--keyring", str(path), "--key-id", "nginx-media", "--scheme", "secure_link"]
    code, out = run(capsys, *argv, "--expression", "-")
    assert code == 0
    assert SECRET not in out
    return path


def test_signer_keygen_adds_a_secure_link_key_from_stdin(gateway_keyring: Path) -> None:
    key = Keyring.load(gateway_keyring).get("nginx-media")
    assert key is not None
    assert (key.scheme, key.status, key.expression) == (
        LinkScheme.SECURE_LINK,
        Status.VERIFY,
        BOUND,
    )
    assert stat.S_IMODE(gateway_keyring.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --expression"),
        (["--expression", "$uri secret"], "secure_link_expires is missing"),
        (["--expression", BOUND, "--region", "us-east-1"], "--region belongs to a sigv4 key"),
    ],
    ids=["no-expression", "invalid-expression", "region"],
)
def test_signer_keygen_refuses_a_secure_link_key_without_a_valid_expression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["keygen", "--keyring", str(tmp_path / "k.json"), "--key-id", "n", "--scheme"]
    assert main([*argv, "secure_link", *extra]) == 2
    assert message in capsys.readouterr().err


def test_signer_verify_accepts_a_secure_link_and_names_its_binding(
    gateway_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://media.example.com/docs/a.txt?{query(NOW + 60)}"
    code, out = run(
        capsys,
        "verify",
        url,
        "--keyring",
        str(gateway_keyring),
        "--client-ip",
        "203.0.113.7",
        "--at",
        str(NOW),
    )
    assert code == 0
    assert "valid (secure_link): key 'nginx-media', path '/docs/a.txt'" in out
    assert "203.0.113.7/32" in out


def test_signer_verify_shows_the_hashed_string_with_the_secret_masked(
    gateway_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://media.example.com/docs/a.txt?{query(NOW + 60)}"
    code, out = run(
        capsys,
        "verify",
        url,
        "--keyring",
        str(gateway_keyring),
        "--client-ip",
        "198.51.100.1",
        "--at",
        str(NOW),
    )
    assert code == 1
    assert "rejected (secure_link): bad_signature" in out
    assert f"  {NOW + 60}/docs/a.txt198.51.100.1{'*' * len(f' {SECRET}')}" in out
    assert SECRET not in out
    assert query(NOW + 60).partition("&")[0].removeprefix("md5=") not in out


def test_signer_verify_names_the_part_that_is_wrong(
    gateway_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://media.example.com/docs/a.txt?{query(NOW + 60)}".replace("expires=", "expires=x")
    code, out = run(capsys, "verify", url, "--keyring", str(gateway_keyring))
    assert code == 1
    assert "malformed_token: expires is not a positive number of unix seconds" in out


def test_signer_list_shows_a_secure_link_key_as_md5(
    gateway_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "list", "--keyring", str(gateway_keyring))
    assert code == 0
    assert "nginx-media\tmd5\tverify" in out
    assert SECRET not in out


def test_our_own_link_with_an_md5_parameter_is_still_ours() -> None:
    keys = Keyring(
        [new_key("e", Algorithm.HMAC_SHA256, Status.ACTIVE), secure_link_key("n", BOUND)]
    )
    url = sign_url("https://media.example.com/docs/a.txt?md5=x", keys, expires_in=60)
    assert detect("/docs/a.txt", urlsplit(url).query) is None
    assert verify_url(url, keys).claims.key_id == "e"
