"""bench/accuracy.py keeps the blocks other scripts write into docs/accuracy.md."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO_ROOT


def _accuracy() -> ModuleType:
    bench = str(REPO_ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)  # bench scripts import their _common as a sibling
    spec = importlib.util.spec_from_file_location(
        "bench_accuracy", f"{bench}/accuracy.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_marked_blocks_of_the_old_file_survive_a_rewrite() -> None:
    keep = _accuracy().keep_marked_blocks
    block = (
        "<!-- track-outline:start -->\n## Outline\n\n| a |\n<!-- track-outline:end -->"
    )
    other = "<!-- detector-real:start -->\nx\n<!-- detector-real:end -->"
    old = f"# Old\n\nold tables\n\n{block}\n\nmore old\n\n{other}\n"
    new = "# New\n\nnew tables\n"
    out = keep(old, new)
    assert out.startswith("# New\n\nnew tables\n")
    assert "old tables" not in out
    assert "more old" not in out
    assert block in out
    assert other in out
    assert out.index(block) < out.index(other)
    # A block the new text writes itself is the new text's; nothing doubles.
    own = "<!-- track-outline:start -->\nmine\n<!-- track-outline:end -->"
    out = keep(old, f"# New\n\n{own}\n")
    assert out.count("track-outline:start") == 1
    assert "mine" in out
    assert other in out
    assert keep("", new) == new
    # An unterminated block is not a block: nothing is carried over.
    assert keep("<!-- x:start -->\nhalf", new) == new
