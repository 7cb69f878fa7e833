#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.11+.

    python3 dev.py demo     # create .venv, install stepwatch, run the fan-out demo
    python3 dev.py test     # install the dev extra, run ruff, mypy --strict and pytest

Extra arguments after ``test`` go to pytest (``python3 dev.py test -k parallel``).
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
PY = BIN / "python"


def sh(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_venv(extra: str | None) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"stepwatch needs Python 3.11+, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    target = f".[{extra}]" if extra else "."
    sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    try:
        if command == "demo":
            ensure_venv(None)
            sh(PY, "examples/demo.py", *argv[1:])
        elif command == "test":
            ensure_venv("dev")
            lint = [
                p
                for p in ("src", "tests", "examples", "benchmarks", "dashboards")
                if (ROOT / p).exists()
            ]
            sh(PY, "-m", "ruff", "check", *lint)
            sh(PY, "-m", "mypy", "src", "tests/typing")
            sh(PY, "-m", "pytest", *argv[1:])
        else:
            print(__doc__)
            return 0 if command in ("help", "-h", "--help") else 2
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
