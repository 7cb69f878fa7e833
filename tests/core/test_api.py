"""The public API surface."""

from __future__ import annotations

import stepwatch


def test_all_matches_public_names() -> None:
    """__all__ lists exactly the public names the package defines."""
    public = {name for name in dir(stepwatch) if not name.startswith("_")}
    submodules = {"dashboards", "executors", "http", "telemetry", "testing"}
    assert set(stepwatch.__all__) == public - submodules


def test_all_is_sorted_and_unique() -> None:
    """__all__ has no duplicates (and stays sorted for readable diffs)."""
    assert len(stepwatch.__all__) == len(set(stepwatch.__all__))
    assert list(stepwatch.__all__) == sorted(stepwatch.__all__, key=lambda n: (n.upper() != n, n))


def test_issue_contract_names_are_exported() -> None:
    """The names other components rely on are importable from stepwatch."""
    contract = (
        "Flow FlowExecutor Request Transform Branch Loop Sequence Parallel TimeoutOptions "
        "StepTimeoutError FlowTimeoutError ValidationError ErrorCode"
    )
    for name in contract.split():
        assert name in stepwatch.__all__
        assert getattr(stepwatch, name) is not None


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert stepwatch.__version__ == version("stepwatch")
