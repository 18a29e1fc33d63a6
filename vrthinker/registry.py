"""Named "module:Class" entries, imported only when chosen: the backend table and the scorer table.

In the spirit of lm-evaluation-harness's lazy registry: an entry is a string until `load` imports it, so
listing names (for `--help`, `choices=`, an error message) costs no import of a heavy module. A taken name
cannot be registered again (ValueError: a programming mistake), and an unknown name is a UsageError that
says which names are close ("did you mean") and lists them all.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from vrthinker.errors import UsageError


def unknown(kind: str, name: str, names: Iterable[str]) -> UsageError:
    """The one-line error for a name that is not among `names`: the closest ones first, then all of them."""
    names = sorted(names)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return UsageError(f"unknown {kind} {str(name)!r}{hint}; choose from {', '.join(names)}")


def import_spec(spec: str) -> Any:
    """The object a "package.module:Name" string names (dots after the colon reach nested attributes)."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Mapping[str, str]):
    """name -> "module:Class", in registration order; read as a mapping it yields the strings, never imports.

    `register(name, spec, **info)` adds an entry with optional facts about it (`info(name)`) that callers
    need before choosing, such as the components a scorer makes. `load(name)` imports the entry; with
    `base` set, what it names must be a subclass of `base`.
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | None = None, *, base: type | None = None):
        self.kind = kind
        self.base = base
        self._specs: dict[str, str] = {}
        self._info: dict[str, dict[str, Any]] = {}
        for name, spec in (entries or {}).items():
            self.register(name, spec)

    def register(self, name: str, spec: str, **info: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._specs:
            raise ValueError(f"{self.kind} {name!r} is already registered (as {self._specs[name]})")
        module, colon, attr = str(spec).partition(":")
        if not (module and colon and attr):
            raise ValueError(f"{self.kind} {name!r}: {spec!r} is not a 'module:Class' string")
        self._specs[name] = spec
        self._info[name] = dict(info)

    def __setitem__(self, name: str, spec: str) -> None:  # `REG[name] = spec` registers (a taken name refused)
        self.register(name, spec)

    def __getitem__(self, name: str) -> str:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._specs!r})"

    def names(self) -> list[str]:
        return sorted(self._specs)

    def info(self, name: str) -> Mapping[str, Any]:
        """The facts registered with `name` (no import)."""
        if name not in self._specs:
            raise self.unknown(name)
        return self._info[name]

    def unknown(self, name: str) -> UsageError:
        return unknown(self.kind, name, self._specs)

    def load(self, name: str) -> Any:
        """Import and return what `name` stands for; UsageError (with "did you mean") when it is unknown."""
        if name not in self._specs:
            raise self.unknown(name)
        obj = import_spec(self._specs[name])
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self.kind} {name!r}: {self._specs[name]} is not a {self.base.__name__}")
        return obj
