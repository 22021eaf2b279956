"""Per-conversation generation settings, and per-answer details (model, settings used, tokens, speed, ending).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversation", sa.Column("settings", sa.JSON(), nullable=True))
    op.add_column("message", sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE message DROP COLUMN details")
    op.execute("ALTER TABLE conversation DROP COLUMN settings")
