"""Who writes each streaming answer, and which app instances are alive: an instance that starts marks as interrupted
only the answers of its own earlier run and of instances that stopped beating, not those another live instance is
still writing (several instances on one PostgreSQL database).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_instance",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
    )
    # Plain ALTER TABLE (SQLite has it too): batch mode would rebuild `message` and turn its column-level foreign
    # keys into table-level ones, which revision 0003's downgrade cannot drop.
    op.add_column("message", sa.Column("writer", sa.String(255)))


def downgrade() -> None:
    op.drop_column("message", "writer")
    op.drop_table("app_instance")
