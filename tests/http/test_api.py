"""The public surface of stepwatch.http, and what it needs installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import stepwatch.http

ROOT = Path(__file__).resolve().parents[2]


class TestExports:
    """__all__ is exact, sorted, and every name is documented."""

    def test_all_matches_public_names(self) -> None:
        """__all__ lists exactly the public names the subpackage offers (lazy ones too)."""
        public = {name for name in dir(stepwatch.http) if not name.startswith("_")}
        assert set(stepwatch.http.__all__) == public
        for name in stepwatch.http.__all__:
            assert getattr(stepwatch.http, name) is not None

    def test_all_is_sorted_and_unique(self) -> None:
        """Constants first, then classes, alphabetically; no duplicates."""
        names = list(stepwatch.http.__all__)
        assert len(names) == len(set(names))
        assert names == sorted(names, key=lambda n: (n.upper() != n, n))

    def test_every_public_name_has_a_docstring(self) -> None:
        """Classes and their public methods say what they do."""
        for name in stepwatch.http.__all__:
            value = getattr(stepwatch.http, name)
            if isinstance(value, type):
                assert value.__doc__ and value.__doc__.strip(), name
                for attr, member in vars(value).items():
                    if callable(member) and not attr.startswith("_"):
                        assert member.__doc__, f"{name}.{attr}"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


class TestOptionalHttpx:
    """httpx is an extra: the ASGI side works without it; the rest says how to get it."""

    BLOCK = "import sys; sys.modules['httpx'] = None\n"

    def test_asgi_side_imports_without_httpx(self) -> None:
        """DeadlineMiddleware and JsonRpcApp import and build without httpx."""
        result = _python(
            self.BLOCK + "from stepwatch.http import DeadlineMiddleware, JsonRpcApp\n"
            "JsonRpcApp({}, metrics=False); DeadlineMiddleware(print, metrics=False)\n"
            "print('ok')"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"

    def test_httpx_names_raise_an_import_error_naming_the_extra(self) -> None:
        """DeadlineTransport, BudgetExhaustedError and JsonRpcClient name the extra."""
        for name in ("DeadlineTransport", "BudgetExhaustedError", "JsonRpcClient"):
            result = _python(self.BLOCK + f"from stepwatch.http import {name}")
            assert result.returncode != 0, name
            assert "pip install 'stepwatch[http]'" in result.stderr, name

    def test_importing_stepwatch_does_not_import_the_http_stack(self) -> None:
        """import stepwatch pulls in neither stepwatch.http nor httpx nor prometheus_client."""
        result = _python(
            "import sys, stepwatch\n"
            "print(sorted(m for m in ('stepwatch.http', 'httpx') if m in sys.modules))"
        )
        assert result.stdout.strip() == "[]", result.stderr


class TestDependencies:
    """Runtime dependencies stay the four; httpx and the servers are extras."""

    def test_runtime_dependencies_are_unchanged(self) -> None:
        """anyio, opentelemetry-api, prometheus-client and structlog, nothing else."""
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        names = sorted(d.split(">")[0].split("=")[0].strip() for d in project["dependencies"])
        assert names == ["anyio", "opentelemetry-api", "prometheus-client", "structlog"]
        extras = project["optional-dependencies"]
        assert any(d.startswith("httpx") for d in extras["http"])
        dev = " ".join(extras["dev"])
        assert "uvicorn" in dev and "hypercorn" in dev and "http" in dev


class TestTelemetryContract:
    """Metrics are created lazily, and every name the code emits is documented."""

    def test_importing_registers_no_metric(self) -> None:
        """Importing stepwatch.http (and building nothing) registers nothing."""
        result = _python(
            "import stepwatch.http\n"
            "from prometheus_client import REGISTRY\n"
            "print(sorted(m.name for m in REGISTRY.collect() if m.name.startswith('stepwatch')))"
        )
        assert result.stdout.strip() == "[]", result.stderr

    def test_every_metric_and_attribute_is_documented(self) -> None:
        """docs/telemetry.md names every metric and span attribute stepwatch.http emits."""
        import re

        doc = (ROOT / "docs" / "telemetry.md").read_text()
        source = "".join(p.read_text() for p in (ROOT / "src/stepwatch/http").glob("*.py"))
        attributes = set(re.findall(r'"(stepwatch\.deadline\.[a-z_]+)"', source))
        attributes.discard("stepwatch.deadline.counted")  # a request extension, not telemetry
        assert len(attributes) >= 6
        for name in (*stepwatch.http.HTTP_METRIC_NAMES, *sorted(attributes)):
            assert f"`{name}`" in doc, name
