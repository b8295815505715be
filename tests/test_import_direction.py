"""Imports point upstream only (STYLE.md): walk every module's imports and hold the rule."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> packages it must not import
FORBIDDEN = {
    "driver_pc": ("pitbox_appliance", "cloud_sync"),
    "pitbox_appliance": ("cloud_sync",),
}
# The `pitbox` command is the composition root: it may dispatch to any package.
COMPOSITION_ROOTS = {Path("pitbox_appliance/cli.py")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_imports_point_upstream() -> None:
    problems = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel in COMPOSITION_ROOTS:
                continue
            for name in imported_modules(path):
                if name.split(".")[0] in banned:
                    problems.append(f"{rel} imports {name}")
    assert problems == []


def test_paho_only_in_transport() -> None:
    offenders = []
    for package in ("driver_pc", "pitbox_appliance", "cloud_sync"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT) == Path("driver_pc/protocol/mqtt.py"):
                continue
            if any(n.split(".")[0] == "paho" for n in imported_modules(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_nicegui_only_in_dashboard() -> None:
    offenders = []
    for package in ("driver_pc", "pitbox_appliance", "cloud_sync"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("pitbox_appliance", "dashboard"):
                continue
            if any(n.split(".")[0] == "nicegui" for n in imported_modules(path)):
                offenders.append(str(rel))
    assert offenders == []


def test_every_module_has_a_docstring() -> None:
    missing = []
    for package in ("driver_pc", "pitbox_appliance", "cloud_sync"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            if ast.get_docstring(ast.parse(path.read_text())) is None:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []
