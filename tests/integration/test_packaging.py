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
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("mit_tts_streamer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {
        p.parent.relative_to(ROOT).as_posix()
        for p in (ROOT / "streamer").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    for package in source_packages:
        assert f"{package}/__init__.py" in names, f"{package} is not a package in the wheel"
    assert "streamer/web/index.html" in names
