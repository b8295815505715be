"""The post-race worker's supervisor program: rendered on request, niced, accepted by supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitbox_appliance.broker import render_supervisor_config


def test_postrace_program_is_niced_and_gets_the_token_and_target(
    tmp_path: Path,
) -> None:
    options = pytest.importorskip("supervisor.options")
    path = render_supervisor_config(
        tmp_path,
        "/usr/bin/python3",
        tmp_path / "appliance.yaml",
        "ab" * 32,
        "secret",
        api_tokens="0123456789abcdef0123:pipeline",
        sync_target="s3://bucket/team",
        postrace=True,
    )
    server = options.ServerOptions()
    server.realize(args=["-c", str(path)])
    groups = {g.name: g for g in server.process_group_configs}
    worker = groups["pitbox-postrace"].process_configs[0]
    assert worker.command == (
        f"nice -n 10 /usr/bin/python3 -m pitbox_appliance.postrace"
        f" --config {tmp_path / 'appliance.yaml'}"
    )
    assert worker.environment == {
        "PITBOX_API_TOKENS": "0123456789abcdef0123:pipeline",
        "PITBOX_SYNC_TARGET": "s3://bucket/team",
        "PITBOX_S3_ENDPOINT_URL": "",
    }
    assert worker.stopsignal == 15
    plain = render_supervisor_config(
        tmp_path / "plain", "/usr/bin/python3", tmp_path / "a.yaml", "ab" * 32, "s"
    )
    assert "pitbox-postrace" not in plain.read_text()
