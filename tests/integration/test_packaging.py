"""The installed package must carry every module and the web page, not only the
source tree: a wheel built from the repo is inspected."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

ROOT = REPO_ROOT


@pytest.mark.slow
def test_wheel_contains_every_package_and_the_web_page(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # `make install` printed ~50 lines of this warning for streamer/web (issue #19).
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    wheel = next(tmp_path.glob("mit_tts_streamer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {
        p.parent.relative_to(ROOT).as_posix()
        for p in (ROOT / "streamer").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    for package in source_packages:
        assert f"{package}/__init__.py" in names, f"{package} is not a package in the wheel"
    for asset in ("index.html", "app.js", "style.css"):
        assert f"streamer/web/{asset}" in names
