"""What is installed is self-contained: the licence the metadata names, and the dashboard,
alert rules and runbook as package data that ``python -m stepwatch.dashboards export``
writes out from an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from stepwatch import dashboards
from stepwatch.dashboards._export import _SOURCES

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DATA = "stepwatch/dashboards/data/"


def test_license_file_matches_the_metadata() -> None:
    """LICENSE is the MIT licence of "stepwatch developers", as pyproject.toml says."""
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "MIT"
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 stepwatch developers" in text
    assert {"name": "stepwatch developers"} in PYPROJECT["project"]["authors"]


def test_wheel_force_includes_exactly_the_export_files() -> None:
    """The build's force-include list is the export list, under stepwatch/dashboards/data/."""
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    expected = {source: DATA + name for name, source in _SOURCES.items()}
    assert wheel["force-include"] == expected


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installed_wheel_exports_the_dashboards(tmp_path: Path) -> None:
    """An sdist and a wheel built from it carry LICENSE and every dashboard file; installed
    in a fresh virtual environment, the wheel exports what the checkout exports."""
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (sdist,) = dist.glob("stepwatch-*.tar.gz")
    (wheel,) = dist.glob("stepwatch-*.whl")

    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(top + "/") for name in tar.getnames()}
    assert {"LICENSE", "pyproject.toml", *_SOURCES.values()} <= in_sdist

    with zipfile.ZipFile(wheel) as whl:
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in whl.namelist())
        for name, source in _SOURCES.items():
            assert whl.read(DATA + name) == (ROOT / source).read_bytes(), name

    # a fresh environment with only the wheel installed; the runtime dependencies come
    # from this environment's site-packages (a path, so its editable stepwatch is not seen)
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def installed(*args: str) -> str:
        """Run the installed wheel's Python outside the source tree; its output."""
        done = subprocess.run(
            [str(python), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=clean,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = installed("-c", "import stepwatch; print(stepwatch.__file__)")
    assert Path(where.strip()).is_relative_to(env)
    out = tmp_path / "exported"
    installed("-m", "stepwatch.dashboards", "export", str(out))
    checkout = tmp_path / "from-checkout"
    dashboards.export(checkout)  # this checkout's own files (see test_export.py)
    for name in _SOURCES:
        assert (out / name).read_bytes() == (checkout / name).read_bytes(), name
