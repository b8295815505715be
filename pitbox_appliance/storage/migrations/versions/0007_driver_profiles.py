"""driver profiles, training goals, badges, training sessions and skill points (issue 15)"""

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    op.create_table(
        "driver_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("fatigue_model", sa.JSON(), nullable=False),
        sa.Column("preferred_setups", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("driver"),
    )
    op.create_table(
        "training_goals",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("driver", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("track_id", sa.String(length=128), nullable=False),
        sa.Column("metric_type", sa.String(length=32), nullable=False),
        sa.Column("measure", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("corner_ids", sa.JSON(), nullable=False),
        sa.Column("baseline_value", sa.Float(), nullable=False),
        sa.Column("target_value", sa.Float(), nullable=False),
        sa.Column("current_value", sa.Float(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("laps_measured", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_training_goals_driver", "training_goals", ["driver"])
    op.create_table(
        "badges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=128), nullable=False),
        sa.Column("badge_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("earned_at", sa.Float(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("driver", "category", "level"),
    )
    op.create_index("ix_badges_driver", "badges", ["driver"])
    op.create_table(
        "training_sessions",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=128), nullable=False),
        sa.Column("marked_at", sa.Float(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_table(
        "skill_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.String(length=128), nullable=False),
        sa.Column("measure", sa.String(length=64), nullable=False),
        sa.Column("corner", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("laps", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("driver", "session_id", "measure", "corner"),
    )
    op.create_index("ix_skill_points_driver", "skill_points", ["driver"])


def downgrade() -> None:
    op.drop_index("ix_skill_points_driver", table_name="skill_points")
    op.drop_table("skill_points")
    op.drop_table("training_sessions")
    op.drop_index("ix_badges_driver", table_name="badges")
    op.drop_table("badges")
    op.drop_index("ix_training_goals_driver", table_name="training_goals")
    op.drop_table("training_goals")
    op.drop_table("driver_profiles")
