"""Runs every committed model on fixed inputs through one named runtime and prints the outputs.

Used by scripts/test.sh to check the ``tflite_runtime`` fallback in its own
environment (only ``tflite-runtime`` and ``numpy<2``): it imports nothing of PitBox
but ``models.runtime``, and ``--compare`` checks its outputs against another run's.

    python -m pitbox_appliance.models.runtime_check --runtime tflite_runtime.interpreter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pitbox_appliance.models.runtime import TFLiteModel

MODELS_DIR = Path(__file__).resolve().parent
TOLERANCE = 1e-5


def outputs(runtime: str) -> dict[str, list[float]]:
    """Each model's outputs for 8 fixed input rows, through ``runtime`` only."""
    result: dict[str, list[float]] = {}
    rng = np.random.default_rng(11)
    for path in sorted(MODELS_DIR.glob("*.tflite")):
        model = TFLiteModel(path, modules=(runtime,))
        if model.runtime != runtime:
            raise SystemExit(f"{path.name}: loaded by {model.runtime}, not {runtime}")
        rows = rng.normal(size=(8, model.n_features))
        result[path.stem] = [float(v) for row in rows for v in model.run(row)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime", default="ai_edge_litert.interpreter")
    parser.add_argument("--compare", type=Path, help="JSON of another runtime's run")
    args = parser.parse_args(argv)
    mine = outputs(args.runtime)
    if args.compare is None:
        sys.stdout.write(json.dumps(mine) + "\n")
        return 0
    other = json.loads(args.compare.read_text())
    if set(other) != set(mine):
        sys.stderr.write(f"models differ: {sorted(other)} vs {sorted(mine)}\n")
        return 1
    worst = max(
        float(np.max(np.abs(np.subtract(mine[name], other[name])))) for name in mine
    )
    verdict = "OK" if worst <= TOLERANCE else "MISMATCH"
    sys.stdout.write(
        f"{len(mine)} models, {args.runtime} vs {args.compare.name}: "
        f"max difference {worst:.2e} {verdict}\n"
    )
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
