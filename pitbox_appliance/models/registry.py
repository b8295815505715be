"""The model registry (registry.json): which models exist, their features and which one is the default.

A model is the default only where it beat its baseline on held-out data of real
races (``evidence`` "real"); a model with only simulated evidence stays beside
its baseline (both are reported) and the baseline is the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MODELS_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = MODELS_DIR / "registry.json"
MODEL_NAMES = ("lap_time", "fuel_per_lap", "fatigue", "incident")

Output = Literal["add_reference", "ratio_of_reference", "identity", "classes"]


class RegistryError(ValueError):
    """registry.json is missing an entry or has a wrong field; the message says which."""


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One model: its file, inputs, output transform, baseline and held-out verdict."""

    name: str
    file: str
    features: tuple[str, ...]
    output: Output
    baseline: str
    evidence: Literal["real", "simulated"]
    winner: Literal["model", "baseline"]
    default: Literal["model", "baseline"]
    held_out: dict[str, Any] = field(default_factory=dict)
    baseline_params: dict[str, float] = field(default_factory=dict)
    classes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, RegistryEntry]:
    """Every entry of the registry file, checked."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the model registry: {exc}") from exc
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise RegistryError(f"{path}: no 'models' mapping")
    entries = {}
    for name, item in models.items():
        try:
            entry = RegistryEntry(
                name=name,
                file=str(item["file"]),
                features=tuple(item["features"]),
                output=item["output"],
                baseline=str(item["baseline"]),
                evidence=item["evidence"],
                winner=item["winner"],
                default=item["default"],
                held_out=dict(item.get("held_out", {})),
                baseline_params={
                    k: float(v) for k, v in item.get("baseline_params", {}).items()
                },
                classes=tuple(item.get("classes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"{path}: model {name!r}: bad or missing {exc}"
            ) from exc
        if entry.default == "model" and (
            entry.winner != "model" or entry.evidence != "real"
        ):
            raise RegistryError(
                f"{path}: model {name!r} is the default without winning on real data"
            )
        entries[name] = entry
    return entries


def save_registry(
    entries: dict[str, dict[str, Any]], path: Path = REGISTRY_PATH
) -> None:
    """Write the registry (used by ``pitbox train``)."""
    path.write_text(json.dumps({"version": 1, "models": entries}, indent=2) + "\n")
