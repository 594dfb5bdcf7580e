"""The peers of a cache run, all on 127.0.0.1 in front of one SeaweedFS storage:

  direct        the storage itself, with SigV4 presigned URLs (the baseline);
  gateway       `gateway serve`, one worker, cache off: today's path;
  gateway-cache the same with the edge cache on (GATEWAY_CACHE=true, its directory in the
                run's temporary directory);
  nginx-cache   Debian's nginx: `secure_link` like the proxy peer of gateway_load, then
                `proxy_cache` with the `slice` module (slices as large as the gateway's) in
                front of the same storage, read anonymously (nginx cannot sign SigV4).

Both caches keep an object fresh for the same hour (GATEWAY_CACHE_TTL, `proxy_cache_valid`),
so neither revalidates during a run. Each cache peer also writes a line per request saying
whether the cache answered it (the gateway's metrics, nginx's `$upstream_cache_status`), so
a warm run that was not served from the cache is found out.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks.gateway_load.objects import BUCKET
from benchmarks.gateway_load.processes import Peer, gateway_settings, storage_host
from tests.servers import GatewayProcess, NginxServer, S3Server, gateway_serve, nginx

TTL: Final = 3600  # seconds fresh, in both caches: nothing is revalidated during a run
DEFAULT_SLICE_BYTES: Final = 4 * 1024 * 1024  # the gateway's default cache_slice_bytes
NGINX_CACHE_ZONE: Final = "objects"
CACHE_LOG: Final = "cache.log"  # nginx: one $upstream_cache_status a line

LABELS: Final = {
    "direct": "storage direct (presigned)",
    "gateway": "gateway, no cache",
    "gateway-cache": "gateway, cache on",
    "nginx-cache": "nginx proxy_cache + slice",
}


@dataclass(frozen=True)
class CachePeer:
    """A peer, and where to read whether its cache answered: the gateway's admin listener,
    or nginx's cache log."""

    peer: Peer
    admin_url: str | None = None  # the gateway's admin listener (its /metrics)
    cache_log: Path | None = None  # nginx's $upstream_cache_status lines


def slice_bytes(settings: Mapping[str, str]) -> int:
    """The gateway's slice size in this run, which nginx's `slice` is set to as well."""
    return int(settings.get("cache_slice_bytes", DEFAULT_SLICE_BYTES))


def cache_settings(
    s3: S3Server,
    keyring_file: Path,
    directory: Path,
    extra: Mapping[str, str],
    *,
    endpoint_url: str | None = None,
) -> dict[str, str]:
    """One worker with the cache on, its disk tier in `directory` (`extra` may size it);
    `endpoint_url` puts something (a counting forwarder) between it and the storage."""
    settings = {
        "cache_ttl": str(TTL),
        **extra,
        **gateway_settings(s3, keyring_file, 1, extra),
        "cache": "true",
        "cache_dir": str(directory),
    }
    if endpoint_url is not None:
        settings["s3_endpoint_url"] = endpoint_url
    return settings


def nginx_cache_config(
    upstream: str, secret: str, cache_dir: Path, cache_log: Path, slice_size: int, max_size: int
) -> tuple[str, str]:
    """(http, server) of the nginx cache peer: the recipe of /work/shared/TEST-SERVERS.md
    (`slice`, `proxy_cache_key $uri$slice_range`, Range sent upstream, 200/206 kept an hour),
    `proxy_cache_lock` so that concurrent misses of a slice make one upstream request, and
    sendfile for hits, as a deployment would have it. `upstream` is the storage's host:port
    (or a forwarder's in front of it)."""
    http = f"""\
    upstream storage {{ server {upstream}; keepalive 64; }}
    proxy_cache_path {cache_dir} levels=1:2 keys_zone={NGINX_CACHE_ZONE}:10m
        max_size={max_size} inactive=1h use_temp_path=off;
    log_format cachestatus '$upstream_cache_status';
    sendfile on;
    tcp_nopush on;"""
    server = f"""\
        location /{BUCKET}/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            access_log {cache_log} cachestatus;
            slice {slice_size};
            proxy_cache {NGINX_CACHE_ZONE};
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 {TTL}s;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_pass http://storage$uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
            proxy_max_temp_file_size 0;
        }}"""
    return http, server


@contextlib.contextmanager
def cache_gateway(
    workdir: Path,
    s3: S3Server,
    keyring_file: Path,
    extra: Mapping[str, str],
    *,
    name: str,
    endpoint_url: str | None = None,
) -> Iterator[GatewayProcess]:
    """A one-worker gateway with the cache on, its own empty cache directory."""
    directory = workdir / f"{name}-dir"
    directory.mkdir()
    settings = cache_settings(s3, keyring_file, directory, extra, endpoint_url=endpoint_url)
    with gateway_serve(workdir, settings, env=s3.env(), name=name) as gateway:
        yield gateway


@contextlib.contextmanager
def cache_nginx(
    workdir: Path,
    upstream: str,
    secret: str,
    slice_size: int,
    *,
    name: str,
    max_size: int = 8 * 1024**3,
) -> Iterator[tuple[NginxServer, Path]]:
    """The nginx cache peer, its cache in a new directory; (server, its cache log).

    The cache directory is made in the system's temporary directory, not under `workdir`:
    nginx started as root writes its cache as its worker user (nobody), which may not
    traverse a private `workdir`; nginx gives the directory itself to that user."""
    directory = workdir / name
    directory.mkdir()
    cache_dir = Path(tempfile.mkdtemp(prefix="nginx-cache-"))
    try:
        log = directory / CACHE_LOG
        http, server = nginx_cache_config(upstream, secret, cache_dir, log, slice_size, max_size)
        with nginx(directory, server, http=http) as proxy:
            yield proxy, log
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


@contextlib.contextmanager
def peers(
    workdir: Path,
    s3: S3Server,
    keyring_file: Path,
    nginx_secret: str,
    extra: Mapping[str, str],
) -> Iterator[dict[str, CachePeer]]:
    """Every peer, started and ready, in report order; all stopped on the way out."""
    with contextlib.ExitStack() as stack:
        found = {"direct": CachePeer(Peer("direct", "direct", s3.endpoint_url))}
        plain = stack.enter_context(
            gateway_serve(
                workdir, gateway_settings(s3, keyring_file, 1, extra), env=s3.env(), name="gateway"
            )
        )
        found["gateway"] = CachePeer(Peer("gateway", "gateway", plain.url(""), pid=plain.pid))
        cached = stack.enter_context(
            cache_gateway(workdir, s3, keyring_file, extra, name="gateway-cache")
        )
        found["gateway-cache"] = CachePeer(
            Peer("gateway-cache", "gateway", cached.url(""), pid=cached.pid),
            admin_url=cached.admin_url(""),
        )
        proxy, log = stack.enter_context(
            cache_nginx(
                workdir, storage_host(s3), nginx_secret, slice_bytes(extra), name="nginx-cache"
            )
        )
        found["nginx-cache"] = CachePeer(
            Peer("nginx-cache", "nginx", proxy.url(""), pid=proxy.pid), cache_log=log
        )
        yield found
