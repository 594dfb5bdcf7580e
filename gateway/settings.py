"""Settings: one frozen object from a TOML file and `GATEWAY_*` environment overrides.

`SETTINGS` below is the single source of truth for every setting's name, type, default and
meaning: the TOML key is the name, the environment variable is `GATEWAY_` + the upper-cased
name, and `gateway settings` prints the table. Every error names the setting and says why, and
surfaces at start-up, never on the first request.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.client_address import ForwardedHeader, TrustedProxies, parse_networks
from gateway.http.cors import ANY, CorsPolicy, parse_origins
from signer.format import IPNetwork

ENV_PREFIX = "GATEWAY_"
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it and its source."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where objects live: `s3://bucket/optional/prefix` or `file:///path`."""

    scheme: str
    bucket: str
    prefix: str
    path: Path | None

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str | None  # None: required; defaults go through `parse` like any input
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _listen(text: str) -> Listen:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]*):(\d{1,5})", text.strip())
    if not match:
        raise ValueError("must be host:port (IPv6 as [addr]:port)")
    host = match.group(1) or match.group(3) or "0.0.0.0"  # noqa: S104 (an empty host means all)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port < 65536:
        raise ValueError("port must be 0-65535 (0: any free port)")
    return Listen(host, port)


def _origin(text: str) -> Origin:
    parts = urlsplit(text.strip())
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("must name a bucket: s3://bucket/optional/prefix")
        prefix = unquote(parts.path).lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if ".." in prefix.split("/") or "\\" in prefix:
            raise ValueError("the key prefix must not contain '..' segments or backslashes")
        return Origin("s3", parts.netloc, prefix, None)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("must be file:///absolute/path")
        return Origin("file", "", "", Path(unquote(parts.path)))
    raise ValueError("must start with s3:// or file://")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise ValueError("must be a number of seconds between 0 and 86400")
    return value


def _seconds_long(text: str) -> float:
    value = float(text)
    if not 60 <= value <= 366 * 86400:
        raise ValueError("must be a number of seconds from 60 to 31622400 (366 days)")
    return value


def _interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 86400:
        raise ValueError("must be a number of seconds from 0 to 86400")
    return value


def _positive_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _redis_url(text: str) -> str | None:
    if not text:
        return None
    scheme = text.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _optional(text: str) -> str | None:
    return text.strip() or None


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must be a file path")
    return Path(text.strip())


def _networks(text: str) -> tuple[IPNetwork, ...]:
    return parse_networks(text)


def _forwarded(text: str) -> ForwardedHeader:
    try:
        return ForwardedHeader(text.strip().lower())
    except ValueError:
        raise ValueError("must be x-forwarded-for or forwarded") from None


def _same_site(text: str) -> str:
    value = text.strip().capitalize()
    if value not in ("Lax", "Strict", "None"):
        raise ValueError("must be lax, strict or none")
    return value


def _tri_state(text: str) -> bool | None:
    """`auto` (None), or a boolean."""
    return None if text.strip().lower() == "auto" else _bool(text)


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


SETTINGS: tuple[Setting, ...] = (
    Setting("listen", _listen, "127.0.0.1:8080", "public listener, host:port"),
    Setting(
        "admin_listen",
        _listen,
        "127.0.0.1:9090",
        "internal listener for /healthz, /readyz, /metrics (keep it off the internet)",
    ),
    Setting("origin", _origin, None, "s3://bucket/optional/prefix or file:///path (required)"),
    Setting(
        "s3_endpoint_url",
        _optional,
        "",
        "S3 endpoint for non-AWS stores (path-style addressing); empty means AWS",
    ),
    Setting("s3_region", _optional, "", "S3 region; default: AWS_REGION, AWS_DEFAULT_REGION"),
    Setting("keyring", _path, None, "verification keyring file (signer export-public) (required)"),
    Setting(
        "trusted_proxies",
        _networks,
        "",
        "CIDRs whose forwarding header is believed; empty: use the socket peer",
    ),
    Setting(
        "forwarded_header",
        _forwarded,
        "x-forwarded-for",
        "which header trusted proxies set: x-forwarded-for or forwarded",
    ),
    Setting("clock_skew", _seconds, "30", "seconds of clock skew tolerated on Expires/Starts"),
    Setting(
        "cache_control",
        str,
        "private, max-age=300",
        "Cache-Control sent with objects (never shared caches: links are per user)",
    ),
    Setting("connect_timeout", _seconds, "5", "seconds to connect to storage"),
    Setting("first_byte_timeout", _seconds, "30", "seconds from request to storage's headers"),
    Setting("idle_timeout", _seconds, "30", "seconds of silence allowed between body chunks"),
    Setting(
        "shutdown_grace",
        _seconds,
        "30",
        "on SIGTERM, seconds in-flight streams get to finish before they are cut",
    ),
    Setting(
        "chunk_size",
        _positive_int(4096, 16 * 1024 * 1024),
        "262144",
        "bytes per read from storage and write to the client",
    ),
    Setting(
        "origin_connections",
        _positive_int(1, 10000),
        "256",
        "connection pool size towards storage (per worker)",
    ),
    Setting(
        "zero_copy",
        _bool,
        "true",
        "move large bodies from plain-HTTP storage to clients with splice(2) (Linux), not copies",
    ),
    Setting(
        "max_upload_bytes",
        _positive_int(1, 5 * 1024**4),
        str(5 * 1024**3),
        "largest upload body accepted, whatever a link's MaxBytes says",
    ),
    Setting(
        "upload_part_size",
        _positive_int(5 * 1024**2, 512 * 1024**2),
        str(8 * 1024**2),
        "bytes per multipart part (and the largest single PutObject); ~2 parts per upload in RAM",
    ),
    Setting("workers", _positive_int(1, 256), "1", "processes sharing the public port"),
    Setting(
        "keyring_watch_interval",
        _interval,
        "2",
        "seconds between checks of the keyring file for changes; 0: reload on SIGHUP only",
    ),
    Setting(
        "revocation_db",
        _path,
        "revocations.sqlite3",
        "SQLite file of the embedded revocation store (single node; unused with redis_url)",
    ),
    Setting(
        "redis_url",
        _redis_url,
        "",
        "redis:// or rediss:// URL of the fleet's revocation store; empty: the embedded store",
        secret=True,
    ),
    Setting(
        "max_link_lifetime",
        _seconds_long,
        "604800",
        "longest Expires - Issued accepted; bounds how long revocations are kept",
    ),
    Setting(
        "revocation_max_staleness",
        _seconds,
        "30",
        "seconds the revocation view may go without a confirmed sync before /readyz fails",
    ),
    Setting(
        "admin_token",
        _optional,
        "",
        "bearer token for the admin API on the admin listener; empty: admin API disabled",
        secret=True,
    ),
    Setting(
        "cors_origins",
        parse_origins,
        "",
        "origins whose pages may read responses (https://app.example.com, ...), or *; empty: off",
    ),
    Setting(
        "cors_credentials",
        _bool,
        "false",
        "let those pages send cookies (the cookie form); never together with *",
    ),
    Setting(
        "cors_max_age",
        _positive_int(0, 86400),
        "600",
        "seconds browsers may cache a preflight answer",
    ),
    Setting(
        "token_cookie",
        _bool,
        "false",
        "a valid Prefix token in the query sets a cookie that authorizes the rest of its prefix",
    ),
    Setting("cookie_samesite", _same_site, "lax", "SameSite of that cookie: lax, strict or none"),
    Setting(
        "cookie_secure",
        _tri_state,
        "auto",
        "Secure on that cookie: auto (when the request came over TLS), true or false",
    ),
    Setting("access_log", _bool, "true", "JSON access log lines on stdout"),
    Setting("log_level", _log_level, "INFO", "DEBUG, INFO, WARNING or ERROR"),
)
SETTING_NAMES = frozenset(s.name for s in SETTINGS)
ENV_NAMES = frozenset(s.env for s in SETTINGS)


@dataclass(frozen=True)
class Settings:
    listen: Listen
    admin_listen: Listen
    origin: Origin
    s3_endpoint_url: str | None
    s3_region: str | None
    keyring: Path
    trusted_proxies: tuple[IPNetwork, ...]
    forwarded_header: ForwardedHeader
    clock_skew: float
    cache_control: str
    connect_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    shutdown_grace: float
    chunk_size: int
    origin_connections: int
    zero_copy: bool
    max_upload_bytes: int
    upload_part_size: int
    workers: int
    keyring_watch_interval: float
    revocation_db: Path
    redis_url: str | None
    max_link_lifetime: float
    revocation_max_staleness: float
    admin_token: str | None
    cors_origins: tuple[str, ...]
    cors_credentials: bool
    cors_max_age: int
    token_cookie: bool
    cookie_samesite: str
    cookie_secure: bool | None
    access_log: bool
    log_level: str
    proxies: TrustedProxies = field(init=False, compare=False)
    cors: CorsPolicy = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "proxies", TrustedProxies(self.trusted_proxies, self.forwarded_header)
        )
        object.__setattr__(
            self, "cors", CorsPolicy(self.cors_origins, self.cors_credentials, self.cors_max_age)
        )

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        values.update(changes)
        return Settings(**values)


def load(
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then `GATEWAY_*` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    raw = _gather(config, env, overrides)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values[setting.name] = _value(setting, raw)
    if values["s3_region"] is None:
        values["s3_region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if values["cors_credentials"] and ANY in values["cors_origins"]:
        raise SettingsError(
            f"{ENV_PREFIX}CORS_ORIGINS: '*' is never allowed with {ENV_PREFIX}CORS_CREDENTIALS; "
            "name the origins"
        )
    if values["cookie_samesite"] == "None" and values["cookie_secure"] is False:
        raise SettingsError(
            f"{ENV_PREFIX}COOKIE_SAMESITE: none needs {ENV_PREFIX}COOKIE_SECURE auto or true "
            "(browsers drop SameSite=None cookies that are not Secure)"
        )
    settings = Settings(**values)
    if settings.listen == settings.admin_listen and settings.listen.port != 0:
        raise SettingsError(f"{ENV_PREFIX}ADMIN_LISTEN: must differ from {ENV_PREFIX}LISTEN")
    if settings.max_upload_bytes > settings.upload_part_size * MAX_PARTS:
        raise SettingsError(
            f"{ENV_PREFIX}MAX_UPLOAD_BYTES: above {MAX_PARTS} parts of upload_part_size "
            f"({settings.upload_part_size * MAX_PARTS}); raise {ENV_PREFIX}UPLOAD_PART_SIZE"
        )
    if settings.origin.scheme == "s3" and settings.s3_region is None and settings.s3_endpoint_url:
        settings = settings.replace(s3_region="us-east-1")
    if settings.origin.scheme == "s3" and settings.s3_region is None:
        raise SettingsError(f"{ENV_PREFIX}S3_REGION: required for AWS (or set AWS_REGION)")
    return settings


def load_some(
    names: Iterable[str], config: Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Only the named settings, from the same sources as `load`: for the operator commands
    (`gateway revoke`), which need the revocation store but neither origin nor keyring."""
    raw = _gather(config, os.environ if environ is None else environ, None)
    by_name = {s.name: s for s in SETTINGS}
    return {name: _value(by_name[name], raw) for name in names}


def _gather(
    config: Path | None, env: Mapping[str, str], overrides: Mapping[str, str] | None
) -> dict[str, tuple[str, Any]]:
    raw: dict[str, tuple[str, Any]] = {}
    if config is not None:
        for name, value in _read_toml(config).items():
            raw[name] = (f"{config}: {name}", value)
    for setting in SETTINGS:
        if setting.env in env:
            raw[setting.name] = (setting.env, env[setting.env])
    unknown_env = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in ENV_NAMES)
    if unknown_env:
        raise SettingsError(f"{unknown_env[0]}: not a gateway setting (see `gateway settings`)")
    for name, value in (overrides or {}).items():
        raw[name] = (f"--{name.replace('_', '-')}", value)
    return raw


def _value(setting: Setting, raw: dict[str, tuple[str, Any]]) -> Any:
    if setting.name not in raw:
        if setting.default is None:
            raise SettingsError(f"{setting.env}: required (or `{setting.name}` in the config file)")
        return _parse(setting, f"default of {setting.name}", setting.default)
    source, value = raw[setting.name]
    return _parse(setting, source, value)


def _parse(setting: Setting, source: str, value: Any) -> Any:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, int | float):
        value = str(value)
    elif not isinstance(value, str):
        raise SettingsError(f"{source}: must be a string, number, boolean or list")
    try:
        return setting.parse(value)
    except ValueError as exc:
        shown = "<hidden>" if setting.secret else repr(value)
        raise SettingsError(f"{source}: {shown} {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    section = document.get("gateway", document)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [gateway] must be a table")
    outside = sorted(set(document) - {"gateway"}) if "gateway" in document else []
    if outside:
        raise SettingsError(f"{path}: {outside[0]}: must go inside the [gateway] table")
    unknown = sorted(set(section) - SETTING_NAMES)
    if unknown:
        raise SettingsError(f"{path}: {unknown[0]}: not a gateway setting")
    return section


def describe() -> str:
    """The settings table, for `gateway settings` and the docs."""
    lines = []
    for s in SETTINGS:
        default = "(required)" if s.default is None else repr(s.default)
        lines.append(f"{s.env:28} {s.name:20} default {default}\n{'':28} {s.help}")
    return "\n".join(lines)
