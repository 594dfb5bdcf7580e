"""Settings: one frozen object from a TOML file and `GATEWAY_*` environment overrides.

Each setting is declared once, below, as a field of `Settings` or of one of its groups
(`gateway.settings.declare`): its file name, parser, default and help. The environment variable
is `GATEWAY_` + the upper-cased name, and `gateway settings` prints the table derived from the
same declarations. Every error names the setting and says why, and surfaces at start-up, never on
the first request.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from gateway.client_address import ForwardedHeader
from gateway.settings import parse, sources
from gateway.settings.declare import ENV_PREFIX, Spec, build, group, setting, specs
from gateway.settings.parse import Listen
from gateway.settings.sources import SettingsError
from gateway.storage import MAX_PARTS, MIN_PART_SIZE
from gateway.storage.backends import Origin, parse_origin
from signer.addresses import IPNetwork

__all__ = [
    "ENV_NAMES",
    "ENV_PREFIX",
    "SETTINGS",
    "SETTING_NAMES",
    "Listen",
    "Origin",
    "Settings",
    "SettingsError",
    "load",
    "load_group",
    "settings_table",
]

DEFAULT_STATE_DIR: Final = "/var/lib/edge-gateway"


@dataclass(frozen=True)
class LinkRules:
    """What a verified link must also satisfy, here and in `gateway revoke`."""

    clock_skew: float = setting(
        "clock_skew", parse.seconds, "30", "seconds of clock skew tolerated on Expires/Starts"
    )
    max_lifetime: float = setting(
        "max_link_lifetime",
        parse.seconds_long,
        "604800",
        "longest Expires - Issued accepted; bounds how long revocations are kept",
    )


@dataclass(frozen=True)
class Timeouts:
    connect: float = setting("connect_timeout", parse.seconds, "5", "seconds to connect to storage")
    first_byte: float = setting(
        "first_byte_timeout", parse.seconds, "30", "seconds from request to storage's headers"
    )
    idle: float = setting(
        "idle_timeout", parse.seconds, "30", "seconds of silence allowed between body chunks"
    )
    send: float = setting(
        "send_timeout",
        parse.seconds,
        "60",
        "seconds a response may wait for the client to take more bytes; then the connection "
        "is closed",
    )
    shutdown_grace: float = setting(
        "shutdown_grace",
        parse.seconds,
        "30",
        "on SIGTERM, seconds in-flight streams get to finish before they are cut",
    )


@dataclass(frozen=True)
class Connections:
    """Client connections: idle ones are closed at their deadline or past the cap
    (`gateway.connections`)."""

    header_timeout: float = setting(
        "header_timeout",
        parse.seconds,
        "10",
        "seconds a new connection has to send a complete request head",
    )
    keepalive_timeout: float = setting(
        "keepalive_timeout",
        parse.seconds,
        "15",
        "seconds a kept-alive connection has, after a response, to send its next request head",
    )
    max_connections: int | None = setting(
        "max_connections",
        parse.count_or_auto(1, 10_000_000),
        "auto",
        "open client connections per worker, past which the longest idle are closed; auto: "
        "the open-file limit minus origin_connections minus 64",
    )


@dataclass(frozen=True)
class S3:
    endpoint_url: str | None = setting(
        "s3_endpoint_url",
        parse.optional_text,
        "",
        "S3 endpoint for non-AWS stores (path-style addressing); empty means AWS",
    )
    region: str | None = setting(
        "s3_region", parse.optional_text, "", "S3 region; default: AWS_REGION, AWS_DEFAULT_REGION"
    )
    connections: int = setting(
        "origin_connections",
        parse.integer(1, 10000),
        "256",
        "connection pool size towards storage (per worker)",
    )


@dataclass(frozen=True)
class Uploads:
    max_bytes: int = setting(
        "max_upload_bytes",
        parse.integer(1, 5 * 1024**4),
        str(5 * 1024**3),
        "largest upload body accepted, whatever a link's MaxBytes says",
    )
    part_size: int = setting(
        "upload_part_size",
        parse.integer(MIN_PART_SIZE, 512 * 1024**2),
        str(8 * 1024**2),
        "bytes per multipart part (and the largest single PutObject); ~2 parts per upload in RAM",
    )
    lease: float = setting(
        "upload_lease",
        parse.seconds,
        "30",
        "seconds an upload's claims and multipart upload outlive a gateway that died; renewed "
        "every third of it",
    )
    sweep_interval: float = setting(
        "upload_sweep_interval",
        parse.interval,
        "60",
        "seconds between sweeps that abort multipart uploads whose gateway died; 0: none",
    )


@dataclass(frozen=True)
class Revocations:
    db: Path = setting(
        "revocation_db",
        parse.file_path,
        f"{DEFAULT_STATE_DIR}/revocations.sqlite3",
        "SQLite file of the embedded revocation store (single node); with redis_url, the "
        "snapshot of the fleet's list is kept beside it",
    )
    redis_url: str | None = setting(
        "redis_url",
        parse.store_url,
        "",
        "redis://, rediss:// or redis+sentinel:// URL of the fleet's revocation store; empty: the "
        "embedded store",
        secret=True,
    )
    max_staleness: float = setting(
        "revocation_max_staleness",
        parse.seconds,
        "30",
        "seconds the revocation view may go without a confirmed sync before /readyz fails",
    )
    fail_open: bool = setting(
        "revocation_fail_open",
        parse.boolean,
        "false",
        "serve verified links unchecked while the list is not loaded (neither Redis nor a "
        "snapshot); false: 503 revocations_unavailable",
    )

    @property
    def store_url(self) -> str:
        """The store as one URL, which picks its backend (`gateway.revocation.backends`)."""
        return self.redis_url or f"sqlite://{self.db.absolute()}"

    @property
    def snapshot(self) -> Path | None:
        """Where a gateway keeps its copy of the Redis store's list: beside `revocation_db`, in
        the state directory. None for the embedded store, which is its own snapshot."""
        return self.db.absolute().with_suffix(".snapshot.json") if self.redis_url else None


@dataclass(frozen=True)
class LimitSettings:
    """Usage limits (MaxStreams, MaxUses, MaxServed, Rate) live in the revocation store."""

    stream_lease: float = setting(
        "limit_stream_lease",
        parse.seconds,
        "10",
        "seconds a client's MaxStreams slot outlives its last response (and a dead gateway); "
        "renewed every third of it while a body streams",
    )
    fail_open: bool = setting(
        "limit_fail_open",
        parse.boolean,
        "false",
        "serve limited links uncounted while the limit store is unreachable; false: 503 "
        "limits_unavailable",
    )


@dataclass(frozen=True)
class Proxies:
    networks: tuple[IPNetwork, ...] = setting(
        "trusted_proxies",
        parse.networks,
        "",
        "CIDRs whose forwarding header is believed; empty: use the socket peer",
    )
    header: ForwardedHeader = setting(
        "forwarded_header",
        parse.forwarded_header,
        "x-forwarded-for",
        "which header trusted proxies set: x-forwarded-for or forwarded",
    )


@dataclass(frozen=True)
class Cors:
    origins: tuple[str, ...] = setting(
        "cors_origins",
        parse.parse_origins,
        "",
        "origins whose pages may read responses (https://app.example.com, ...), or *; empty: off",
    )
    credentials: bool = setting(
        "cors_credentials",
        parse.boolean,
        "false",
        "let those pages send cookies (the cookie form); never together with *",
    )
    max_age: int = setting(
        "cors_max_age",
        parse.integer(0, 86400),
        "600",
        "seconds browsers may cache a preflight answer",
    )


@dataclass(frozen=True)
class Cookie:
    enabled: bool = setting(
        "token_cookie",
        parse.boolean,
        "false",
        "a valid Prefix token in the query sets a cookie that authorizes the rest of its prefix",
    )
    same_site: str = setting(
        "cookie_samesite", parse.same_site, "lax", "SameSite of that cookie: lax, strict or none"
    )
    secure: bool | None = setting(
        "cookie_secure",
        parse.tri_state,
        "auto",
        "Secure on that cookie: auto (when the request came over TLS), true or false",
    )


@dataclass(frozen=True)
class Logging:
    access: bool = setting("access_log", parse.boolean, "true", "JSON access log lines on stdout")
    level: str = setting("log_level", parse.log_level, "INFO", "DEBUG, INFO, WARNING or ERROR")


@dataclass(frozen=True)
class Tls:
    certificate: Path | None = setting(
        "tls_certificate",
        parse.optional_path,
        "",
        "PEM certificate chain for TLS on the public listener; empty: plain HTTP",
    )
    key: Path | None = setting(
        "tls_key", parse.optional_path, "", "PEM private key of that certificate"
    )


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = setting(
        "cache", parse.boolean, "false", "keep objects at the edge, served after verification"
    )
    directory: Path = setting(
        "cache_dir",
        parse.file_path,
        "/var/cache/edge-gateway",
        "directory of the cache's disk tier (kept across restarts)",
    )
    disk_bytes: int = setting(
        "cache_disk_bytes",
        parse.integer(0, 2**50),
        str(10 * 1024**3),
        "bytes the disk tier may hold; larger objects stream through uncached",
    )
    memory_bytes: int = setting(
        "cache_memory_bytes",
        parse.integer(0, 2**40),
        str(256 * 1024**2),
        "bytes the memory tier may hold (per worker)",
    )
    memory_object_bytes: int = setting(
        "cache_memory_object_bytes",
        parse.integer(0, 64 * 1024**2),
        str(1024**2),
        "largest object kept in the memory tier (larger ones: disk slices)",
    )
    slice_bytes: int = setting(
        "cache_slice_bytes",
        parse.integer(64 * 1024, 64 * 1024**2),
        str(4 * 1024**2),
        "large objects are fetched and kept in slices of this many bytes",
    )
    ttl: float = setting(
        "cache_ttl",
        parse.interval,
        "60",
        "seconds an object stays fresh unless its own Cache-Control or Expires says otherwise",
    )
    stale_if_error: float = setting(
        "cache_stale_if_error",
        parse.interval,
        "0",
        "seconds past freshness a copy may still be served while storage fails; 0: never",
    )


@dataclass(frozen=True)
class Settings:
    listen: Listen = setting("listen", parse.listen, "127.0.0.1:8080", "public listener, host:port")
    admin_listen: Listen = setting(
        "admin_listen",
        parse.listen,
        "127.0.0.1:9090",
        "internal listener for /healthz, /readyz, /metrics (keep it off the internet)",
    )
    origin: Origin = setting(
        "origin", parse_origin, None, "s3://bucket/optional/prefix or file:///path (required)"
    )
    keyring: Path = setting(
        "keyring",
        parse.file_path,
        None,
        "verification keyring file (signer export-public) (required)",
    )
    keyring_watch_interval: float = setting(
        "keyring_watch_interval",
        parse.interval,
        "2",
        "seconds between checks of the keyring file for changes; 0: reload on SIGHUP only",
    )
    cache_control: str = setting(
        "cache_control",
        str,
        "private, max-age=300",
        "Cache-Control sent with objects (never shared caches: links are per user)",
    )
    chunk_size: int = setting(
        "chunk_size",
        parse.integer(4096, 16 * 1024 * 1024),
        "262144",
        "bytes per read from storage and write to the client",
    )
    zero_copy: bool = setting(
        "zero_copy",
        parse.boolean,
        "true",
        "move large bodies from plain-HTTP storage to clients with splice(2) (Linux), not copies",
    )
    inline_active_types: bool = setting(
        "inline_active_types",
        parse.boolean,
        "false",
        "serve HTML, SVG, XML and scripts inline (else as attachments); they still run sandboxed",
    )
    workers: int = setting(
        "workers", parse.integer(1, 256), "1", "processes sharing the public port"
    )
    admin_token: str | None = setting(
        "admin_token",
        parse.optional_text,
        "",
        "bearer token for the admin API on the admin listener; empty: admin API disabled",
        secret=True,
    )
    links: LinkRules = group()
    timeouts: Timeouts = group()
    connections: Connections = group()
    s3: S3 = group()
    uploads: Uploads = group()
    revocation: Revocations = group()
    limits: LimitSettings = group()
    proxies: Proxies = group()
    cors: Cors = group()
    cookie: Cookie = group()
    log: Logging = group()
    cache: CacheSettings = group()
    tls: Tls = group()

    def __post_init__(self) -> None:
        """Rules across settings: each error names the setting to change."""
        if self.cors.credentials and "*" in self.cors.origins:
            raise SettingsError(
                f"{ENV_PREFIX}CORS_ORIGINS: '*' is never allowed with "
                f"{ENV_PREFIX}CORS_CREDENTIALS; name the origins"
            )
        if self.cookie.same_site == "None" and self.cookie.secure is False:
            raise SettingsError(
                f"{ENV_PREFIX}COOKIE_SAMESITE: none needs {ENV_PREFIX}COOKIE_SECURE auto or "
                "true (browsers drop SameSite=None cookies that are not Secure)"
            )
        if self.listen == self.admin_listen and self.listen.port != 0:
            raise SettingsError(f"{ENV_PREFIX}ADMIN_LISTEN: must differ from {ENV_PREFIX}LISTEN")
        largest = self.uploads.part_size * MAX_PARTS
        if self.uploads.max_bytes > largest:
            raise SettingsError(
                f"{ENV_PREFIX}MAX_UPLOAD_BYTES: above {MAX_PARTS} parts of upload_part_size "
                f"({largest}); raise {ENV_PREFIX}UPLOAD_PART_SIZE"
            )
        if self.origin.scheme == "s3" and self.s3.region is None:
            raise SettingsError(f"{ENV_PREFIX}S3_REGION: required for AWS (or set AWS_REGION)")


SETTINGS: Final[tuple[Spec, ...]] = tuple(specs(Settings))
SETTING_NAMES: Final = frozenset(s.name for s in SETTINGS)
ENV_NAMES: Final = frozenset(s.env for s in SETTINGS)


def settings_table() -> str:
    """The settings table, for `gateway settings` and the docs."""
    lines = []
    for s in SETTINGS:
        default = "(required)" if s.default is None else repr(s.default)
        lines.append(f"{s.env:28} {s.name:24} default {default}\n{'':28} {s.help}")
    return "\n".join(lines)


G = TypeVar("G")


def load(
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then `GATEWAY_*` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    raw = sources.gather(SETTINGS, config, env, overrides)
    if "s3_region" not in raw:
        aws = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if aws:
            raw["s3_region"] = ("AWS_REGION", aws)
        elif str(raw.get("s3_endpoint_url", ("", ""))[1]).strip():
            raw["s3_region"] = ("default for s3_endpoint_url", "us-east-1")
    settings: Settings = build(Settings, lambda spec: sources.value(spec, raw))
    return settings


def load_group(
    cls: type[G], config: Path | None = None, environ: Mapping[str, str] | None = None
) -> G:
    """One group of settings, from the same sources as `load`: for the operator commands
    (`gateway revoke`), which need the revocation store but neither origin nor keyring."""
    env = os.environ if environ is None else environ
    raw = sources.gather(SETTINGS, config, env, None)
    built: G = build(cls, lambda spec: sources.value(spec, raw))
    return built
