"""Upload targets by URL scheme: each target class declares its scheme; the parser looks it up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult

import pytest

from cloud_sync.s3 import S3Target
from cloud_sync.targets import (
    TARGETS,
    FileTarget,
    parse_target,
    register_target,
    target_url,
)
from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT


def test_the_scheme_picks_the_target_class(tmp_path: Path) -> None:
    target = parse_target(f"file://{tmp_path}", endpoint_url="ignored")
    assert isinstance(target, FileTarget)
    assert target.root == tmp_path
    s3 = parse_target("s3://bucket/pre/fix/", endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3Target)
    assert (s3.bucket, s3.prefix, s3.url) == (
        "bucket",
        "pre/fix",
        "s3://bucket/pre/fix",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3:///prefix", "needs a bucket"),
        ("file://host/dir", "file:///absolute/dir"),
        ("ftp://host/dir", "target must be file:///dir or s3://bucket/prefix"),
        ("/just/a/path", "target must be"),
    ],
)
def test_bad_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_target(url)


def test_target_url_is_what_the_target_writes_without_opening_it(
    tmp_path: Path,
) -> None:
    assert target_url("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert target_url("s3://bucket") == "s3://bucket"
    assert target_url("file:///mnt/usb%20drive/") == "file:///mnt/usb drive"
    assert target_url(f"file://{tmp_path}") == FileTarget(tmp_path).url
    assert target_url("ftp://elsewhere") == "ftp://elsewhere"


class _MemoryTarget(FileTarget):
    @classmethod
    def from_url(cls, url: str, parts: ParseResult, **options: Any) -> _MemoryTarget:
        target = cls(Path("/nowhere"))
        target.url = f"mem://{parts.netloc}"
        return target

    @staticmethod
    def canonical_url(parts: ParseResult) -> str:
        return f"mem://{parts.netloc}"


def test_a_target_is_found_from_its_declaration_alone() -> None:
    with TARGETS.scoped():
        register_target("mem", example="mem://name")(_MemoryTarget)
        target = parse_target("mem://scratch")
        assert isinstance(target, _MemoryTarget)
        assert target.url == target_url("mem://scratch/") == "mem://scratch"
        with pytest.raises(ValueError, match="or mem://name"):
            parse_target("ftp://x")
    with pytest.raises(ValueError, match="target must be"):
        parse_target("mem://scratch")


def test_a_file_target_never_loads_the_s3_stack() -> None:
    code = (
        "import sys; from cloud_sync.targets import parse_target, target_url\n"
        "parse_target('file:///tmp'); target_url('file:///tmp')\n"
        "print(sorted(m for m in ('cloud_sync.s3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
