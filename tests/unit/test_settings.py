"""Specification of `gateway.settings`: defaults, TOML file < GATEWAY_* environment < overrides.

Every test passes `environ` explicitly so the developer's own environment never leaks in. The
file origin is used as the baseline because an s3 origin additionally needs a region.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.client_address import ForwardedHeader
from gateway.settings import (
    ENV_NAMES,
    ENV_PREFIX,
    SETTING_NAMES,
    SETTINGS,
    CacheSettings,
    Connections,
    Cookie,
    Cors,
    LimitSettings,
    LinkRules,
    Listen,
    Logging,
    Origin,
    Proxies,
    Revocations,
    Settings,
    SettingsError,
    Timeouts,
    Tls,
    Uploads,
    load,
    settings_table,
)
from gateway.settings import S3 as S3Settings

ORIGIN = "file:///srv/objects"
KEYRING = "/etc/gateway/keyring.json"
REQUIRED = {"GATEWAY_ORIGIN": ORIGIN, "GATEWAY_KEYRING": KEYRING}


def env(**settings: str) -> dict[str, str]:
    """The required settings plus `settings`, as GATEWAY_* variables."""
    return REQUIRED | {ENV_PREFIX + name.upper(): value for name, value in settings.items()}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_toml(
    directory: Path, values: dict[str, Any], *, table: bool = False, name: str = "gateway.toml"
) -> Path:
    lines = ["[gateway]"] if table else []
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


FILE_REQUIRED = {"origin": ORIGIN, "keyring": KEYRING}

# One non-default value per setting: (name, text as written in env or file, parsed value).
SAMPLES: list[tuple[str, str, Any]] = [
    ("listen", "0.0.0.0:8000", Listen("0.0.0.0", 8000)),
    ("admin_listen", "[::1]:9999", Listen("::1", 9999)),
    ("origin", "file:///data/objects", Origin("file", "", "", Path("/data/objects"))),
    ("s3_endpoint_url", "http://127.0.0.1:8333", "http://127.0.0.1:8333"),
    ("s3_region", "eu-west-1", "eu-west-1"),
    ("keyring", "/run/keys/gateway.json", Path("/run/keys/gateway.json")),
    (
        "trusted_proxies",
        "10.0.0.0/8, ::1",
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")),
    ),
    ("forwarded_header", "forwarded", ForwardedHeader.FORWARDED),
    ("clock_skew", "12.5", 12.5),
    ("cache_control", "no-store", "no-store"),
    ("connect_timeout", "1.5", 1.5),
    ("first_byte_timeout", "7", 7.0),
    ("idle_timeout", "9", 9.0),
    ("send_timeout", "0.5", 0.5),
    ("shutdown_grace", "60", 60.0),
    ("header_timeout", "4.5", 4.5),
    ("keepalive_timeout", "75", 75.0),
    ("max_connections", "5000", 5000),
    ("chunk_size", "65536", 65536),
    ("origin_connections", "32", 32),
    ("zero_copy", "false", False),
    ("max_upload_bytes", "1048576", 1048576),
    ("upload_part_size", "16777216", 16777216),
    ("upload_lease", "10", 10.0),
    ("upload_sweep_interval", "0", 0.0),
    ("workers", "4", 4),
    ("keyring_watch_interval", "0", 0.0),
    ("revocation_db", "/var/lib/gateway/revocations.db", Path("/var/lib/gateway/revocations.db")),
    ("max_link_lifetime", "86400", 86400.0),
    ("redis_url", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("revocation_max_staleness", "5", 5.0),
    ("revocation_fail_open", "true", True),
    ("limit_stream_lease", "4", 4.0),
    ("limit_fail_open", "true", True),
    ("admin_token", "operator-bearer", "operator-bearer"),
    (
        "cors_origins",
        "https://app.example.com, http://localhost:3000",
        ("https://app.example.com", "http://localhost:3000"),
    ),
    ("cors_credentials", "true", True),
    ("cors_max_age", "60", 60),
    ("token_cookie", "true", True),
    ("cookie_samesite", "strict", "Strict"),
    ("cookie_secure", "false", False),
    ("inline_active_types", "true", True),
    ("access_log", "false", False),
    ("cache", "true", True),
    ("tls_certificate", "/etc/tls/cert.pem", Path("/etc/tls/cert.pem")),
    ("tls_key", "/etc/tls/key.pem", Path("/etc/tls/key.pem")),
    ("cache_dir", "/srv/cache", Path("/srv/cache")),
    ("cache_disk_bytes", "1000", 1000),
    ("cache_memory_bytes", "2000", 2000),
    ("cache_memory_object_bytes", "3000", 3000),
    ("cache_slice_bytes", "1048576", 1048576),
    ("cache_ttl", "5", 5.0),
    ("cache_stale_if_error", "600", 600.0),
    ("log_level", "debug", "DEBUG"),
]
SAMPLE_IDS = [name for name, _, _ in SAMPLES]
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def setting_value(settings: Settings, name: str) -> Any:
    """A setting's value by its file name (settings are grouped: `timeouts.connect` is
    `connect_timeout`)."""
    return SETTINGS_BY_NAME[name].get(settings)


# --- defaults and required settings -------------------------------------------------------


def test_only_the_required_settings_give_the_documented_defaults() -> None:
    settings = load(environ=REQUIRED)

    assert settings == Settings(
        listen=Listen("127.0.0.1", 8080),
        admin_listen=Listen("127.0.0.1", 9090),
        origin=Origin("file", "", "", Path("/srv/objects")),
        keyring=Path(KEYRING),
        keyring_watch_interval=2.0,
        cache_control="private, max-age=300",
        chunk_size=262144,
        zero_copy=True,
        inline_active_types=False,
        workers=1,
        admin_token=None,
        links=LinkRules(clock_skew=30.0, max_lifetime=604800.0),
        timeouts=Timeouts(connect=5.0, first_byte=30.0, idle=30.0, send=60.0, shutdown_grace=30.0),
        connections=Connections(header_timeout=10.0, keepalive_timeout=15.0, max_connections=None),
        s3=S3Settings(endpoint_url=None, region=None, connections=256),
        uploads=Uploads(
            max_bytes=5 * 1024**3, part_size=8 * 1024**2, lease=30.0, sweep_interval=60.0
        ),
        revocation=Revocations(
            db=Path("/var/lib/edge-gateway/revocations.sqlite3"),
            redis_url=None,
            max_staleness=30.0,
            fail_open=False,
        ),
        limits=LimitSettings(stream_lease=10.0, fail_open=False),
        proxies=Proxies(networks=(), header=ForwardedHeader.X_FORWARDED_FOR),
        cors=Cors(origins=(), credentials=False, max_age=600),
        cookie=Cookie(enabled=False, same_site="Lax", secure=None),
        log=Logging(access=True, level="INFO"),
        cache=CacheSettings(
            enabled=False,
            directory=Path("/var/cache/edge-gateway"),
            disk_bytes=10 * 1024**3,
            memory_bytes=256 * 1024**2,
            memory_object_bytes=1024**2,
            slice_bytes=4 * 1024**2,
            ttl=60.0,
            stale_if_error=0.0,
        ),
        tls=Tls(certificate=None, key=None),
    )


@pytest.mark.parametrize(
    ("extra", "snapshot"),
    [
        ({}, None),
        (
            {"redis_url": "redis://10.0.0.5:6379/0"},
            Path("/var/lib/edge-gateway/revocations.snapshot.json"),
        ),
        (
            {"redis_url": "redis://10.0.0.5:6379/0", "revocation_db": "/data/gw.db"},
            Path("/data/gw.snapshot.json"),
        ),
    ],
    ids=["embedded-store-is-its-own-snapshot", "beside-the-default-db", "beside-revocation_db"],
)
def test_with_redis_the_revocation_snapshot_is_kept_beside_revocation_db(
    extra: dict[str, str], snapshot: Path | None
) -> None:
    assert load(environ=env(**extra)).revocation.snapshot == snapshot


def test_the_required_settings_are_origin_and_keyring() -> None:
    assert {s.name for s in SETTINGS if s.default is None} == {"origin", "keyring"}


@pytest.mark.parametrize("missing", ["GATEWAY_ORIGIN", "GATEWAY_KEYRING"])
def test_a_missing_required_setting_is_an_error_naming_its_variable(missing: str) -> None:
    environ = {k: v for k, v in REQUIRED.items() if k != missing}

    with pytest.raises(SettingsError, match=rf"^{missing}: required"):
        load(environ=environ)


def test_nothing_at_all_is_an_error() -> None:
    with pytest.raises(SettingsError, match="required"):
        load(environ={})


# --- every setting from every source --------------------------------------------------------


def test_the_samples_cover_every_setting() -> None:
    assert set(SAMPLE_IDS) == SETTING_NAMES
    assert len(SAMPLE_IDS) == len(SETTINGS)


@pytest.mark.parametrize(("name", "text", "expected"), SAMPLES, ids=SAMPLE_IDS)
def test_every_setting_can_be_set_from_its_environment_variable(
    name: str, text: str, expected: Any
) -> None:
    assert setting_value(load(environ=REQUIRED), name) != expected  # the sample is not the default

    settings = load(environ=env(**{name: text}))

    assert setting_value(settings, name) == expected


@pytest.mark.parametrize("table", [False, True], ids=["top-level", "gateway-table"])
@pytest.mark.parametrize(("name", "text", "expected"), SAMPLES, ids=SAMPLE_IDS)
def test_every_setting_can_be_set_in_the_toml_file(
    tmp_path: Path, name: str, text: str, expected: Any, table: bool
) -> None:
    config = write_toml(tmp_path, FILE_REQUIRED | {name: text}, table=table)

    settings = load(config, environ={})

    assert setting_value(settings, name) == expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("workers", 4, 4),
        ("chunk_size", 65536, 65536),
        ("clock_skew", 2.5, 2.5),
        ("connect_timeout", 3, 3.0),
        ("access_log", False, False),
        ("access_log", True, True),
        (
            "trusted_proxies",
            ["10.0.0.0/8", "192.0.2.1"],
            (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.1")),
        ),
        ("trusted_proxies", [], ()),
        ("max_connections", 500, 500),
    ],
)
def test_toml_numbers_booleans_and_lists_are_accepted_natively(
    tmp_path: Path, name: str, value: Any, expected: Any
) -> None:
    config = write_toml(tmp_path, FILE_REQUIRED | {name: value})

    assert setting_value(load(config, environ={}), name) == expected


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"file"}, 2),
        ({"env"}, 3),
        ({"overrides"}, 4),
        ({"file", "env"}, 3),
        ({"file", "overrides"}, 4),
        ({"env", "overrides"}, 4),
        ({"file", "env", "overrides"}, 4),
        (set(), 1),
    ],
    ids=lambda v: ("+".join(sorted(v)) or "defaults") if isinstance(v, set) else str(v),
)
def test_precedence_is_file_then_environment_then_overrides(
    tmp_path: Path, layers: set[str], expected: int
) -> None:
    config = write_toml(tmp_path, {"workers": 2}) if "file" in layers else None
    environ = env(workers="3") if "env" in layers else dict(REQUIRED)
    overrides = {"workers": "4"} if "overrides" in layers else None

    assert load(config, environ=environ, overrides=overrides).workers == expected


def test_the_environment_supplies_required_settings_missing_from_the_file(
    tmp_path: Path,
) -> None:
    config = write_toml(tmp_path, {"workers": 2})

    settings = load(config, environ=REQUIRED)

    assert (settings.origin.path, settings.keyring, settings.workers) == (
        Path("/srv/objects"),
        Path(KEYRING),
        2,
    )


def test_overrides_supply_required_settings() -> None:
    settings = load(environ={}, overrides={"origin": ORIGIN, "keyring": KEYRING})

    assert settings.keyring == Path(KEYRING)


# --- invalid values ---------------------------------------------------------------------------

INVALID: list[tuple[str, str, str]] = [
    # (setting, value, what the message must say about why)
    ("listen", "localhost", "must be host:port"),
    ("listen", "::1:8080", "must be host:port"),
    ("listen", "127.0.0.1:http", "must be host:port"),
    ("listen", "127.0.0.1:", "must be host:port"),
    ("admin_listen", "127.0.0.1:65536", "port must be 0-65535"),
    ("admin_listen", "[::1]:99999", "port must be 0-65535"),
    ("origin", "http://bucket/prefix", "must start with s3:// or file://"),
    ("origin", "/srv/objects", "must start with s3:// or file://"),
    ("origin", "s3:///prefix", "must name a bucket"),
    ("origin", "s3://", "must name a bucket"),
    ("origin", "s3://bucket/a/../b", "'..'"),
    ("origin", "s3://bucket/..", "'..'"),
    ("origin", "s3://bucket/a/%2e%2e/b", "'..'"),
    ("origin", "s3://bucket/a\\b", "backslash"),
    ("origin", "file://fileserver/srv/objects", "must be file:///absolute/path"),
    ("origin", "file://", "must be file:///absolute/path"),
    ("keyring", "", "must be a file path"),
    ("keyring", "   ", "must be a file path"),
    ("clock_skew", "-1", "between 0 and 86400"),
    ("connect_timeout", "0", "between 0 and 86400"),
    ("connect_timeout", "-0.5", "between 0 and 86400"),
    ("first_byte_timeout", "86401", "between 0 and 86400"),
    ("idle_timeout", "1e9", "between 0 and 86400"),
    ("shutdown_grace", "inf", "between 0 and 86400"),
    ("shutdown_grace", "nan", "between 0 and 86400"),
    ("idle_timeout", "soon", "float"),
    ("workers", "1.5", "int"),
    ("workers", "two", "int"),
    ("workers", "", "int"),
    ("workers", "0", "must be an integer from 1 to 256"),
    ("workers", "257", "must be an integer from 1 to 256"),
    ("chunk_size", "4095", "must be an integer from 4096 to 16777216"),
    ("origin_connections", "0", "must be an integer from 1 to 10000"),
    ("max_connections", "0", "must be auto or an integer from 1 to 10000000"),
    ("max_connections", "many", "must be auto or an integer from 1 to 10000000"),
    ("max_upload_bytes", "0", "must be an integer from 1 to 5497558138880"),
    ("upload_part_size", "5242879", "must be an integer from 5242880 to 536870912"),
    ("upload_lease", "0", "between 0 and 86400"),
    ("upload_sweep_interval", "-1", "from 0 to 86400"),
    ("access_log", "maybe", "must be true or false"),
    ("access_log", "", "must be true or false"),
    ("trusted_proxies", "10.0.0.1/8", "host bits set"),
    ("trusted_proxies", "10.0.0.0/8, 192.168.1.1/16", "host bits set"),
    ("trusted_proxies", "10.0.0.300", "not an IP address or CIDR"),
    ("forwarded_header", "x-real-ip", "must be x-forwarded-for or forwarded"),
    ("log_level", "verbose", "must be DEBUG, INFO, WARNING or ERROR"),
    ("redis_url", "http://127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL"),
    ("redis_url", "127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL"),
    ("redis_url", "redis+sentinel://h1:26379/", "/<service name>"),
    ("redis_url", "redis+sentinel://:pw@h1:0/m", "port must be a number from 1 to 65535"),
    ("redis_url", "redis+sentinel://h1/m?sentinel_pasword=pw", "unknown parameter"),
    ("revocation_max_staleness", "-1", "seconds"),
    ("max_link_lifetime", "59", "from 60 to 31622400"),
    ("log_level", "critical", "must be DEBUG, INFO, WARNING or ERROR"),
]
INVALID_IDS = [f"{name}={value!r}" for name, value, _ in INVALID]


@pytest.mark.parametrize(("name", "value", "why"), INVALID, ids=INVALID_IDS)
def test_an_invalid_environment_value_names_the_variable_and_says_why(
    name: str, value: str, why: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load(environ=env(**{name: value}))

    message = str(error.value)
    assert message.startswith(f"GATEWAY_{name.upper()}: ")
    assert why in message
    if SETTINGS_BY_NAME[name].secret:  # a secret is never echoed, even when it is wrong
        assert value not in message
        assert "<hidden>" in message
    else:
        assert repr(value) in message  # the offending value is quoted


@pytest.mark.parametrize("table", [False, True], ids=["top-level", "gateway-table"])
@pytest.mark.parametrize(("name", "value", "why"), INVALID, ids=INVALID_IDS)
def test_an_invalid_file_value_names_the_file_and_key_and_says_why(
    tmp_path: Path, name: str, value: str, why: str, table: bool
) -> None:
    config = write_toml(tmp_path, FILE_REQUIRED | {name: value}, table=table)

    with pytest.raises(SettingsError) as error:
        load(config, environ={})

    message = str(error.value)
    assert message.startswith(f"{config}: {name}: ")
    assert why in message


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("workers", True, "int"),
        ("workers", 2.0, "int"),
        ("listen", 8080, "must be host:port"),
        ("access_log", 2, "must be true or false"),
        ("connect_timeout", 0, "between 0 and 86400"),
    ],
)
def test_a_toml_value_of_the_wrong_kind_is_an_error(
    tmp_path: Path, name: str, value: Any, why: str
) -> None:
    config = write_toml(tmp_path, FILE_REQUIRED | {name: value})

    with pytest.raises(SettingsError, match=rf"^{re.escape(str(config))}: {name}: ") as error:
        load(config, environ={})

    assert why in str(error.value)


def test_a_toml_table_where_a_value_belongs_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'origin = "{ORIGIN}"\nkeyring = "{KEYRING}"\n[listen]\nhost = "0.0.0.0"\n',
        encoding="utf-8",
    )

    with pytest.raises(
        SettingsError, match=rf"^{re.escape(str(config))}: listen: must be a string"
    ):
        load(config, environ={})


def test_an_upload_bound_beyond_what_the_parts_can_carry_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^GATEWAY_MAX_UPLOAD_BYTES: above 10000 parts"):
        load(environ=env(upload_part_size=str(5 * 1024**2), max_upload_bytes=str(60 * 1024**3)))


def test_an_invalid_override_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--admin-listen: 'nowhere' must be host:port"):
        load(environ=REQUIRED, overrides={"admin_listen": "nowhere"})


# --- unknown names, unreadable files ---------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["GATEWAY_LISTN", "GATEWAY_WORKER", "GATEWAY_ORIGIN_URL", "GATEWAY_", "GATEWAY_x"]
)
def test_an_unknown_gateway_environment_variable_is_an_error_naming_it(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: not a gateway setting"):
        load(environ=REQUIRED | {variable: "1"})


@pytest.mark.parametrize("variable", ["PATH", "GATEWAYLISTEN", "MY_GATEWAY_LISTEN", "gateway_x"])
def test_other_environment_variables_are_ignored(variable: str) -> None:
    assert load(environ=REQUIRED | {variable: "x"}) == load(environ=REQUIRED)


def test_the_lower_case_name_of_a_setting_is_not_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"^GATEWAY_workers: not a gateway setting"):
        load(environ=REQUIRED | {"GATEWAY_workers": "2"})


@pytest.mark.parametrize("table", [False, True], ids=["top-level", "gateway-table"])
@pytest.mark.parametrize("key", ["lisen", "GATEWAY_LISTEN", "Workers", "timeout"])
def test_an_unknown_toml_key_is_an_error_naming_it(tmp_path: Path, key: str, table: bool) -> None:
    config = write_toml(tmp_path, FILE_REQUIRED | {key: "1"}, table=table)

    with pytest.raises(SettingsError) as error:
        load(config, environ={})

    assert str(error.value) == f"{config}: {key}: not a gateway setting"


def test_a_misspelt_gateway_table_is_an_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gatway]\nworkers = 2\norigin = "file:///x"\n', encoding="utf-8")

    with pytest.raises(
        SettingsError, match=rf"^{re.escape(str(config))}: gatway: not a gateway setting"
    ):
        load(config, environ=REQUIRED)


def test_a_setting_outside_an_existing_gateway_table_is_an_error_naming_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'workers = 8\n[gateway]\norigin = "{ORIGIN}"\nkeyring = "{KEYRING}"\n',
        encoding="utf-8",
    )

    with pytest.raises(SettingsError, match="workers"):
        load(config, environ={})


def test_a_gateway_key_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('gateway = "yes"\n', encoding="utf-8")

    with pytest.raises(SettingsError, match=r"\[gateway\] must be a table"):
        load(config, environ=REQUIRED)


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "absent.toml"

    with pytest.raises(SettingsError, match=rf"^{re.escape(str(config))}: cannot read"):
        load(config, environ=REQUIRED)


def test_a_config_file_that_is_not_toml_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("workers = = 2\n", encoding="utf-8")

    with pytest.raises(SettingsError, match=rf"^{re.escape(str(config))}: not valid TOML"):
        load(config, environ=REQUIRED)


# --- cross-setting rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"listen": "127.0.0.1:9000", "admin_listen": "127.0.0.1:9000"},
        {"admin_listen": "127.0.0.1:8080"},  # the default public listener
        {"listen": "127.0.0.1:9090"},  # the default admin listener
        {"listen": "[::1]:8000", "admin_listen": "[::1]:8000"},
    ],
)
def test_the_admin_listener_must_differ_from_the_public_one(settings: dict[str, str]) -> None:
    with pytest.raises(
        SettingsError, match=r"^GATEWAY_ADMIN_LISTEN: must differ from GATEWAY_LISTEN"
    ):
        load(environ=env(**settings))


def test_listeners_on_different_ports_of_one_host_are_fine() -> None:
    settings = load(environ=env(listen="127.0.0.1:8000", admin_listen="127.0.0.1:8001"))

    assert settings.listen.port != settings.admin_listen.port


def test_both_listeners_may_ask_for_any_free_port() -> None:
    settings = load(environ=env(listen="127.0.0.1:0", admin_listen="127.0.0.1:0"))

    assert settings.listen == settings.admin_listen == Listen("127.0.0.1", 0)


S3 = "s3://media/videos"


def test_an_s3_origin_without_any_region_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^GATEWAY_S3_REGION: required"):
        load(environ=env(origin=S3))


@pytest.mark.parametrize(
    ("extra", "region"),
    [
        ({"AWS_REGION": "eu-west-3"}, "eu-west-3"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"GATEWAY_S3_REGION": "us-west-2", "AWS_REGION": "eu-west-3"}, "us-west-2"),
        ({"GATEWAY_S3_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}, "us-west-2"),
    ],
)
def test_the_s3_region_comes_from_the_setting_then_aws_region_then_aws_default_region(
    extra: dict[str, str], region: str
) -> None:
    assert load(environ=env(origin=S3) | extra).s3.region == region


def test_a_non_aws_endpoint_without_a_region_gets_us_east_1() -> None:
    settings = load(environ=env(origin=S3, s3_endpoint_url="http://127.0.0.1:8333"))

    assert settings.s3.region == "us-east-1"


def test_a_non_aws_endpoint_keeps_an_explicit_region() -> None:
    environ = env(origin=S3, s3_endpoint_url="http://127.0.0.1:8333", s3_region="eu-central-1")

    assert load(environ=environ).s3.region == "eu-central-1"


def test_a_file_origin_needs_no_region() -> None:
    assert load(environ=REQUIRED).s3.region is None


# --- Origin -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket", Origin("s3", "bucket", "", None)),
        ("s3://bucket/", Origin("s3", "bucket", "", None)),
        ("s3://bucket/a", Origin("s3", "bucket", "a/", None)),
        ("s3://bucket/a/b", Origin("s3", "bucket", "a/b/", None)),
        ("s3://bucket/a/b/", Origin("s3", "bucket", "a/b/", None)),
        ("s3://bucket//a", Origin("s3", "bucket", "a/", None)),
        ("s3://bucket/with%20space", Origin("s3", "bucket", "with space/", None)),
        ("s3://bucket/a..b/...", Origin("s3", "bucket", "a..b/.../", None)),
        ("  s3://bucket/a  ", Origin("s3", "bucket", "a/", None)),
        ("file:///srv/x", Origin("file", "", "", Path("/srv/x"))),
        ("file:///srv/x/", Origin("file", "", "", Path("/srv/x"))),
        ("file://localhost/srv/x", Origin("file", "", "", Path("/srv/x"))),
        ("file:///srv/my%20objects", Origin("file", "", "", Path("/srv/my objects"))),
    ],
)
def test_origin_urls_are_parsed_into_scheme_bucket_prefix_and_path(
    text: str, expected: Origin
) -> None:
    environ = env(origin=text, s3_region="us-east-1")

    assert load(environ=environ).origin == expected


@pytest.mark.parametrize(
    "text", ["s3://bucket", "s3://bucket/a/b", "file:///srv/x", "file:///srv/my objects"]
)
def test_an_origin_prints_as_a_url_that_parses_back_to_itself(text: str) -> None:
    origin = load(environ=env(origin=text, s3_region="us-east-1")).origin

    again = load(environ=env(origin=str(origin), s3_region="us-east-1")).origin

    assert again == origin


@pytest.mark.parametrize("text", ["file:objects", "file:srv/objects"])
def test_a_file_origin_must_be_an_absolute_path(text: str) -> None:
    with pytest.raises(SettingsError, match="must be file:///absolute/path"):
        load(environ=env(origin=text))


# --- Listen -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:80", Listen("0.0.0.0", 80)),
        (":8080", Listen("0.0.0.0", 8080)),
        ("localhost:1", Listen("localhost", 1)),
        (" 127.0.0.1:8000 ", Listen("127.0.0.1", 8000)),
        ("[::]:443", Listen("::", 443)),
        ("[2001:db8::1]:65535", Listen("2001:db8::1", 65535)),
        ("127.0.0.1:0", Listen("127.0.0.1", 0)),
    ],
)
def test_listen_addresses_are_host_and_port(text: str, expected: Listen) -> None:
    assert load(environ=env(listen=text)).listen == expected


@pytest.mark.parametrize(
    ("listen", "printed"),
    [(Listen("127.0.0.1", 80), "127.0.0.1:80"), (Listen("::1", 80), "[::1]:80")],
)
def test_a_listen_address_prints_ipv6_hosts_in_brackets(listen: Listen, printed: str) -> None:
    assert str(listen) == printed


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
)


@given(host=hosts, port=st.integers(min_value=0, max_value=65535))
def test_any_printed_listen_address_parses_back_to_itself(host: str, port: int) -> None:
    listen = Listen(host, port)
    assume(listen != Listen("127.0.0.1", 9090))  # the default admin listener

    assert load(environ=env(listen=str(listen))).listen == listen


@given(port=st.integers(min_value=65536, max_value=99999))
def test_a_port_above_65535_is_refused(port: int) -> None:
    with pytest.raises(SettingsError, match="port must be 0-65535"):
        load(environ=env(listen=f"127.0.0.1:{port}"))


# --- timeouts, as properties -------------------------------------------------------------------

TIMEOUTS = [
    "clock_skew",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "send_timeout",
    "shutdown_grace",
    "header_timeout",
    "keepalive_timeout",
    "upload_lease",
]


@given(
    name=st.sampled_from(TIMEOUTS),
    seconds=st.floats(min_value=0, max_value=86400, exclude_min=True),
)
def test_any_number_of_seconds_in_the_range_is_accepted_exactly(name: str, seconds: float) -> None:
    assert setting_value(load(environ=env(**{name: repr(seconds)})), name) == seconds


@given(
    name=st.sampled_from(TIMEOUTS),
    seconds=st.floats(max_value=0) | st.floats(min_value=86400, exclude_min=True),
)
def test_any_number_of_seconds_outside_the_range_is_refused(name: str, seconds: float) -> None:
    assume(not math.isnan(seconds))
    with pytest.raises(SettingsError, match=f"^GATEWAY_{name.upper()}: .* between 0 and 86400"):
        load(environ=env(**{name: repr(seconds)}))


@pytest.mark.parametrize("text", ["auto", "AUTO", " Auto "])
def test_max_connections_auto_in_any_case_leaves_the_cap_to_the_open_file_limit(
    text: str,
) -> None:
    assert load(environ=env(max_connections=text)).connections.max_connections is None


# --- booleans, forwarded header, log level ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(t, True) for t in ("1", "true", "TRUE", "yes", "on", " True ")],
        *[(t, False) for t in ("0", "false", "False", "no", "OFF", " no ")],
    ],
)
def test_booleans_accept_the_usual_spellings(text: str, expected: bool) -> None:
    assert load(environ=env(access_log=text)).log.access is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x-forwarded-for", ForwardedHeader.X_FORWARDED_FOR),
        ("X-Forwarded-For", ForwardedHeader.X_FORWARDED_FOR),
        ("Forwarded", ForwardedHeader.FORWARDED),
    ],
)
def test_the_forwarded_header_name_is_case_insensitive(
    text: str, expected: ForwardedHeader
) -> None:
    settings = load(environ=env(forwarded_header=text))

    assert settings.proxies.header is expected
    assert settings.proxies.header is expected


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", " error "])
def test_log_levels_are_case_insensitive_and_upper_cased(level: str) -> None:
    assert load(environ=env(log_level=level)).log.level == level.strip().upper()


def test_trusted_proxies_reach_the_proxy_policy() -> None:
    settings = load(environ=env(trusted_proxies="10.0.0.0/8 2001:db8::/32"))

    assert settings.proxies.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )


@pytest.mark.parametrize("text", ["", "  ", ",", " , "])
def test_empty_trusted_proxies_means_none(text: str) -> None:
    assert load(environ=env(trusted_proxies=text)).proxies.networks == ()


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_endpoint_or_region_means_unset(text: str) -> None:
    settings = load(environ=env(s3_endpoint_url=text, s3_region=text))

    assert (settings.s3.endpoint_url, settings.s3.region) == (None, None)


# --- the table itself ---------------------------------------------------------------------------


def test_env_names_are_the_prefix_and_the_upper_cased_setting_names() -> None:
    assert {s.env for s in SETTINGS} == {"GATEWAY_" + s.name.upper() for s in SETTINGS}
    assert {s.env for s in SETTINGS} == ENV_NAMES
    assert len(ENV_NAMES) == len(SETTINGS)


def leaf_paths(cls: type, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    hints = typing.get_type_hints(cls)
    paths: list[tuple[str, ...]] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if (
            dataclasses.is_dataclass(kind)
            and isinstance(kind, type)
            and kind.__module__ == cls.__module__
        ):
            paths += leaf_paths(kind, (*path, f.name))
        else:
            paths.append((*path, f.name))
    return paths


def test_the_settings_table_matches_the_settings_object() -> None:
    assert [s.path for s in SETTINGS] == leaf_paths(Settings)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_the_table_lists_every_variable_with_its_default_and_help(setting: Any) -> None:
    text = settings_table()
    default = "(required)" if setting.default is None else repr(setting.default)

    assert setting.env in text
    assert f"{setting.name}" in text
    assert f"default {default}" in text
    assert setting.help in text


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_is_itself_a_valid_value(setting: Any) -> None:
    if setting.default is not None:
        setting.parse(setting.default)


def test_settings_are_frozen() -> None:
    settings = load(environ=REQUIRED)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 2  # type: ignore[misc]


def test_replace_changes_only_what_it_names() -> None:
    settings = load(environ=REQUIRED)
    forwarded = dataclasses.replace(settings.proxies, header=ForwardedHeader.FORWARDED)

    changed = dataclasses.replace(settings, workers=3, proxies=forwarded)

    assert changed.workers == 3
    assert changed.proxies.header is ForwardedHeader.FORWARDED
    back = dataclasses.replace(settings.proxies, header=ForwardedHeader.X_FORWARDED_FOR)
    assert dataclasses.replace(changed, workers=1, proxies=back) == settings


# --- browsers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "https://app.example.com/",
        "https://app.example.com/player",
        "app.example.com",
        "ftp://x",
        "*, https://a.example",
        "https://user@a.example",
    ],
)
def test_cors_origins_must_be_bare_origins(text: str) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_CORS_ORIGINS"):
        load(environ=env(cors_origins=text))


def test_cors_never_allows_any_origin_with_credentials() -> None:
    with pytest.raises(SettingsError, match="never allowed with GATEWAY_CORS_CREDENTIALS"):
        load(environ=env(cors_origins="*", cors_credentials="true"))


def test_a_same_site_none_cookie_must_be_allowed_to_be_secure() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_COOKIE_SAMESITE"):
        load(environ=env(cookie_samesite="none", cookie_secure="false"))
