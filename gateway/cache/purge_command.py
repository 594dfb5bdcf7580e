"""`gateway purge`: the operator's side of a purge, through the local gateway's admin API.

The command reads `admin_listen` and `admin_token` from the same settings as `gateway serve`
(the TOML file, then `GATEWAY_*` variables) and sends `POST /admin/purge` there: to the single
process, or to the supervisor of `--workers N`, which hands it to every worker. With Redis
configured that gateway also publishes it to the fleet. One way in, whatever the deployment:
the cache lives inside the gateway processes, so only they can drop from it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from gateway.cache.purges import Purge
from gateway.settings import SETTINGS, Listen, SettingsError, sources

TIMEOUT: Final = 30.0  # a supervisor waits up to 5 s for each worker


class PurgeCommandError(Exception):
    """The purge did not happen, or not everywhere; the message says why (never the token)."""


def admin_base(listen: Listen) -> str:
    """The admin API's URL from this host: a wildcard listener is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)  # noqa: S104
    return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"


def admin_settings(
    config: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Listen, str | None]:
    """`admin_listen` and `admin_token` as `gateway serve` reads them (no origin, no keyring)."""
    raw = sources.gather(SETTINGS, config, os.environ if environ is None else environ, None)
    wanted = {spec.name: sources.value(spec, raw) for spec in SETTINGS if spec.name in _NAMES}
    listen, token = wanted["admin_listen"], wanted["admin_token"]
    assert isinstance(listen, Listen)
    assert token is None or isinstance(token, str)
    return listen, token


_NAMES: Final = frozenset({"admin_listen", "admin_token"})


def purge(config: Path | None, wanted: Purge, environ: Mapping[str, str] | None = None) -> str:
    """Ask the local gateway to purge; what it did, in a sentence."""
    listen, token = admin_settings(config, environ)
    if not token:
        raise SettingsError(
            "GATEWAY_ADMIN_TOKEN: required: `gateway purge` calls the gateway's admin API, "
            "which is disabled without it"
        )
    url = admin_base(listen) + "/admin/purge"
    request = urllib.request.Request(  # noqa: S310 (http:// of our own settings)
        url,
        data=wanted.to_json().encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with direct.open(request, timeout=TIMEOUT) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise PurgeCommandError(_refusal(url, exc)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PurgeCommandError(
            f"cannot reach the admin API at {url} ({reason}); is the gateway running there? "
            "(GATEWAY_ADMIN_LISTEN)"
        ) from None
    return describe(wanted, answer)


def describe(wanted: Purge, answer: Any) -> str:
    what = f"{wanted.target.value} {wanted.path}"
    dropped = answer.get("dropped") if isinstance(answer, dict) else None
    published = isinstance(answer, dict) and answer.get("published") is True
    if isinstance(dropped, int):
        here = f"{dropped} cached object{'' if dropped == 1 else 's'} dropped here"
    elif published:
        here = "each worker drops its own copies"
    else:
        here = "this gateway has the cache off"
    fleet = "; published to the fleet (Redis)" if published else ""
    return f"purged {what}: {here}{fleet}"


def _refusal(url: str, exc: urllib.error.HTTPError) -> str:
    if exc.code == 404:
        return f"no purge API at {url}: the gateway there runs without GATEWAY_ADMIN_TOKEN"
    if exc.code == 401:
        return "the gateway refused the admin token: GATEWAY_ADMIN_TOKEN differs from its own"
    try:
        body = json.loads(exc.read())
        code, detail = body.get("error"), body.get("detail")
    except (ValueError, AttributeError, OSError):
        code, detail = None, None
    shown = f"{code}: {detail}" if detail else (code or exc.reason)
    return f"the gateway answered {exc.code} ({shown})"
