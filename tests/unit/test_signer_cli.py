"""The `signer` command line, as a backend developer or operator uses it."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import stat
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from akamai.edgeauth import EdgeAuth
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from signer import Algorithm, Keyring, Status, new_key
from signer.cli import main
from signer.keys import LinkScheme, cloudfront_key, secure_link_key
from signer.params import PARAMS
from signer.timeparse import describe


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "keys.json"
    assert (
        run(capsys, "keygen", "--keyring", str(path), "--key-id", "k1", "--alg", "ed25519")[0] == 0
    )
    return path


def secrets_of(path: Path) -> list[str]:
    entries = json.loads(path.read_text())["keys"]
    return [e[f] for e in entries for f in ("secret", "private") if f in e]


def test_keygen_writes_a_0600_keyring_and_prints_no_secret(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    code, out, _ = run(
        capsys, "keygen", "--keyring", str(keys), "--key-id", "h1", "--alg", "hmac-sha256"
    )
    assert code == 0
    assert "as verify" in out
    code, out, _ = run(capsys, "list", "--keyring", str(keys))
    assert "k1\ted25519\tactive" in out
    assert all(secret not in out for secret in secrets_of(keys))


def test_sign_then_verify_explains_acceptance(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "https://cdn.example/v/a b.mp4",
        "--keyring",
        str(keys),
        "--expires-in",
        "600",
        "--sub",
        "user-1",
        "--ip",
        "10.0.0.0/8",
    )
    assert code == 0
    assert url.startswith("https://cdn.example/v/a%20b.mp4?Expires=")
    code, out, _ = run(
        capsys, "verify", url.strip(), "--keyring", str(keys), "--client-ip", "10.9.8.7"
    )
    assert code == 0
    assert out.startswith("valid: key 'k1', path '/v/a b.mp4'")
    assert "user-1" in out


def test_sign_an_upload_link_then_verify_shows_its_constraints(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "https://cdn.example/uploads/u1/avatar.png",
        *("--keyring", str(keys), "--expires-in", "600", "--method", "PUT"),
        *("--content-type", "image/", "--min-bytes", "1", "--max-bytes", "1000"),
        *("--no-overwrite", "--one-time", "--prefix", "/uploads/u1/"),
    )
    assert code == 0
    assert "&Method=PUT&ContentType=image/&MinBytes=1&MaxBytes=1000&NoOverwrite=1&OneTime=1&" in url

    code, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys), "--method", "PUT")

    assert code == 0
    for line in (
        "content type image/",
        "min bytes    1",
        "max bytes    1000",
        "no overwrite yes",
        "one time     yes",
    ):
        assert f"  {line}\n" in out


def test_sign_a_limited_link_then_verify_lists_its_limits_and_who_counts_them(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "/trial/film.mp4",
        *("--keyring", str(keys), "--expires-in", "600"),
        *("--max-streams", "1", "--max-uses", "3", "--max-served", "2000", "--rate", "500"),
    )
    assert code == 0
    assert "&MaxStreams=1&MaxUses=3&MaxServed=2000&Rate=500&Signature=" in url

    code, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys))

    assert code == 0
    for line in ("max streams  1", "max uses     3", "max served   2000", "rate         500"):
        assert f"  {line}\n" in out
    assert "too_many_streams, uses_exhausted, bytes_exhausted" in out


def test_verify_of_an_unlimited_link_says_nothing_of_limits(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, _ = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "600")
    _, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys))
    assert "usage limits" not in out


def test_a_subject_scoped_stream_limit_is_signed_and_verify_says_whose_streams_count(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "/trial/film.mp4",
        *("--keyring", str(keys), "--expires-in", "600", "--sub", "user-42"),
        *("--max-streams", "2", "--subject-streams"),
    )
    assert code == 0
    assert "&Sub=user-42&MaxStreams=2&SubjectStreams=1&Signature=" in url

    code, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys))

    assert code == 0
    assert "  subject streams yes\n" in out
    assert "MaxStreams 2 counts the streams of every link of subject 'user-42' together" in out


@pytest.mark.parametrize(
    "extra", [["--sub", "user-42"], ["--max-streams", "2"], ["--max-uses", "2", "--sub", "u"]]
)
def test_subject_streams_without_max_streams_and_sub_is_refused(
    keys: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code, _, err = run(
        capsys,
        "sign",
        "/trial/film.mp4",
        *("--keyring", str(keys), "--expires-in", "600", "--subject-streams", *extra),
    )
    assert code != 0
    assert "SubjectStreams needs MaxStreams and Sub" in err


@pytest.mark.parametrize("flag", ["--max-streams", "--max-uses", "--max-served", "--rate"])
def test_a_limit_on_an_upload_link_is_refused(
    keys: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    code, _, err = run(
        capsys,
        "sign",
        "/u/a.png",
        *("--keyring", str(keys), "--expires-in", "600", "--method", "PUT", flag, "2"),
    )
    assert code != 0
    assert "usage limits need a reading Method" in err


@pytest.mark.parametrize(
    ("mutate", "extra", "reason"),
    [
        (lambda u: u.replace("a.mp4", "b.mp4"), [], "bad_signature"),
        (lambda u: u, ["--client-ip", "11.0.0.1"], "ip_mismatch"),
        (lambda u: u, ["--method", "PUT"], "wrong_method"),
        (lambda u: u, ["--at", "2999-01-01T00:00:00Z"], "expired"),
        (lambda u: u, ["--at", "2000-01-01T00:00:00Z"], "issued_in_future"),
        (lambda u: u.split("?")[0], [], "missing_token"),
    ],
)
def test_verify_explains_rejection(
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[str], str],
    extra: list[str],
    reason: str,
) -> None:
    _, url, _ = run(
        capsys,
        "sign",
        "/v/a.mp4",
        "--keyring",
        str(keys),
        "--expires-in",
        "60",
        "--ip",
        "10.0.0.0/8",
    )
    code, out, _ = run(
        capsys,
        "verify",
        mutate(url.strip()),
        "--keyring",
        str(keys),
        "--client-ip",
        "10.0.0.1",
        *extra,
    )
    assert code == 1
    assert out.startswith(f"rejected: {reason}:")


@pytest.mark.parametrize(
    ("given", "written", "client"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("::ffff:7f00:1", "127.0.0.1", "::ffff:127.0.0.1"),
        ("::ffff:0:0/104", "0.0.0.0/8", "0.1.2.3"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24", "::ffff:203.0.113.9"),
    ],
)
def test_sign_writes_an_ipv4_mapped_binding_in_its_ipv4_form(
    keys: Path, capsys: pytest.CaptureFixture[str], given: str, written: str, client: str
) -> None:
    """A backend on a dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d."""
    _, url, _ = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "60",
                    "--ip", given)  # fmt: skip
    assert f"&IP={written}&" in url
    code, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys), "--client-ip", client)
    assert (code, out.split(":")[0]) == (0, "valid")


def test_a_bad_signature_shows_the_string_to_sign_but_not_the_signature(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, _ = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "60")
    forged = url.strip().replace("/v/a.mp4", "/v/b.mp4")
    _, out, _ = run(capsys, "verify", forged, "--keyring", str(keys))
    assert "EDGE-TOKEN-V1" in out
    assert "/v/b.mp4" in out
    assert forged.rpartition("Signature=")[2] not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires-in", "0"], "must be positive"),
        (["--expires-in", "-5"], "must be positive"),
        (["--expires-in", str(8 * 86400)], "exceeds the maximum"),
        (["--expires-at", "2000-01-01T00:00:00Z"], "must be positive"),
        (["--expires-in", "60", "--prefix", "/other/"], "not under the prefix"),
        (["--expires-in", "60", "--prefix", "/v"], "must end with '/'"),
        (["--expires-in", "60", "--ip", "10.0.0.1/8"], "host bits"),
        (["--expires-in", "60", "--max-bytes", "5"], "need Method=PUT"),
    ],
)
def test_sign_guard_rails(
    keys: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), *args)
    assert code == 2
    assert out == ""
    assert message in err


def test_a_long_lifetime_needs_an_explicit_limit(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        capsys,
        "sign",
        "/v/a.mp4",
        "--keyring",
        str(keys),
        "--expires-in",
        str(30 * 86400),
        "--max-lifetime",
        str(31 * 86400),
    )
    assert code == 0


def test_a_keyring_without_an_active_key_is_a_clear_error(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Keyring.load(keys).public_export().save(keys, public_only=True)
    code, _, err = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "60")
    assert code == 2
    assert "no private material" in err


def test_rotate_then_retire(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, old_url, _ = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "60")
    assert run(capsys, "rotate", "--keyring", str(keys), "--key-id", "k2")[0] == 0
    assert run(capsys, "verify", old_url.strip(), "--keyring", str(keys))[0] == 0
    assert run(capsys, "retire", "--keyring", str(keys), "k1")[0] == 0
    code, out, _ = run(capsys, "verify", old_url.strip(), "--keyring", str(keys))
    assert (code, out.split(":")[0:2]) == (1, ["rejected", " retired_key"])


def test_export_public_refuses_to_print_hmac_secrets(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "export-public", "--keyring", str(keys))
    assert code == 0
    assert json.loads(out)["keys"][0].keys() == {"id", "alg", "status", "created", "public"}
    run(capsys, "keygen", "--keyring", str(keys), "--key-id", "h1", "--alg", "hmac-sha256")
    code, out, err = run(capsys, "export-public", "--keyring", str(keys))
    assert (code, out) == (2, "")
    assert "--output" in err
    target = tmp_path / "gw.json"
    assert run(capsys, "export-public", "--keyring", str(keys), "--output", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_installed_console_script_shows_examples() -> None:
    exe = shutil.which("signer")
    if exe is None:
        pytest.skip("the signer console script is not on PATH (run inside the virtualenv)")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "examples:" in result.stdout
    assert "signer sign" in result.stdout


def test_sign_in_the_path_form_gives_a_url_that_verifies_under_its_prefix(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "https://cdn.example/hls/ep1/master.m3u8",
        "--keyring",
        str(keys),
        "--expires-in",
        "600",
        "--prefix",
        "/hls/ep1/",
        "--path-form",
    )
    assert code == 0
    assert url.startswith("https://cdn.example/token=")
    assert url.strip().endswith("/hls/ep1/master.m3u8")
    segment = url.strip().rpartition("/hls/ep1/")[0]
    code, out, _ = run(
        capsys, "verify", f"{segment}/hls/ep1/720p/seg001.ts", "--keyring", str(keys)
    )
    assert code == 0
    assert "path '/hls/ep1/720p/seg001.ts'" in out


def test_sign_a_download_name_shows_in_verify(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "sign",
        "/billing/7f3a.pdf",
        "--keyring",
        str(keys),
        "--expires-in",
        "600",
        "--download-as",
        "Rechnung März.pdf",
    )
    assert code == 0
    assert "ResponseContentDisposition=attachment%3B" in url
    code, out, _ = run(capsys, "verify", url.strip(), "--keyring", str(keys))
    assert code == 0
    assert "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf" in out


def _sign_flags() -> set[str]:
    from signer.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {flag for action in commands.choices["sign"]._actions for flag in action.option_strings}


def test_every_binding_of_the_parameter_table_is_a_sign_flag() -> None:
    keywords = {p.keyword for p in PARAMS if p.keyword is not None}
    assert {f"--{k.replace('_', '-')}" for k in keywords} <= _sign_flags()


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [(1_790_000_100.0, 1_790_000_399.9, True), (1_790_000_399.9, 1_790_000_400.0, False)],
)
def test_a_window_gives_one_url_for_the_whole_window(
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    first: float,
    second: float,
    same: bool,
) -> None:
    urls = []
    for moment in (first, second):
        monkeypatch.setattr("signer.cli.time.time", lambda moment=moment: moment)
        urls.append(run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in",
                        "600", "--window", "300")[1])  # fmt: skip
    assert (urls[0] == urls[1]) is same


def test_verify_applies_a_lifetime_bound(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, url, _ = run(capsys, "sign", "/v/a.mp4", "--keyring", str(keys), "--expires-in", "600")
    code, out, _ = run(
        capsys, "verify", url.strip(), "--keyring", str(keys), "--max-lifetime", "60"
    )
    assert (code, out.split(":")[0:2]) == (1, ["rejected", " lifetime_exceeded"])


def test_a_download_name_and_an_explicit_disposition_are_one_too_many(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "sign", "/v/a.pdf", "--keyring", str(keys), "--expires-in",
                         "60", "--download-as", "a.pdf", "--response-content-disposition",
                         "inline")  # fmt: skip
    assert (code, out) == (2, "")
    assert "not both" in err


def test_verify_shows_every_binding_the_link_carries(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, _ = run(capsys, "sign", "/hls/1/a.ts", "--keyring", str(keys), "--expires-in", "600",
                    "--starts-at", "1000000000", "--prefix", "/hls/1/", "--ip", "10.0.0.0/8",
                    "--sub", "u-1", "--response-content-type", "video/mp2t")  # fmt: skip
    code, out, _ = run(
        capsys, "verify", url.strip(), "--keyring", str(keys), "--client-ip", "10.1.1.1"
    )
    assert code == 0
    for line in (
        "starts       2001-09-09T01:46:40Z",
        "prefix       /hls/1/",
        "ip           10.0.0.0/8",
        "sub          u-1",
        "response content type video/mp2t",
    ):
        assert f"  {line}" in out


# --- S3 presigned URLs (scheme sigv4) -----------------------------------------------------------


@pytest.fixture
def link_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "gateway-keyring.json"
    code, out, _ = run(
        capsys, "keygen", "--keyring", str(path), "--key-id", "GWLINKS01", "--scheme", "sigv4"
    )
    assert code == 0
    assert "aws_access_key_id='GWLINKS01'" in out
    assert all(secret not in out for secret in secrets_of(path))
    assert json.loads(path.read_text())["keys"][0]["scheme"] == "sigv4"
    return path


def presign(keyring: Path, operation: str = "get_object", **params: str) -> str:
    import botocore.session
    from botocore.config import Config

    client: Any = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://media.example.com",
        aws_access_key_id="GWLINKS01",
        aws_secret_access_key=secrets_of(keyring)[0],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url: str = client.generate_presigned_url(
        operation, Params={"Bucket": "media", "Key": "docs/a b.pdf", **params}, ExpiresIn=600
    )
    return url


def test_verify_accepts_a_presigned_url_and_names_its_bucket_and_path(
    link_keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = presign(link_keys, ResponseContentDisposition="attachment")
    code, out, _ = run(capsys, "verify", url, "--keyring", str(link_keys))
    assert code == 0
    assert "valid (sigv4): key 'GWLINKS01', bucket 'media', path '/docs/a b.pdf'" in out
    assert "disposition  attachment" in out
    assert "token id " in out


def test_verify_explains_a_bad_signature_as_s3_does(
    link_keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = presign(link_keys)
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    code, out, _ = run(capsys, "verify", forged, "--keyring", str(link_keys))
    assert code == 1
    assert "rejected (sigv4): bad_signature" in out
    lines = [line.strip() for line in out.splitlines()]
    canonical = lines.index("the canonical request was (between the lines):")
    assert lines[canonical + 2 : canonical + 4] == ["GET", "/media/docs/a%20b.pdf"]
    assert "host:media.example.com" in lines
    assert "UNSIGNED-PAYLOAD" in lines
    assert "AWS4-HMAC-SHA256" in lines
    assert forged.rpartition("=")[2] not in out  # never the signature
    assert all(secret not in out for secret in secrets_of(link_keys))


@pytest.mark.parametrize(
    ("headers", "code", "said"),
    [
        (["--header", "Content-Type: image/jpeg"], 0, "valid (sigv4)"),
        (["--header", "Content-Type: image/png"], 1, "bad_signature"),
        ([], 1, "bad_signature: the link signs content-type, which was not sent"),
        (
            ["--method", "GET", "--header", "Content-Type: image/jpeg"],
            1,
            "wrong_method: the link is signed for PUT",
        ),
    ],
    ids=["as-signed", "another-type", "none", "get"],
)
def test_verify_takes_the_headers_and_method_a_presigned_put_signs(
    link_keys: Path,
    capsys: pytest.CaptureFixture[str],
    headers: list[str],
    code: int,
    said: str,
) -> None:
    url = presign(link_keys, "put_object", ContentType="image/jpeg")
    method = [] if "--method" in headers else ["--method", "PUT"]
    result, out, _ = run(capsys, "verify", url, "--keyring", str(link_keys), *method, *headers)
    assert (result, said in out) == (code, True)


def test_a_sigv4_key_is_never_generated_active(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k.json"
    argv = ["keygen", "--keyring", str(path), "--key-id", "L1", "--scheme", "sigv4"]
    code, _, err = run(capsys, *argv, "--status", "active")
    assert code == 2
    assert "never active" in err
    assert not path.exists()


def test_verify_refuses_a_url_with_two_schemes_links(
    link_keys: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = run(capsys, "sign", "/docs/a.pdf", "--keyring", str(keys), "--expires-in", "60")[1]
    url = presign(link_keys) + "&" + ours.strip().partition("?")[2]
    code, out, _ = run(capsys, "verify", url, "--keyring", str(link_keys))
    assert (code, out.startswith("rejected: ambiguous_link")) == (1, True)


@pytest.mark.parametrize("digest", ["sha1", "md5", "sha256"])
def test_list_shows_an_akamai_keys_hmac_as_its_entry_names_it(
    keys: Path, capsys: pytest.CaptureFixture[str], digest: str
) -> None:
    args = ["--key-id", "ak1", "--scheme", "akamai", "--digest", digest]
    assert run(capsys, "keygen", "--keyring", str(keys), *args)[0] == 0
    code, out, _ = run(capsys, "list", "--keyring", str(keys))
    assert code == 0
    assert f"ak1\thmac-{digest}\tverify" in out


# --- links that state no issue time (nginx secure_link, CloudFront, Akamai) -------------------

NOW = 1_800_000_000
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
AKAMAI = new_key("ak1", Algorithm.HMAC_SHA256, Status.VERIFY, scheme=LinkScheme.AKAMAI, window=600)
NGINX = "$secure_link_expires$uri not-a-real-secret-but-long-enough"


def cloudfront_link(expires: int) -> str:
    signer: Any = CloudFrontSigner(
        "K1", lambda m: PRIVATE.sign(m, padding.PKCS1v15(), hashes.SHA1())
    )
    url: str = signer.generate_presigned_url(
        "https://media.example.com/docs/a.txt", date_less_than=datetime.fromtimestamp(expires, UTC)
    )
    return url


def secure_link(expires: int) -> str:
    """nginx's link valid through the second before `expires` (the claims' expiry)."""
    text = NGINX.replace("$secure_link_expires$uri", f"{expires - 1}/docs/a.txt")
    md5 = base64.urlsafe_b64encode(hashlib.md5(text.encode()).digest()).decode().rstrip("=")
    return f"https://media.example.com/docs/a.txt?md5={md5}&expires={expires - 1}"


def akamai_link(expires: int) -> str:
    assert AKAMAI.secret is not None
    token = EdgeAuth(key=AKAMAI.secret.hex(), end_time=expires).generate_acl_token("/docs/*")
    return f"https://media.example.com/docs/a.txt?__token__={token}"


@pytest.fixture
def unstated_keys(tmp_path: Path) -> Path:
    path = tmp_path / "links.json"
    der = PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    Keyring([cloudfront_key("K1", der), secure_link_key("nginx", NGINX), AKAMAI]).save(path)
    return path


@pytest.mark.parametrize(
    ("link", "bound", "counted_from"),
    [
        (cloudfront_link, "600", "the max link lifetime"),
        (secure_link, "600", "the max link lifetime"),
        (akamai_link, "3600", "the key's window"),
    ],
    ids=["cloudfront", "secure_link", "akamai"],
)
def test_verify_says_alike_how_a_link_without_an_issue_time_is_counted(
    unstated_keys: Path,
    capsys: pytest.CaptureFixture[str],
    link: Callable[[int], str],
    bound: str,
    counted_from: str,
) -> None:
    """Every scheme counts such a link as issued 600 s (its lifetime) before its expiry."""
    argv = ["--keyring", str(unstated_keys), "--at", str(NOW), "--max-lifetime", bound]
    code, out, _ = run(capsys, "verify", link(NOW + 300), *argv)
    issued = describe(NOW + 300 - 600, NOW)
    assert code == 0
    assert f"  issued  not stated; counted as {issued} (the expiry minus {counted_from})\n" in out
