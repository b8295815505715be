"""lap input metrics (smoothness, aggression, precision)"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    with op.batch_alter_table("laps") as batch:
        batch.add_column(sa.Column("input_smoothness", sa.Float(), nullable=True))
        batch.add_column(sa.Column("input_aggression", sa.Float(), nullable=True))
        batch.add_column(sa.Column("input_precision", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("laps") as batch:
        batch.drop_column("input_precision")
        batch.drop_column("input_aggression")
        batch.drop_column("input_smoothness")
