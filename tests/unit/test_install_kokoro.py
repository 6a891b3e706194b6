"""deploy/install_kokoro.py's decisions that need no download: what happens without
npm, and that a piece with the wrong checksum never lands in place."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "install_kokoro.py"


@pytest.fixture(scope="module")
def installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_kokoro", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_kokoro"] = module
    spec.loader.exec_module(module)
    return module


def test_without_npm_the_voices_are_skipped_with_the_reason(
    installer: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(installer.shutil, "which", lambda name: None)
    work = tmp_path / "work"
    work.mkdir()
    assert installer.install_voices(tmp_path, work) is False
    assert not (tmp_path / "voices").exists()
    out = capsys.readouterr().out
    assert "npm not found" in out and "apt-get install npm" in out


def test_wrong_checksum_never_lands(installer: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "vocab.json"
    with pytest.raises(installer.InstallError, match="sha256"):
        installer.place(b"{}", target, installer.VOCAB_SHA256)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_pinned_hash_is_the_issue_s(installer: ModuleType) -> None:
    assert installer.MODEL_SHA256.startswith("6e742170")
    assert installer.MODEL_SHA256.endswith("06cb")
