"""One registry type for every kind of named part: embedders, detectors, index backends, exporters, dataset loaders.

A setting, a CLI flag or an API parameter names a part; the registry finds it,
refuses a name registered twice (a silent overwrite would swap a model under a
deployment), and lists and describes what exists for ``--help``, errors and docs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.errors import ConfigError, LogoError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered part: its name, the part itself and one line that describes it."""

    name: str
    item: T
    description: str = ""


class Registry(Generic[T]):
    """Named parts of one kind.

    Args:
        kind: What the parts are, for messages ("embedder", "export format"...).
        error: The error an unknown name raises: whose fault it is depends on who names the part (a setting:
            :class:`ConfigError`; a caller's parameter: a :class:`BadInputError`).
        also: Names accepted besides the registered ones, for the unknown-name message (``hf-hub:<repo>``).

    Example:
        >>> shapes = Registry[int]("shape")
        >>> shapes.register("square", 4, "four sides")
        4
        >>> shapes.get("square"), shapes.names(), "circle" in shapes
        (4, ['square'], False)
        >>> shapes.get("circle")
        Traceback (most recent call last):
        pipeline.errors.ConfigError: unknown shape 'circle'; known: square
    """

    def __init__(self, kind: str, error: type[LogoError] = ConfigError, also: str = "") -> None:
        self.kind = kind
        self.error = error
        self.also = also
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, item: T, description: str = "") -> T:
        """Add ``item`` under ``name``; returns it, so that a definition can register itself.

        Raises:
            ConfigError: ``name`` is taken.
        """
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, item, description)
        return item

    def decorator(self, name: str, description: str = "") -> Callable[[T], T]:
        """``@registry.decorator(name)`` registers what it decorates."""
        return lambda item: self.register(name, item, description)

    def get(self, name: str) -> T:
        """The part called ``name``, or the registry's error naming every known one."""
        try:
            return self._entries[name].item
        except KeyError:
            known = ", ".join(self.names()) + (f" or {self.also}" if self.also else "")
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Each name with its one-line description, sorted by name."""
        return {name: self._entries[name].description for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
