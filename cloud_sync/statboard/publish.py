"""Publishing a team's statboard: public (``public-read`` objects) or private (presigned links that expire)."""

from __future__ import annotations

import json
from typing import Any

from cloud_sync.targets import Target

BOARDS = "boards"
DEFAULT_LINK_EXPIRY_S = 7 * 24 * 3600  # the longest SigV4 allows


def board_key(target: Target, team: str, name: str, *, public: bool) -> str:
    """``boards/public/<team>/<name>`` or ``boards/private/<team>/<name>`` under the prefix."""
    return target.key(f"{BOARDS}/{'public' if public else 'private'}/{team}/{name}")


def publish_board(
    target: Any,
    team: str,
    page: str,
    data: dict[str, Any],
    *,
    public: bool,
    expires_in: int = DEFAULT_LINK_EXPIRY_S,
) -> str:
    """Put the board (``index.html`` + ``board.json``, replacing the last build); its link.

    A public board's objects are ``public-read`` and its link is the plain object URL;
    a private board's objects stay private and the link is presigned for
    ``expires_in`` seconds (anyone holding it can read it until then, nobody after).
    """
    index = board_key(target, team, "index.html", public=public)
    target.put_bytes(
        index,
        page.encode(),
        "text/html; charset=utf-8",
        public=public,
        create_only=False,
    )
    target.put_bytes(
        board_key(target, team, "board.json", public=public),
        (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode(),
        "application/json",
        public=public,
        create_only=False,
    )
    return str(
        target.object_url(index) if public else target.presign(index, expires_in)
    )
