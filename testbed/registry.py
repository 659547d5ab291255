"""A small named registry: `register` by key, `get` raising an error that lists the known keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownKeyError(KeyError, ValueError):
    """Raised when a registry has no entry under the requested key."""

    def __init__(self, kind: str, key: str, known: list[str]) -> None:
        self.kind, self.key, self.known = kind, key, known
        super().__init__(f"unknown {kind} {key!r}; known {kind}s: {', '.join(known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps string keys to objects (model builders, algorithms, backends)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = item
            return item

        return add

    def get(self, key: str) -> T:
        try:
            return self._items[key]
        except KeyError:
            raise UnknownKeyError(self.kind, key, self.keys()) from None

    def keys(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())
