"""lap flags: invalid (reset, tow or no time from iRacing) and refuelled (fuel rose)"""

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    # Laps stored before this knew neither: false, as the segmenter then assumed.
    with op.batch_alter_table("laps") as batch:
        batch.add_column(
            sa.Column("invalid", sa.Boolean(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("refuelled", sa.Boolean(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("laps") as batch:
        batch.drop_column("refuelled")
        batch.drop_column("invalid")
