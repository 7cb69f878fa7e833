"""Fast construction of the frozen slots dataclasses built for every step.

An :class:`~stepwatch.Outcome` and a :class:`~stepwatch.StepEnded` are made for every step
execution. A frozen dataclass's ``__init__`` must get past its own ``__setattr__`` (which
raises ``FrozenInstanceError``), one descriptor call per field: about three times the cost
of filling a plain slots object. The core builds them through :func:`writable_twin`: a
class with the same ``__slots__`` and nothing else, whose instances are filled by plain
assignment and then become instances of the frozen class by ``__class__`` assignment,
which Python allows between classes whose instances have the same layout (the same
``__slots__``, see "Notes on using __slots__" in the language reference). The result is
indistinguishable from one made by ``__init__``: same type, same fields, and frozen from
then on. Users keep constructing them with ``__init__``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["writable_twin"]


def writable_twin(cls: type) -> Any:
    """A class with ``cls``'s slots and nothing else (no ``__setattr__`` that refuses)."""
    slots = cls.__dict__["__slots__"]
    return type(f"_Writable{cls.__name__}", (), {"__slots__": slots, "__module__": __name__})
