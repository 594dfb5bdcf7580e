"""Parsers for setting values: text in, typed value out, `ValueError` with the reason.

The caller (`gateway.settings.load`) adds the setting's name and source to the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.client_address import ForwardedHeader, parse_networks
from gateway.http.cors import parse_origins
from signer.addresses import IPNetwork

__all__ = ["parse_origins"]


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def listen(text: str) -> Listen:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]*):(\d{1,5})", text.strip())
    if not match:
        raise ValueError("must be host:port (IPv6 as [addr]:port)")
    host = match.group(1) or match.group(3) or "0.0.0.0"  # noqa: S104 (an empty host means all)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port < 65536:
        raise ValueError("port must be 0-65535 (0: any free port)")
    return Listen(host, port)


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise ValueError("must be a number of seconds between 0 and 86400")
    return value


def seconds_long(text: str) -> float:
    value = float(text)
    if not 60 <= value <= 366 * 86400:
        raise ValueError("must be a number of seconds from 60 to 31622400 (366 days)")
    return value


def interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 86400:
        raise ValueError("must be a number of seconds from 0 to 86400")
    return value


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def count_or_auto(low: int, high: int) -> Callable[[str], int | None]:
    """An integer from `low` to `high`, or `auto` (None: the code derives it)."""
    number = integer(low, high)

    def parse(text: str) -> int | None:
        if text.strip().lower() == "auto":
            return None
        try:
            return number(text)
        except ValueError:
            raise ValueError(f"must be auto or an integer from {low} to {high}") from None

    return parse


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def optional_text(text: str) -> str | None:
    return text.strip() or None


def file_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must be a file path")
    return Path(text.strip())


def networks(text: str) -> tuple[IPNetwork, ...]:
    return parse_networks(text)


def forwarded_header(text: str) -> ForwardedHeader:
    try:
        return ForwardedHeader(text.strip().lower())
    except ValueError:
        raise ValueError("must be x-forwarded-for or forwarded") from None


def same_site(text: str) -> str:
    value = text.strip().capitalize()
    if value not in ("Lax", "Strict", "None"):
        raise ValueError("must be lax, strict or none")
    return value


def tri_state(text: str) -> bool | None:
    """`auto` (None), or a boolean."""
    return None if text.strip().lower() == "auto" else boolean(text)


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def store_url(text: str) -> str | None:
    """A revocation store URL whose scheme has a backend; empty: None (the embedded store)."""
    from gateway.revocation.backends import BACKENDS, SENTINEL_FORM, check_url

    if not text:
        return None
    scheme = text.partition("://")[0].lower()
    remote = [f"{s}://" for s in BACKENDS if s != "sqlite" and "+" not in s]
    if scheme not in BACKENDS or scheme == "sqlite":
        raise ValueError(
            f"must be a {', '.join(remote[:-1])} or {remote[-1]} URL, or {SENTINEL_FORM}"
        )
    check_url(text)
    return text


def optional_path(text: str) -> Path | None:
    return Path(text.strip()) if text.strip() else None
