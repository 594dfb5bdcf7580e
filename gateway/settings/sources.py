"""Where setting values come from: a TOML file, `GATEWAY_*` variables and explicit overrides.

Each value is kept with its source (`GATEWAY_LISTEN`, `gateway.toml: listen`, `--listen`), so that
a bad value is reported where the operator wrote it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.settings.declare import ENV_PREFIX, Spec

Raw = dict[str, tuple[str, Any]]  # setting name -> (where it was written, the value written)


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it and its source."""


def gather(
    declared: Iterable[Spec],
    config: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, str] | None,
) -> Raw:
    declared = tuple(declared)
    names = frozenset(s.name for s in declared)
    env_names = frozenset(s.env for s in declared)
    raw: Raw = {}
    if config is not None:
        for name, value in _read_toml(config, names).items():
            raw[name] = (f"{config}: {name}", value)
    for spec in declared:
        if spec.env in env:
            raw[spec.name] = (spec.env, env[spec.env])
    unknown_env = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in env_names)
    if unknown_env:
        raise SettingsError(f"{unknown_env[0]}: not a gateway setting (see `gateway settings`)")
    for name, value in (overrides or {}).items():
        raw[name] = (f"--{name.replace('_', '-')}", value)
    return raw


def value(spec: Spec, raw: Raw) -> Any:
    """The parsed value of `spec`: as written, else its default; required ones must be written."""
    if spec.name not in raw:
        if spec.default is None:
            raise SettingsError(f"{spec.env}: required (or `{spec.name}` in the config file)")
        return _parse(spec, f"default of {spec.name}", spec.default)
    source, written = raw[spec.name]
    return _parse(spec, source, written)


def _parse(spec: Spec, source: str, value: Any) -> Any:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, int | float):
        value = str(value)
    elif not isinstance(value, str):
        raise SettingsError(f"{source}: must be a string, number, boolean or list")
    try:
        return spec.parse(value)
    except ValueError as exc:
        shown = "<hidden>" if spec.secret else repr(value)
        raise SettingsError(f"{source}: {shown} {exc}") from None


def _read_toml(path: Path, names: frozenset[str]) -> dict[str, Any]:
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
    unknown = sorted(set(section) - names)
    if unknown:
        raise SettingsError(f"{path}: {unknown[0]}: not a gateway setting")
    return section
