"""How a setting is declared: once, as a dataclass field whose metadata says how to read it.

    connect: float = setting("connect_timeout", seconds, "5", "seconds to connect to storage")

The field gives the Python name and type; the metadata gives the name used in the TOML file
(`connect_timeout`), from which the environment variable (`GATEWAY_CONNECT_TIMEOUT`), the
`gateway settings` table and the docs check are all derived. Settings that belong together live
in a group (a dataclass of such fields) declared with `group()`. Nothing else lists settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Final, get_type_hints

ENV_PREFIX: Final = "GATEWAY_"
_SPEC: Final = "gateway.setting"
_GROUP: Final = "gateway.group"


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its file name, how to parse its text, its default text, and its help."""

    name: str
    parse: Callable[[str], Any]
    default: str | None  # None: required; defaults go through `parse` like any input
    help: str
    secret: bool = False
    path: tuple[str, ...] = ()  # attribute names from the root settings object, set by `specs`

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def get(self, root: object) -> Any:
        """This setting's value in a loaded settings object."""
        value = root
        for attribute in self.path:
            value = getattr(value, attribute)
        return value


def setting(
    name: str,
    parse: Callable[[str], Any],
    default: str | None,
    help: str,
    *,
    secret: bool = False,
) -> Any:
    """Declare a setting (typed `Any` so that the field keeps its own annotation)."""
    return field(metadata={_SPEC: Spec(name, parse, default, help, secret)})


def group() -> Any:
    """Declare a field holding a group of settings (its annotation is the group's class)."""
    return field(metadata={_GROUP: True})


def specs(cls: type, path: tuple[str, ...] = ()) -> Iterator[Spec]:
    """Every setting under `cls`, in declaration order, each knowing its path from `cls`."""
    for f in fields(cls):
        if _GROUP in f.metadata:
            yield from specs(_group_class(cls, f), (*path, f.name))
        else:
            yield replace(_spec(f), path=(*path, f.name))


def build(cls: type, value_of: Callable[[Spec], Any]) -> Any:
    """An instance of `cls` whose every setting is `value_of(spec)`."""
    values = {}
    for f in fields(cls):
        if _GROUP in f.metadata:
            values[f.name] = build(_group_class(cls, f), value_of)
        else:
            values[f.name] = value_of(_spec(f))
    return cls(**values)


def _spec(f: Field[Any]) -> Spec:
    spec = f.metadata.get(_SPEC)
    if not isinstance(spec, Spec):
        raise TypeError(f"{f.name}: declare it with setting() or group()")
    return spec


def _group_class(owner: type, f: Field[Any]) -> type:
    group_class = get_type_hints(owner)[f.name]
    if not isinstance(group_class, type):
        raise TypeError(f"{f.name}: a group's annotation must be its class")
    return group_class
