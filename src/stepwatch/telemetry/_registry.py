"""What every set of stepwatch metrics does with a prometheus-client registry.

* :func:`register_all`: register a set of metrics all or nothing, so that a registry
  refusing one of them (a name already taken) is left as it was;
* :class:`PerRegistry`: one object per registry (the step metrics, the ``stepwatch.http``
  metrics), made on first use and dropped with the registry; a registry that cannot be
  weakly referenced is kept by id, with a strong reference;
* :func:`multiprocess_mode`: whether prometheus-client shares values through files.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["PerRegistry", "multiprocess_mode", "register_all"]

T = TypeVar("T")


def register_all(registry: Any, metrics: Iterable[Any]) -> None:
    """Register every metric on ``registry``, or none of them (re-raising the error)."""
    done: list[Any] = []
    try:
        for metric in metrics:
            registry.register(metric)
            done.append(metric)
    except BaseException:
        for metric in done:  # leave the registry as it was
            with contextlib.suppress(Exception):
                registry.unregister(metric)
        raise


class PerRegistry(Generic[T]):
    """One ``T`` per registry, made by ``make(registry)`` on first use (thread-safe)."""

    __slots__ = ("_by_id", "_lock", "_weak")

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()
        self._by_id: dict[int, tuple[Any, T]] = {}  # registries without weak references
        self._lock = threading.Lock()

    def get(self, registry: Any, make: Callable[[Any], T]) -> T:
        """The registry's object, made (and remembered) if it has none yet.

        Raises:
            Exception: whatever ``make`` raised (nothing is remembered then).
        """
        with self._lock:
            try:
                found = self._weak.get(registry)
            except TypeError:
                entry = self._by_id.get(id(registry))
                found = entry[1] if entry is not None and entry[0] is registry else None
            if found is not None:
                return found
            made = make(registry)
            try:
                self._weak[registry] = made
            except TypeError:
                self._by_id[id(registry)] = (registry, made)
            return made


def multiprocess_mode() -> bool:
    """True when prometheus-client writes to ``PROMETHEUS_MULTIPROC_DIR`` (no exemplars)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
        return True
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue
