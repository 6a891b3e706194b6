"""The rules between the parts (ARCHITECTURE.md), read from the source's imports.

No module is imported here: the imports are parsed, so a rule broken inside a function
body or behind ``TYPE_CHECKING`` is caught too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PACKAGE_ROOT = REPO_ROOT / "streamer"

#: part → the parts it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "streamer.protocol": ("streamer.server", "streamer.engines", "streamer.audio",
                          "streamer.client", "trio"),
    "streamer.engines": ("streamer.server", "streamer.client"),
    "streamer.audio": ("streamer.engines", "streamer.server", "streamer.client"),
    "streamer.client": ("streamer.server",),
    # The server (and the CLI that starts it) never load a voice-agent framework: the
    # Pipecat and LiveKit adapters are clients over the WebSocket, imported by whoever
    # uses them.
    "streamer.server": ("streamer.client", "streamer.adapters.pipecat",
                        "streamer.adapters.livekit", "pipecat", "livekit"),
    "streamer.cli": ("streamer.adapters.pipecat", "streamer.adapters.livekit", "pipecat",
                     "livekit"),
    # ... and those adapters know the wire protocol only, through streamer.client.
    "streamer.adapters.pipecat": ("streamer.server", "streamer.engines", "streamer.audio",
                                  "streamer.protocol", "trio"),
    "streamer.adapters.livekit": ("streamer.server", "streamer.engines", "streamer.audio",
                                  "streamer.protocol", "trio"),
    # The Wyoming server is a surface of the server (it shares its runtime), not a client.
    "streamer.adapters.wyoming": ("streamer.client",),
    # Only the composition root (app.py) may start an adapter, and only when configured.
    "streamer.server.session": ("streamer.adapters",),
    "streamer.server.runtime": ("streamer.adapters",),
    "streamer.server.websocket": ("streamer.adapters",),
    "streamer.server.http": ("streamer.adapters",),
    # Security knows no transport and no session: they ask it, it never calls them.
    "streamer.server.security": ("streamer.server.session", "streamer.server.runtime",
                                 "streamer.server.websocket", "streamer.server.http", "trio"),
    # The control plane serves the transports; it never calls them.
    "streamer.server.cluster": ("streamer.server.websocket", "streamer.server.http"),
}
#: The parts whose dependencies must form no cycle.
PARTS = (
    "streamer.protocol",
    "streamer.engines",
    "streamer.audio",
    "streamer.client",
    "streamer.adapters",
    "streamer.server.session",
    "streamer.server.runtime",
    "streamer.server.security",
    "streamer.server.cluster",
    "streamer.server.websocket",
    "streamer.server.http",
    "streamer.server.app",
    "streamer.adapters.wyoming",
    "streamer.config",
)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted name imported (module, or module.attribute)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                found.append(Import(module, source))
                found += [Import(module, f"{source}.{alias.name}") for alias in node.names]
    return found


IMPORTS = _imports()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_import_graph_was_read() -> None:
    assert any(i.importer == "streamer.server.app" for i in IMPORTS)
    assert any(_within(i.target, "streamer.server.session") for i in IMPORTS)


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_part_does_not_import_what_it_must_not_know(part: str) -> None:
    broken = sorted(
        f"{i.importer} imports {i.target}"
        for i in IMPORTS
        if _within(i.importer, part)
        for forbidden in FORBIDDEN[part]
        if _within(i.target, forbidden)
    )
    assert not broken


def test_no_private_module_is_imported_from_outside_its_package() -> None:
    broken = []
    for i in IMPORTS:
        parts = i.target.split(".")
        for index, name in enumerate(parts):
            if name.startswith("_") and not name.startswith("__"):
                owner = ".".join(parts[:index])
                if owner.startswith("streamer") and not _within(i.importer, owner):
                    broken.append(f"{i.importer} imports {i.target}")
                break
    assert not broken


def test_the_parts_import_each_other_without_cycles() -> None:
    def part_of(name: str) -> str | None:
        matches = [p for p in PARTS if _within(name, p)]
        return max(matches, key=len) if matches else None

    edges: dict[str, set[str]] = {p: set() for p in PARTS}
    for i in IMPORTS:
        source, target = part_of(i.importer), part_of(i.target)
        if source and target and source != target:
            edges[source].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in PARTS if reaches(p, p, {p}))
    assert not cycles, {p: sorted(edges[p]) for p in cycles}
