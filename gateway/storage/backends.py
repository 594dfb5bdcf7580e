"""Which store serves an origin: a registry keyed by the origin URL's scheme.

    s3://bucket/optional/prefix     gateway.storage.s3      (any S3-compatible store)
    file:///absolute/path           gateway.storage.local   (a directory; demos and tests)

A new backend (say `gs://`) is one module with a `from_settings(settings) -> ObjectStore`
function and one line in `BACKENDS`; its origin is bucket-shaped like `s3://`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.storage import ObjectStore

__all__ = ["BACKENDS", "Origin", "open_store", "parse_origin"]

BACKENDS: Final = {"s3": "gateway.storage.s3", "file": "gateway.storage.local"}
_PATH_SHAPED: Final = frozenset({"file"})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where objects live: a bucket and a key prefix, or a directory (`path`)."""

    scheme: str
    bucket: str
    prefix: str
    path: Path | None

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.scheme}://{self.path}"
        return f"{self.scheme}://{self.bucket}/{self.prefix}"


def parse_origin(text: str) -> Origin:
    parts = urlsplit(text.strip())
    if parts.scheme not in BACKENDS:
        raise ValueError("must start with " + " or ".join(f"{s}://" for s in BACKENDS))
    if parts.scheme in _PATH_SHAPED:
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"must be {parts.scheme}:///absolute/path")
        return Origin(parts.scheme, "", "", Path(unquote(parts.path)))
    if not parts.netloc:
        raise ValueError(f"must name a bucket: {parts.scheme}://bucket/optional/prefix")
    prefix = unquote(parts.path).lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if ".." in prefix.split("/") or "\\" in prefix:
        raise ValueError("the key prefix must not contain '..' segments or backslashes")
    return Origin(parts.scheme, parts.netloc, prefix, None)


def open_store(settings: Settings) -> ObjectStore:
    """The store for `settings.origin`, not yet started."""
    module = importlib.import_module(BACKENDS[settings.origin.scheme])
    store: ObjectStore = module.from_settings(settings)
    return store
