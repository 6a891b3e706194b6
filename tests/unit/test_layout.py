"""The test suites' layout (tests/README.md): pytest collects only tests/unit,
tests/integration and tests/performance, so a test module anywhere else would never
run."""

from __future__ import annotations

from tests.support import REPO_ROOT

TESTS = REPO_ROOT / "tests"
SUITES = ("unit", "integration", "performance")


def test_every_test_module_is_in_a_suite() -> None:
    stray = [
        str(path.relative_to(REPO_ROOT))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in SUITES
    ]
    assert not stray, f"move these under tests/{{{','.join(SUITES)}}}/: {stray}"


def test_every_suite_folder_is_a_package() -> None:
    # Modules of the same name in two suites (unit/server/test_security.py and
    # integration/server/test_security.py) need a package path each.
    folders = [f for s in SUITES for f in [TESTS / s, *(TESTS / s).rglob("*")] if f.is_dir()]
    missing = [
        str(folder.relative_to(REPO_ROOT))
        for folder in folders
        if folder.name != "__pycache__" and not (folder / "__init__.py").exists()
    ]
    assert not missing
