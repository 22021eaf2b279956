"""Accounts: users with argon2 password hashes; each conversation belongs to one user (or to nobody, the
single local person, while no accounts exist).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_app_user_name"),
    )
    # Column-level REFERENCES: plain SQLite ADD COLUMN, no table rebuild.
    op.execute("ALTER TABLE conversation ADD COLUMN user_id INTEGER REFERENCES app_user(id) ON DELETE CASCADE")
    op.create_index("ix_conversation_user_id", "conversation", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_conversation_user_id", table_name="conversation")
    op.execute("ALTER TABLE conversation DROP COLUMN user_id")
    op.drop_table("app_user")
