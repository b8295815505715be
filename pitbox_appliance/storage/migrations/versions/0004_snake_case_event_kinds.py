"""rename the dotted event kinds to the seed's snake_case (lap_completed, driver_change, command_result)"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

import sqlalchemy as sa
from alembic import op

# Old → new; the seed spec's snake_case names are the public API (docs/decisions.md).
RENAMED = {
    "lap.completed": "lap_completed",
    "driver.change": "driver_change",
    "command.result": "command_result",
}

_events = sa.table("events", sa.column("kind", sa.String))


def upgrade() -> None:
    for old, new in RENAMED.items():
        op.execute(_events.update().where(_events.c.kind == old).values(kind=new))


def downgrade() -> None:
    for old, new in RENAMED.items():
        op.execute(_events.update().where(_events.c.kind == new).values(kind=old))
