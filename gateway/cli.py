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

Settings come from the TOML file, then GATEWAY_* environment variables, then flags.
AWS credentials and region come from the usual AWS_* variables, profiles or instance roles.
Signals: SIGTERM drains and exits, SIGHUP reloads the keyring. Exit status 2: bad settings.
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
    args = parser.parse_args(argv)

    if args.command == "settings":
        print(settings_module.describe())
        return 0
    overrides = {
        name: value
        for name in ("workers", "listen", "admin_listen", "origin", "keyring")
        if (value := getattr(args, name)) is not None
    }
    from gateway.observability.access_log import configure
    from gateway.server import serve as run_server
    from gateway.storage import StorageError
    from signer import KeyringError

    try:
        settings = settings_module.load(args.config, overrides=overrides)
        configure(settings.access_log, settings.log_level)
        run_server(settings)
    except (SettingsError, KeyringError, StorageError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
