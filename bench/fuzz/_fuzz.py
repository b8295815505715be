"""Shared set-up of the atheris harnesses: seed corpus on disk, bounded run, clear verdict."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = Path(os.environ.get("PITBOX_REAL_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO))


def run(name: str, one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """Fuzz ``one_input`` starting from ``seeds``; argv passes through to libFuzzer.

    Typical: ``python bench/fuzz/fuzz_codec.py -max_total_time=120 -rss_limit_mb=2048``.
    Any exception that escapes ``one_input`` is a finding: libFuzzer stops and writes
    the input to ``crash-*`` in the current directory.
    """
    corpus = Path(os.environ.get("PITBOX_FUZZ_CORPUS", tempfile.gettempdir()))
    corpus = corpus / f"pitbox-fuzz-{name}"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    args = [*sys.argv]
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(corpus))
    atheris.Setup(args, one_input)
    atheris.Fuzz()
