"""`gateway revoke` and `gateway revocations list|prune`, against the embedded SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.revocation.entries import Kind, Revocation
from gateway.revocation.sqlite_store import SQLiteStore
from signer import Algorithm, Keyring, Status, new_key, sign_path, token_id
from signer.format import parse_link

KEYRING = Keyring([new_key("k1", Algorithm.HMAC_SHA256, Status.ACTIVE)])
LIFETIME = 604800.0  # the default max_link_lifetime
SKEW = 30.0  # the default clock_skew
RECENT = int(time.time()) - 3600  # an issue-time bound whose links can still be live


def _iso(seconds: int, offset_hours: int) -> str:
    """`seconds` in ISO 8601 with the given UTC offset (Z for 0)."""
    zone = timezone(timedelta(hours=offset_hours))
    text = datetime.fromtimestamp(seconds, zone).isoformat()
    return text.replace("+00:00", "Z")


DIGEST = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store these commands use: a SQLite file, with no other gateway setting around."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    path = tmp_path / "revocations.sqlite3"
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(path))
    monkeypatch.chdir(tmp_path)
    asyncio.run(_made_by_a_gateway(path))
    return path


async def _made_by_a_gateway(path: Path) -> None:
    """The file a gateway makes when it starts (the commands refuse to create one)."""
    store = SQLiteStore(path)
    await store.open()
    await store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(path: Path, now: float | None = None) -> list[Revocation]:
    async def read() -> list[Revocation]:
        store = SQLiteStore(path)
        try:
            return sorted(await store.entries(now), key=lambda e: e.field)
        finally:
            await store.close()

    return asyncio.run(read())


def add(path: Path, *entries: Revocation) -> None:
    async def write() -> None:
        store = SQLiteStore(path)
        try:
            for entry in entries:
                await store.add(entry)
        finally:
            await store.close()

    asyncio.run(write())


def signed(path: str = "/videos/a.mp4", **options: Any) -> str:
    return "https://media.example.com" + sign_path(path, KEYRING, expires_in=300, **options)


# -- revoke --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "kind", "stored_value"),
    [
        ("--sub", "user-42", Kind.SUB, "user-42"),
        ("--key-id", "k2026-10", Kind.KEY_ID, "k2026-10"),
        ("--prefix", "/videos/ep1/", Kind.PREFIX, "/videos/ep1"),
    ],
)
def test_a_scoped_revocation_covers_links_issued_until_now(
    db: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    kind: Kind,
    stored_value: str,
) -> None:
    start = time.time()
    code, out, err = run(capsys, "revoke", flag, value)
    end = time.time()
    assert (code, err) == (0, "")
    assert out.startswith(f"revoked {kind.value} {stored_value}, issued up to ")
    assert out.rstrip().endswith("(store: sqlite)")
    [entry] = stored(db)
    assert (entry.kind, entry.value) == (kind, stored_value)
    assert entry.before is not None
    assert start - 1 <= entry.before <= end
    assert entry.until == entry.before + LIFETIME + SKEW


@pytest.mark.parametrize(
    ("before", "seconds"),
    [
        (str(RECENT), RECENT),
        (_iso(RECENT, 0), RECENT),
        (_iso(RECENT, 1), RECENT),
    ],
    ids=["unix-seconds", "iso-8601-utc", "iso-8601-plus-one-hour"],  # stable across xdist workers
)
def test_before_takes_unix_seconds_or_iso_8601(
    db: Path, capsys: pytest.CaptureFixture[str], before: str, seconds: int
) -> None:
    code, _, _ = run(capsys, "revoke", "--sub", "user-42", "--before", before)
    assert code == 0
    assert stored(db, now=seconds) == [
        Revocation(Kind.SUB, "user-42", seconds + LIFETIME + SKEW, seconds)
    ]


def test_a_signed_url_is_revoked_by_its_token_id_until_it_expires(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = signed(sub="user-42")
    _, _, query = url.partition("?")
    link = parse_link("/videos/a.mp4", query)
    code, out, err = run(capsys, "revoke", "--url", url)
    assert (code, err) == (0, "")
    digest = token_id(link.signature)
    assert out.startswith(f"revoked token {digest}; kept until ")
    assert stored(db) == [Revocation(Kind.TOKEN, digest, link.claims.expires + SKEW)]


def test_a_digest_is_revoked_for_the_longest_lifetime_a_link_may_have(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.time()
    code, out, _ = run(capsys, "revoke", "--digest", DIGEST)
    assert code == 0
    assert out.startswith(f"revoked token {DIGEST}; kept until ")
    [entry] = stored(db)
    assert (entry.kind, entry.value, entry.before) == (Kind.TOKEN, DIGEST, None)
    assert start + LIFETIME + SKEW - 1 <= entry.until <= time.time() + LIFETIME + SKEW


def test_the_store_can_come_from_a_config_file(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_REVOCATION_DB")
    other = tmp_path / "configured.sqlite3"
    asyncio.run(_made_by_a_gateway(other))
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nrevocation_db = "{other}"\nmax_link_lifetime = 3600\n')
    before = int(time.time()) - 60  # within the configured (short) lifetime of now
    code, _, _ = run(
        capsys, "revoke", "--key-id", "k1", "--before", str(before), "--config", str(config)
    )
    assert code == 0
    assert stored(other, now=0) == [Revocation(Kind.KEY_ID, "k1", before + 3600 + SKEW, before)]
    assert stored(db, now=0) == []  # nothing went to the variable's store


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--url", "--digest"])
def test_before_is_refused_for_a_single_link(
    db: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    value = signed() if flag == "--url" else DIGEST
    code, out, err = run(capsys, "revoke", flag, value, "--before", str(RECENT))
    assert code == 2
    assert out == ""
    assert err.startswith("gateway: error: before: applies to sub, key_id and prefix")
    assert stored(db) == []


INVALID = {
    "digest not hex": (["--digest", "not-a-digest"], "digest: must be 32 lower-case hex"),
    "digest upper case": (["--digest", DIGEST.upper()], "digest:"),
    "empty sub": (["--sub", ""], "sub:"),
    "sub with control character": (["--sub", "user\x1b[31m"], "sub:"),
    "sub not utf-8": (["--sub", "user\udcff"], "sub:"),
    "bad key id": (["--key-id", "k 1"], "key_id:"),
    "relative prefix": (["--prefix", "videos/ep1"], "prefix:"),
    "prefix with dot-dot": (["--prefix", "/videos/../etc"], "prefix:"),
    "percent-encoded prefix": (["--prefix", "/a%20b/"], "prefix: give the decoded path ('/a b/')"),
    "unsigned url": (["--url", "https://media.example.com/a.mp4"], "url: not a signed link"),
    "before not a time": (["--sub", "u", "--before", "yesterday"], "'yesterday'"),
    "before without offset": (["--sub", "u", "--before", "2026-01-01T00:00:00"], "UTC offset"),
    "before out of range": (["--sub", "u", "--before", "99999999999999"], "before: out of range"),
}


@pytest.mark.parametrize(("argv", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_input_exits_2_naming_the_problem(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "revoke", *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("gateway: error: ")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--sub", "a", "--key-id", "k1"],
        ["--url", "x", "--digest", DIGEST],
        ["--sub"],
        ["--before", str(RECENT)],
    ],
    ids=["no target", "two kinds", "url and digest", "no value", "only before"],
)
def test_exactly_one_target_is_required(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["revoke", *argv])
    assert exited.value.code == 2
    assert "usage: gateway revoke" in capsys.readouterr().err


def test_an_unusable_store_file_exits_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(tmp_path / "missing" / "r.sqlite3"))
    code, _, err = run(capsys, "revoke", "--sub", "u")
    assert code == 2
    assert "revocation_db" in err
    assert "missing" in err


# -- signed links never leak ---------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_revoked_url_never_appears_in_any_output(
    db: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    url = signed()
    signature = url.rpartition("Signature=")[2]
    outputs = [run(capsys, "revoke", "--url", url)]
    outputs.append(run(capsys, "revocations", "list", *(["--json"] if as_json else [])))
    outputs.append(run(capsys, "revoke", "--url", url, "--before", "1"))
    outputs.append(run(capsys, "revoke", "--url", url.replace("Expires=", "Expires=0")))
    for _, out, err in outputs:
        assert signature not in out + err
        assert url not in out + err
        assert "Signature=" not in out + err


# -- list ----------------------------------------------------------------------------------------


def test_an_empty_list_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "revocations", "list") == (0, "no live revocations\n", "")


def test_an_empty_list_in_json_is_an_empty_array(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "revocations", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_the_list_shows_one_line_per_live_entry_in_a_stable_order(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(
        db,
        Revocation(Kind.TOKEN, DIGEST, 4_000_000_000.0),
        Revocation(Kind.SUB, "zed", 4_000_000_000.0, float(RECENT)),
        Revocation(Kind.SUB, "amy", 4_000_000_000.0, float(RECENT)),
        Revocation(Kind.SUB, "gone", 1.0, 0.0),
    )
    code, out, _ = run(capsys, "revocations", "list")
    assert code == 0
    assert out.splitlines() == [
        f"sub amy, issued up to {_iso(RECENT, 0)}; kept until 2096-10-02T07:06:40Z",
        f"sub zed, issued up to {_iso(RECENT, 0)}; kept until 2096-10-02T07:06:40Z",
        f"token {DIGEST}; kept until 2096-10-02T07:06:40Z",
    ]


def test_the_json_list_describes_every_field(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [
        Revocation(Kind.PREFIX, "/videos", 4_000_000_000.0, float(RECENT)),
        Revocation(Kind.TOKEN, DIGEST, 4_000_000_000.0),
    ]
    add(db, *entries)
    code, out, _ = run(capsys, "revocations", "list", "--json")
    assert code == 0
    assert json.loads(out) == [e.as_dict() for e in entries]


# -- prune ---------------------------------------------------------------------------------------


def test_prune_drops_expired_entries_and_keeps_live_ones(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = Revocation(Kind.KEY_ID, "k1", 4_000_000_000.0, float(RECENT))
    add(db, live, Revocation(Kind.SUB, "gone", 1.0, 0.0), Revocation(Kind.TOKEN, DIGEST, 2.0))
    assert run(capsys, "revocations", "prune") == (0, "pruned 2 expired revocation(s)\n", "")
    assert run(capsys, "revocations", "prune") == (0, "pruned 0 expired revocation(s)\n", "")
    assert stored(db, now=0) == [live]


def test_entries_revoked_by_the_cli_are_listed_by_the_cli(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "revoke", "--prefix", "/videos/ep1/")
    run(capsys, "revoke", "--prefix", "/videos/ep1")
    code, out, _ = run(capsys, "revocations", "list", "--json")
    assert code == 0
    assert [(e["kind"], e["value"]) for e in json.loads(out)] == [("prefix", "/videos/ep1")]


# -- a store that does not exist yet ---------------------------------------------------------


def test_revoking_into_a_database_that_does_not_exist_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "elsewhere" / "revocations.sqlite3"
    missing.parent.mkdir()
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(missing))

    code, _, err = run(capsys, "revoke", "--sub", "user-42")

    assert code == 2
    assert "does not exist" in err
    assert "--create" in err
    assert not missing.exists()


def test_create_starts_a_new_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "revocations.sqlite3"
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(new))

    code, out, _ = run(capsys, "revoke", "--sub", "user-42", "--create")

    assert code == 0, out
    assert [e.value for e in stored(new)] == ["user-42"]
