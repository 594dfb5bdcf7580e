"""`gateway`: run the edge verification gateway."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import settings as settings_module
from gateway.settings import SettingsError

EPILOG = """\
examples:
  gateway serve --config /etc/gateway/gateway.toml
  GATEWAY_ORIGIN=s3://media-private/videos GATEWAY_KEYRING=/run/keys/gateway-keyring.json \\
      GATEWAY_LISTEN=0.0.0.0:8080 gateway serve --workers 2
  gateway serve --origin file:///srv/objects --keyring gateway-keyring.json
  gateway settings            # every setting, its GATEWAY_* variable and default
  gateway revoke --sub user-42                  # every link of a subject issued until now
  gateway revoke --url 'https://media.example.com/v.mp4?Expires=...'   # one link
  gateway revocations list
  gateway purge /videos/a.mp4                   # drop cached copies of one object
  gateway purge --prefix /videos/ep1/           # ... of everything under a path prefix
  gateway limits show 'https://media.example.com/v.mp4?Expires=...'   # what a link has used
  gateway limits reset 3f1c0a9e5b7d2c4e8f6a1b3c5d7e9f01                # make it usable again

Settings come from the TOML file, then GATEWAY_* environment variables, then flags.
AWS credentials and region come from the usual AWS_* variables, profiles or instance roles.
Signals: SIGTERM drains and exits, SIGHUP reloads the keyring. Exit status 2: bad settings.
The revocation and limits commands use the store the gateways use: GATEWAY_REDIS_URL if set,
else the SQLite file GATEWAY_REVOCATION_DB. `gateway purge` calls the local gateway's admin API
(GATEWAY_ADMIN_LISTEN, GATEWAY_ADMIN_TOKEN), which with Redis publishes it to the fleet.
"""


REVOKE_EPILOG = """\
examples:
  gateway revoke --url 'https://media.example.com/videos/a.mp4?Expires=...&Signature=...'
  gateway revoke --digest 3f1c0a9e5b7d2c4e8f6a1b3c5d7e9f01
  gateway revoke --sub user-42
  gateway revoke --key-id k2026-10
  gateway revoke --prefix /videos/ep1/ --before 2026-11-23T12:00:00Z
"""

PURGE_EPILOG = """\
examples:
  gateway purge /videos/a.mp4
  gateway purge --prefix /videos/ep1/           # ep1 and everything under it, not ep10
  GATEWAY_ADMIN_LISTEN=10.0.0.5:9090 gateway purge /doc.txt   # another gateway's admin API
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Edge verification gateway: verify every signed link, then stream the "
        "object from private storage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    serve.add_argument("--workers", metavar="N", help="processes sharing the public port")
    serve.add_argument("--listen", metavar="HOST:PORT", help="public listener")
    serve.add_argument("--admin-listen", metavar="HOST:PORT", help="internal listener")
    serve.add_argument("--origin", metavar="URL", help="s3://bucket/prefix or file:///path")
    serve.add_argument("--keyring", metavar="FILE", help="verification keyring")
    commands.add_parser("settings", help="list every setting with its variable and default")
    check = commands.add_parser(
        "check",
        help="check the settings, keyring, storage, revocation store and cache, like nginx -t",
        description="Load the settings and keyring and reach every service the gateway uses, "
        "with its own credentials; one line per finding, naming the setting. Exit status: 0 "
        "all good (warnings allowed), 1 an error, 2 the settings do not load.",
    )
    check.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    revoke = commands.add_parser(
        "revoke",
        help="revoke one link, or every link of a subject, key or path prefix",
        description="Revoke links. Entries expire by themselves once every link they match "
        "has expired (a link's own Expires, or --before plus GATEWAY_MAX_LINK_LIFETIME).",
        epilog=REVOKE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="one signed link (absolute URL or path?query)")
    target.add_argument("--digest", help="one link by its token id (32 hex digits, as logged)")
    target.add_argument("--sub", help="every link of this subject (Sub)")
    target.add_argument("--key-id", help="every link signed with this KeyID")
    target.add_argument("--prefix", help="every link for a path at or under this prefix")
    revoke.add_argument(
        "--before",
        metavar="TIME",
        help="only links issued at or before TIME (unix seconds or ISO 8601); default: now",
    )
    revoke.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    revoke.add_argument(
        "--create",
        action="store_true",
        help="create the embedded store's file if it does not exist yet (a new installation)",
    )
    purge = commands.add_parser(
        "purge",
        help="drop cached copies of an object, or of everything under a path prefix",
        description="Drop cached copies from the edge cache: on the local gateway (all its "
        "workers) through its admin API and, with GATEWAY_REDIS_URL, on every gateway of the "
        "fleet. Paths are request paths, decoded, as links sign them.",
        epilog=PURGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    purged = purge.add_mutually_exclusive_group(required=True)
    purged.add_argument("key", nargs="?", metavar="PATH", help="one object, by its request path")
    purged.add_argument("--prefix", help="everything at or under this path prefix ('/': all)")
    purge.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    revocations = commands.add_parser("revocations", help="list or prune the revocation list")
    revocations.add_argument("action", choices=("list", "prune"))
    revocations.add_argument("--json", action="store_true", help="list as JSON")
    revocations.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    limits = commands.add_parser(
        "limits",
        help="show or reset what a link with usage limits has used",
        description="A link's uses, bytes served and open streams (client address, lease "
        "end), and with a URL its limits; or reset them, which makes an exhausted link usable "
        "again. Over the store the gateways count in (GATEWAY_REDIS_URL, else "
        "GATEWAY_REVOCATION_DB).",
    )
    limits.add_argument("action", choices=("show", "reset"))
    limited = limits.add_mutually_exclusive_group(required=True)
    limited.add_argument(
        "link", nargs="?", metavar="URL|TOKEN_ID", help="a signed link, or its token id as logged"
    )
    limited.add_argument("--sub", help="the shared streams of a subject (SubjectStreams)")
    limits.add_argument("--json", action="store_true", help="show as JSON")
    limits.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    args = parser.parse_args(argv)

    if args.command == "settings":
        print(settings_module.settings_table())
        return 0
    if args.command in ("revoke", "revocations"):
        return _operate(args)
    if args.command == "check":
        return _check(args.config)
    if args.command == "purge":
        return _purge(args)
    if args.command == "limits":
        return _limits(args)
    overrides = {
        name: value
        for name in ("workers", "listen", "admin_listen", "origin", "keyring")
        if (value := getattr(args, name)) is not None
    }
    from gateway.observability.access_log import configure
    from gateway.revocation import RevocationError
    from gateway.server import serve as run_server
    from gateway.storage import StorageError
    from signer import KeyringError

    try:
        settings = settings_module.load(args.config, overrides=overrides)
        configure(settings.log.access, settings.log.level)
        run_server(settings)
    except (SettingsError, KeyringError, StorageError, RevocationError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(config: Path | None) -> int:
    import asyncio

    from gateway import check

    try:
        settings = settings_module.load(config)
    except SettingsError as exc:
        print(f"error   settings: {exc}")
        return 2
    findings = asyncio.run(check.run(settings))
    for finding in findings:
        print(finding.line())
    return 1 if any(f.level is check.Level.ERROR for f in findings) else 0


def _operate(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.revocation import REQUEST_KINDS, RevocationError, commands
    from signer.timeparse import parse_time

    try:
        if args.command == "revoke":
            what = next(k for k in REQUEST_KINDS if getattr(args, k) is not None)
            try:
                before = parse_time(args.before) if args.before is not None else None
            except ValueError as exc:
                raise ValueError(f"--before: {exc}") from None
            message = asyncio.run(
                commands.revoke(args.config, what, getattr(args, what), before, create=args.create)
            )
        elif args.action == "list":
            message = asyncio.run(commands.list_entries(args.config, args.json))
        else:
            message = asyncio.run(commands.prune(args.config))
    except (SettingsError, RevocationError, ValueError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the store is unreachable or refused: say so, no traceback
        print(f"gateway: error: revocation store: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _limits(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.limits import LimitStoreError
    from gateway.limits import commands as limit_commands

    try:
        wanted = limit_commands.target(args.link, sub=args.sub)
        message = asyncio.run(
            limit_commands.command(args.config, args.action, wanted, as_json=args.json)
        )
    except (SettingsError, limit_commands.TargetError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    except LimitStoreError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _purge(args: argparse.Namespace) -> int:
    from gateway.cache import purge_command
    from gateway.cache.purges import PurgeError, Target, checked

    try:
        target = Target.KEY if args.key is not None else Target.PREFIX
        wanted = checked(target, args.key if args.key is not None else args.prefix)
        message = purge_command.purge(args.config, wanted)
    except (SettingsError, PurgeError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    except purge_command.PurgeCommandError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
