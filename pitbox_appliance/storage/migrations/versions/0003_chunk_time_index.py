"""index telemetry chunks by session and time (lap telemetry lookups, resume)"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

from alembic import op


def upgrade() -> None:
    op.create_index(
        "ix_telemetry_chunks_session_time",
        "telemetry_chunks",
        ["session_id", "start_time"],
    )


def downgrade() -> None:
    op.drop_index("ix_telemetry_chunks_session_time", table_name="telemetry_chunks")
