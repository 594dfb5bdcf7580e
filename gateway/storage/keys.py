"""Request path -> object key: the one mapping, exact and documented (docs/gateway.md).

The path arrives decoded once by the token format (which already refused empty, '.' and '..'
segments, NUL and non-canonical escapes). Here the storage-specific rules are added: no
backslashes or control characters (some stores and filesystems treat them specially), and
keys of at most 1024 UTF-8 bytes (S3's limit). The key is the configured prefix followed by
the path without its leading slash, so no path can name anything outside the prefix.
"""

from __future__ import annotations

import re

MAX_KEY_BYTES = 1024
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
# An empty, '.' or '..' segment: one between two slashes, or the last one.
_BAD_SEGMENT_INSIDE = re.compile(r"/\.{0,2}/")
_BAD_LAST_SEGMENT = ("/", "/.", "/..")


class InvalidKey(ValueError):
    """The path cannot be an object key; answered with 400."""


def object_key(path: str, prefix: str = "") -> str:
    if not path.startswith("/") or path == "/":
        raise InvalidKey("the path must name an object")
    if _FORBIDDEN.search(path):
        raise InvalidKey("the path contains a backslash or a control character")
    if _BAD_SEGMENT_INSIDE.search(path) or path.endswith(_BAD_LAST_SEGMENT):
        raise InvalidKey("the path has an empty, '.' or '..' segment")
    key = prefix + path[1:]
    # A character is at most 4 UTF-8 bytes: most keys need no encoding to be measured.
    if len(key) * 4 > MAX_KEY_BYTES and len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"the object key is longer than {MAX_KEY_BYTES} bytes")
    return key
