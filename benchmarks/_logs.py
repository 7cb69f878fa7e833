"""structlog set-up shared by the benchmark processes."""

from __future__ import annotations

import logging

import structlog


def quiet_structlog() -> None:
    """Configure structlog as an application would, filtering below ERROR.

    stepwatch's debug events are then filtered out by level (the production path: one
    ``is_enabled_for`` check per step), and its warnings (e.g. ``metrics.label_overflow``
    for the 1 000+ distinct child names) stay out of the report output.
    """
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
