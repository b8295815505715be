"""Imports point upstream only (STYLE.md): every import between packages is on an allow-list.

A *unit* is a top-level package's subpackage or module (``pitbox_appliance.core``,
``driver_pc.protocol``, ``cloud_sync.report``); a process's ``__main__`` is a unit of its
own, because it wires its process's parts together. ``ALLOWED`` lists, for each unit,
the other units it may import. An import that is not listed fails here, so a new leak
(the appliance reaching into the shim, cloud_sync into the appliance's storage) cannot
land unnoticed; a new arrow is added here on purpose, with docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("driver_pc", "pitbox_appliance", "cloud_sync", "training")
CONTRACT = "driver_pc.protocol"

# The composition root: the ``pitbox`` command wires every package's subcommands.
COMPOSITION_ROOT = "pitbox_appliance.cli"

ALLOWED: dict[str, set[str]] = {
    # The contract every deployable may import imports nothing of ours.
    CONTRACT: set(),
    # ---- the driver-PC shim ----------------------------------------------------------
    "driver_pc.adapters": {CONTRACT},
    "driver_pc.transport": {CONTRACT},
    "driver_pc.pairing": {CONTRACT},
    "driver_pc.appliance_api": {CONTRACT},
    "driver_pc.video": {"driver_pc.appliance_api"},
    "driver_pc.registration": {CONTRACT, "driver_pc.appliance_api"},
    "driver_pc.shim_status": set(),
    "driver_pc.autostart": {CONTRACT, "driver_pc.shim_status"},
    "driver_pc.pipeline": {CONTRACT, "driver_pc.adapters"},
    "driver_pc.service": {
        CONTRACT,
        "driver_pc.adapters",
        "driver_pc.pipeline",
        "driver_pc.shim_status",
        "driver_pc.transport",
        "driver_pc.video",
    },
    "driver_pc.__main__": {
        CONTRACT,
        "driver_pc.adapters",
        "driver_pc.appliance_api",
        "driver_pc.autostart",
        "driver_pc.pairing",
        "driver_pc.registration",
        "driver_pc.service",
        "driver_pc.shim_status",
        "driver_pc.video",
    },
    # ---- the appliance ---------------------------------------------------------------
    "pitbox_appliance.config": set(),
    "pitbox_appliance.broker": set(),
    "pitbox_appliance.storage": {CONTRACT},
    "pitbox_appliance.analysis": set(),
    "pitbox_appliance.models": set(),
    "pitbox_appliance.detectors": {
        CONTRACT,
        "pitbox_appliance.analysis",
        "pitbox_appliance.coaching",  # the training detector runs coaching's trainer
    },
    "pitbox_appliance.coaching": {
        CONTRACT,
        "pitbox_appliance.analysis",
        "pitbox_appliance.storage",
    },
    "pitbox_appliance.strategy": {CONTRACT, "pitbox_appliance.models"},
    "pitbox_appliance.security": {
        CONTRACT,
        "pitbox_appliance.broker",
        "pitbox_appliance.config",
    },
    "pitbox_appliance.compaction": {
        CONTRACT,
        "pitbox_appliance.analysis",  # the set's track map: outline and corners
        "pitbox_appliance.coaching",  # driver profiles travel with the session
        "pitbox_appliance.storage",
    },
    "pitbox_appliance.core": {
        CONTRACT,
        "pitbox_appliance.analysis",
        "pitbox_appliance.config",
        "pitbox_appliance.detectors",
        "pitbox_appliance.models",
        "pitbox_appliance.security",
        "pitbox_appliance.storage",
        "pitbox_appliance.strategy",
    },
    "pitbox_appliance.api": {
        CONTRACT,
        "pitbox_appliance.coaching",  # /api/v1/drivers and training mode
        "pitbox_appliance.core",
        "pitbox_appliance.security",
        "pitbox_appliance.storage",
    },
    "pitbox_appliance.core.__main__": {
        CONTRACT,
        "pitbox_appliance.api",
        "pitbox_appliance.config",
    },
    "pitbox_appliance.dashboard": {
        CONTRACT,
        "pitbox_appliance.analysis",  # track outline and corners (pure numpy)
        "pitbox_appliance.api",
        "pitbox_appliance.config",
        "pitbox_appliance.postrace",  # the post-race progress file, read-only
        "pitbox_appliance.security",  # dashboard logins (users.json), read-only
        "pitbox_appliance.storage",
    },
    "pitbox_appliance.dashboard.__main__": {CONTRACT, "pitbox_appliance.config"},
    # The post-race worker: reads the database, compacts; sync and report run as
    # child processes (it never imports cloud_sync).
    "pitbox_appliance.postrace": {
        CONTRACT,
        "pitbox_appliance.compaction",
        "pitbox_appliance.storage",
    },
    "pitbox_appliance.postrace.__main__": {
        CONTRACT,
        "pitbox_appliance.api",  # the pipeline token out of PITBOX_API_TOKENS
        "pitbox_appliance.config",
        "pitbox_appliance.storage",
    },
    # ---- the cloud side: the compacted files and the contract, never the appliance --
    "cloud_sync.targets": {CONTRACT, "cloud_sync.manifest"},
    "cloud_sync.s3": {"cloud_sync.manifest", "cloud_sync.targets"},
    "cloud_sync.manifest": {CONTRACT},
    "cloud_sync.outbox": set(),
    "cloud_sync.uploader": {
        CONTRACT,
        "cloud_sync.manifest",
        "cloud_sync.outbox",
        "cloud_sync.targets",
    },
    "cloud_sync.command": {
        CONTRACT,
        "cloud_sync.outbox",
        "cloud_sync.targets",
        "cloud_sync.uploader",
    },
    "cloud_sync.__main__": {CONTRACT, "cloud_sync.command"},
    "cloud_sync.compacted": {CONTRACT, "cloud_sync.manifest", "cloud_sync.targets"},
    "cloud_sync.analytics": {"cloud_sync.compacted"},
    # Team plans and white-label: the team config is in the contract (the appliance's
    # theme reads the same file).
    "cloud_sync.plans": {CONTRACT},
    "cloud_sync.branding": {CONTRACT},
    "cloud_sync.sponsor": {
        CONTRACT,
        "cloud_sync.branding",
        "cloud_sync.compacted",
        "cloud_sync.report",
        "cloud_sync.targets",
    },
    "cloud_sync.premium": {
        CONTRACT,
        "cloud_sync.manifest",
        "cloud_sync.plans",
        "cloud_sync.targets",
    },
    "cloud_sync.report": {
        CONTRACT,
        "cloud_sync.analytics",
        "cloud_sync.branding",
        "cloud_sync.command",
        "cloud_sync.compacted",
        "cloud_sync.manifest",
        "cloud_sync.targets",
    },
    "cloud_sync.statboard": {
        "cloud_sync.analytics",
        "cloud_sync.branding",
        "cloud_sync.compacted",
        "cloud_sync.report",
        "cloud_sync.targets",
    },
    "cloud_sync.cloud_command": {
        CONTRACT,
        "cloud_sync.compacted",
        "cloud_sync.plans",
        "cloud_sync.premium",
        "cloud_sync.report",
        "cloud_sync.sponsor",
        "cloud_sync.statboard",
        "cloud_sync.targets",
    },
    # ---- training and evaluation: downstream of the runtime, never imported by it ----
    "training.offline_detectors": {
        "pitbox_appliance.analysis",
        "pitbox_appliance.detectors",
    },
    "training.detector_scoring": {
        "driver_pc.adapters",
        "pitbox_appliance.detectors",
        "training.offline_detectors",
    },
    "training.strategy_scoring": {
        CONTRACT,
        "driver_pc.adapters",
        "pitbox_appliance.analysis",
        "pitbox_appliance.strategy",
    },
    "training.datasets": {
        "driver_pc.adapters",
        "pitbox_appliance.analysis",
        "pitbox_appliance.models",
        "pitbox_appliance.strategy",
    },
    "training.train_command": {"pitbox_appliance.models", "training.datasets"},
}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to."""
    parts = module.split(".")
    if module == COMPOSITION_ROOT or module.startswith(COMPOSITION_ROOT + "."):
        return COMPOSITION_ROOT
    if parts[-1] == "__main__":
        return module
    return ".".join(parts[:2])


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_modules() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def import_edges() -> dict[str, dict[str, list[str]]]:
    """unit → imported unit → the modules that import it."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in package_modules():
        unit = unit_of(module_of(path))
        for name in imported_modules(path):
            if name.split(".")[0] not in PACKAGES:
                continue
            target = unit_of(name)
            if target != unit and not (
                unit.startswith(target + ".") or target.startswith(unit + ".")
            ):
                edges[unit][target].append(str(path.relative_to(ROOT)))
    return edges


def test_every_import_between_units_is_allowed() -> None:
    problems = []
    for unit, targets in sorted(import_edges().items()):
        if unit == COMPOSITION_ROOT:
            continue
        allowed = ALLOWED.get(unit)
        for target, where in sorted(targets.items()):
            if target == COMPOSITION_ROOT:
                problems.append(f"{unit} imports the composition root ({where[0]})")
            elif allowed is None:
                problems.append(f"{unit} is not on the allow-list ({where[0]})")
            elif target not in allowed:
                problems.append(f"{unit} → {target} is not allowed ({where[0]})")
    assert problems == []


def test_allow_list_has_no_stale_arrows() -> None:
    """Every allowed arrow is used, so the list stays a true picture of the layout."""
    edges = import_edges()
    stale = [
        f"{unit} → {target}"
        for unit, targets in sorted(ALLOWED.items())
        for target in sorted(targets)
        if target not in edges.get(unit, {})
    ]
    assert stale == []


def test_runtime_never_imports_training_or_the_shim() -> None:
    """The appliance and the cloud side see the shim only through the contract."""
    for unit, targets in import_edges().items():
        if unit == COMPOSITION_ROOT or not unit.startswith(
            ("pitbox_appliance", "cloud_sync")
        ):
            continue
        for target in targets:
            assert not target.startswith("training"), (unit, target)
            if target.startswith("driver_pc"):
                assert target == CONTRACT, (unit, target)


def test_paho_only_in_the_mqtt_connection() -> None:
    offenders = []
    for path in package_modules():
        if path.relative_to(ROOT) == Path("driver_pc/protocol/mqtt.py"):
            continue
        if any(n.split(".")[0] == "paho" for n in imported_modules(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_nicegui_only_in_dashboard() -> None:
    offenders = []
    for path in package_modules():
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("pitbox_appliance", "dashboard"):
            continue
        if any(n.split(".")[0] == "nicegui" for n in imported_modules(path)):
            offenders.append(str(rel))
    assert offenders == []


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in package_modules()
        if ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []
