#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.11+.

    python3 dev.py demo     # create .venv, install stepwatch, run the fan-out demo
    python3 dev.py test     # install the dev extra, then lint, types and pytest

The steps of ``test``, each also a command of its own:

    python3 dev.py lint     # ruff check and ruff format --check (src, tests, examples, benchmarks)
    python3 dev.py types    # mypy --strict on the library and the typing checks
    python3 dev.py pytest   # pytest with branch coverage of stepwatch, reported in the terminal

Extra arguments after ``test`` or ``pytest`` go to pytest (``python3 dev.py test -k
parallel``). The coverage floor (``fail_under`` in pyproject.toml) is enforced on a full
run only: with extra arguments (a subset of the tests) coverage is reported, not judged.

This is the one definition of the checks: CI (``.ci/run``) runs ``dev.py test``, and the
tox environments run ``dev.py --here lint|types|pytest|demo``. ``--here`` uses the
running interpreter (the tox environment) and installs nothing; without it, ``.venv``
(or ``$STEPWATCH_VENV``) is created and the needed extra installed into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("STEPWATCH_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LINTED = ("src", "tests", "examples", "benchmarks", "dashboards", "dev.py")
COVERAGE = ("--cov=stepwatch", "--cov-branch", "--cov-report=term-missing:skip-covered")


def sh(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_venv(extra: str | None) -> Path:
    """Create ``.venv`` if needed and install stepwatch (with ``extra``); its python."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs on any python3)
        sys.exit(f"stepwatch needs Python 3.11+, this is {sys.version.split()[0]}")
    py = BIN / "python"
    if not py.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    target = f".[{extra}]" if extra else "."
    sh(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target)
    return py


def lint(py: str | Path) -> None:
    paths = [p for p in LINTED if (ROOT / p).exists()]
    sh(py, "-m", "ruff", "check", *paths)
    sh(py, "-m", "ruff", "format", "--check", *paths)


def types(py: str | Path) -> None:
    sh(py, "-m", "mypy", "src", "tests/typing", "benchmarks")


def pytest(py: str | Path, args: list[str]) -> None:
    floor = ["--cov-fail-under=0"] if args else []  # a subset: report, don't judge
    sh(py, "-m", "pytest", *COVERAGE, *floor, *args)


def main(argv: list[str]) -> int:
    here = bool(argv) and argv[0] == "--here"
    if here:
        argv = argv[1:]
    command = argv[0] if argv else "help"
    rest = argv[1:]

    def python(extra: str | None) -> str | Path:
        return sys.executable if here else ensure_venv(extra)

    try:
        if command == "demo":
            sh(python(None), "examples/demo.py", *rest)
        elif command == "test":
            py = python("dev")
            lint(py)
            types(py)
            pytest(py, rest)
        elif command == "lint":
            lint(python("dev"))
        elif command == "types":
            types(python("dev"))
        elif command == "pytest":
            pytest(python("dev"), rest)
        else:
            print(__doc__)
            return 0 if command in ("help", "-h", "--help") else 2
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
