"""The value returned by ``FlowExecutor.run()``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._outcome import Outcome

__all__ = ["RunResult"]


class RunResult(Mapping[str, Any]):
    """Results of one run: ``result[step_name]`` is the step's value.

    Every step that produced a value appears, nested ones included (step names are unique
    within a flow). For a parallel step the value is a dict child name → value of the
    children that finished, in declaration order.

    Attributes:
        flow_name: the flow's name.
        run_id: a unique id of this run.
        outcomes: ``outcomes[step_name]`` is the step's :class:`Outcome` (every step that
            started or was cut off, in the order they ended).
        elapsed: seconds the run took.
        output: the value of the last top-level step, or ``None``.
        input: the input the run was given.
    """

    __slots__ = ("_values", "elapsed", "flow_name", "input", "outcomes", "output", "run_id")

    def __init__(
        self,
        *,
        flow_name: str,
        run_id: str,
        values: Mapping[str, Any],
        outcomes: Mapping[str, Outcome],
        elapsed: float,
        output: Any,
        input: Any,
    ) -> None:
        self.flow_name = flow_name
        self.run_id = run_id
        self._values = values
        self.outcomes: Mapping[str, Outcome] = outcomes
        self.elapsed = elapsed
        self.output = output
        self.input = input

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            outcome = self.outcomes.get(key)
            if outcome is None:
                raise KeyError(f"no step named {key!r} produced a value in this run") from None
            raise KeyError(
                f"step {key!r} has no value: it ended {outcome.status.value}"
                + (f" ({outcome.cause.value})" if outcome.cause else "")
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RunResult(flow={self.flow_name!r}, values={dict(self._values)!r})"
