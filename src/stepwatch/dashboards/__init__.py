"""The Grafana dashboard, the Prometheus alert rules and their runbook, shipped in the wheel.

Write them to a directory with ``python -m stepwatch.dashboards export DIR`` (or
:func:`export`); ``--runbook-url`` and ``--grafana-url`` render the alert rules' links for
your own runbook page and Grafana. See ``dashboards/README.md``.
"""

from __future__ import annotations

from ._export import FILES, export, main

__all__ = ["FILES", "export", "main"]
